"""From the stages' own results to the experiment's: one row per route in common units, the plan
of the batch job, and the results record the report reads."""

from datetime import datetime, timezone
from pathlib import Path

from tuneforge.settings_io import to_dict
from tuneforge.data.splits import Task, task_warnings
from tuneforge.errors import TuneforgeError
from tuneforge.experiment.decide import pareto_fronts
from tuneforge.experiment.records import ExperimentResults, Route
from tuneforge.experiment.stages import SERVING_BATCH
from tuneforge.model.params import size_on_disk

NAMES = {"lora": "LoRA fine-tune", "full": "full fine-tune"}
SLUGS = {"prompting": "prompting", "lora": "lora", "full": "full", "distill": "distilled"}
"""Each stage's word in a served setting's name (`<experiment>-<word>`)."""


def routes_from_stages(done: dict) -> list[Route]:
    """A row per prompting condition (and variant) and per adapted model, in run order."""
    routes = []
    if "prompting" in done:
        routes += prompting_routes(done["prompting"])
    for stage in ("lora", "full", "distill", *sorted((s for s in done if s.startswith("distill-")), key=_layers)):
        if stage in done:
            routes.append(adapted_route(stage, done[stage]))
    return routes


def _layers(stage: str) -> int:
    return int(stage.split("-")[1])  # distill-11 -> 11


def prompting_routes(record: dict) -> list[Route]:
    """A row per prompting condition: its dev score, its test score where it has one (the dev-chosen
    condition always does), and whether it was chosen."""
    results = record["result"]
    metric, params = results["metric"], results["parameters"]
    styles = {c["style"] for c in results["conditions"]}
    names = [condition_name(c, len(styles) > 1) for c in results["conditions"]]
    rows = []
    for c, name in zip(results["conditions"], names):
        setting = {k: c[k] for k in ("style", "shots", "pick", "calibration", "scoring")}
        rows.append({
            "name": name, "kind": "prompting", "stage": "prompting",
            "score": _metric(c["test"], metric), "dev_score": _metric(c["dev"], metric), "chosen": c["chosen"],
            "setting": setting, "trials": None, "macro_f1": _metric(c["test"] or c["dev"], "macro_f1"),
            "shots": c["shots"], "pick": c["pick"], "format": c["style"], "calibration": c["calibration"],
            "scoring": c["scoring"], "draws": c["draws"], "seed": c["seeds"][0],
            "prior": c["priors"][0] if c.get("priors") else None,
            "parameters": {"total": params["after"]["total"], "trained": 0,
                           "base_total": params["before"]["total"], "unchanged": params["unchanged"]},
            "size_on_disk_bytes": results["size_on_disk_bytes"], "ms_per_example": c["ms_per_example"],
            **compute(params["after"]["total"], c.get("tokens_per_example")),
            "examples_per_second": 1000 / c["ms_per_example"], "training_seconds": None,
            "peak_memory_bytes": record["peak_memory_bytes"], "confusion": _metric(c["test"], "confusion"),
            "history": None, "selection": _selection(c),
            "choice": _choice(results, names) if c["chosen"] else None,
        })
    return rows


def _selection(c: dict) -> dict | None:
    """What a condition's choice weighed, less its per-item scores: their mean (95% CI), items and predictions."""
    chosen_by = c.get("selection")
    return None if chosen_by is None else {k: chosen_by.get(k) for k in ("mean", "ci95", "items", "predictions", "on")}


def _choice(results: dict, names: list[str]) -> dict | None:
    """How the chosen condition was chosen, conditions named: the best by mean, those tied with it
    within noise, the rule, and the items it rested on (dev or test, and train-CV)."""
    choice = results.get("choice")
    if choice is None:
        return None
    return {"best": names[choice["best"]], "tied": [names[i] for i in choice["tied"]], "rule": choice["rule"],
            "conditions": len(names), "cv_items": choice["cv_items"], "split_items": choice["split_items"],
            "on": results["chosen_on"]}


def condition_name(c: dict, with_format: bool = False) -> str:
    """`prompting 5-shot balanced batch-calibrated per-char`: the words that differ from the plain
    default (no calibration, summed scores) only."""
    name = f"prompting {c['shots']}-shot" + (f" {c['pick']}" if c["pick"] else "")
    name += f" {c['style']}" if with_format else ""
    name += f" {c['calibration']}-calibrated" if c["calibration"] != "none" else ""
    return name + (" per-char" if c["scoring"] == "per-char" else "")


def compute(parameters: int, tokens: float | None) -> dict:
    """A route's compute per example: the tokens it processes per test example and the forward pass's
    FLOPs over them (2 per parameter per token), the same on every run of the same seed. None where
    a stage recorded no token count."""
    return {"tokens_per_example": tokens, "flops_per_example": None if tokens is None else 2 * parameters * tokens}


def _metric(summary: dict | None, key: str):
    return None if summary is None else summary.get(key)


def _demonstrations(res: dict) -> dict:
    """The shots, picker and seed a fine-tuned model's prompts hold (0-shot for most)."""
    rule = res.get("demonstrations")
    return {"shots": rule["shots"], "pick": rule["pick"], "seed": rule["seed"]} if rule else {"shots": 0, "pick": None}


