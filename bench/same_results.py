"""Behaviour unchanged across a restructure: the tiny experiment (every route, the audit, the batch
job, synonym lists with a trained LoRA writer) run by tuneforge at commit BEFORE and by the working
tree, on the same tiny random model, in fp32 with one thread. Compares results.json and every row of
the prediction store (both runs in one folder, one after the other: a stored setting's id covers its
model's path), timings and sizes on disk aside, and prints each difference (none: exit 0).

    python bench/same_results.py [--before f3ecdab] [--after WORKTREE|REV]
"""

import argparse
import importlib.util
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "f3ecdab"  # the last commit before issue 28's consolidation began
EXPERIMENT = """\
name: tiny
model: {model}
dtype: fp32
task: {{name: fruit}}
prompting: {{shots: [0, 1], picks: [random], draws: 2}}
lora: {{epochs: 1, batch_size: 8, lrs: [0.001, 0.003]}}
full: {{epochs: 1, batch_size: 8, lrs: [0.0001]}}
distill: {{layers: 1, training: {{epochs: 1}}}}
audit: {{shots: [0], permutations: 50}}
batch: {{route: lora}}
synonyms: {{topics: {topics}, max_new_tokens: 6, samples: 1, writer: lora, writer_epochs: 1}}
"""
VARYING = {"seconds", "peak_memory_bytes", "created", "started", "finished", "date", "path", "run_dir", "bytes",
           "size_bytes", "latency", "latency_ms", "tokens_per_second", "examples_per_second", "memory", "time",
           "wall_seconds", "model_dir", "ms_per_example", "training_seconds"}
"""Keys whose values differ from run to run or folder to folder (timings, sizes on disk, paths)."""
TIMING = re.compile(r"[\d.,]+ (ms|µs|s) per example")
"""A latency quoted in a sentence (the recommendation's reason)."""


def tree(rev: str, into: Path) -> Path:
    """tuneforge's src/ at `rev` (WORKTREE: the working tree as it is now), copied into `into`."""
    if rev == "WORKTREE":
        shutil.copytree(ROOT / "src", into / "src", ignore=shutil.ignore_patterns("__pycache__"))
    else:
        into.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "src"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


def run(src: Path, config: Path, out: Path) -> None:
    code = ("import sys; from tuneforge.api import run; "
            f"run({str(config)!r}, out={str(out)!r}, echo=lambda line: None, cache=False)")
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "TUNEFORGE_HOME": str(out.parent / "home")}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def store_rows(run_dir: Path) -> dict:
    """Every table of the run's store as sorted rows, varying columns left out."""
    db = next(run_dir.glob("*.db"), None) or next(run_dir.glob("*.sqlite"), None)
    if db is None:
        return {}
    con = sqlite3.connect(db)
    tables = [name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    out = {}
    for table in tables:
        cursor = con.execute(f"SELECT * FROM {table}")
        columns = [c[0] for c in cursor.description]
        keep = [i for i, c in enumerate(columns) if c not in VARYING and not c.endswith("_at")]
        out[table] = sorted(json.dumps([row[i] for i in keep], default=str) for row in cursor)
    con.close()
    return out


def differences(a, b, where: str = "") -> list[str]:
    """Where `a` and `b` differ, keys in VARYING aside."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            if key in VARYING:
                continue
            if key not in a or key not in b:
                found.append(f"{where}.{key}: only {'after' if key not in a else 'before'}")
            else:
                found += differences(a[key], b[key], f"{where}.{key}")
        return found
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, str) and isinstance(b, str):
        a, b = TIMING.sub("(latency) per example", a), TIMING.sub("(latency) per example", b)
    return [] if a == b else [f"{where}: {json.dumps(a, default=str)[:400]} != {json.dumps(b, default=str)[:400]}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--after", default="WORKTREE")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("conftest", ROOT / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = conftest.build_tiny_model(tmp / "tiny3", layers=3)
        (tmp / "topics.txt").write_text("apple\nvaccine\n")
        config = tmp / "tiny.yaml"
        config.write_text(EXPERIMENT.format(model=model, topics=tmp / "topics.txt"))
        results, rows = {}, {}
        out = tmp / "run" / "tiny"  # one folder for both: a stored setting names its model by its path
        for side, rev in (("before", args.before), ("after", args.after)):
            shutil.rmtree(out.parent, ignore_errors=True)
            run(tree(rev, tmp / side), config, out)
            results[side] = json.loads((out / "results.json").read_text())
            rows[side] = store_rows(out)
        found = differences(results["before"], results["after"], "results")
        found += differences(rows["before"], rows["after"], "store")
    routes = [r["name"] for r in results["after"]["routes"]]
    stored = sum(len(v) for v in rows["after"].values())
    print(f"tiny experiment at {args.before} and {args.after}: routes {', '.join(routes)}; "
          f"{stored} store rows compared")
    for line in found:
        print("DIFFERS", line)
    print("identical, timings, sizes and paths aside" if not found else f"{len(found)} differences")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
