"""The report's opening: what was compared, the recommendation, every route's numbers, and the
score-against-cost plots with their Pareto fronts."""

from dataclasses import dataclass
from pathlib import PurePath

from tuneforge import units

from . import plots
from .document import Figure, Paragraph, Section, Table, not_run
from .results import metric, metric_words, nested, routes
from .selection import chosen_mark, prompting_choice, setting_words
from .svg import figure_svg


@dataclass(frozen=True)
class CostAxis:
    name: str
    """Figure id prefix."""
    path: tuple[str, ...]
    """Where the cost sits in a route's dict."""
    what: str
    """The cost in words, and its key in the results' Pareto fronts (`experiment.decide.COSTS`)."""
    label: str
    """The x-axis title."""


COST_AXES = (
    CostAxis("cost-parameters", ("parameters", "total"), "parameters", "parameters (total)"),
    CostAxis("cost-latency", ("ms_per_example",), "latency", "latency (ms per example)"),
    CostAxis("cost-compute", ("flops_per_example",), "compute", "compute (FLOPs per example)"),
)

GLOSSARY = {
    "prompting": "prompting keeps the model as it is and gives it an instruction plus k solved "
                 "examples (shots), picked at random or by similarity to the input",
    "full": "a full fine-tune trains every weight on the training split",
    "lora": "a LoRA fine-tune trains small low-rank adapters and merges them into the weights",
    "distill": "distillation trains a smaller student model to imitate a teacher",
}


def intro(results: dict) -> list[Paragraph]:
    """Two paragraphs for a reader who has never heard of tuneforge: what was compared, and the routes."""
    task, model = results.get("task") or {}, results.get("model") or {}
    sizes = task.get("sizes") or {}
    model_name = PurePath(model["path"]).name if model.get("path") else "the base model"
    described = f" ({task['description']})" if task.get("description") else ""
    first = (
        f"This report compares ways of turning the foundation model {model_name} "
        f"({units.count(nested(model, 'parameters', 'total'))} parameters) into a model for the task "
        f"\"{task.get('name') or 'unnamed'}\"{described}. Each route's chosen setting was scored by "
        f"{metric_words(results)} on the same held-out test split of "
        f"{sizes.get('test') or 'an unrecorded number of'} examples (training split: "
        f"{units.exact(sizes.get('train'))}, dev split: {units.exact(sizes.get('dev'))}). "
        + (f"How the dev split was made: {task['dev_origin']}. " if task.get("dev_origin") else "")
        + "A score written as 0.61 (0.50–0.73) is the mean with its 95% bootstrap confidence interval, "
        "obtained by resampling the examples of the split scored; wide, overlapping intervals warn that the "
        "split may be too small to separate two routes."
    )
    kinds = dict.fromkeys(r.get("kind") for r in routes(results))
    explained = [GLOSSARY[k] for k in kinds if k in GLOSSARY]
    second = "The routes: " + "; ".join(explained) + "." if explained else "No route was evaluated."
    left_out = [ROUTE_SECTIONS[name] for name in ROUTE_SECTIONS if _left_out(results, name)]
    if left_out:
        second += (f" Not run in this experiment (its section is null): {', '.join(left_out)}; a route left out "
                   f"is not a route that lost.")
    return [Paragraph(first), Paragraph(second)]


ROUTE_SECTIONS = {"prompting": "prompting", "lora": "LoRA fine-tuning", "full": "full fine-tuning",
                  "distill": "distillation"}
"""An experiment's route sections, as the report names them."""


def _left_out(results: dict, name: str) -> bool:
    config = nested(results, "experiment", "config")
    return isinstance(config, dict) and name in config and config[name] is None


def warnings(results: dict) -> list[str]:
    """The task's data warnings the experiment recorded (overlap between splits, a single label, ...)."""
    return [str(w) for w in nested(results, "task", "warnings") or []]


CHOSEN_ON = {
    "dev": "Chosen on dev: each route's setting (a prompting condition, a fine-tune's learning rate) and the "
           "recommendation were chosen by their scores on the dev split. Test scores are shown beside them and "
           "were never used to choose, so they are a fair estimate of how each chosen setting does on new data.",
    "test": "Chosen on test: the task has no dev split, so the scores that chose are the ones reported; expect "
            "them to flatter the chosen route a little.",
}
"""What the recommendation's `chosen_on` means for the scores a reader sees."""


def recommendation(rec: dict) -> Section:
    """The one line to act on, with the reason in numbers and the other routes that came close."""
    if rec.get("route") is None:
        return Section("Recommendation", [Paragraph(f"No recommendation: {rec.get('reason')}.", strong=True)])
    blocks = [Paragraph(f"Recommended route: {rec['route']}.", strong=True),
              Paragraph(rec.get("reason") or "")]
    if rec.get("chosen_on") in CHOSEN_ON:
        blocks.append(Paragraph(CHOSEN_ON[rec["chosen_on"]]))
    if rec.get("small_dev"):
        small = rec["small_dev"]
        blocks.append(Paragraph(f"Dev has only {small['items']} items: a difference under about "
                                f"{small['resolves']:.2f} between two routes' dev scores can be noise (95%, worst "
                                f"case), so the paired comparisons below carry wide intervals.", strong=True))
    compared = rec.get("comparisons") or []
    if compared:
        on = rec.get("chosen_on") or "dev"
        rows = [[c["route"], _paired(c.get("paired")), units.exact(nested(c, "paired", "items")),
                 "–" if c.get("cost_ratio") is None else f"{c['cost_ratio']:.2f}x",
                 "yes" if c.get("close") else "no", "yes" if c.get("cheaper") else "no"] for c in compared]
        caption = (f"Each route against the best, {rec.get('best')}, on the same {on} items: the mean per-item "
                   f"difference with its paired bootstrap 95% CI; close when that mean difference lies "
                   f"within {rec.get('margin', 0):g} of zero; materially cheaper when the best costs at least "
                   f"{rec.get('cheaper', 1.5):g}x its compute per example (FLOPs, counted: timing never decides)")
        blocks.append(Table(["Route", f"Difference from the best on {on} (95% CI)", "Items",
                             "Best's compute / its", f"Within {rec.get('margin', 0):g}", "Materially cheaper"], rows, caption))
    return Section("Recommendation", blocks)