def adapted_route(stage: str, record: dict) -> Route:
    """A fine-tuned or distilled model, scored and timed by its serving pass."""
    res, serving = record["result"]["results"], record["result"]["serving"]
    metric = res["metric"]
    if stage.startswith("distill"):
        kept = res["student"].get("layers")  # layers the pruned student keeps (absent for a given student)
        name = f"distilled ({kept} layers)" if kept else "distilled"
        trained, base_total = serving["parameters"]["total"], res["parameters"]["teacher"]["total"]
        style = res["config"]["training"]["format"]
    else:
        name, trained, base_total = NAMES[stage], res["parameters"]["trainable"], res["parameters"]["base"]
        style = res["config"]["format"]
    dev = serving.get("dev")
    return {
        "name": name, "kind": stage.split("-")[0], "stage": stage,
        "score": serving["test"][metric], "dev_score": dev[metric] if dev else None, "chosen": True,
        "setting": res.get("setting") or {}, "trials": res.get("trials"),
        "macro_f1": serving["test"].get("macro_f1"),
        **_demonstrations(res), "format": style, "draws": 1,
        "parameters": {"total": serving["parameters"]["total"], "trained": trained, "base_total": base_total,
                       "unchanged": None},
        "size_on_disk_bytes": serving["size_on_disk_bytes"], "ms_per_example": serving["ms_per_example"],
        **compute(serving["parameters"]["total"], serving.get("tokens_per_example")),
        "examples_per_second": serving["examples_per_second"], "training_seconds": record["result"]["training_seconds"],
        "peak_memory_bytes": record["peak_memory_bytes"], "confusion": serving["test"].get("confusion"),
        "history": [{k: h[k] for k in ("step", "epoch", "loss", "lr", "dev_score") if k in h} for h in res["history"]],
        "model_dir": record["result"]["model_dir"],
    }


def batch_plan(section, routes: list[dict], recommendation: dict, done: dict, task: Task, experiment: str) -> dict:
    """Which route fills the store (the recommended one, or the stage `section.route` names, at its
    chosen setting), with which settings, under which name, for which inputs."""
    if section.route == "recommended":
        chosen = next(r for r in routes if r["name"] == recommendation["route"])
    else:
        wanted = [r for r in routes if r["stage"] == section.route and r.get("chosen", True)]
        if not wanted:
            raise TuneforgeError(f"batch.route is {section.route}, but that stage is off")
        chosen = wanted[0]
    settings = {k: v for k, v in to_dict(section).items() if k not in ("route", "inputs")}
    stage = chosen["stage"]
    slug = SLUGS[stage] if stage in SLUGS else f"distilled-{_layers(stage)}"
    settings["name"] = section.name or f"{experiment}-{slug}"
    prior = None
    if chosen["kind"] == "prompting":
        settings.update(shots=chosen["shots"], pick=chosen["pick"] or "first", seed=chosen["seed"],
                        format=chosen["format"], calibration=chosen["calibration"], scoring=chosen["scoring"])
        prior = chosen.get("prior")
        model = done["prompting"]["result"]["model"]["path"]
        batch_size = done["prompting"]["result"]["config"]["batch_size"]
    else:
        settings.update(shots=chosen["shots"], pick=chosen["pick"] or "first", seed=chosen.get("seed", 0),
                        format=chosen["format"], calibration="none", scoring="sum")  # as it was trained
        model = chosen["model_dir"]
        batch_size = SERVING_BATCH
    inputs = _batch_inputs(section.inputs, task)
    wanted = set(inputs)
    scored = {"inputs": [ex.input for ex in task.test if ex.input in wanted], "batch_size": batch_size}
    return {"route": chosen["name"], "stage": chosen["stage"], "slug": slug, "settings": settings, "model": model,
            "prior": prior, "inputs": inputs, "scored": scored}


def _batch_inputs(path: str | None, task: Task) -> list[str]:
    if path is not None:
        from tuneforge.data.inputs import read_inputs

        return read_inputs(path)[0]
    return list(dict.fromkeys(ex.input for ex in task.train + task.dev + task.test))


def experiment_results(config, task: Task, base: Path, done: dict, routes: list[dict], recommendation: dict,
                       started: datetime) -> ExperimentResults:
    """The record the report is drawn from (and the only thing `tuneforge report` reads)."""
    finished = datetime.now(timezone.utc)
    first = routes[0]["parameters"]["base_total"] if routes else None
    store = None
    if "batch" in done:
        store = dict(done["batch"]["result"])
        store["jobs"] = [done[s]["result"] for s in ("batch", "synonyms") if s in done]
    return {
        "experiment": {"name": config.name, "config": to_dict(config), "started": _iso(started),
                       "finished": _iso(finished), "wall_seconds": (finished - started).total_seconds()},
        "task": {"name": task.info.name, "kind": task.info.kind, "description": _description(task),
                 "sizes": task.sizes(), "labels": task.label_set,
                 "warnings": task_warnings(task), "dev_origin": task.dev_origin},
        "model": {"path": str(base), "fingerprint": _base_fingerprint(done), "parameters": {"total": first},
                  "size_on_disk_bytes": size_on_disk(base)},
        "metric": task.metric,
        "routes": routes,
        "audit": done["audit"]["result"] if "audit" in done else None,
        "store": store,
        "synonyms": done["synonyms"]["result"] if "synonyms" in done else None,
        "recommendation": recommendation,
        "pareto": pareto_fronts({"routes": routes}),
        "stages": [{"name": n, "hash": r["hash"], "cached": r["cached"], "seconds": r["seconds"],
                    "peak_memory_bytes": r["peak_memory_bytes"]} for n, r in done.items()],
    }


def _base_fingerprint(done: dict) -> str | None:
    if "prompting" in done:
        return done["prompting"]["result"]["model"]["fingerprint"]
    for stage in ("lora", "full"):
        if stage in done:
            return done[stage]["result"]["results"]["base_model"]["fingerprint"]
    return None


def _description(task: Task) -> str | None:
    from tuneforge.data.tasks import builtin_info, builtin_tasks

    return builtin_info(task.info.name).get("description") if task.info.name in builtin_tasks() else None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
