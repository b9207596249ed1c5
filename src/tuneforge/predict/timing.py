"""Latency as the report compares it: one timed pass per route over the same inputs, after a warm-up,
the median of a few repeats, so that routes measured in different stages stand side by side."""

import statistics
import time
from collections.abc import Callable, Sequence

TIMED_ITEMS = 32
"""Test items every route's latency is timed on (the first ones: the same inputs for every route)."""
REPEATS = 3
"""Timed passes; the median counts."""
WARM_UP = 8
"""Items predicted once, untimed, before the first timed pass."""


def latency(predict: Callable[[Sequence], object], items: Sequence) -> dict:
    """`predict` (a batch of items in, anything out) timed on the first `TIMED_ITEMS` of `items`
    after a warm-up on the first `WARM_UP`: the median pass's milliseconds per example, and what was
    timed."""
    timed = items[:TIMED_ITEMS]
    predict(timed[:WARM_UP])
    seconds = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        predict(timed)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"ms_per_example": 1000 * median / len(timed), "examples_per_second": len(timed) / median,
            "items": len(timed), "repeats": REPEATS, "spread_ms": [1000 * s / len(timed) for s in seconds]}
