"""Metrics: accuracy, macro-F1, exact match, list precision/recall/F1, bootstrap confidence
intervals, confusion tables, and `summarize`, which reports them for one or more prediction draws.

Pure functions of gold and predicted strings; no model in sight.
"""

import re
import statistics
from collections import Counter
from functools import lru_cache

import numpy as np

from tuneforge.data.lists import split_list, term_key


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


@lru_cache(maxsize=1 << 16)  # three metrics x 1,000 bootstrap resamples ask for the same pairs
def list_scores(gold: str, pred: str) -> tuple[float, float, float]:
    """Precision, recall and F1 of one list-valued answer ("jab, shot") against its reference, as
    sets of terms (`split_list`; terms equal by `term_key`: case, punctuation and plural endings
    ignored). An empty answer has precision 0 (1 if the reference is empty too), an empty reference
    recall 1."""
    g, p = ({term_key(t) for t in split_list(text)} for text in (gold, pred))
    hits = len(g & p)
    precision = hits / len(p) if p else float(not g)
    recall = hits / len(g) if g else 1.0
    return precision, recall, 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def list_precision(gold: list[str], pred: list[str]) -> float:
    """Mean per-item precision of list-valued answers (`list_scores`)."""
    return statistics.fmean(list_scores(g, p)[0] for g, p in zip(gold, pred, strict=True))


def list_recall(gold: list[str], pred: list[str]) -> float:
    """Mean per-item recall of list-valued answers (`list_scores`)."""
    return statistics.fmean(list_scores(g, p)[1] for g, p in zip(gold, pred, strict=True))


def list_f1(gold: list[str], pred: list[str]) -> float:
    """Mean per-item F1 of list-valued answers (`list_scores`)."""
    return statistics.fmean(list_scores(g, p)[2] for g, p in zip(gold, pred, strict=True))


METRICS = {
    "labels": {"accuracy": accuracy, "macro_f1": macro_f1},
    "generate": {"exact_match": exact_match},
    "list": {"list_f1": list_f1, "list_precision": list_precision, "list_recall": list_recall},
}
"""The metrics `summarize` reports for each way a task is scored (`Task.scored_as`), headline first."""


ITEM_SCORES = {
    "labels": lambda g, p: float(g == p),
    "generate": lambda g, p: float(normalize_text(g) == normalize_text(p)),
    "list": lambda g, p: list_scores(g, p)[2],
}
"""Each item's share of the headline metric (accuracy, exact match, list F1: each is their mean)."""


def per_item(gold: list[str], preds: list[list[str]], kind: str) -> list[float]:
    """Each item's headline score, averaged over the draws: what a paired comparison of two routes
    on the same items compares."""
    score = ITEM_SCORES[kind]
    return [statistics.fmean(score(g, p[i]) for p in preds) for i, g in enumerate(gold)]


def paired_difference(a: list[float], b: list[float], *, n_resamples: int = 2000, seed: int = 0,
                      level: float = 0.95) -> dict:
    """The mean of `a - b` over the same items (two routes' per-item scores) and its percentile
    bootstrap CI, items resampled in pairs (seeded: the same inputs give the same interval)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"a paired comparison needs the same items on both sides, got {len(a)} and {len(b)}")
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return {"difference": float(diff.mean()), "ci95": mean_ci(diff, n_resamples=n_resamples, seed=seed, level=level),
            "items": len(diff)}


def mean_ci(values, *, n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> list[float]:
    """The percentile bootstrap CI of the mean of per-item `values` (seeded)."""
    values = np.asarray(values, dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(values), (n_resamples, len(values)))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values[idx].mean(axis=1), [tail, 100 - tail])
    return [float(low), float(high)]


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
    """Metrics of one or more prediction draws: per draw, mean, sd and bootstrap CI (the headline
    metric also each item's score, `per_item`, for paired comparisons); label tasks
    (`kind` "labels") get accuracy, macro-F1 and the first draw's confusion, open ones exact match,
    list-valued ones ("list") list F1, precision and recall."""
    out = {}
    for name, fn in METRICS[kind].items():
        per_draw = [fn(gold, p) for p in preds]
        out[name] = {
            "mean": statistics.fmean(per_draw),
            "sd": statistics.stdev(per_draw) if len(per_draw) > 1 else 0.0,
            "ci95": bootstrap_ci(gold, preds, fn),
            "per_draw": per_draw,
        }
    out[next(iter(METRICS[kind]))]["per_item"] = per_item(gold, preds, kind)
    if kind == "labels":
        out["confusion"] = confusion(gold, preds[0])
    return out
