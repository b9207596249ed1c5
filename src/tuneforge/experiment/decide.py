"""The experiment's decision, which the report shows but does not make.

The recommendation: the cheapest route whose dev score is within a margin of the best (test scores
are shown beside it and never choose; a task without a dev split falls back to test, and says so).
Only each route's chosen setting competes: a prompting condition not chosen on dev is shown, not
recommended. A route a
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
    """Among the routes' chosen settings with a score, the cheapest one scoring at least `best - margin`
    on dev (on test where no route has a dev score).

    Cheapest = lowest ms per example, ties broken by fewer total parameters, then by run order.
    `candidates` lists every route within the margin, cheapest first."""
    scored = _scored(results)
    if not scored:
        return {"route": None, "reason": "no route was evaluated"}
    split = choice_split(scored)
    key = lambda r: mean_score(r, split)  # noqa: E731
    best = max(scored, key=key)  # the first of equal bests, in run order
    floor = key(best) - margin - TOLERANCE
    candidates = sorted((r for r in scored if key(r) >= floor), key=cost)
    chosen = candidates[0]
    return {
        "route": chosen["name"],
        "best": best["name"],
        "margin": margin,
        "score": key(chosen),
        "best_score": key(best),
        "chosen_on": split,
        "ms_per_example": chosen.get("ms_per_example"),
        "reason": reason(chosen, best, margin, split),
        "candidates": [r["name"] for r in candidates],
    }


def choice_split(routes: list[dict]) -> str:
    """`dev` when every route has a dev score (the task has a dev split), else `test`."""
    return "dev" if routes and all(nested(r, "dev_score", "mean") is not None for r in routes) else "test"


def mean_score(route: dict, split: str = "test") -> float | None:
    """The route's mean score on `split` (`dev` or `test`), or None when it was not scored there."""
    return nested(route, "dev_score" if split == "dev" else "score", "mean")


def cost(route: dict) -> tuple[float, float]:
    """Sort key: latency first (what a user pays per call), then size; unmeasured sorts last."""
    ms = route.get("ms_per_example")
    total = nested(route, "parameters", "total")
    return (math.inf if ms is None else ms, math.inf if total is None else total)


def reason(chosen: dict, best: dict, margin: float, split: str = "test") -> str:
    """One or two sentences that let a reader check the choice against the numbers."""
    on = f"on {split}" + (" (test scores are shown beside and never choose)" if split == "dev" else
                          " (the task has no dev split)")
    if chosen["name"] == best["name"]:
        return (
            f"{chosen['name']} has the best score {on}, {_score(chosen, split)}, and no route within {margin:g} "
            f"of it is cheaper: {_cost(chosen)}."
        )
    return (
        f"{chosen['name']} scores {_score(chosen, split)} {on}, within {margin:g} of the best, {best['name']} at "
        f"{_score(best, split)}, and is the cheapest such route: {_cost(chosen)}, against {_cost(best)} "
        f"for {best['name']}."
    )


def _score(route: dict, split: str) -> str:
    stat = route["dev_score" if split == "dev" else "score"]
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
    """For each cost in COSTS, the names of the routes (chosen settings) on its front, in run order,
    by the score the recommendation weighs (dev where there is one)."""
    fronts = {}
    scored = _scored(results)
    split = choice_split(scored)
    for name, path in COSTS.items():
        placed = [r for r in scored if nested(r, *path) is not None]
        front = pareto_front([(nested(r, *path), mean_score(r, split)) for r in placed])
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
    """The routes that compete: each route's chosen setting, where it has a score on dev or test."""
    return [r for r in results.get("routes") or [] if r.get("chosen") is not False
            and (mean_score(r, "dev") is not None or mean_score(r) is not None)]
