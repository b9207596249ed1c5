"""Latency timed as every route is: a warm-up, then the median of repeated passes over the same items."""

import pytest

from tuneforge.predict import timing


def test_latency_warms_up_then_times_the_same_first_items_and_takes_the_median():
    calls = []
    items = list(range(100))
    result = timing.latency(lambda batch: calls.append(list(batch)), items)
    first = items[: timing.TIMED_ITEMS]
    assert calls == [first[: timing.WARM_UP]] + [first] * timing.REPEATS
    assert (result["items"], result["repeats"]) == (timing.TIMED_ITEMS, timing.REPEATS)
    assert result["ms_per_example"] == sorted(result["spread_ms"])[timing.REPEATS // 2]
    assert result["examples_per_second"] * result["ms_per_example"] == pytest.approx(1000)


def test_fewer_items_than_timed_are_all_timed():
    calls = []
    result = timing.latency(lambda batch: calls.append(len(batch)), [1, 2, 3])
    assert result["items"] == 3 and calls == [3] * (1 + timing.REPEATS)
