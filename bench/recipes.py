"""Recipes: today's defaults (the legacy recipe) against the new dev-chosen defaults, task by task.

The tasks: the built-in fruit and bias-demo, and label tasks built from data that PyPI packages ship
(bench/recipes_data.py).

Per task, two experiment files go into bench/.recipes/runs/<task>/ and `tuneforge run` runs each;
the tables (per route: the legacy setting and test score beside the tuned, dev-chosen setting, its
dev score and its test score) are printed and written to bench/.recipes/recipes.md, followed by the
issue's targets, PASS or MISS. A measurement: it exits 0 when a target misses, 1 when a run failed.

    python bench/recipes.py                                   # every task, full grids (long)
    python bench/recipes.py --tasks continents --quick --prompting-only   # a plumbing check
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from recipes_data import SOURCES, build

HERE = Path(__file__).parent
ROOT = HERE / ".recipes"
BUILTIN = ("fruit", "bias-demo")
TASKS = (*BUILTIN, *SOURCES)
FINETUNED = ("lora", "full")
NAME = {"lora": "LoRA fine-tune", "full": "full fine-tune", "distill": "distilled"}
NONE = "–"


def experiments(task: str, data: dict | None, args) -> dict[str, dict]:
    """The legacy and the tuned experiment for `task`, as plain YAML-ready dicts."""
    def task_section(legacy: bool) -> dict:
        if data is None:
            return {"name": task}
        return {"train": data["train"], "test": data["test"], "instruction": data["instruction"],
                **({"dev_fraction": 0} if legacy else {})}

    off = {"distill": None, "audit": None, "batch": None}
    legacy = {"name": f"{task}-legacy", "task": task_section(True),
              "prompting": {"shots": [0, 1, 5], "picks": ["random", "similar"], "calibrations": ["none"],
                            "scorings": ["sum"]},
              "lora": {"lr": 0.001, "epochs": 4, "patience": 0, "lora_dropout": 0.05},
              "full": None, **off}
    tuned = {"name": f"{task}-tuned", "task": task_section(False), "prompting": {}, "lora": {}, "full": {}, **off}
    if args.quick:
        legacy["prompting"]["shots"] = [0, 5]
        tuned.update(prompting={"shots": [0, 5]}, lora={"lrs": [0.0003]}, full=None)
    if args.score_all:
        tuned["prompting"]["score_all"] = True
    if args.no_full:
        tuned["full"] = None
    if args.prompting_only:
        for cfg in (legacy, tuned):
            cfg.update(lora=None, full=None)
    return {"legacy": legacy, "tuned": tuned}


def tuneforge_exe() -> str:
    beside = Path(sys.executable).parent / "tuneforge"
    return str(beside) if beside.exists() else "tuneforge"


def run_one(config: dict, folder: Path, keep: bool) -> tuple[dict | None, str]:
    """Write `config` to <folder>.yaml, `tuneforge run` it into <folder>/; (results or None, a status)."""
    spec, results = folder.with_suffix(".yaml"), folder / "results.json"
    if keep and results.exists():
        return json.loads(results.read_text()), "kept"
    folder.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=None, allow_unicode=True))
    results.unlink(missing_ok=True)  # never read an older run's results after a failed one
    log = folder.with_suffix(".log")
    command = [tuneforge_exe(), "run", str(spec), "--out", str(folder)]
    print(f"  $ {' '.join(command)}  (log: {log})", flush=True)
    start = time.time()
    with log.open("w") as out:
        rc = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    took = f"{time.time() - start:.0f} s"
    if rc == 0 and results.exists():
        print(f"  done in {took}", flush=True)
        return json.loads(results.read_text()), f"ran in {took}"
    tail = "\n".join(log.read_text().splitlines()[-8:])
    last = tail.splitlines()[-1] if tail else ""
    if results.exists():  # written by this run (the old one was removed), then something after it failed
        print(f"  WARNING: exit {rc} after {took}, but results.json was written; read it. Log ends:\n{tail}", flush=True)
        return json.loads(results.read_text()), f"exit {rc} after writing results.json: {last}"
    print(f"  FAILED (exit {rc}) after {took}; last lines of the log:\n{tail}", flush=True)
    return None, f"failed (exit {rc}): {last}"


# ---- reading results.json (new keys read with .get(): the contract is landing now)

def prompting_rows(results: dict | None) -> list[dict]:
    return [r for r in (results or {}).get("routes", []) if r.get("stage") == "prompting"]


def test_mean(route: dict | None) -> float | None:
    return ((route or {}).get("score") or {}).get("mean")


def dev_mean(route: dict | None) -> float | None:
    return ((route or {}).get("dev_score") or {}).get("mean")


def calibrated(route: dict) -> bool:
    calibration = (route.get("setting") or {}).get("calibration", route.get("calibration", "none"))
    return calibration not in (None, "none") or route.get("variant", "raw") != "raw"


def balanced(route: dict) -> bool:
    return (route.get("setting") or {}).get("pick", route.get("pick")) == "balanced"


def zero_shot(results: dict | None) -> dict | None:
    return next((r for r in prompting_rows(results) if r.get("shots") == 0 and not calibrated(r)), None)


def chosen_prompting(results: dict | None) -> tuple[dict | None, str]:
    """The dev-chosen prompting condition; without one (no dev, or before the contract), the best on test."""
    rows = prompting_rows(results)
    chosen = next((r for r in rows if r.get("chosen")), None)
    if chosen is not None:
        on = ((results or {}).get("recommendation") or {}).get("chosen_on")
        return chosen, f"chosen on {on}" if on else "chosen"
    scored = [r for r in rows if test_mean(r) is not None]
    return (max(scored, key=test_mean), "best on test") if scored else (None, "")


def adapted(results: dict | None, stage: str) -> dict | None:
    return next((r for r in (results or {}).get("routes", []) if r.get("stage") == stage), None)


def score_text(score: dict | None) -> str:
    if not score or score.get("mean") is None:
        return NONE
    ci = score.get("ci95")
    return f"{score['mean']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def setting_text(route: dict | None, fallback: dict | None = None) -> str:
    """The route's setting in a few words: `setting` when recorded, else what the row or the config says."""
    if route is None:
        return NONE
    setting = route.get("setting")
    if not setting and route.get("stage") == "prompting":
        setting = {"shots": route.get("shots"), "pick": route.get("pick"),
                   "calibration": route.get("calibration", "content-free" if calibrated(route) else "none"),
                   "scoring": route.get("scoring", "sum")}
    setting = dict(setting or fallback or {})
    words = [f"{setting.pop('shots')}-shot"] if "shots" in setting else []
    for key in ("format", "style"):  # the plain format is the default: say only when it is not
        if setting.get(key) == "plain":
            setting.pop(key)
    words += [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in setting.items()
              if v is not None and not isinstance(v, (dict, list))]
    return ", ".join(words) or NONE


