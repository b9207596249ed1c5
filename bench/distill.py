"""Distillation: teacher and students side by side, task by task, in one run on this machine.

The teacher of each task is the LoRA model of bench/recipes.py's tuned run (bench/.recipes/runs/<task>/
tuned/stages/lora/run/merged; run bench/recipes.py first, or give --teacher-of task=dir). Per task,
`tuneforge distill` trains, into bench/.distill/<task>/<student>/:
  - labels:   the 7-layer student on the train labels alone (`--kd none`, 8 epochs: 3 over the
              train split alone would be 27 steps), the baseline;
  - pool:     the 7-layer student on the pool the teacher labels (label-set KD, hidden-state cosine
              5:2:1, the kept layers chosen on dev between block influence and evenly spread);
  - no-cos:   the same without the hidden-state term (5:2:0), where --cosine-ablation is given;
  - <n>L:     students of other sizes (--sizes, default 11 and 15 layers) with the pool.
A second student of a task reads the teacher's outputs from the first one's cache (no teacher pass).
Every student is tested by the same code as its teacher in the same process, same dtype, so the
accuracy kept and the speed-up are side by side. The tables and the issue's targets (PASS / MISS)
are printed and written to bench/.distill/distill.md. A measurement: exit 0 when a target misses.

    python bench/distill.py                                # fruit and the recipe suite (long)
    python bench/distill.py --tasks fruit --sizes ''       # one task, 7-layer students only
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_line  # noqa: E402

HERE = Path(__file__).parent
ROOT = HERE / ".distill"
RECIPES = HERE / ".recipes"
SUITE = ("fruit", "sentiment-words", "continents", "syllables")


def task_args(task: str) -> list[str]:
    if task == "fruit":
        return ["--task", "fruit"]
    sys.path.insert(0, str(HERE))
    from recipes_data import build

    data = build(task)
    return ["--task", task, "--train", data["train"], "--test", data["test"], "--instruction", data["instruction"]]


def run_student(task: str, teacher: Path, name: str, extra: list[str], cache: Path) -> dict | None:
    out = ROOT / task / name
    results = out / "results.json"
    if results.exists():
        return json.loads(results.read_text())
    exe = Path(sys.executable).with_name("tuneforge")
    command = [str(exe), "distill", *task_args(task), "--teacher", str(teacher), "--out", str(out),
               "--teacher-cache", str(cache), *extra]
    log = ROOT / task / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"  $ {' '.join(command)}", flush=True)
    start = time.time()
    with log.open("w") as f:
        rc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT).returncode
    print(f"    exit {rc} in {time.time() - start:.0f} s (log: {log})", flush=True)
    return json.loads(results.read_text()) if rc == 0 and results.exists() else None


def row(name: str, r: dict, teacher_total: int) -> str:
    acc, t_acc = r["student_test"][r["metric"]], r["teacher_test"][r["metric"]]["mean"]
    params = r["parameters"]["student"]["total"]
    chosen = next((t for t in r.get("trials", []) if t.get("chosen")), {})
    return (f"| {name} | {r['student'].get('layers', '?')} ({chosen.get('choice', '-')}) | {params / teacher_total:.1%} | "
            f"{acc['mean']:.3f} [{acc['ci95'][0]:.3f}, {acc['ci95'][1]:.3f}] | {acc['mean'] / max(t_acc, 1e-9):.1%} | "
            f"{r['speedup']:.2f}x | {r['pool']['size'] if r.get('pool') else '-'} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(SUITE))
    parser.add_argument("--sizes", default="11,15", help="layer counts of the extra students (comma-separated)")
    parser.add_argument("--cosine-ablation", action="store_true", help="also the pool student without the cosine term")
    parser.add_argument("--teacher-of", action="append", default=[], help="task=model_dir")
    args = parser.parse_args()
    given = dict(item.split("=", 1) for item in args.teacher_of)
    lines = ["# tuneforge distillation: teacher and students side by side", "", f"- {cpu_line()}", ""]
    verdicts, failed = [], False
    for task in [t for t in args.tasks.split(",") if t]:
        teacher = Path(given.get(task, RECIPES / "runs" / task / "tuned" / "stages" / "lora" / "run" / "merged"))
        if not teacher.is_dir():
            print(f"{task}: no teacher at {teacher}; run bench/recipes.py first or give --teacher-of")
            failed = True
            continue
        cache = ROOT / task / "teacher-outputs"
        students = {"labels": ["--layers", "7", "--kd", "none", "--epochs", "8"], "pool": ["--layers", "7"]}
        if args.cosine_ablation:
            students["no-cos"] = ["--layers", "7", "--weights", "5,2,0"]
        for n in [int(s) for s in args.sizes.split(",") if s]:
            students[f"{n}L"] = ["--layers", str(n)]
        runs = {name: run_student(task, teacher, name, extra, cache) for name, extra in students.items()}
        failed |= any(r is None for r in runs.values())
        done = {k: v for k, v in runs.items() if v}
        if not done:
            continue
        any_run = next(iter(done.values()))
        t_acc = any_run["teacher_test"][any_run["metric"]]
        teacher_total = any_run["parameters"]["teacher"]["total"]
        lines += [f"### {task}", "",
                  f"teacher (LoRA merged, {teacher_total:,} parameters): {any_run['metric']} {t_acc['mean']:.3f} "
                  f"[{t_acc['ci95'][0]:.3f}, {t_acc['ci95'][1]:.3f}], {any_run['teacher_ms_per_example']:.1f} ms/example",
                  "", "| student | layers (choice) | params | test | kept | speed-up | pool |", "|---|---|---|---|---|---|---|"]
        lines += [row(name, r, teacher_total) for name, r in done.items()]
        pool = done.get("pool")
        if pool:
            lines += ["", f"pool: {pool['pool']['sources']}; trials: "
                      + "; ".join(f"{t['choice']} {t['layers']} dev {t['dev_score']}" for t in pool["trials"])]
        lines.append("")
        verdicts += task_verdicts(task, done, teacher_total)
    lines += ["## Targets", ""] + [f"- {v}" for v in verdicts]
    text = "\n".join(lines) + "\n"
    ROOT.mkdir(exist_ok=True)
    (ROOT / "distill.md").write_text(text)
    print(text)
    return 1 if failed else 0


def task_verdicts(task: str, done: dict, teacher_total: int) -> list[str]:
    out = []
    small = [(name, r) for name, r in done.items() if name != "labels"
             and r["parameters"]["student"]["total"] <= 0.5 * teacher_total]
    if small:
        name, best = max(small, key=lambda nr: nr[1]["accuracy_retained"])
        ok = best["accuracy_retained"] >= 0.95 and best["speedup"] >= 2
        out.append(f"{task}: a student <= 50% params keeps >= 95% and is >= 2x faster: {'PASS' if ok else 'MISS'} "
                   f"({name}: {best['accuracy_retained']:.1%} kept, {best['speedup']:.2f}x)")
    if "pool" in done and "labels" in done:
        a, b = (done[k]["student_test"][done[k]["metric"]]["mean"] for k in ("pool", "labels"))
        out.append(f"{task}: distillation with the pool beats labels only: {'PASS' if a > b else 'MISS'} "
                   f"({a:.3f} vs {b:.3f})")
    if "pool" in done:
        kept = done["pool"]["accuracy_retained"]
        out.append(f"{task}: the 7-layer student keeps >= 90%: {'PASS' if kept >= 0.9 else 'MISS'} ({kept:.1%})")
    return out


if __name__ == "__main__":
    sys.exit(main())
