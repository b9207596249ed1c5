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
                      calibrate=True, split="dev")


@pytest.fixture(scope="module")
def fruit():
    return load_task("fruit")


def _without_timings(results):
    for c in results["conditions"]:
        c.pop("seconds"), c.pop("ms_per_example")
    return results


def test_conditions_draws_and_unchanged_parameters(tiny, fruit):
    results = compare_prompting(tiny, fruit, CFG)
    assert [(c["style"], c["shots"], c["pick"], c["draws"]) for c in results["conditions"]] == [
        ("plain", 0, None, 1), ("plain", 2, "random", 2), ("plain", 2, "similar", 1),
        ("chat", 0, None, 1), ("chat", 2, "random", 2), ("chat", 2, "similar", 1),
    ]
    assert results["parameters"]["unchanged"] is True
    assert results["parameters"]["before"] == results["parameters"]["after"]
    for c in results["conditions"]:
        assert set(c["variants"]) == {"raw", "calibrated"}
        acc = c["variants"]["raw"]["accuracy"]
        assert len(acc["per_draw"]) == c["draws"]
        assert acc["ci95"][0] <= acc["mean"] <= acc["ci95"][1]
        assert len(c["predictions"]["raw"]) == len(fruit.dev)
        assert set(c["predictions"]["raw"]) <= set(fruit.labels)


def test_demonstrations_come_from_train_and_never_the_query(tiny, fruit, monkeypatch):
    seen = []
    real = predictor.render_prompt

    def spy(fmt, tok, demos, query):
        seen.append((demos, query))
        return real(fmt, tok, demos, query)

    monkeypatch.setattr(predictor, "render_prompt", spy)
    compare_prompting(tiny, fruit, CFG)
    train_ids = {ex.id for ex in fruit.train}
    allowed_queries = {ex.input for ex in fruit.dev} | {predictor.CONTENT_FREE}
    test_inputs = {ex.input for ex in fruit.test}
    assert seen
    for demos, query in seen:
        assert query in allowed_queries and query not in test_inputs
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
    compare_prompting(tiny, leaked, PromptingConfig(shots=(3,), picks=("first",), split="dev"))
    query, demos = picked[-1]
    assert query == fruit.train[0] and len(demos) == 3
    assert not any(is_same_item(d, query) for d in demos)


def test_results_are_deterministic(tiny, fruit):
    cfg = PromptingConfig(shots=(0, 2), picks=("random",), draws=2, calibrate=True, split="dev")
    assert _without_timings(compare_prompting(tiny, fruit, cfg)) == _without_timings(compare_prompting(tiny, fruit, cfg))


def test_calibration_divides_by_the_content_free_prompt(tiny, fruit):
    cfg = PromptingConfig(shots=(2,), picks=("random",), draws=1, calibrate=True, split="dev", seed=7)
    results = compare_prompting(tiny, fruit, cfg)
    tok, fmt, labels = tiny.tokenizer, PromptFormat("plain", fruit.info.instruction), fruit.labels
    demos = prompting.pick_demos(fruit.train, fruit.dev[0], 2, "random", 7)  # one fixed set for this draw
    conts = [encode_continuation(tok, render_continuation(fmt, tok, label)) for label in labels]

    def scores(query):
        prompt = encode_prompt(fmt, tok, render_prompt(fmt, tok, demos, query))
        return torch.log_softmax(score_continuations(tiny.model, [prompt], conts, pad_id=tok.pad_token_id)[0], -1)

    free = scores("N/A")
    expected = [labels[int((scores(ex.input) - free).argmax())] for ex in fruit.dev
                if not any(is_same_item(d, ex) for d in demos)]
    got = [p for p, ex in zip(results["conditions"][0]["predictions"]["calibrated"], fruit.dev)
           if not any(is_same_item(d, ex) for d in demos)]
    assert got == expected


def test_open_task_uses_generation_and_exact_match(tiny):
    task = load_task("synonyms")
    results = compare_prompting(tiny, task, PromptingConfig(shots=(0, 1), picks=("first",), split="dev",
                                                            max_new_tokens=8, calibrate=True))
    assert results["metric"] == "exact_match"
    for c in results["conditions"]:
        assert set(c["variants"]) == {"raw"}, "calibration applies to label ranking only"
        assert len(c["predictions"]["raw"]) == len(task.dev)
        assert 0.0 <= c["variants"]["raw"]["exact_match"]["mean"] <= 1.0


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
    assert results["config"]["max_input_tokens"] == n and len(results["conditions"][0]["predictions"]["raw"]) == 4


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
    ({"split": "train"}, "dev or test"),
    ({"draws": 0}, "at least 1"),
    ({"max_input_tokens": 0}, "max input tokens must be at least 1"),
    ({"calibration": "contextual"}, "unknown calibration 'contextual': choose content-free, batch"),
    ({"scoring": "mean"}, "unknown scoring 'mean': choose sum, per-char"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(TuneforgeError, match=message):
        PromptingConfig(**kwargs)


def test_the_new_options_default_to_todays_behaviour():
    cfg = PromptingConfig()
    assert (cfg.calibrate, cfg.calibration, cfg.scoring) == (False, "content-free", "sum")
    assert cfg.picks == ("random", "similar")
    assert PromptingConfig(picks=("balanced",)).picks == ("balanced",)


def test_balanced_picking_is_drawn_like_random_and_reaches_the_predictor(tiny, fruit, monkeypatch):
    seen = []
    real = predictor.render_prompt
    monkeypatch.setattr(predictor, "render_prompt",
                        lambda fmt, tok, demos, q: seen.append(demos) or real(fmt, tok, demos, q))
    cfg = PromptingConfig(shots=(3,), picks=("balanced",), draws=2, split="dev", calibrate=True,
                          calibration="batch", scoring="per-char")
    condition = compare_prompting(tiny, fruit, cfg)["conditions"][0]
    assert (condition["pick"], condition["draws"], condition["seeds"]) == ("balanced", 2, [0, 1])
    assert set(condition["variants"]) == {"raw", "calibrated"}
    assert all(len({d.target for d in demos}) == 3 for demos in seen), "3 shots cover 3 labels"


def test_batch_calibration_and_per_char_scoring_reach_the_predictor(tiny, fruit):
    cfg = PromptingConfig(shots=(0,), split="dev", calibrate=True, calibration="batch", scoring="per-char")
    got = compare_prompting(tiny, fruit, cfg)["conditions"][0]["predictions"]
    out = predictor.Predictor(tiny, PromptFormat("plain", fruit.info.instruction), fruit.labels, calibrate=True,
                              calibration="batch", scoring="per-char").predict(fruit.dev)
    assert got == {"raw": out.outputs, "calibrated": out.calibrated}


def test_balanced_on_an_open_task_falls_back_to_random(tiny):
    task = load_task("synonyms")
    cfg = dict(shots=(1,), split="dev", max_new_tokens=4, draws=1)
    balanced = compare_prompting(tiny, task, PromptingConfig(picks=("balanced",), **cfg))["conditions"][0]
    drawn = compare_prompting(tiny, task, PromptingConfig(picks=("random",), **cfg))["conditions"][0]
    assert balanced["predictions"] == drawn["predictions"]
