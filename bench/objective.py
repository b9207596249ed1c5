"""Fine-tuning's objectives side by side: LoRA trained with token cross-entropy (`tokens`), with
cross-entropy over the label set's scores (`labels`), and with both (`labels+tokens`), on the same
task, learning rates, epochs and seed, in one run on this machine.

Prints, per task and objective: the chosen learning rate, the best dev accuracy and step, the test
accuracy with its 95% CI, and the training time, then which objective dev would choose.

    python bench/objective.py [--tasks fruit,syllables] [--lrs 0.001] [--epochs 8]

A task is a built-in name or one of bench/recipes_data.py's (given as train + test files, as users
give them). Each objective is a `tuneforge finetune` run (minutes per task on a 2-core CPU).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _machine import cpu_line  # noqa: E402

OBJECTIVES = ("tokens", "labels", "labels+tokens")
BUILTIN = ("fruit", "bias-demo")


def task_args(task: str) -> list[str]:
    if task in BUILTIN:
        return ["--task", task]
    from recipes_data import build

    data = build(task)
    return ["--train", data["train"], "--test", data["test"], "--instruction", data["instruction"]]


def run(task: str, objective: str, args, out: Path) -> dict:
    command = [sys.executable, "-m", "tuneforge.cli", "finetune", *task_args(task), "--objective", objective,
               "--lrs", args.lrs, "--epochs", str(args.epochs), "--patience", str(args.patience), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(command, check=True, env=os.environ.copy(), stdout=subprocess.DEVNULL)
    results = json.loads((out / "results.json").read_text())
    return {"results": results, "seconds": time.perf_counter() - start}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="fruit")
    parser.add_argument("--lrs", default="0.001", help="comma-separated learning rates (the search's grid)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--patience", type=int, default=1)
    parser.add_argument("--out", default=str(HERE / ".objective"))
    args = parser.parse_args()
    print(cpu_line())
    print(f"LoRA, lrs {args.lrs}, up to {args.epochs} epochs, patience {args.patience}, seed 0\n")
    print("| task | objective | lr | best dev acc | best step | test acc (95% CI) | time |")
    print("|---|---|---|---|---|---|---|")
    for task in args.tasks.split(","):
        rows = []
        for objective in OBJECTIVES:
            done = run(task, objective, args, Path(args.out) / task / objective.replace("+", "-"))
            r, test = done["results"], done["results"]["test"]["accuracy"]
            rows.append((objective, r["best_dev_score"]))
            print(f"| {task} | {objective} | {r['peak_lr']:g} | {r['best_dev_score']:.3f} | {r['best_step']} | "
                  f"{test['mean']:.3f} ({test['ci95'][0]:.2f}–{test['ci95'][1]:.2f}) | {done['seconds']:.0f} s |",
                  flush=True)
        best = max(rows, key=lambda row: row[1])  # the first of equal dev scores: tokens, today's default
        print(f"| {task} | dev chooses **{best[0]}** | | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
