"""The report's opening: what was compared, the recommendation, every route's numbers, and the
score-against-cost plots with their Pareto fronts."""

from dataclasses import dataclass
from pathlib import PurePath

from tuneforge import units

from . import plots
from .document import Figure, Paragraph, Section, Table, not_run
from .results import metric, metric_words, nested, routes
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
        f"\"{task.get('name') or 'unnamed'}\"{described}. Every route was scored by {metric_words(results)} "
        f"on the same held-out test split of {sizes.get('test') or 'an unrecorded number of'} examples "
        f"(training split: {units.exact(sizes.get('train'))}, dev split: {units.exact(sizes.get('dev'))}). "
        "A score written as 0.61 (0.50–0.73) is the mean with its 95% bootstrap confidence interval, "
        "obtained by resampling the test examples; wide, overlapping intervals warn that the test split "
        "may be too small to separate two routes."
    )
    kinds = dict.fromkeys(r.get("kind") for r in routes(results))
    explained = [GLOSSARY[k] for k in kinds if k in GLOSSARY]
    second = "The routes: " + "; ".join(explained) + "." if explained else "No route was evaluated."
    return [Paragraph(first), Paragraph(second)]


def warnings(results: dict) -> list[str]:
    """The task's data warnings the experiment recorded (overlap between splits, a single label, ...)."""
    return [str(w) for w in nested(results, "task", "warnings") or []]


def recommendation(rec: dict) -> Section:
    """The one line to act on, with the reason in numbers and the other routes that came close."""
    if rec.get("route") is None:
        return Section("Recommendation", [Paragraph(f"No recommendation: {rec.get('reason')}.", strong=True)])
    blocks = [Paragraph(f"Recommended route: {rec['route']}.", strong=True),
              Paragraph(rec.get("reason") or "")]
    others = [name for name in rec.get("candidates") or [] if name != rec["route"]]
    if others:
        blocks.append(Paragraph(f"Also within {rec['margin']:g} of the best score, but costlier: "
                                f"{', '.join(others)}."))
    return Section("Recommendation", blocks)


def summary(results: dict) -> Section:
    """Every route in one table: score, size and speed side by side, in human units."""
    with_f1 = any(r.get("macro_f1") for r in routes(results))
    headers = ["Route", "Kind", f"Test {metric(results)} (95% CI)"]
    headers += ["Macro-F1 (95% CI)"] if with_f1 else []
    headers += ["Parameters", "Trained", "Size on disk", "Latency / example", "Throughput",
                "Training time", "Peak memory"]
    rows = [_summary_row(r, with_f1) for r in routes(results)]
    if not rows:
        return Section("Routes compared", [not_run("no route was evaluated")])
    caption = "Latency and throughput were measured on the test split; a dash means not recorded."
    return Section("Routes compared", [Table(headers, rows, caption)])


def _summary_row(route: dict, with_f1: bool) -> list[str]:
    row = [route["name"], route.get("kind") or units.MISSING, units.score_ci(route.get("score"))]
    if with_f1:
        row.append(units.score_ci(route.get("macro_f1")))
    return row + [
        units.count(nested(route, "parameters", "total")),
        units.count(nested(route, "parameters", "trained")),
        units.size(route.get("size_on_disk_bytes")),
        units.milliseconds(route.get("ms_per_example")),
        units.rate(route.get("examples_per_second")),
        units.seconds(route.get("training_seconds")),
        units.size(route.get("peak_memory_bytes")),
    ]


def tradeoffs(results: dict) -> Section:
    """Score against size and against latency; the Pareto front names the routes worth paying for."""
    scored = [r for r in routes(results) if nested(r, "score", "mean") is not None]
    if not scored:
        return Section("Score against cost", [not_run("no route was scored")])
    colours = plots.palette([r["name"] for r in routes(results)])
    blocks = []
    for axis in COST_AXES:
        fronts = nested(results, "pareto", axis.what) or []
        blocks += _tradeoff_blocks(scored, axis, colours, metric(results), fronts)
    return Section("Score against cost", blocks)


def _tradeoff_blocks(scored: list[dict], axis: CostAxis, colours: dict, metric_name: str, fronts: list[str]) -> list:
    """One plot and one sentence naming its Pareto front and any route it could not place."""
    points = [{"name": r["name"], "cost": nested(r, *axis.path), "mean": r["score"]["mean"],
               "ci95": r["score"].get("ci95")} for r in scored if nested(r, *axis.path) is not None]
    if not points:
        return [not_run(f"no route recorded its {axis.what}")]
    front = [i for i, p in enumerate(points) if p["name"] in fronts]
    svg = figure_svg(axis.name, plots.tradeoff, points, front, colours, xlabel=axis.label,
                     ylabel=f"test {metric_name}")
    caption = (f"Test {metric_name} against {axis.label}. Error bars are 95% CIs; filled markers and the "
               "dashed line are the Pareto front (no other route scores at least as well for less).")
    text = f"Pareto front by {axis.what}: {', '.join(points[i]['name'] for i in front)}."
    missing = [r["name"] for r in scored if nested(r, *axis.path) is None]
    if missing:
        text += f" Not plotted (no {axis.what} recorded): {', '.join(missing)}."
    return [Figure(svg, caption), Paragraph(text)]