def trials_text(route: dict | None) -> str:
    trials = (route or {}).get("trials") or []
    return "; ".join(f"lr {t.get('lr', 0):g} → dev {t['dev_score']:.3f}" if t.get("dev_score") is not None
                     else f"lr {t.get('lr', 0):g} → dev {NONE}" for t in trials)


# ---- the report

def task_table(task: str, legacy: dict | None, tuned: dict | None, configs: dict) -> list[str]:
    lines = [f"### {task}", "", "| route | legacy setting | legacy test | tuned setting | tuned dev | tuned test |",
             "|---|---|---|---|---|---|"]
    (lp, lhow), (tp, thow) = chosen_prompting(legacy), chosen_prompting(tuned)
    pairs = [("prompting 0-shot", zero_shot(legacy), zero_shot(tuned)), ("prompting, chosen", lp, tp)]
    pairs += [(NAME[s], adapted(legacy, s), adapted(tuned, s)) for s in (*FINETUNED, "distill")]
    for label, old, new in pairs:
        if old is None and new is None:
            continue
        stage = (old or new).get("stage")
        old_set = setting_text(old, configs["legacy"].get(stage) if stage != "prompting" else None)
        new_set = setting_text(new, configs["tuned"].get(stage) if stage != "prompting" else None)
        if label == "prompting, chosen":
            old_set, new_set = (f"{old_set} ({lhow})" if old else old_set), (f"{new_set} ({thow})" if new else new_set)
        lines.append(f"| {label} | {old_set} | {score_text((old or {}).get('score'))} | {new_set} | "
                     f"{score_text((new or {}).get('dev_score'))} | {score_text((new or {}).get('score'))} |")
    if legacy is None and tuned is None:
        lines.append(f"| (both runs failed) | {NONE} | {NONE} | {NONE} | {NONE} | {NONE} |")
    lines.append("")
    for stage in FINETUNED:
        if trials_text(adapted(tuned, stage)):
            lines.append(f"- tuned {NAME[stage]} trials: {trials_text(adapted(tuned, stage))}")
    for which, res in (("legacy", legacy), ("tuned", tuned)):
        if res:
            rec = (res.get("recommendation") or {}).get("route") or NONE
            origin = (res.get("task") or {}).get("dev_origin") or NONE
            lines.append(f"- {which}: recommended {rec}; dev: {origin}")
    return lines + [""]



def verdict(ok: bool | None) -> str:
    return "N/A " if ok is None else ("PASS" if ok else "MISS")


def num(x: float | None) -> str:
    return NONE if x is None else f"{x:.3f}"


