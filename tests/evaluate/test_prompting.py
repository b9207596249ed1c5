from dataclasses import replace

import pytest
import torch

from tuneforge.data.splits import load_task
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate import prompting
from tuneforge.evaluate.prompting import PromptingConfig, compare_prompting
from tuneforge.predict import predictor
from tuneforge.predict.score import score_continuations
from tuneforge.prompts.formats import PromptFormat, encode_continuation, encode_prompt, render_continuation
from tuneforge.prompts.formats import render_prompt
from tuneforge.prompts.shots import is_same_item

CFG = PromptingConfig(shots=(0, 2), formats=("plain", "chat"), picks=("random", "similar"), draws=2,
                      calibrations=("none", "content-free", "batch"), scorings=("sum", "per-char"))


@pytest.fixture(scope="module")
def fruit():
    return load_task("fruit")


def _without_timings(results):
    for c in results["conditions"]:
        c.pop("seconds"), c.pop("ms_per_example"), c.pop("latency", None)
    return results


def _key(c):
    return c["style"], c["shots"], c["pick"], c["calibration"], c["scoring"]


def test_every_condition_is_scored_on_dev_and_only_the_chosen_one_on_test(tiny, fruit):
    results = compare_prompting(tiny, fruit, CFG)
    settings = [("plain", 0, None, 1), ("plain", 2, "random", 2), ("plain", 2, "similar", 1),
                ("chat", 0, None, 1), ("chat", 2, "random", 2), ("chat", 2, "similar", 1)]
    variants = [(c, s) for c in ("none", "content-free", "batch") for s in ("sum", "per-char")]
    assert [(c["style"], c["shots"], c["pick"], c["draws"], c["calibration"], c["scoring"])
            for c in results["conditions"]] == [(*a, *v) for a in settings for v in variants]
    assert results["chosen_on"] == "dev" and results["parameters"]["unchanged"] is True
    chosen = [c for c in results["conditions"] if c["chosen"]]
    assert len(chosen) == 1
    choice = results["choice"]
    assert chosen[0] is results["conditions"][choice["chosen"]] and choice["chosen"] in choice["tied"]
    assert choice["cv_items"] == min(CFG.cv_items, len(fruit.train)) > 0 and choice["split_items"] == len(fruit.dev)
    for c in results["conditions"]:
        assert c["selection"]["per_item"] == c["cv"]["accuracy"]["per_item"] and c["selection"]["on"] == "cv"
        assert c["selection"]["predictions"] == c["draws"] * choice["cv_items"]
        assert c["selection"]["ci95"][0] <= c["selection"]["mean"] <= c["selection"]["ci95"][1]
        acc = c["dev"]["accuracy"]
        assert len(acc["per_draw"]) == c["draws"] and acc["ci95"][0] <= acc["mean"] <= acc["ci95"][1]
        if c["chosen"]:
            assert len(c["predictions"]) == len(fruit.test) and set(c["predictions"]) <= set(fruit.labels)
            assert len(c["test"]["accuracy"]["per_draw"]) == c["draws"]
        else:
            assert c["test"] is None and c["predictions"] is None


def test_score_all_scores_every_condition_on_test_without_changing_the_choice(tiny, fruit):
    cfg = replace(CFG, formats=("plain",), calibrations=("none", "batch"))
    one, every = compare_prompting(tiny, fruit, cfg), compare_prompting(tiny, fruit, replace(cfg, score_all=True))
    assert all(c["test"] is not None for c in every["conditions"])
    assert [_key(c) for c in one["conditions"] if c["chosen"]] == [_key(c) for c in every["conditions"] if c["chosen"]]
    chosen = next(c for c in one["conditions"] if c["chosen"])
    assert chosen["test"] == next(c for c in every["conditions"] if c["chosen"])["test"]


def test_test_labels_never_touch_the_choice(tiny, fruit):
    """Poisoned test labels change test scores, and no dev score, chosen condition or draw."""
    labels = fruit.labels
    poisoned = replace(fruit, test=[replace(ex, target=labels[(labels.index(ex.target) + 1) % len(labels)])
                                    if ex.target in labels else ex for ex in fruit.test])
    cfg = replace(CFG, formats=("plain",), score_all=True)
    clean, dirty = compare_prompting(tiny, fruit, cfg), compare_prompting(tiny, poisoned, cfg)
    assert [(_key(c), c["dev"], c["chosen"]) for c in clean["conditions"]] == \
           [(_key(c), c["dev"], c["chosen"]) for c in dirty["conditions"]]
    assert [c["test"]["accuracy"]["mean"] for c in clean["conditions"]] != \
           [c["test"]["accuracy"]["mean"] for c in dirty["conditions"]], "the poison reached the test scores"


