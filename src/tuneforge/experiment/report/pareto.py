"""The Pareto front of (cost, score) points: the routes worth considering at some budget.

A route off the front has another route that scores at least as well for at most the cost, and is
strictly better on one of the two; nobody should pick it."""


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
