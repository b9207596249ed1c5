"""The recommendation as a pure function of what the routes recorded: paired differences on the same
dev items, compute per example counted (never timed), a cheaper route shipped only when its paired
mean difference lies within the margin and it is materially cheaper. Table-driven: ties, one route, missing dev, equal costs."""

import json
from pathlib import Path

import pytest

from tuneforge.evaluate.metrics import paired_difference, per_item
from tuneforge.experiment.decide import SMALL_DEV, cost_ratio, recommend, resolvable

FIXTURE = Path(__file__).parent / "fixtures" / "results.json"


def route(name: str, right: int, *, of: int = 40, flops: float | None = 1e9, total: int = 100, ms: float = 10.0,
          chosen: bool = True, shift: int = 0, dev: bool = True) -> dict:
    """A route that answers `right` of `of` dev items right: items shift .. shift+right-1."""
    items = [1.0 if shift <= i < shift + right else 0.0 for i in range(of)]
    score = {"mean": right / of, "ci95": [right / of - 0.1, right / of + 0.1], "per_item": items}
    return {"name": name, "kind": "full", "chosen": chosen, "score": {**score}, "dev_score": score if dev else None,
            "flops_per_example": flops, "ms_per_example": ms, "parameters": {"total": total}}


# Each case: routes, margin, the route shipped, why.
CASES = [
    ("one route", [route("only", 30)], 0.05, "only"),
    ("a cheaper route with the same answers ships", [route("big", 30, flops=3e9), route("small", 30, flops=1e9)],
     0.05, "small"),
    ("a tie in score and cost: the first in run order", [route("first", 30), route("second", 30)], 0.05, "first"),
    ("cheaper, but only 1.2x: not materially cheaper", [route("best", 32, flops=1.2e9), route("near", 31, flops=1e9)],
     0.05, "best"),
    ("materially cheaper but credibly worse", [route("best", 36, flops=4e9), route("weak", 20, flops=1e9)], 0.05,
     "best"),
    ("materially cheaper, worse by more than the margin on few items", [
        route("best", 7, of=10, flops=4e9), route("noisy", 5, of=10, shift=2, flops=1e9)], 0.05, "best"),
    ("two qualify: the cheapest of them", [route("best", 30, flops=9e9), route("mid", 30, flops=3e9),
                                           route("cheap", 29, flops=1e9)], 0.05, "cheap"),
    ("compute not counted never counts as cheaper", [route("best", 30, flops=2e9), route("unknown", 30, flops=None)],
     0.05, "best"),
    ("a prompting condition not chosen does not compete",
     [route("not chosen", 40, flops=1e8, chosen=False), route("chosen", 30)], 0.05, "chosen"),
    ("no per-item scores: the means within the margin", [
        {**route("best", 30, flops=4e9), "dev_score": {"mean": 0.75}},
        {**route("cheap", 29, flops=1e9), "dev_score": {"mean": 0.725}}], 0.05, "cheap"),
]


