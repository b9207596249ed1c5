"""The bias audit of one predictor on one split: per-group scores, the largest gap and whether it
is larger than chance, and counterfactual flip rates per direction of swap.

A predictor is any function from examples to predicted strings, so the same audit runs on a
prompted base model, a fine-tuned or a distilled one, or a fixed table in a test.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from tuneforge.audit.swaps import Swapper
from tuneforge.data.tasks import Example
from tuneforge.evaluate.metrics import METRICS, bootstrap_ci, normalize_text

Predict = Callable[[list[Example]], list[str]]


def audit_predictor(items: list[Example], predict: Predict, swapper: Swapper, *, kind: str = "labels",
                    permutations: int = 2000, seed: int = 0) -> dict:
    """Predict `items` and their swapped counterparts in one call; return the audit figures.

    Without groups in `items` only the inputs the swaps change are predicted: the flips need nothing
    else, and the per-group figures, with the score beside them, are left empty (None)."""
    grouped = has_groups(items)
    if not grouped:
        items = [ex for ex in items if swapper.swap(ex.input) != ex.input]
    swapped = [replace(ex, input=swapper.swap(ex.input)) for ex in items]
    changed = [i for i, (a, b) in enumerate(zip(items, swapped)) if a.input != b.input]
    preds = predict(items + [swapped[i] for i in changed]) if items else []
    original, counter = preds[: len(items)], preds[len(items):]
    out = group_scores(items, original, kind, permutations=permutations, seed=seed)
    out.update(flips(items, changed, original, counter, swapper, kind))
    out["score"] = _metric(kind)([ex.target for ex in items], original) if grouped else None
    return out


def has_groups(items: list[Example]) -> bool:
    return any(ex.group is not None for ex in items)


def group_scores(items: list[Example], preds: list[str], kind: str, *, permutations: int = 2000,
                 seed: int = 0) -> dict:
    """Score per group with a bootstrap CI, the largest gap between groups, and its permutation
    p-value: how often shuffling the group labels gives a gap at least as large."""
    metric = _metric(kind)
    by_group: dict[str, list[int]] = {}
    for i, ex in enumerate(items):
        if ex.group is not None:
            by_group.setdefault(ex.group, []).append(i)
    groups = {}
    for name, idx in sorted(by_group.items()):
        gold, pred = [items[i].target for i in idx], [preds[i] for i in idx]
        groups[name] = {"mean": metric(gold, pred), "ci95": list(bootstrap_ci(gold, [pred], metric)), "n": len(idx)}
    if len(groups) < 2:
        return {"groups": groups, "gap": None, "gap_groups": None, "p_value": None}
    high = max(groups, key=lambda g: groups[g]["mean"])
    low = min(groups, key=lambda g: groups[g]["mean"])
    correct = np.array([_hit(items[i].target, preds[i], kind) for idx in by_group.values() for i in idx])
    sizes = [len(idx) for idx in by_group.values()]
    gap = groups[high]["mean"] - groups[low]["mean"]
    return {"groups": groups, "gap": gap, "gap_groups": [high, low],
            "p_value": permutation_p_value(correct, sizes, gap, permutations, seed)}


def permutation_p_value(correct: np.ndarray, sizes: list[int], observed: float, permutations: int,
                        seed: int) -> float:
    """P(max-min group mean >= observed) when group membership is shuffled; (1 + hits) / (1 + n)."""
    rng = np.random.default_rng(seed)
    bounds = np.cumsum([0] + sizes)
    hits = 0
    for _ in range(permutations):
        shuffled = rng.permutation(correct)
        means = [shuffled[a:b].mean() for a, b in zip(bounds[:-1], bounds[1:])]
        hits += max(means) - min(means) >= observed - 1e-12
    return (1 + hits) / (1 + permutations)


def flips(items, changed: list[int], original: list[str], counter: list[str], swapper: Swapper, kind: str) -> dict:
    """Flip rate over all swapped inputs and per direction (which group's terms the input had)."""
    a, b = swapper.swaps.groups
    directions = {frozenset({0}): (a, b), frozenset({1}): (b, a), frozenset({0, 1}): (None, None)}
    by_direction: dict[tuple, list[tuple[str, str]]] = {}
    for i, after in zip(changed, counter):
        direction = directions[frozenset(swapper.sides(items[i].input))]
        by_direction.setdefault(direction, []).append((original[i], after))
    figures = [direction_figures(source, target, pairs, kind) for (source, target), pairs in by_direction.items()]
    n_flips = sum(d["flips"] for d in figures)
    return {"swapped_inputs": len(changed), "flips": n_flips,
            "flip_rate": n_flips / len(changed) if changed else None,
            "directions": sorted(figures, key=lambda d: d["direction"])}


def direction_figures(source: str | None, target: str | None, pairs: list[tuple[str, str]], kind: str) -> dict:
    """Flips and the shift of the predicted label distribution for one direction of swap
    (`source` None: inputs with terms of both groups, swapped both ways)."""
    same = normalize_text if kind != "labels" else (lambda s: s)
    n_flips = sum(same(a) != same(b) for a, b in pairs)
    before, after = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    return {"direction": f"{source} -> {target}" if source else "both ways", "from": source, "to": target,
            "n": len(pairs), "flips": n_flips, "flip_rate": n_flips / len(pairs),
            "before": dict(sorted(before.items())), "after": dict(sorted(after.items())),
            "label_shift": total_variation(before, after) if kind == "labels" else None}


def total_variation(a: Counter, b: Counter) -> float:
    """Half the L1 distance between two distributions given as counts: 0 same, 1 disjoint."""
    na, nb = sum(a.values()), sum(b.values())
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


def _metric(kind: str):
    """The headline metric of a task scored as `kind` (`Task.scored_as`: labels, generate or list)."""
    return next(iter(METRICS[kind].values()))


def _hit(gold: str, pred: str, kind: str) -> float:
    return float(_metric(kind)([gold], [pred]))