def _paired(paired: dict | None) -> str:
    if not paired:
        return "– (no per-item scores: means compared)"
    low, high = paired["ci95"]
    return f"{paired['difference']:+.3f} ({low:+.2f} to {high:+.2f})"


def summary(results: dict) -> Section:
    """Every route's setting with its dev and test scores side by side, then what each route costs."""
    if not routes(results):
        return Section("Routes compared", [not_run("no route was evaluated")])
    name, with_f1 = metric(results), any(r.get("macro_f1") for r in routes(results))
    headers = ["Route", "Kind", "Setting", "Chosen on dev", f"Dev {name} (95% CI)", f"Test {name} (95% CI)"]
    headers += ["Test macro-F1 (95% CI)"] if with_f1 else []
    scores = Table(headers, [_score_row(r, with_f1) for r in routes(results)], "Each route's setting and scores")
    dev = nested(results, "task", "sizes", "dev")
    behind = (f" A fine-tune's learning rate and step rest on the {dev} dev items, and so does the comparison of "
              f"routes; the CIs say how sure each score is." if dev else "")
    chosen = Paragraph("✓ marks each route's setting chosen on dev. Of the prompting conditions only the chosen one "
                       "competes for the recommendation, and the others may have no test score (a dash, as for "
                       "anything not recorded)." + behind)
    headers = ["Route", "Parameters", "Trained", "Size on disk", "Tokens / example", "Compute / example",
               "Latency / example", "Throughput", "Training time", "Peak memory"]
    caption = ("Tokens and compute (2 FLOPs per parameter per token) are counted on the test split, the same on "
               "every run; latency and throughput were measured there; a dash means not recorded.")
    costs = Table(headers, [_cost_row(r) for r in routes(results)], caption)
    return Section("Routes compared", [scores, chosen, *prompting_choice(results), costs])


def _score_row(route: dict, with_f1: bool) -> list[str]:
    row = [route["name"], route.get("kind") or units.MISSING, setting_words(route.get("setting")),
           chosen_mark(route), units.score_ci(route.get("dev_score")), units.score_ci(route.get("score"))]
    return row + ([units.score_ci(route.get("macro_f1"))] if with_f1 else [])


def _cost_row(route: dict) -> list[str]:
    return [
        route["name"],
        units.count(nested(route, "parameters", "total")),
        units.count(nested(route, "parameters", "trained")),
        units.size(route.get("size_on_disk_bytes")),
        units.MISSING if route.get("tokens_per_example") is None else f"{route['tokens_per_example']:.1f}",
        units.flops(route.get("flops_per_example")),
        units.milliseconds(route.get("ms_per_example")),
        units.rate(route.get("examples_per_second")),
        units.seconds(route.get("training_seconds")),
        units.size(route.get("peak_memory_bytes")),
    ]


def tradeoffs(results: dict) -> Section:
    """The score the choice is made on (dev where every route has one) against size and against latency,
    one point per route's chosen setting; the Pareto front names the routes worth paying for."""
    split = nested(results, "recommendation", "chosen_on") or "test"  # the experiment's choice, read here
    key = "dev_score" if split == "dev" else "score"
    scored = [r for r in routes(results) if r.get("chosen") is not False and nested(r, key, "mean") is not None]
    if not scored:
        return Section("Score against cost", [not_run("no route was scored")])
    colours = plots.palette([r["name"] for r in routes(results)])
    blocks = []
    for axis in COST_AXES:
        fronts = nested(results, "pareto", axis.what) or []
        blocks += _tradeoff_blocks(scored, split, axis, colours, metric(results), fronts)
    return Section("Score against cost", blocks)


def _tradeoff_blocks(scored: list[dict], split: str, axis: CostAxis, colours: dict, metric_name: str,
                     fronts: list[str]) -> list:
    """One plot and one sentence naming its Pareto front and any route it could not place."""
    key = "dev_score" if split == "dev" else "score"
    points = [{"name": r["name"], "cost": nested(r, *axis.path), "mean": r[key]["mean"],
               "ci95": r[key].get("ci95")} for r in scored if nested(r, *axis.path) is not None]
    if not points:
        return [not_run(f"no route recorded its {axis.what}")]
    front = [i for i, p in enumerate(points) if p["name"] in fronts]
    svg = figure_svg(axis.name, plots.tradeoff, points, front, colours, xlabel=axis.label,
                     ylabel=f"{split} {metric_name}")
    beside = ", the score the choice is made on (test scores are in the table above)" if split == "dev" else ""
    caption = (f"{split.capitalize()} {metric_name} against {axis.label}{beside}; one point per route's chosen "
               "setting. Error bars are 95% CIs; filled markers and the dashed line are the Pareto front (no "
               "other route scores at least as well for less).")
    text = f"Pareto front by {axis.what}: {', '.join(points[i]['name'] for i in front)}."
    missing = [r["name"] for r in scored if nested(r, *axis.path) is None]
    if missing:
        text += f" Not plotted (no {axis.what} recorded): {', '.join(missing)}."
    return [Figure(svg, caption), Paragraph(text)]
