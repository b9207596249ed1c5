"""How often the recommendation is right: `tuneforge run` with default settings on every task of the
recipe suite (the built-in fruit and bias-demo, and the real-data tasks of bench/recipes_data.py given
as train + test files, as users give them), each run twice, the second without the stage cache.

Prints, per task: every route's (chosen setting's) dev and test score, the route each rule recommends
— today's (`experiment/decide.py`: paired mean difference on dev within the margin, compute counted),
the upper-bound rule (the paired CI's upper bound within the margin, compute counted) and the rule
before both (the cheapest by measured latency whose dev mean is within the margin of the best) — and
each one's **regret**: the best route's test score minus the recommended route's. Then whether the two runs gave
the same verdict, and the mean and largest regret of each rule over the tasks.

    python bench/verdict.py [--tasks fruit,syllables] [--once] [--settings demo] [--out bench/.verdict]
    python bench/verdict.py --from runs/demo [runs/other ...]   # read finished runs, run nothing

With default settings a run takes most of an hour per task on a 2-core CPU without bf16 (the full
fine-tune's and the student's searches); `--settings demo` runs every route with the demo's narrowed
sections instead (demo.yaml: its lr, epochs and student; about 13 min per task there). The sections
that do not weigh in the verdict (audit, batch job, synonym lists) are left out.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _machine import cpu_line  # noqa: E402

BUILTIN = ("fruit", "bias-demo")
MARGIN = 0.05


def task_section(task: str) -> dict:
    """The experiment's `task:` for a suite task: a built-in name, or the train and test files."""
    if task in BUILTIN:
        return {"name": task}
    from recipes_data import build

    data = build(task)
    return {"train": data["train"], "test": data["test"], "instruction": data["instruction"]}


def route_sections(settings: str) -> dict:
    """The route sections of the experiment: none (defaults) or the demo's."""
    if settings == "defaults":
        return {}
    import yaml

    from tuneforge.experiment.sections import __file__ as sections_file

    demo = yaml.safe_load(Path(sections_file).with_name("demo.yaml").read_text())
    demo["distill"]["pool_size"] = 1  # the train split alone, as the demo's 147 is for fruit (1 adds nothing to it)
    return {name: demo[name] for name in ("prompting", "lora", "full", "distill")}


def run_task(task: str, out: Path, cache: bool, settings: str = "defaults") -> dict:
    """`tuneforge run` on the task with default settings (or the demo's sections); its results.json."""
    config = out.with_suffix(".yaml")
    config.parent.mkdir(parents=True, exist_ok=True)
    experiment = {"name": out.name, "task": task_section(task), **route_sections(settings),
                  "audit": None, "batch": None, "synonyms": None}
    config.write_text(json.dumps(experiment))  # JSON is YAML
    command = [sys.executable, "-m", "tuneforge.cli", "run", str(config), "--out", str(out)]
    subprocess.run(command + ([] if cache else ["--no-cache"]), check=True, env=os.environ.copy())
    return json.loads((out / "results.json").read_text())


def chosen(results: dict) -> list[dict]:
    return [r for r in results["routes"] if r.get("chosen") is not False and r.get("score")]


def mean(score: dict | None) -> float | None:
    return None if not score else score.get("mean")


def rule_before(results: dict, margin: float = MARGIN) -> str:
    """The recommendation before the paired rule: the lowest measured latency among the routes whose
    dev mean is within `margin` of the best's (ties by parameters)."""
    routes = chosen(results)
    split = "dev_score" if all(mean(r.get("dev_score")) is not None for r in routes) else "score"
    best = max(mean(r[split]) for r in routes)
    close = [r for r in routes if mean(r[split]) >= best - margin - 1e-9]
    return min(close, key=lambda r: (r.get("ms_per_example") or float("inf"), r["parameters"]["total"]))["name"]


def regret(results: dict, name: str) -> float:
    routes = chosen(results)
    return max(mean(r["score"]) for r in routes) - next(mean(r["score"]) for r in routes if r["name"] == name)


def decided(results: dict, rule: str) -> str:
    """The route `experiment/decide.py` recommends from the run's routes under `rule` (`mean`, today's;
    `upper`, the CI's upper bound within the margin), with the run's margin and cost factor."""
    from tuneforge.experiment.decide import recommend

    report = (results.get("experiment") or {}).get("config", {}).get("report") or {}
    return recommend({"routes": results["routes"]}, report.get("margin", MARGIN), report.get("cheaper", 1.5),
                     rule=rule)["route"]


def row(task: str, first: dict, second: dict | None) -> dict:
    today, upper, before = decided(first, "mean"), decided(first, "upper"), rule_before(first)
    same = None if second is None else decided(second, "mean") == today
    return {"task": task, "routes": [(r["name"], mean(r.get("dev_score")), mean(r["score"])) for r in chosen(first)],
            "today": today, "regret_today": regret(first, today), "upper": upper, "regret_upper": regret(first, upper),
            "before": before, "regret_before": regret(first, before), "same_twice": same}


def show(rows: list[dict]) -> None:
    print(cpu_line())
    for r in rows:
        print(f"\n### {r['task']}")
        print("| route | dev | test |\n|---|---|---|")
        for name, dev, test in r["routes"]:
            print(f"| {name} | {'–' if dev is None else f'{dev:.3f}'} | {test:.3f} |")
        twice = {None: "not run twice", True: "the same verdict twice", False: "a DIFFERENT verdict the second time"}
        print(f"today's rule: {r['today']} (regret {r['regret_today']:.3f}) · the upper-bound rule: {r['upper']} "
              f"(regret {r['regret_upper']:.3f}) · the rule before: {r['before']} (regret {r['regret_before']:.3f}) · "
              f"{twice[r['same_twice']]}")
    for rule in ("today", "upper", "before"):
        values = [r[f"regret_{rule}"] for r in rows]
        print(f"{rule}: mean regret {statistics.fmean(values):.3f}, max {max(values):.3f} over {len(values)} task(s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=None, help="comma-separated (default: every task of the suite)")
    parser.add_argument("--once", action="store_true", help="run each task once (no check of the same verdict)")
    parser.add_argument("--settings", choices=("defaults", "demo"), default="defaults",
                        help="the routes' settings: the defaults, or the demo's narrowed sections")
    parser.add_argument("--out", default=str(HERE / ".verdict"))
    parser.add_argument("--from", dest="runs", nargs="*", default=None, help="finished run folders to read instead")
    args = parser.parse_args()
    if args.runs:
        rows = [row(Path(d).name, json.loads((Path(d) / "results.json").read_text()), None) for d in args.runs]
    else:
        from recipes_data import SOURCES

        tasks = args.tasks.split(",") if args.tasks else [*BUILTIN, *SOURCES]
        rows = []
        for task in tasks:
            first = run_task(task, Path(args.out) / f"{task}-1", cache=True, settings=args.settings)
            second = None if args.once else run_task(task, Path(args.out) / f"{task}-2", cache=False,
                                                     settings=args.settings)
            rows.append(row(task, first, second))
    show(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
