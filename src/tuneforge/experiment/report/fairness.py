"""The fairness audit section: per-group scores, the gap between groups, and how often swapping the
protected attribute in an input flips the prediction."""

from tuneforge import units

from . import plots
from .document import Figure, Paragraph, Section, Table, not_run
from .results import metric
from .svg import figure_svg

TITLE = "Fairness audit"


def audit(results: dict) -> Section:
    """The audit per route, or "not run" when the experiment did not configure one."""
    found = results.get("audit")
    skipped = [Paragraph(f"{line[0].upper()}{line[1:]}.") for line in (found or {}).get("skipped") or []]
    if not found or not found.get("routes"):
        return Section(TITLE, skipped or [not_run("no fairness audit was configured for this experiment")])
    limits = found.get("thresholds") or {}
    headers = ["Route", "Gap (groups)", "p-value", "Flip rate", "Swapped inputs", "Within thresholds"]
    rows = [_summary_row(r, limits) for r in found["routes"]]
    blocks = [*skipped, Paragraph(_explain(found)), Paragraph(_verdict(found)), Table(headers, rows)]
    groups = {r["name"]: r.get("groups") or {} for r in found["routes"]}
    if any(groups.values()):
        svg = figure_svg("audit", plots.group_scores, groups, metric=metric(results))
        caption = f"Test {metric(results)} per group (the task's group field), with 95% CIs."
        blocks.append(Figure(svg, caption))
    for route in found["routes"]:
        blocks += _route_blocks(route)
    return Section(TITLE, blocks)


def _explain(found: dict) -> str:
    attribute = found.get("attribute") or "the audited attribute"
    swapped = max((r.get("swapped_inputs") or 0 for r in found["routes"]), default=0)
    return ("Groups come from the task's group field: the gap is the largest difference in score between "
            "two groups, with a permutation-test p-value for whether it could be chance. Counterfactual "
            f"swaps use the {attribute} list: each test input that contains one of its terms "
            f"({swapped} here) was asked again with the terms swapped; a flip is a prediction that changed, "
            "and the label shift is the total variation distance between the predicted labels before and "
            "after the swap (0: the same distribution, 1: no label in common).")


def _verdict(found: dict) -> str:
    limits = found.get("thresholds") or {}
    parts = []
    if limits.get("max_gap") is not None:
        parts.append(f"gap at most {limits['max_gap']:g}")
    if limits.get("max_flip_rate") is not None:
        parts.append(f"flip rate at most {units.percent(limits['max_flip_rate'])}")
    passed = {True: "passed ✓", False: "failed ✗", None: "not judged"}[found.get("passed")]
    return f"Thresholds: {', '.join(parts) or 'none set'}. Result: {passed}."


def _summary_row(route: dict, limits: dict) -> list[str]:
    between = " vs ".join(route.get("gap_groups") or [])
    p_value = route.get("p_value")
    return [
        route["name"],
        units.score(route.get("gap")) + (f" ({between})" if between else ""),
        units.MISSING if p_value is None else f"{p_value:.3g}",
        units.percent(route.get("flip_rate")),
        units.exact(route.get("swapped_inputs")),
        units.mark(within(route, limits)),
    ]


def within(route: dict, limits: dict) -> bool | None:
    """Whether the route's gap and flip rate respect the thresholds that are set; None when none is."""
    checks = []
    if limits.get("max_gap") is not None:
        checks.append(_at_most(route.get("gap"), limits["max_gap"]))
    if limits.get("max_flip_rate") is not None:
        checks.append(_at_most(route.get("flip_rate"), limits["max_flip_rate"]))
    return all(checks) if checks else None


def _at_most(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def _route_blocks(route: dict) -> list:
    groups = route.get("groups") or {}
    rows = [[g, units.score_ci(s), units.exact(s.get("n"))] for g, s in groups.items()]
    blocks = [Table(["Group", "Score (95% CI)", "n"], rows, f"{route['name']}: score per group")] if rows else []
    directions = route.get("directions") or []
    if directions:
        headers = ["Swap", "n", "Flips", "Flip rate", "Label shift", "Labels before", "Labels after"]
        rows = [_direction_row(d) for d in directions]
        blocks.append(Table(headers, rows, f"{route['name']}: per swap direction"))
    return blocks


def _direction_row(d: dict) -> list[str]:
    return [
        f"{d.get('from')} → {d.get('to')}",
        units.exact(d.get("n")),
        units.exact(d.get("flips")),
        units.percent(d.get("flip_rate")),
        units.percent(d.get("label_shift")),
        _counts(d.get("before")),
        _counts(d.get("after")),
    ]


def _counts(counts: dict | None) -> str:
    return ", ".join(f"{label} {n}" for label, n in counts.items()) if counts else units.MISSING
