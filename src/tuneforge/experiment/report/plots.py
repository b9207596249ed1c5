"""The report's plots, each a pure function of plain numbers that returns a matplotlib Figure.

Figures are built with `matplotlib.figure.Figure`, not pyplot: no global figure registry to leak
into or close, and no backend to switch, so importing this module changes nothing for a user's
notebook and nothing ever tries to open a window. `svg.figure_svg` draws and renders them."""

import matplotlib
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

WIDTH = 7.0  # inches; the HTML scales the SVG down to the page width


def palette(names: list[str]) -> dict[str, str]:
    """One colour per route, the same in every plot, assigned in run order."""
    colours = matplotlib.colormaps["tab10"].colors
    return {name: to_hex(colours[i % len(colours)]) for i, name in enumerate(names)}


def tradeoff(points: list[dict], front: list[int], colours: dict, *, xlabel: str, ylabel: str) -> Figure:
    """Score (with its 95% CI as an error bar) against a cost; routes on the Pareto front are filled.

    Each point is {"name", "cost", "mean", "ci95"}; the dashed staircase joins the front, cheapest
    first. Costs that span more than a factor of ten go on a log axis."""
    fig = Figure(figsize=(WIDTH, 3.8))
    ax = fig.subplots()
    for i, p in enumerate(points):
        below, above = _error(p)
        on_front = i in front
        ax.errorbar([p["cost"]], [p["mean"]], yerr=[[below], [above]], fmt="o",
                    color=colours[p["name"]], mfc=colours[p["name"]] if on_front else "white",
                    ms=8, capsize=4, label=p["name"] + (" (front)" if on_front else ""))
    ordered = sorted((points[i] for i in front), key=lambda p: p["cost"])
    ax.plot([p["cost"] for p in ordered], [p["mean"] for p in ordered], "--", color="grey", lw=1,
            drawstyle="steps-post", label="Pareto front", zorder=0)
    costs = [p["cost"] for p in points]
    if min(costs) > 0 and max(costs) > 10 * min(costs):
        ax.set_xscale("log")
        xlabel += ", log scale"
    ax.xaxis.set_major_formatter(EngFormatter(sep=" "))  # 80000000 -> "80 M"
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def learning_curves(histories: dict[str, list[dict]], colours: dict, *, metric: str) -> Figure:
    """Training loss per step (left) and dev score at each evaluation step (right), one line per route."""
    fig = Figure(figsize=(WIDTH, 3.2))
    loss_ax, dev_ax = fig.subplots(1, 2)
    for name, history in histories.items():
        history = [h for h in history if h.get("step") is not None]
        losses = [h for h in history if h.get("loss") is not None]
        loss_ax.plot([h["step"] for h in losses], [h["loss"] for h in losses], color=colours[name],
                     lw=1.2, label=name)
        evals = [h for h in history if h.get("dev_score") is not None]
        dev_ax.plot([h["step"] for h in evals], [h["dev_score"] for h in evals], "o-", color=colours[name],
                    ms=4, lw=1.2, label=name)
    loss_ax.set(xlabel="step", ylabel="training loss", title="Loss")
    dev_ax.set(xlabel="step", ylabel=f"dev {metric}", title="Dev score")
    for ax in (loss_ax, dev_ax):
        ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def draw_spread(per_draw: dict[str, list[float]], colours: dict, *, metric: str) -> Figure:
    """Each prompting condition's score on every demonstration draw (dots) and their mean (bar).

    A wide row means the result depends on which examples happened to be shown."""
    names = list(per_draw)
    fig = Figure(figsize=(WIDTH, 0.5 + 0.45 * len(names)))
    ax = fig.subplots()
    for row, name in enumerate(names):
        values = per_draw[name]
        ax.plot(values, [row] * len(values), "o", color=colours[name], alpha=0.8, ms=7)
        ax.plot([sum(values) / len(values)] * 2, [row - 0.3, row + 0.3], color="black", lw=2)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel(f"{metric} per draw (bar: mean)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_heatmap(counts: list[list[int]], gold: list[str], predicted: list[str]) -> Figure:
    """Rows are gold labels, columns predicted ones; the diagonal holds the correct answers."""
    side = 1.2 + 0.42 * max(len(gold), len(predicted))
    fig = Figure(figsize=(min(side + 1.5, WIDTH + 2), min(side, WIDTH + 2)))
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    peak = max((max(row) for row in counts if row), default=0)
    for r, row in enumerate(counts):
        for c, n in enumerate(row):
            if n:
                ax.text(c, r, str(n), ha="center", va="center", fontsize=8,
                        color="white" if n > peak / 2 else "black")
    ax.set_xticks(range(len(predicted)), predicted, rotation=45, ha="right")
    ax.set_yticks(range(len(gold)), gold)
    ax.set(xlabel="predicted", ylabel="gold")
    fig.colorbar(image, ax=ax, shrink=0.8, label="test examples")
    fig.tight_layout()
    return fig


def group_scores(routes: dict[str, dict], *, metric: str) -> Figure:
    """The audit: each route's score per group with its 95% CI, groups side by side per route."""
    groups = sorted({g for route in routes.values() for g in route})
    fig = Figure(figsize=(WIDTH, 0.8 + 0.5 * len(routes)))
    ax = fig.subplots()
    step = 0.6 / max(len(groups), 1)
    for k, group in enumerate(groups):
        rows = [(r, stats[group]) for r, stats in enumerate(routes.values())
                if (stats.get(group) or {}).get("mean") is not None]
        if rows:
            offsets = [r - 0.3 + step * (k + 0.5) for r, _ in rows]  # this group's slot in each route's row
            below, above = zip(*(_error(s) for _, s in rows))
            ax.errorbar([s["mean"] for _, s in rows], offsets, xerr=[below, above], fmt="o", capsize=3,
                        label=group)
    ax.set_yticks(range(len(routes)), list(routes))
    ax.set_ylim(len(routes) - 0.5, -0.5)
    ax.set_xlabel(f"test {metric} per group (95% CI)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def _error(stat: dict) -> tuple[float, float]:
    """Error-bar lengths below and above the mean; zero when there is no interval."""
    low, high = stat.get("ci95") or (stat["mean"], stat["mean"])
    return max(stat["mean"] - low, 0.0), max(high - stat["mean"], 0.0)