def test_without_a_dev_split_the_choice_is_made_on_test_and_says_so(tiny, fruit):
    results = compare_prompting(tiny, replace(fruit, dev=[]), PromptingConfig(shots=(0, 1), picks=("first",)))
    assert results["chosen_on"] == "test"
    assert all(c["dev"] is None and c["test"] is not None for c in results["conditions"])
    assert sum(c["chosen"] for c in results["conditions"]) == 1


def test_demonstrations_come_from_train_and_never_the_query(tiny, fruit, monkeypatch):
    seen = []
    real = predictor.render_prompt

    def spy(fmt, tok, demos, query):
        seen.append((demos, query))
        return real(fmt, tok, demos, query)

    monkeypatch.setattr(predictor, "render_prompt", spy)
    compare_prompting(tiny, fruit, CFG)
    train_ids = {ex.id for ex in fruit.train}
    allowed_queries = {ex.input for ex in fruit.dev + fruit.test + fruit.train} | {predictor.CONTENT_FREE}
    assert seen and any(query in {ex.input for ex in fruit.train} for _, query in seen), "train-CV items predicted"
    for demos, query in seen:
        assert query in allowed_queries
        assert all(d.id in train_ids for d in demos)
        assert not any(d.input.lower() == query.lower() for d in demos)


def test_an_item_in_train_and_dev_is_not_its_own_demonstration(tiny, fruit, monkeypatch):
    from dataclasses import replace

    leaked = replace(fruit, dev=fruit.dev[:3] + [fruit.train[0]])  # the same item in both splits
    picked = []
    real = prompting.pick_demos
    monkeypatch.setattr(prompting, "pick_demos",
                        lambda pool, q, k, m, s, **kw: picked.append((q, real(pool, q, k, m, s, **kw)))
                        or picked[-1][1])
    compare_prompting(tiny, leaked, PromptingConfig(shots=(3,), picks=("first",)))
    query, demos = next((q, d) for q, d in picked if q == fruit.train[0])
    assert query == fruit.train[0] and len(demos) == 3
    assert not any(is_same_item(d, query) for d in demos)


def test_results_are_deterministic(tiny, fruit):
    cfg = PromptingConfig(shots=(0, 2), picks=("random",), draws=2)
    assert _without_timings(compare_prompting(tiny, fruit, cfg)) == _without_timings(compare_prompting(tiny, fruit, cfg))


def test_calibration_divides_by_the_content_free_prompt(tiny, fruit):
    cfg = PromptingConfig(shots=(2,), picks=("random",), draws=1, calibrations=("content-free",), scorings=("sum",),
                          seed=7)
    results = compare_prompting(tiny, fruit, cfg)
    tok, fmt, labels = tiny.tokenizer, PromptFormat("plain", fruit.info.instruction), fruit.labels
    demos = prompting.pick_demos(fruit.train, fruit.test[0], 2, "random", 7)  # one fixed set for this draw
    conts = [encode_continuation(tok, render_continuation(fmt, tok, label)) for label in labels]

    def scores(query):
        prompt = encode_prompt(fmt, tok, render_prompt(fmt, tok, demos, query))
        return torch.log_softmax(score_continuations(tiny.model, [prompt], conts, pad_id=tok.pad_token_id)[0], -1)

    free = scores("N/A")
    expected = [labels[int((scores(ex.input) - free).argmax())] for ex in fruit.test
                if not any(is_same_item(d, ex) for d in demos)]
    got = [p for p, ex in zip(results["conditions"][0]["predictions"], fruit.test)
           if not any(is_same_item(d, ex) for d in demos)]
    assert got == expected


@pytest.mark.parametrize("targets, metric", [("text", "exact_match"), ("list", "list_f1")])
def test_open_task_uses_generation_and_its_metric(tiny, targets, metric):
    """An open task is scored by exact match; one whose targets are lists (synonyms declares so) by
    list F1, with list precision and recall beside it, on dev as on test."""
    task = load_task("synonyms", targets=targets)
    results = compare_prompting(tiny, task, PromptingConfig(shots=(0, 1), picks=("first",), max_new_tokens=8))
    assert results["metric"] == metric
    assert [(c["calibration"], c["scoring"]) for c in results["conditions"]] == [("none", "sum")] * 2, \
        "calibration and scoring apply to label ranking only"
    for c in results["conditions"]:
        assert 0.0 <= c["dev"][metric]["mean"] <= 1.0
        assert targets == "text" or {"list_precision", "list_recall"} <= set(c["dev"])
    chosen = next(c for c in results["conditions"] if c["chosen"])
    assert len(chosen["predictions"]) == len(task.test)


def test_more_shots_than_train_examples_is_refused(tiny, fruit):
    with pytest.raises(TuneforgeError, match=f"train split of 'fruit' has {len(fruit.train)} examples"):
        compare_prompting(tiny, fruit, PromptingConfig(shots=(len(fruit.train) + 1,)))


