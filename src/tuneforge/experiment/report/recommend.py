"""The recommendation: the cheapest route whose test score is within a margin of the best.

A route a hair below the best that runs ten times faster is usually the one to ship. The margin says
how much score the user will trade for cost, and the reason spells the trade out in numbers."""

import math

from . import units
from .results import nested, routes

TOLERANCE = 1e-9  # 0.608 - 0.05 must admit a 0.558 despite float rounding


def recommend(results: dict, margin: float) -> dict:
    """Among routes with a score, the cheapest one scoring at least `best - margin`.

    Cheapest = lowest ms per example, ties broken by fewer total parameters, then by run order.
    `candidates` lists every route within the margin, cheapest first."""
    scored = [r for r in routes(results) if mean_score(r) is not None]
    if not scored:
        return {"route": None, "reason": "no route was evaluated"}
    best = max(scored, key=mean_score)  # the first of equal bests, in run order
    floor = mean_score(best) - margin - TOLERANCE
    candidates = sorted((r for r in scored if mean_score(r) >= floor), key=cost)
    chosen = candidates[0]
    return {
        "route": chosen["name"],
        "best": best["name"],
        "margin": margin,
        "score": mean_score(chosen),
        "best_score": mean_score(best),
        "ms_per_example": chosen.get("ms_per_example"),
        "reason": reason(chosen, best, margin),
        "candidates": [r["name"] for r in candidates],
    }


def mean_score(route: dict) -> float | None:
    """The route's mean test score, or None when it was not scored."""
    return nested(route, "score", "mean")


def cost(route: dict) -> tuple[float, float]:
    """Sort key: latency first (what a user pays per call), then size; unmeasured sorts last."""
    ms = route.get("ms_per_example")
    total = nested(route, "parameters", "total")
    return (math.inf if ms is None else ms, math.inf if total is None else total)


def reason(chosen: dict, best: dict, margin: float) -> str:
    """One or two sentences that let a reader check the choice against the numbers."""
    if chosen["name"] == best["name"]:
        return (
            f"{chosen['name']} has the best score, {_score(chosen)}, and no route within {margin:g} of it "
            f"is cheaper: {_cost(chosen)}."
        )
    return (
        f"{chosen['name']} scores {_score(chosen)}, within {margin:g} of the best, {best['name']} at "
        f"{_score(best)}, and is the cheapest such route: {_cost(chosen)}, against {_cost(best)} "
        f"for {best['name']}."
    )


def _score(route: dict) -> str:
    stat = route["score"]
    ci = stat.get("ci95")
    if not ci:
        return f"{stat['mean']:.3f}"
    return f"{stat['mean']:.3f} (95% CI {ci[0]:.2f}–{ci[1]:.2f})"


def _cost(route: dict) -> str:
    ms = route.get("ms_per_example")
    latency = "latency not measured" if ms is None else f"{units.milliseconds(ms)} per example"
    total = nested(route, "parameters", "total")
    return f"{latency}, {units.count(total)} parameters"
