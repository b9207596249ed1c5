"""The experiment's decision, which the report shows but does not make.

The recommendation weighs two things, each the same on every run of the same seed:

- **Score, compared in pairs.** Every route is scored on the same dev items, so the best route and
  each other one are compared item by item: the mean of their per-item differences with a paired
  bootstrap CI (`evaluate.metrics.paired_difference`). A route is *close* to the best when that mean
  difference lies within `margin` of zero (rule `mean`, the default); its CI is quoted beside, so a
  reader sees how sure the comparison is. The rule `upper` (close when the CI's upper bound reaches
  within `margin`: "not credibly worse") is kept for `bench/verdict.py`, which measured it shipping
  a student 0.19 worse on 32 dev items (regret 0.136 on test): on a small dev split nearly every
  route's interval reaches the margin. Where a route recorded no per-item scores, its mean must lie
  within `margin` of the best's.
- **Cost, counted.** A route's compute per example: the tokens it processes per test example times
  its parameters, in FLOPs (`routes.compute`). A route is *materially cheaper* only when the best
  costs at least `cheaper` times as much (default 1.5x), never by a rounding or noise difference.
  Measured latency is reported beside, and drawn in the Pareto plots, but never decides.

The cheapest route that is close and materially cheaper ships; otherwise the best.
Test scores are shown beside and never choose (a task without a dev split falls back to test, and
says so). Only each route's chosen setting competes. The reason spells the comparison out in numbers.

The Pareto fronts, one per cost: the routes worth considering at some budget. A route off a front
has another route that scores at least as well for at most the cost, and is strictly better on one
of the two; nobody should pick it."""

import math

from tuneforge import units
from tuneforge.evaluate.metrics import paired_difference
from tuneforge.experiment.records import nested

COSTS = {"parameters": ("parameters", "total"), "latency": ("ms_per_example",),
         "compute": ("flops_per_example",)}
"""The costs a route is weighed by, and where each sits in a route's record."""

TOLERANCE = 1e-9  # 0.608 - 0.05 must admit a 0.558 despite float rounding
CHEAPER = 1.5
"""How many times the compute per example of the best route a cheaper one must save to be shipped instead."""
SMALL_DEV = 50
"""Below this many dev items, the report and the console say how little dev can tell apart."""


RULES = ("mean", "upper")
"""When a route is close to the best: its paired mean difference within the margin, or the upper
bound of that difference's CI (see the module's note)."""


def decide(results: dict, margin: float, cheaper: float = CHEAPER) -> dict:
    """The decision as the results record carries it: the recommendation and the Pareto fronts."""
    return {"recommendation": recommend(results, margin, cheaper), "pareto": pareto_fronts(results)}


def recommend(results: dict, margin: float, cheaper: float = CHEAPER, rule: str = "mean") -> dict:
    """Among the routes' chosen settings with a score, the cheapest one that is close to the best on
    dev by `rule` (on test where no route has a dev score) and costs the best's compute per example
    divided by at least `cheaper`; else the best (see the module's note).

    `comparisons` holds each other route's paired difference from the best and its cost ratio;
    `candidates` the routes that qualify, cheapest first."""
    scored = _scored(results)
    if not scored:
        return {"route": None, "reason": "no route was evaluated"}
    split = choice_split(scored)
    best = max(scored, key=lambda r: mean_score(r, split))  # the first of equal bests, in run order
    comparisons = [compare(r, best, split, margin, cheaper, rule) for r in scored if r is not best]
    candidates = sorted((c for c in comparisons if c["close"] and c["cheaper"]), key=lambda c: c["sort"])
    chosen = next(r for r in scored if r["name"] == candidates[0]["route"]) if candidates else best
    items = len(nested(best, *_score_key(split), "per_item") or [])
    out = {
        "route": chosen["name"], "best": best["name"], "margin": margin, "cheaper": cheaper,
        "score": mean_score(chosen, split), "best_score": mean_score(best, split), "chosen_on": split,
        "items": items or None, "ms_per_example": chosen.get("ms_per_example"),
        "flops_per_example": chosen.get("flops_per_example"),
        "reason": reason(chosen, best, comparisons, margin, cheaper, split),
        "candidates": [c["route"] for c in candidates],
        "comparisons": [{k: v for k, v in c.items() if k != "sort"} for c in comparisons],
    }
    if split == "dev" and 0 < items < SMALL_DEV:
        out["small_dev"] = {"items": items, "resolves": resolvable(items)}
    return out