def test_an_over_long_row_stops_the_comparison_before_any_prediction(tiny, fruit, monkeypatch):
    from dataclasses import replace

    from tuneforge.data.tasks import Example

    text = " ".join(f"word{i}" for i in range(400))
    n = len(tiny.tokenizer(text, add_special_tokens=False)["input_ids"])
    long_task = replace(fruit, test=fruit.test[:3] + [Example(text, "drupe", "long-1")])
    monkeypatch.setattr(predictor, "score_continuations", lambda *a, **k: pytest.fail("predicted before the check"))
    with pytest.raises(TuneforgeError, match=f"test example 'long-1': input is {n:,} tokens; the limit is 512"):
        compare_prompting(tiny, long_task, PromptingConfig(shots=(0,)))
    assert n > 512
    monkeypatch.undo()  # a limit raised to the row's length lets it through
    results = compare_prompting(tiny, long_task, PromptingConfig(shots=(0,), max_input_tokens=n))
    assert results["config"]["max_input_tokens"] == n and len(results["conditions"][0]["predictions"]) == 4


def test_the_results_record_carries_the_task_warnings(tiny, fruit):
    from dataclasses import replace

    leaked = replace(fruit, test=fruit.test[:2] + fruit.train[:1])
    results = compare_prompting(tiny, leaked, PromptingConfig(shots=(0,)))
    assert results["task"]["warnings"] == [
        "1 of 3 test inputs also appear in train (duplicates across splits inflate the test score)"]