@pytest.mark.parametrize("routes, margin, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_the_recommendation_rule(routes, margin, expected):
    rec = recommend({"routes": routes}, margin)
    assert rec["route"] == expected
    assert rec["chosen_on"] == "dev"


def test_without_any_dev_score_every_route_is_weighed_on_test_and_the_reason_says_so():
    routes = [route("best", 30, flops=4e9, dev=False), route("cheap", 29, flops=1e9, dev=False)]
    rec = recommend({"routes": routes}, 0.05)
    assert rec["chosen_on"] == "test" and rec["route"] == "cheap" and "on 40 test items" in rec["reason"]
    routes = [route("dev best", 36), route("test best", 30, dev=False)]  # one route lacks dev: test decides for all
    assert recommend({"routes": routes}, 0.05)["chosen_on"] == "test"


@pytest.mark.parametrize("routes", [[], [{"name": "x", "kind": "full", "score": None}]])
def test_without_scored_routes(routes):
    assert recommend({"routes": routes}, 0.05) == {"route": None, "reason": "no route was evaluated"}


def test_timing_never_moves_the_verdict():
    """The same records with every latency multiplied or reversed (a throttled run): the same decision."""
    results = json.loads(FIXTURE.read_text())
    first = recommend(results, 0.05)
    for factor in (0.1, 7.0):
        for i, r in enumerate(results["routes"]):
            r["ms_per_example"] = (r["ms_per_example"] * factor) if i % 2 else 1000.0 / (1 + i)
        again = recommend(results, 0.05)
        assert {k: v for k, v in again.items() if k != "ms_per_example"} == \
               {k: v for k, v in first.items() if k != "ms_per_example"}


def test_the_reason_names_the_comparison_in_numbers():
    routes = [route("LoRA", 30, flops=1e9), route("1-shot", 29, flops=1.6e9), route("0-shot", 12, flops=0.5e9)]
    rec = recommend({"routes": routes}, 0.05)
    assert rec["route"] == "LoRA"
    assert rec["reason"].startswith("LoRA has the best score on dev")
    assert "0-shot and LoRA differ by -0.450 on 40 dev items (95% CI" in rec["reason"] and "worse by more than 0.05" in rec["reason"]
    routes = [route("best", 30, flops=3e9), route("small", 29, flops=1e9)]
    reason = recommend({"routes": routes}, 0.05)["reason"]
    assert reason.startswith("small and best differ by -0.025 on 40 dev items (95% CI -0.07 to +0.00)")
    assert "costs 3.0x less compute per example (1.00 GFLOP per example" in reason and reason.endswith(": small.")


def test_the_upper_bound_rule_ships_a_route_far_worse_on_a_small_dev_split_and_the_mean_rule_does_not():
    """What bench/verdict.py found on syllables (a student 0.19 worse on 32 dev items shipped, regret
    0.136): an interval on few items reaches the margin for nearly any route."""
    routes = [route("best", 20, of=32, flops=5e9), route("student", 14, of=32, shift=12, flops=1e9)]
    (c,) = recommend({"routes": routes}, 0.05)["comparisons"]
    assert c["paired"]["difference"] == pytest.approx(-0.1875) and c["paired"]["ci95"][1] >= -0.05
    assert recommend({"routes": routes}, 0.05, rule="upper")["route"] == "student"
    assert recommend({"routes": routes}, 0.05)["route"] == "best"


def test_each_comparison_is_recorded_with_its_interval_and_cost_ratio():
    rec = recommend({"routes": [route("best", 30, flops=3e9), route("small", 29, flops=1e9)]}, 0.05)
    (c,) = rec["comparisons"]
    assert c["route"] == "small" and c["close"] and c["cheaper"] and c["cost_ratio"] == pytest.approx(3.0)
    assert c["paired"]["items"] == 40 and c["paired"]["difference"] == pytest.approx(-0.025)
    assert rec["candidates"] == ["small"] and rec["items"] == 40


def test_a_small_dev_is_said_with_what_it_can_resolve():
    rec = recommend({"routes": [route("a", 20, of=24), route("b", 19, of=24)]}, 0.05)
    assert rec["small_dev"] == {"items": 24, "resolves": pytest.approx(0.283, abs=1e-3)}
    assert "small_dev" not in recommend({"routes": [route("a", 40, of=SMALL_DEV)]}, 0.05)
    assert resolvable(100) == pytest.approx(0.139, abs=1e-3)


def test_paired_difference_of_identical_answers_is_exactly_none():
    assert paired_difference([1, 0, 1, 1], [1, 0, 1, 1]) == {"difference": 0.0, "ci95": [0.0, 0.0], "items": 4}


def test_paired_difference_of_items_one_side_gets_wrong():
    p = paired_difference([1, 1, 1, 0], [0, 0, 0, 0])
    assert p["difference"] == 0.75 and p["items"] == 4
    assert 0.0 <= p["ci95"][0] < 0.75 < p["ci95"][1] <= 1.0


def test_paired_difference_is_seeded_narrower_than_unpaired_and_refuses_unequal_items():
    a = [1.0] * 30 + [0.0] * 10
    b = [1.0] * 29 + [0.0] * 11  # the same items but one
    p = paired_difference(a, b)
    assert p == paired_difference(a, b)  # the same inputs, the same interval
    assert p["ci95"][0] >= 0.0 and p["ci95"][1] <= 0.1  # one item differs: a narrow interval, never below 0
    with pytest.raises(ValueError, match="same items"):
        paired_difference(a, b[:-1])


@pytest.mark.parametrize("kind, gold, preds, expected", [
    ("labels", ["a", "b", "a"], [["a", "a", "a"], ["a", "b", "b"]], [1.0, 0.5, 0.5]),
    ("generate", ["Paris", "x"], [["paris.", "y"]], [1.0, 0.0]),
    ("list", ["jab, shot"], [["jab"]], [pytest.approx(2 / 3)]),
])
def test_per_item_scores_average_over_draws_and_mean_to_the_headline(kind, gold, preds, expected):
    assert per_item(gold, preds, kind) == expected


def test_cost_ratio_needs_both_counts():
    assert cost_ratio({"flops_per_example": 4.0}, {"flops_per_example": 2.0}) == 2.0
    assert cost_ratio({"flops_per_example": 4.0}, {"flops_per_example": None}) is None
    assert cost_ratio({}, {"flops_per_example": 2.0}) is None


def test_summarize_keeps_the_headline_metrics_per_item_scores():
    from tuneforge.evaluate.metrics import summarize

    out = summarize(["a", "b", "a"], [["a", "a", "a"], ["a", "b", "b"]], "labels")
    assert out["accuracy"]["per_item"] == [1.0, 0.5, 0.5] and "per_item" not in out["macro_f1"]
    assert sum(out["accuracy"]["per_item"]) / 3 == pytest.approx(out["accuracy"]["mean"])