def compare(route: dict, best: dict, split: str, margin: float, cheaper: float, rule: str = "mean") -> dict:
    """`route` against the best: its paired difference on `split` (None where either side recorded no
    per-item scores or they differ in length), whether it is close enough by `rule`, and its cost ratio."""
    mine, theirs = (nested(r, *_score_key(split), "per_item") for r in (route, best))
    paired = paired_difference(mine, theirs) if mine and theirs and len(mine) == len(theirs) else None
    if paired is not None:
        close = (paired["difference"] if rule == "mean" else paired["ci95"][1]) >= -margin - TOLERANCE
    else:
        close = mean_score(route, split) >= mean_score(best, split) - margin - TOLERANCE
    ratio = cost_ratio(best, route)
    return {"route": route["name"], "score": mean_score(route, split), "paired": paired, "close": close,
            "cost_ratio": ratio,
            "cheaper": ratio is not None and ratio >= cheaper - TOLERANCE, "sort": cost(route)}


def cost_ratio(best: dict, route: dict) -> float | None:
    """How many times `route`'s compute per example the best's is (2.0: the route costs half); None
    where either was not counted."""
    a, b = best.get("flops_per_example"), route.get("flops_per_example")
    return a / b if a and b else None


def resolvable(items: int) -> float:
    """About the smallest difference between two routes' scores `items` dev items can tell from
    noise (95 %, the worst case: independent errors at a score of 0.5)."""
    return 1.96 * math.sqrt(0.5 / items)


def choice_split(routes: list[dict]) -> str:
    """`dev` when every route has a dev score (the task has a dev split), else `test`."""
    return "dev" if routes and all(nested(r, "dev_score", "mean") is not None for r in routes) else "test"


def _score_key(split: str) -> tuple[str]:
    return ("dev_score",) if split == "dev" else ("score",)


def mean_score(route: dict, split: str = "test") -> float | None:
    """The route's mean score on `split` (`dev` or `test`), or None when it was not scored there."""
    return nested(route, *_score_key(split), "mean")


def cost(route: dict) -> tuple[float, float]:
    """Sort key: compute per example first, then size; uncounted sorts last."""
    flops = route.get("flops_per_example")
    total = nested(route, "parameters", "total")
    return (math.inf if flops is None else flops, math.inf if total is None else total)


def reason(chosen: dict, best: dict, comparisons: list[dict], margin: float, cheaper: float,
           split: str = "test") -> str:
    """One or two sentences that let a reader check the choice against the numbers."""
    on = f"on {split}" + (" (test scores are shown beside and never choose)" if split == "dev" else
                          " (the task has no dev split)")
    if chosen["name"] != best["name"]:
        c = next(c for c in comparisons if c["route"] == chosen["name"])
        return (f"{_versus(c, best, split)}, within {margin:g} of the best; {chosen['name']} costs "
                f"{c['cost_ratio']:.1f}x less compute per example ({_cost(chosen)}, against {_cost(best)}): "
                f"{chosen['name']}.")
    text = f"{best['name']} has the best score {on}, {_score(best, split)}"
    cheap = sorted((c for c in comparisons if c["cheaper"]), key=lambda c: c["sort"])
    if not cheap:
        return f"{text}, and no route costs {cheaper:g}x less compute per example ({_cost(best)})."
    c = cheap[0]
    return (f"{text}. The cheapest route with {cheaper:g}x less compute per example is worse by more than "
            f"{margin:g}: {_versus(c, best, split)}.")


def _versus(c: dict, best: dict, split: str) -> str:
    """How the route compares with the best, in numbers: "A and B differ by -0.040 on 24 dev items
    (95% CI -0.12 to +0.21)", or both means where the scores are not paired."""
    p = c["paired"]
    if p is None:
        return f"{c['route']} scores {c['score']:.3f} {split}, {best['name']} {mean_score(best, split):.3f}"
    return (f"{c['route']} and {best['name']} differ by {p['difference']:+.3f} on {p['items']} {split} items "
            f"(95% CI {p['ci95'][0]:+.2f} to {p['ci95'][1]:+.2f})")


def _score(route: dict, split: str) -> str:
    stat = route["dev_score" if split == "dev" else "score"]
    ci = stat.get("ci95")
    if not ci:
        return f"{stat['mean']:.3f}"
    return f"{stat['mean']:.3f} (95% CI {ci[0]:.2f}–{ci[1]:.2f})"


def _cost(route: dict) -> str:
    flops = route.get("flops_per_example")
    compute = "compute not counted" if flops is None else f"{units.flops(flops)} per example"
    return f"{compute}, {units.count(nested(route, 'parameters', 'total'))} parameters"


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
