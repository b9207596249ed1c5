"""Metrics: accuracy, macro-F1, exact match, bootstrap confidence intervals, confusion tables, and
`summarize`, which reports them for one or more prediction draws.

Pure functions of gold and predicted strings; no model in sight.
"""

import re
import statistics
from collections import Counter

import numpy as np


def accuracy(gold: list[str], pred: list[str]) -> float:
    """Share of predictions equal to the gold label."""
    return sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)


def macro_f1(gold: list[str], pred: list[str]) -> float:
    """Unweighted mean of per-label F1 over the labels that occur in gold or predictions."""
    labels = sorted(set(gold) | set(pred))
    f1s = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, pred, strict=True))
        fp = sum(g != label and p == label for g, p in zip(gold, pred))
        fn = sum(g == label and p != label for g, p in zip(gold, pred))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / len(f1s)


def normalize_text(text: str) -> str:
    """Lower case, single spaces, no surrounding punctuation: what exact match compares."""
    return re.sub(r"\s+", " ", text.lower()).strip(" .,;:!?\"'")


def exact_match(gold: list[str], pred: list[str]) -> float:
    """Share of predictions equal to the gold text after `normalize_text`."""
    return sum(normalize_text(g) == normalize_text(p) for g, p in zip(gold, pred, strict=True)) / len(gold)


def bootstrap_ci(
    gold: list[str], preds: list[list[str]], metric, *, n_resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of `metric` averaged over one or more prediction lists (draws).

    Items are resampled (the same resample for every draw), so the interval reflects the size of the
    evaluation set; the spread across draws is reported separately."""
    rng = np.random.default_rng(seed)
    n = len(gold)
    values = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, n)
        g = [gold[i] for i in idx]
        values.append(np.mean([metric(g, [p[i] for i in idx]) for p in preds]))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def confusion(gold: list[str], pred: list[str]) -> dict[str, dict[str, int]]:
    """Counts as {gold label: {predicted label: n}}."""
    table: dict[str, Counter] = {}
    for g, p in zip(gold, pred, strict=True):
        table.setdefault(g, Counter())[p] += 1
    return {g: dict(sorted(c.items())) for g, c in sorted(table.items())}


def summarize(gold: list[str], preds: list[list[str]], kind: str) -> dict:
    """Metrics of one or more prediction draws: per draw, mean, sd and bootstrap CI; label tasks
    (`kind` "labels") get accuracy, macro-F1 and the first draw's confusion, open ones exact match."""
    metrics = {"accuracy": accuracy, "macro_f1": macro_f1} if kind == "labels" else {"exact_match": exact_match}
    out = {}
    for name, fn in metrics.items():
        per_draw = [fn(gold, p) for p in preds]
        out[name] = {
            "mean": statistics.fmean(per_draw),
            "sd": statistics.stdev(per_draw) if len(per_draw) > 1 else 0.0,
            "ci95": bootstrap_ci(gold, preds, fn),
            "per_draw": per_draw,
        }
    if kind == "labels":
        out["confusion"] = confusion(gold, preds[0])
    return out
