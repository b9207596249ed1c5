"""The experiment's decision, which the report shows but does not make.

The recommendation: the cheapest route whose test score is within a margin of the best. A route a
hair below the best that runs ten times faster is usually the one to ship; the margin says how much
score the user will trade for cost, and the reason spells the trade out in numbers.

The Pareto fronts, one per cost: the routes worth considering at some budget. A route off a front
has another route that scores at least as well for at most the cost, and is strictly better on one
of the two; nobody should pick it."""

import math

from tuneforge import units
from tuneforge.experiment.records import nested

COSTS = {"parameters": ("parameters", "total"), "latency": ("ms_per_example",)}
"""The costs a route is weighed by, and where each sits in a route's record."""

TOLERANCE = 1e-9  # 0.608 - 0.05 must admit a 0.558 despite float rounding


def decide(results: dict, margin: float) -> dict:
    """The decision as the results record carries it: the recommendation and the Pareto fronts."""
    return {"recommendation": recommend(results, margin), "pareto": pareto_fronts(results)}


def recommend(results: dict, margin: float) -> dict:
    """Among routes with a score, the cheapest one scoring at least `best - margin`.

    Cheapest = lowest ms per example, ties broken by fewer total parameters, then by run order.
    `candidates` lists every route within the margin, cheapest first."""
    scored = _scored(results)
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


def pareto_fronts(results: dict) -> dict[str, list[str]]:
    """For each cost in COSTS, the names of the scored routes on its front, in run order."""
    fronts = {}
    for name, path in COSTS.items():
        placed = [r for r in _scored(results) if nested(r, *path) is not None]
        front = pareto_front([(nested(r, *path), mean_score(r)) for r in placed])
        fronts[name] = [placed[i]["name"] for i in front]
    return fronts


def pareto_front(points: list[tuple[float | None, float | None]]) -> list[int]:
    """Indices (ascending) of the points no other point dominates; lower cost and higher score win.

    Points with a missing cost or score are never on the front and never dominate. Equal points
    do not dominate each other, so both stay."""
    known = [i for i, (c, s) in enumerate(points) if c is not None and s is not None]
    return [i for i in known if not any(dominates(points[j], points[i]) for j in known if j != i)]


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """True when `a` costs no more and scores no less than `b`, and is strictly better in one."""
    (cost_a, score_a), (cost_b, score_b) = a, b
    return cost_a <= cost_b and score_a >= score_b and (cost_a < cost_b or score_a > score_b)


def _scored(results: dict) -> list[dict]:
    return [r for r in results.get("routes") or [] if mean_score(r) is not None]
