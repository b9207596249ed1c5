"""Sections that explain the scores: how training went, how much few-shot prompting depends on the
demonstrations drawn, and which labels the best route confuses."""

from tuneforge import units

from . import plots
from .document import Figure, Section, Table, not_run
from .results import metric, nested, routes
from .svg import figure_svg


def learning_curves(results: dict) -> Section:
    """Loss and dev score per step for every route that trained; prompting routes have none."""
    trained = [r for r in routes(results) if r.get("history")]
    if not trained:
        return Section("Learning curves", [not_run("no route recorded a training history")])
    colours = plots.palette([r["name"] for r in routes(results)])
    histories = {r["name"]: r["history"] for r in trained}
    svg = figure_svg("curves", plots.learning_curves, histories, colours, metric=metric(results))
    caption = ("Training loss at every logged step (left) and the dev-split score at each evaluation "
               "step (right). A dev score that falls while the loss keeps dropping means overfitting.")
    headers = ["Route", "Steps", "Epochs", "First loss", "Last loss", f"Best dev {metric(results)} (step)"]
    table = Table(headers, [_curve_row(r) for r in trained])
    return Section("Learning curves", [Figure(svg, caption), table])


def _curve_row(route: dict) -> list[str]:
    history = [h for h in route["history"] if h.get("step") is not None]
    losses = [h["loss"] for h in history if h.get("loss") is not None]
    evals = [h for h in history if h.get("dev_score") is not None]
    best = max(evals, key=lambda h: h["dev_score"]) if evals else None
    epochs = {h.get("epoch") for h in history if h.get("epoch") is not None}
    return [
        route["name"],
        str(max(h["step"] for h in history)) if history else units.MISSING,
        str(len(epochs)) if epochs else units.MISSING,
        f"{losses[0]:.3f}" if losses else units.MISSING,
        f"{losses[-1]:.3f}" if losses else units.MISSING,
        f"{best['dev_score']:.3f} ({best['step']})" if best else units.MISSING,
    ]


def few_shot_spread(results: dict) -> Section:
    """Each prompting condition's score on every demonstration draw: how much luck is in a shot. On test,
    or on dev for a condition that was not chosen and so not scored on test."""
    title = "Few-shot spread across demonstration draws"
    drawn = [(r, *found) for r in routes(results) if r.get("kind") == "prompting" and (found := _draws(r))]
    if not any(len(score["per_draw"]) > 1 for _, _, score in drawn):
        return Section(title, [not_run("no prompting condition drew its demonstrations more than once")])
    colours = plots.palette([r["name"] for r in routes(results)])
    labels = {r["name"]: r["name"] + (" (dev)" if split == "dev" else "") for r, split, _ in drawn}
    draws = {labels[r["name"]]: score["per_draw"] for r, _, score in drawn}
    svg = figure_svg("spread", plots.draw_spread, draws, {labels[n]: colours[n] for n in labels},
                     metric=metric(results))
    caption = ("Score of each prompting condition on each random draw of demonstrations (dots) and their mean "
               "(bar), on test, or on dev, marked (dev), for a condition not scored on test. Conditions with "
               "one draw are fixed: no shots, or shots picked by similarity.")
    headers = ["Condition", "Split", "Draws", "Mean", "SD", "Lowest", "Highest", "Per draw"]
    rows = [_spread_row(r["name"], split, score) for r, split, score in drawn]
    return Section(title, [Figure(svg, caption), Table(headers, rows)])


def _draws(route: dict) -> tuple[str, dict] | None:
    """(split, score) holding the condition's per-draw scores: test, else dev when test was not scored."""
    split, key = ("test", "score") if route.get("score") else ("dev", "dev_score")
    return (split, route[key]) if nested(route, key, "per_draw") else None


def _spread_row(name: str, split: str, score: dict) -> list[str]:
    values = score["per_draw"]
    return [
        name,
        split,
        str(len(values)),
        units.score(score.get("mean")),
        units.score(score.get("sd")),
        units.score(min(values)),
        units.score(max(values)),
        ", ".join(units.score(v) for v in values),
    ]


def confusion(results: dict, best: str | None) -> Section:
    """The best route's confusion matrix, as a heatmap and as a table with the same counts."""
    title = "Confusion matrix of the best route"
    route = next((r for r in routes(results) if r["name"] == best), None)
    if route is None or not route.get("confusion"):
        generated = nested(results, "task", "kind") == "generate"
        why = "the task generates free text" if generated else "none recorded"
        return Section(title, [not_run(f"no confusion matrix for the best route ({why})")])
    labels = confusion_labels(route["confusion"], nested(results, "task", "labels"))
    counts = [[(route["confusion"].get(g) or {}).get(p, 0) for p in labels] for g in labels]
    caption = (f"{route['name']}: rows are the gold labels, columns the predicted ones; the diagonal "
               "holds the correct answers, anything off it a confusion.")
    rows = [[g] + [str(n) if n else "·" for n in row] for g, row in zip(labels, counts)]
    svg = figure_svg("confusion", plots.confusion_heatmap, counts, labels, labels)
    table = Table(["gold ↓ predicted →"] + labels, rows, f"Counts for {route['name']} (· = 0).")
    return Section(title, [Figure(svg, caption), table])


def confusion_labels(table: dict[str, dict[str, int]], task_labels: list[str] | None) -> list[str]:
    """One label order for both axes: the task's labels, then any other gold or predicted string, sorted.

    A square matrix keeps the correct answers on the diagonal even when a route predicts a non-label."""
    seen = set(table) | {p for row in table.values() for p in row}
    known = list(task_labels or [])
    return known + sorted(seen - set(known))
