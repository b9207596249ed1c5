"""Metrics against hand-computed values; bootstrap CIs; confusion tables."""

import statistics

import pytest

from tuneforge.evaluate.metrics import (
    accuracy, bootstrap_ci, confusion, exact_match, list_f1, list_precision, list_recall, list_scores, macro_f1,
    normalize_text, summarize,
)

GOLD = ["a", "a", "b", "b", "c"]
PRED = ["a", "b", "b", "b", "a"]


def test_accuracy_hand_computed():
    # item: 0 a/a ok, 1 a/b wrong, 2 b/b ok, 3 b/b ok, 4 c/a wrong -> 3 of 5 = 0.6
    assert accuracy(GOLD, PRED) == pytest.approx(0.6)


@pytest.mark.parametrize("gold, pred, expected", [
    (["x"], ["x"], 1.0),
    (["x"], ["y"], 0.0),
    (["x", "y", "x", "y"], ["x", "x", "x", "x"], 0.5),
    (["Drupe"], ["drupe"], 0.0),  # accuracy compares exactly (labels are predicted by ranking)
])
def test_accuracy_small_cases(gold, pred, expected):
    assert accuracy(gold, pred) == pytest.approx(expected)


def test_accuracy_length_mismatch():
    with pytest.raises(ValueError):
        accuracy(["a", "b"], ["a"])


def test_macro_f1_hand_computed():
    # label a: tp=1 (item 0), fp=1 (item 4: gold c, pred a), fn=1 (item 1: gold a, pred b)
    #          F1 = 2*1 / (2*1 + 1 + 1) = 2/4 = 0.5
    # label b: tp=2 (items 2, 3), fp=1 (item 1), fn=0 -> F1 = 4 / (4 + 1 + 0) = 0.8
    # label c: tp=0 -> F1 = 0
    # macro = (0.5 + 0.8 + 0) / 3 = 1.3 / 3
    assert macro_f1(GOLD, PRED) == pytest.approx(1.3 / 3)


def test_macro_f1_counts_labels_only_predicted():
    # gold [a, a], pred [a, x]
    # label a: tp=1, fp=0, fn=1 -> 2 / (2 + 0 + 1) = 2/3
    # label x (only predicted): tp=0 -> 0
    # macro = (2/3 + 0) / 2 = 1/3
    assert macro_f1(["a", "a"], ["a", "x"]) == pytest.approx(1 / 3)


def test_macro_f1_perfect_and_all_wrong():
    assert macro_f1(GOLD, GOLD) == pytest.approx(1.0)
    # every label has tp=0
    assert macro_f1(["a", "b"], ["b", "a"]) == pytest.approx(0.0)


def test_macro_f1_differs_from_accuracy_on_imbalance():
    # gold: 9 x a, 1 x b; pred: all a
    # accuracy = 9/10
    # label a: tp=9, fp=1, fn=0 -> 18/19; label b: tp=0 -> 0; macro = (18/19) / 2 = 9/19
    gold, pred = ["a"] * 9 + ["b"], ["a"] * 10
    assert accuracy(gold, pred) == pytest.approx(0.9)
    assert macro_f1(gold, pred) == pytest.approx(9 / 19)


def test_macro_f1_length_mismatch():
    with pytest.raises(ValueError):
        macro_f1(["a", "b"], ["a"])


@pytest.mark.parametrize("text, normal", [
    ("Drupe", "drupe"),
    ("drupe.", "drupe"),
    ("  Drupe!  ", "drupe"),
    ("'drupe'", "drupe"),
    ('"drupe",', "drupe"),
    ("jab,  shot\n booster", "jab, shot booster"),
    ("a.b", "a.b"),  # inner punctuation stays
])
def test_normalize_text(text, normal):
    assert normalize_text(text) == normal


def test_exact_match_normalises():
    gold = ["Drupe", "vaccination, jab", "pome", "berry"]
    pred = ["drupe.", "Vaccination,   jab", "pomes", "berry"]
    # match, match (case + spaces), no ("pomes"), match -> 3/4
    assert exact_match(gold, pred) == pytest.approx(0.75)


def test_exact_match_length_mismatch():
    with pytest.raises(ValueError):
        exact_match(["a"], ["a", "b"])


# ---------------------------------------------------------------- bootstrap


def half_right(n):
    gold = ["a"] * n
    pred = ["a" if i % 2 == 0 else "b" for i in range(n)]
    return gold, pred


def test_bootstrap_deterministic_for_a_seed():
    gold, pred = half_right(40)
    a = bootstrap_ci(gold, [pred], accuracy, n_resamples=300, seed=11)
    b = bootstrap_ci(gold, [pred], accuracy, n_resamples=300, seed=11)
    assert a == b
    c = bootstrap_ci(gold, [pred], accuracy, n_resamples=300, seed=12)
    assert c != a


@pytest.mark.parametrize("metric", [accuracy, macro_f1, exact_match])
def test_bootstrap_contains_point_estimate(metric):
    gold = ["a", "b", "c", "a", "b", "c", "a", "a", "b", "c"] * 3
    pred = ["a", "b", "a", "a", "c", "c", "b", "a", "b", "c"] * 3
    low, high = bootstrap_ci(gold, [pred], metric, n_resamples=500, seed=0)
    assert low <= metric(gold, pred) <= high
    assert 0.0 <= low < high <= 1.0


