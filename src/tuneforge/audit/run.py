"""The audit across routes: the same split, the same swaps, for a base model prompted zero- and
few-shot and for fine-tuned and distilled models, side by side; and the gate that turns it into a
check for CI pipelines.
"""

import gc
from collections import Counter
from dataclasses import asdict

from tuneforge.audit.audit import audit_predictor, has_groups
from tuneforge.audit.swaps import Swapper, compile_swaps, load_swaps
from tuneforge.data.splits import Task
from tuneforge.errors import TuneforgeError
from tuneforge.model import provenance
from tuneforge.model.load import LoadedModel, load_model
from tuneforge.predict.predictor import Predictor
from tuneforge.predict.setting import rule_demonstrations
from tuneforge.prompts.formats import PromptFormat
from tuneforge.prompts.shots import check_shots, pick_demos
from tuneforge.settings import AuditConfig
from tuneforge.data.limits import check_input_lengths


def audit_models(models: list[str | None], task: Task, cfg: AuditConfig, *, dtype: str = "auto") -> dict:
    """Audit each model (None = the embedded default) on `task`; base models once per shot count."""
    swapper = compile_swaps(load_swaps(cfg.swaps))
    items = task.split(cfg.split)
    if not items:
        raise TuneforgeError(f"task {task.info.name!r}: the {cfg.split} split is empty")
    check_shots(task, max(cfg.shots))
    if cfg.max_gap is not None and not any(ex.group for ex in items):
        raise TuneforgeError(f"--max-gap: the {cfg.split} split of {task.info.name!r} has no 'group' field to compare")
    skipped = skipped_sections(items, swapper, cfg.split)
    nothing_to_measure = len(skipped) == 2  # no groups, no input the swaps change: no model is loaded
    routes = []
    for spec in [] if nothing_to_measure else models:
        loaded = load_model(spec, dtype=dtype)
        check_input_lengths(task, loaded.tokenizer)
        for route in model_routes(loaded, cfg):
            predict = route_predictor(loaded, task, route, cfg)
            figures = audit_predictor(items, predict, swapper, kind=task.scored_as,
                                      permutations=cfg.permutations, seed=cfg.seed)
            routes.append({**{k: v for k, v in route.items() if k != "rule"}, "model": str(loaded.path), **figures})
        del loaded
        gc.collect()
    _unique_names(routes)
    violations = gate(routes, cfg.max_gap, cfg.max_flip_rate)
    gated = cfg.max_gap is not None or cfg.max_flip_rate is not None
    return {
        "route": "audit", "task": {"name": task.info.name, "kind": task.info.kind}, "split": cfg.split,
        "metric": task.metric, "config": asdict(cfg),
        "attribute": swapper.swaps.name, "swaps": {"name": swapper.swaps.name, "groups": list(swapper.swaps.groups),
                                                   "words": len(swapper.swaps.words), "names": len(swapper.swaps.names)},
        "routes": routes, "thresholds": {"max_gap": cfg.max_gap, "max_flip_rate": cfg.max_flip_rate},
        "violations": violations, "passed": (not violations) if gated else None, "skipped": skipped,
    }


NO_GROUPS = "no groups in the task data: the per-group section is skipped"


def skipped_sections(items: list, swapper: Swapper, split: str) -> list[str]:
    """One line per section of the audit that the data leaves nothing to measure in."""
    lines = [] if has_groups(items) else [NO_GROUPS]
    if not any(swapper.swap(ex.input) != ex.input for ex in items):
        lines.append(f"no {split} input holds a term of the {swapper.swaps.name} swap list: the counterfactual "
                     "section is skipped")
    return lines


def model_routes(loaded: LoadedModel, cfg: AuditConfig) -> list[dict]:
    """The routes one model stands for: a base model per shot count; an adapted one as trained."""
    record = provenance.read(loaded.path)
    route = provenance.route(record)
    if route == "prompting":
        return [{"name": f"base {k}-shot" + (f" {cfg.pick}" if k else ""), "kind": "prompting", "shots": k,
                 "pick": cfg.pick if k else None, "format": "plain"} for k in cfg.shots]
    names = {"distilled": "distilled student", "lora": "LoRA fine-tune", "full": "full fine-tune"}
    rule = provenance.demonstrations(record)  # a model fine-tuned on prompts with demonstrations gets them
    return [{"name": names[route], "kind": "distill" if route == "distilled" else route,
             "shots": rule["shots"] if rule else 0, "pick": rule["pick"] if rule else None,
             "format": provenance.training_format(record), "rule": rule}]


def route_predictor(loaded: LoadedModel, task: Task, route: dict, cfg: AuditConfig):
    """The route's predictions for a list of examples, with the demonstrations its route picks."""
    fmt = PromptFormat(route["format"], task.info.instruction)
    predictor = Predictor(loaded, fmt, task.label_set, batch_size=cfg.batch_size)

    def predict(items):
        if route.get("rule"):  # as the model was trained: its own pool and seed
            labelled = task.label_set is not None
            return predictor.predict(items, rule_demonstrations(route["rule"], items, labelled)).outputs
        demos = [pick_demos(task.train, ex, route["shots"], route["pick"] or "first", cfg.seed) for ex in items]
        return predictor.predict(items, demos).outputs

    return predict


def gate(routes: list[dict], max_gap: float | None, max_flip_rate: float | None) -> list[str]:
    """One message per route and threshold exceeded."""
    out = []
    for r in routes:
        if max_gap is not None and r["gap"] is not None and r["gap"] > max_gap:
            high, low = r["gap_groups"]
            out.append(f"{r['name']}: gap {r['gap']:.3f} between {high} and {low} exceeds --max-gap {max_gap}")
        if max_flip_rate is not None and r["flip_rate"] is not None and r["flip_rate"] > max_flip_rate:
            out.append(f"{r['name']}: flip rate {r['flip_rate']:.3f} under the swaps exceeds "
                       f"--max-flip-rate {max_flip_rate}")
    return out


def _unique_names(routes: list[dict]) -> None:
    """Two models of one kind (two LoRA runs, say) keep apart by their directory."""
    seen = Counter(r["name"] for r in routes)
    for r in routes:
        if seen[r["name"]] > 1:
            r["name"] = f"{r['name']} ({r['model']})"