@pytest.mark.parametrize("kwargs, message", [
    ({"shots": (-1,)}, "non-negative"),
    ({"picks": ("best",)}, "unknown demonstration picker 'best'"),
    ({"formats": ("yaml",)}, "unknown prompt format 'yaml'"),
    ({"calibrations": ()}, "give at least one calibration"),
    ({"scorings": ()}, "give at least one scoring"),
    ({"draws": 0}, "at least 1"),
    ({"max_input_tokens": 0}, "max input tokens must be at least 1"),
    ({"calibrations": ("contextual",)}, "unknown calibration 'contextual': choose none, content-free, batch"),
    ({"scorings": ("mean",)}, "unknown scoring 'mean': choose sum, per-char"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(TuneforgeError, match=message):
        PromptingConfig(**kwargs)


def test_the_default_grid_covers_pickers_calibrations_and_scorings():
    cfg = PromptingConfig()
    assert (cfg.shots, cfg.picks) == ((0, 1, 5), ("random", "similar", "balanced"))
    assert (cfg.calibrations, cfg.scorings, cfg.score_all) == (("none", "batch"), ("sum", "per-char"), False)


def test_balanced_picking_is_drawn_like_random_and_reaches_the_predictor(tiny, fruit, monkeypatch):
    seen = []
    real = predictor.render_prompt
    monkeypatch.setattr(predictor, "render_prompt",
                        lambda fmt, tok, demos, q: seen.append(demos) or real(fmt, tok, demos, q))
    cfg = PromptingConfig(shots=(3,), picks=("balanced",), draws=2)
    condition = compare_prompting(tiny, fruit, cfg)["conditions"][0]
    assert (condition["pick"], condition["draws"], condition["seeds"]) == ("balanced", 2, [0, 1])
    assert all(len({d.target for d in demos}) == 3 for demos in seen), "3 shots cover 3 labels"


def test_batch_calibration_and_per_char_scoring_reach_the_predictor_with_the_dev_prior(tiny, fruit):
    """Test is calibrated against the label prior estimated on dev (kept, so the store ranks alike),
    not against test's own."""
    cfg = PromptingConfig(shots=(0,), calibrations=("batch",), scorings=("per-char",))
    condition = compare_prompting(tiny, fruit, cfg)["conditions"][0]
    fmt = PromptFormat("plain", fruit.info.instruction)
    prior = predictor.Predictor(tiny, fmt, fruit.labels).predict(fruit.dev).prior("per-char")
    assert condition["priors"][0] == pytest.approx(prior.tolist())
    out = predictor.Predictor(tiny, fmt, fruit.labels, calibration="batch", scoring="per-char",
                              prior=prior).predict(fruit.test)
    assert condition["predictions"] == out.outputs


def test_balanced_on_an_open_task_falls_back_to_random(tiny):
    task = load_task("synonyms")
    cfg = dict(shots=(1,), max_new_tokens=4, draws=1, score_all=True)
    balanced = compare_prompting(tiny, task, PromptingConfig(picks=("balanced",), **cfg))["conditions"][0]
    drawn = compare_prompting(tiny, task, PromptingConfig(picks=("random",), **cfg))["conditions"][0]
    assert balanced["predictions"] == drawn["predictions"]


def _condition(shots, calibration="none", scoring="sum", per_item=(1.0,)):
    return {"shots": shots, "calibration": calibration, "scoring": scoring, "selection": {"per_item": list(per_item)}}


# each case: conditions as (shots, calibration, scoring, per-item scores), the expected chosen, best and tied
CHOICES = {
    "one condition": ([(0, "none", "sum", [1, 0, 1])], 0, 0, [0]),
    "a clear winner with more shots": ([(0, "none", "sum", [0] * 20), (5, "none", "sum", [1] * 20)], 1, 1, [1]),
    "equal scores: the fewest shots": ([(5, "none", "sum", [1, 0] * 10), (0, "none", "sum", [1, 0] * 10)], 1, 0,
                                       [0, 1]),
    "a noisy lead: the simpler within one SE": ([(0, "none", "sum", [1, 0, 1, 0, 1, 0, 1, 0]),
                                                 (5, "none", "sum", [1, 0, 1, 0, 1, 0, 1, 1])], 0, 1, [0, 1]),
    "a lead beyond one SE is kept": ([(0, "none", "sum", [1, 0] * 20), (5, "none", "sum", [1, 1] * 20)], 1, 1, [1]),
    "uncalibrated before calibrated": ([(5, "batch", "sum", [1, 0, 1, 1]), (5, "none", "sum", [1, 0, 1, 1])], 1, 0,
                                       [0, 1]),
    "summed before per-char": ([(1, "none", "per-char", [1, 1, 0]), (1, "none", "sum", [1, 1, 0])], 1, 0, [0, 1]),
    "equally simple ties: the better mean": ([(1, "none", "sum", [1, 0, 1, 0, 1, 0, 0, 0]),
                                              (1, "none", "sum", [1, 0, 1, 0, 1, 0, 1, 0])], 1, 1, [0, 1]),
}


@pytest.mark.parametrize("case", CHOICES)
def test_choose_condition_prefers_the_simplest_of_those_tied_within_noise(case):
    specs, chosen, best, tied = CHOICES[case]
    choice = prompting.choose_condition([_condition(*spec) for spec in specs])
    assert (choice["chosen"], choice["best"], choice["tied"]) == (chosen, best, tied)


def test_cv_items_are_a_seeded_train_sample_and_none_where_train_cannot_spare_the_shots(fruit):
    cfg = PromptingConfig(shots=(0, 5), cv_items=10)
    sample = prompting.cv_sample(fruit, cfg)
    assert len(sample) == 10 and sample == prompting.cv_sample(fruit, cfg)
    assert {ex.id for ex in sample} <= {ex.id for ex in fruit.train}
    assert prompting.cv_sample(fruit, replace(cfg, seed=1)) != sample
    assert prompting.cv_sample(fruit, replace(cfg, cv_items=0)) == []
    assert len(prompting.cv_sample(fruit, replace(cfg, cv_items=10**6))) == len(fruit.train)
    assert prompting.cv_sample(replace(fruit, train=fruit.train[:5]), cfg) == []


def test_the_chosen_condition_alone_is_timed_like_every_route(tiny, fruit):
    from tuneforge.predict import timing

    results = compare_prompting(tiny, fruit, PromptingConfig(shots=(0, 1), picks=("similar",), cv_items=4))
    timed = [c for c in results["conditions"] if "latency" in c]
    assert timed == [c for c in results["conditions"] if c["chosen"]]
    latency = timed[0]["latency"]
    assert (latency["items"], latency["repeats"]) == (min(timing.TIMED_ITEMS, len(fruit.test)), timing.REPEATS)
    assert timed[0]["ms_per_example"] == latency["ms_per_example"] == sorted(latency["spread_ms"])[1]


@pytest.mark.parametrize("choose_on", ["cv+dev", "dev"])
def test_the_choice_can_pool_dev_with_train_cv_or_rest_on_dev(tiny, fruit, choose_on):
    cfg = PromptingConfig(shots=(0, 1), picks=("first",), cv_items=6, choose_on=choose_on)
    results = compare_prompting(tiny, fruit, cfg)
    for c in results["conditions"]:
        dev = c["dev"]["accuracy"]["per_item"]
        if choose_on == "dev":
            assert c["cv"] is None and c["selection"]["per_item"] == dev
        else:
            assert c["selection"]["per_item"] == dev + c["cv"]["accuracy"]["per_item"]
        assert c["selection"]["on"] == choose_on
    with pytest.raises(TuneforgeError, match="unknown choose_on 'test'"):
        PromptingConfig(choose_on="test")


def test_without_cv_items_the_choice_rests_on_dev_alone(tiny, fruit):
    results = compare_prompting(tiny, fruit, PromptingConfig(shots=(0, 1), picks=("first",), cv_items=0))
    assert results["choice"]["cv_items"] == 0
    assert all(c["cv"] is None and c["selection"]["items"] == len(fruit.dev) for c in results["conditions"])