def test_bootstrap_over_several_draws_contains_mean():
    gold, p1 = half_right(30)
    p2 = ["a"] * 30
    low, high = bootstrap_ci(gold, [p1, p2], accuracy, n_resamples=500, seed=0)
    # mean of 0.5 and 1.0
    assert low <= 0.75 <= high


def test_bootstrap_width_shrinks_with_more_items():
    widths = []
    for n in (20, 200, 2000):
        gold, pred = half_right(n)
        low, high = bootstrap_ci(gold, [pred], accuracy, n_resamples=400, seed=0)
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2] > 0


def test_bootstrap_all_correct():
    gold = ["a", "b", "c", "a"] * 5
    assert bootstrap_ci(gold, [gold], accuracy, n_resamples=200, seed=0) == (1.0, 1.0)
    assert bootstrap_ci(gold, [list(gold), list(gold)], accuracy, n_resamples=200, seed=3) == (1.0, 1.0)


def test_bootstrap_returns_python_floats():
    gold, pred = half_right(10)
    low, high = bootstrap_ci(gold, [pred], accuracy, n_resamples=50)
    assert type(low) is float and type(high) is float


def test_bootstrap_level_widens_interval():
    gold, pred = half_right(50)
    l90, h90 = bootstrap_ci(gold, [pred], accuracy, n_resamples=500, seed=0, level=0.80)
    l99, h99 = bootstrap_ci(gold, [pred], accuracy, n_resamples=500, seed=0, level=0.99)
    assert l99 <= l90 and h90 <= h99
    assert h99 - l99 > h90 - l90


# ---------------------------------------------------------------- confusion


def test_confusion_counts():
    # gold a: predicted a once (item 0), b once (item 1)
    # gold b: predicted b twice (items 2, 3)
    # gold c: predicted a once (item 4)
    assert confusion(GOLD, PRED) == {"a": {"a": 1, "b": 1}, "b": {"b": 2}, "c": {"a": 1}}


def test_confusion_totals_and_order():
    gold = ["z", "y", "z", "x", "z"]
    pred = ["y", "y", "z", "z", "y"]
    table = confusion(gold, pred)
    assert list(table) == ["x", "y", "z"]
    assert list(table["z"]) == ["y", "z"]
    assert table["z"] == {"y": 2, "z": 1}
    assert sum(n for row in table.values() for n in row.values()) == len(gold)
    assert all(type(n) is int for row in table.values() for n in row.values())


def test_confusion_length_mismatch():
    with pytest.raises(ValueError):
        confusion(["a"], [])


def test_summarize_reports_each_draw_their_mean_and_spread_and_the_first_draws_confusion():
    gold = ["a", "b", "a", "b"]
    out = summarize(gold, [["a", "b", "a", "a"], ["a", "a", "a", "a"]], "labels")
    assert set(out) == {"accuracy", "macro_f1", "confusion"}
    assert out["accuracy"]["per_draw"] == [0.75, 0.5] and out["accuracy"]["mean"] == 0.625
    assert out["accuracy"]["sd"] == pytest.approx(statistics.stdev([0.75, 0.5]))
    assert out["macro_f1"]["per_draw"] == [pytest.approx(11 / 15), pytest.approx(1 / 3)]
    assert out["confusion"] == {"a": {"a": 2}, "b": {"a": 1, "b": 1}}


def test_summarize_an_open_task_by_exact_match_alone():
    out = summarize(["Jab, shot", "flu shot"], [["jab, shot.", "vaccine"]], "generate")
    assert set(out) == {"exact_match"}
    assert out["exact_match"]["per_draw"] == [0.5] and out["exact_match"]["sd"] == 0.0


@pytest.mark.parametrize(
    "gold, pred, expected",
    [
        ("jab, shot, booster", "Shots; jab", (1.0, 2 / 3, 0.8)),  # plural, case and separators ignored
        ("jab, shot", "jab, carr, medicaree, shot", (0.5, 1.0, 2 / 3)),
        ("jab, shot", "", (0.0, 0.0, 0.0)),  # an empty answer is not perfectly precise
        ("", "", (1.0, 1.0, 1.0)),
        ("", "jab", (0.0, 1.0, 0.0)),
        ("flu-shot, jab", "flu shot", (1.0, 0.5, 2 / 3)),
    ],
)
def test_list_scores(gold, pred, expected):
    assert list_scores(gold, pred) == pytest.approx(expected)


def test_list_metrics_average_items_and_summarize_reports_them_with_cis():
    gold, pred = ["jab, shot", "car, auto"], ["jab", "vehicle"]
    assert list_precision(gold, pred) == pytest.approx(0.5)
    assert list_recall(gold, pred) == pytest.approx(0.25)
    assert list_f1(gold, pred) == pytest.approx((2 / 3 + 0) / 2)
    out = summarize(gold, [pred], "list")
    assert list(out) == ["list_f1", "list_precision", "list_recall"]
    assert out["list_recall"]["mean"] == pytest.approx(0.25)
    low, high = out["list_f1"]["ci95"]
    assert 0 <= low <= out["list_f1"]["mean"] <= high <= 2 / 3