def targets(task: str, legacy: dict | None, tuned: dict | None) -> list[str]:
    """The issue's targets on test scores of the tuned run (0-shot from legacy where tuned did not score
    it: the same prompt on the same test split)."""
    zero = test_mean(zero_shot(tuned))
    zero = zero if zero is not None else test_mean(zero_shot(legacy))
    fewshot = max((test_mean(r) for r in prompting_rows(tuned) if r.get("shots", 0) > 0
                   and test_mean(r) is not None and (balanced(r) or calibrated(r))), default=None)
    fewshot_dev = max((dev_mean(r) for r in prompting_rows(tuned) if r.get("shots", 0) > 0
                       and dev_mean(r) is not None and (balanced(r) or calibrated(r))), default=None)
    zero_dev = dev_mean(zero_shot(tuned))
    best_prompt = max((test_mean(r) for r in prompting_rows(tuned) if test_mean(r) is not None), default=None)
    tuned_ft = {s: test_mean(adapted(tuned, s)) for s in FINETUNED if test_mean(adapted(tuned, s)) is not None}
    best_ft = max(tuned_ft.values(), default=None)
    a = None if zero is None or fewshot is None else fewshot >= zero
    b = None if best_prompt is None or best_ft is None else best_ft >= best_prompt
    ft = ", ".join(f"{NAME[s]} {v:.3f}" for s, v in tuned_ft.items()) or f"fine-tuned {NONE}"
    dev = "" if a is not None else f"; on dev: few-shot {num(fewshot_dev)} vs 0-shot {num(zero_dev)}"
    lines = [f"- {task} (a) balanced/calibrated few-shot >= 0-shot: {verdict(a)} "
             f"(few-shot {num(fewshot)} vs 0-shot {num(zero)}{dev})",
             f"- {task} (b) best fine-tuned >= best prompting: {verdict(b)} ({ft} vs prompting {num(best_prompt)})"]
    if task == "fruit":
        lora = tuned_ft.get("lora")
        ok = None if lora is None or best_prompt is None else lora >= 0.70 and lora > best_prompt
        lines.append(f"- fruit LoRA >= 0.70 and above the best prompting condition: {verdict(ok)} "
                     f"(LoRA {num(lora)} vs prompting {num(best_prompt)})")
    return lines


# ---- the header

def header() -> list[str]:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    threads = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                             capture_output=True, text=True).stdout.strip() or "?"
    commit = subprocess.run(["git", "-C", str(HERE), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip() or "?"
    lines = ["# tuneforge recipes: legacy defaults vs dev-chosen defaults", "",
             f"- CPU: {model}; bf16 native: {'yes (' + ', '.join(bf16) + ')' if bf16 else 'no'}; "
             f"{os.cpu_count()} logical CPUs; torch threads {threads}; tuneforge {commit}",
             "- task data from PyPI packages (installed only into bench/.recipes/pkgs):"]
    for task, src in SOURCES.items():
        pkgs = ", ".join(f"{p}=={v}" for p, v in src["packages"].items())
        lines.append(f"  - {task}: {pkgs}; licence: {src['licence']}; data: {src['data_file']}; labels: {src['labels']}")
    return lines + [""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from: {', '.join(TASKS)}")
    parser.add_argument("--quick", action="store_true", help="narrow grids: shots 0,5; one LoRA lr; no full")
    parser.add_argument("--no-full", action="store_true", help="tuned run without the full fine-tune")
    parser.add_argument("--score-all", action="store_true",
                        help="tuned run: score every prompting condition on test too, so target (a) is read on test")
    parser.add_argument("--prompting-only", action="store_true", help="no fine-tuning at all (a plumbing check)")
    parser.add_argument("--keep", action="store_true", help="reuse a run whose results.json is there")
    args = parser.parse_args()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")

    report, summary, failed = header(), ["## Targets (test scores of the tuned run)", ""], False
    print("\n".join(report), flush=True)
    for task in tasks:
        data = None if task in BUILTIN else build(task)
        configs = experiments(task, data, args)
        done, statuses = {}, {}
        for which, config in configs.items():
            print(f"[{task}] {which}", flush=True)
            done[which], statuses[which] = run_one(config, ROOT / "runs" / task / which, args.keep)
            failed |= done[which] is None
        table = task_table(task, done["legacy"], done["tuned"], configs)
        table[-1:-1] = [f"- {which} run: {status}" for which, status in statuses.items() if status != "kept"
                        and not status.startswith("ran in")]
        print("\n".join(table), flush=True)
        report += table
        summary += targets(task, done["legacy"], done["tuned"])
    print("\n".join(summary), flush=True)
    (ROOT / "recipes.md").write_text("\n".join(report + summary) + "\n")
    print(f"\nwritten: {ROOT / 'recipes.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
