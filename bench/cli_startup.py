"""How long `tuneforge --help` and each subcommand's `--help` take, beside the bare interpreter and
`import torch`, measured here (median of 5 runs each, after one warm-up that compiles bytecode).

The goal: every --help under 1 s, because no torch import happens until a model is needed."""

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_line  # noqa: E402

RUNS = 5
GOAL_SECONDS = 1.0


def seconds(cmd: list[str]) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm-up: bytecode, page cache
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    from tuneforge.cli import build_parser

    commands = list(build_parser()._subparsers._group_actions[0].choices)
    python = seconds([sys.executable, "-c", "pass"])
    torch = seconds([sys.executable, "-c", "import torch"])
    cli = [sys.executable, "-m", "tuneforge.cli"]
    rows = [("tuneforge --help", seconds(cli + ["--help"]))]
    rows += [(f"tuneforge {c} --help", seconds(cli + [c, "--help"])) for c in commands]
    print(f"# CLI start-up\n\n- {cpu_line()}\n- bare python: {python:.3f} s; python -c 'import torch': {torch:.3f} s\n")
    print("| command | seconds | x import torch | goal < 1 s |\n|---|---|---|---|")
    for name, t in rows:
        print(f"| `{name}` | {t:.3f} | {t / torch:.2f} | {'PASS' if t < GOAL_SECONDS else 'MISS'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
