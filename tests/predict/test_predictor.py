"""The one predictor against the low-level engines it drives, on the tiny random model."""

import math

import pytest
import torch

from tuneforge.data.splits import load_task
from tuneforge.predict.generate import generate_lines
from tuneforge.predict.predictor import CONTENT_FREE, Predictor, batch_calibrate, per_char
from tuneforge.predict.score import score_continuations
from tuneforge.prompts.formats import PromptFormat, encode_continuation, encode_prompt, render_continuation
from tuneforge.prompts.formats import render_prompt


@pytest.fixture(scope="module")
def fruit():
    return load_task("fruit")


def _scores(tiny, fmt, labels, demos, query):
    """Log-probabilities of each label after one prompt, one prompt at a time."""
    tok = tiny.tokenizer
    prompt = encode_prompt(fmt, tok, render_prompt(fmt, tok, demos, query))
    conts = [encode_continuation(tok, render_continuation(fmt, tok, label)) for label in labels]
    return score_continuations(tiny.model, [prompt], conts, pad_id=tok.pad_token_id)[0]  # (K,)


@pytest.mark.parametrize("style", ["plain", "chat"])
def test_labels_are_ranked_after_each_items_own_demonstrations(tiny, fruit, style):
    fmt, items = PromptFormat(style, fruit.info.instruction), fruit.dev[:5]
    demos = [fruit.train[i : i + 2] for i in range(len(items))]  # a different set for each item
    out = Predictor(tiny, fmt, fruit.labels, batch_size=2).predict(items, demos)
    expected = torch.stack([_scores(tiny, fmt, fruit.labels, d, ex.input) for d, ex in zip(demos, items)])
    torch.testing.assert_close(out.scores, expected, atol=1e-4, rtol=1e-5)
    assert out.outputs == [fruit.labels[i] for i in expected.argmax(-1).tolist()]
    assert out.free is None and out.ranked() == out.outputs


def test_calibration_divides_by_each_demonstration_sets_content_free_prompt(tiny, fruit):
    fmt, items = PromptFormat("plain", fruit.info.instruction), fruit.dev[:6]
    sets = [fruit.train[:2], fruit.train[2:4]]
    demos = [sets[i % 2] for i in range(len(items))]  # two sets, interleaved
    out = Predictor(tiny, fmt, fruit.labels, calibration="content-free").predict(items, demos)
    expected = []
    for d, ex in zip(demos, items):
        scores = torch.log_softmax(_scores(tiny, fmt, fruit.labels, d, ex.input), -1)
        prior = torch.log_softmax(_scores(tiny, fmt, fruit.labels, d, CONTENT_FREE), -1)
        expected.append(fruit.labels[int((scores - prior).argmax())])
    assert out.outputs == expected == out.ranked("content-free")
    assert out.ranked() == [fruit.labels[i] for i in out.scores.argmax(-1).tolist()], "the raw ranking is kept"
    with pytest.raises(ValueError, match="content-free"):
        Predictor(tiny, fmt, fruit.labels).predict(items, demos).ranked("content-free")


def test_without_labels_the_first_generated_line_is_the_answer(tiny):
    task = load_task("synonyms")
    fmt, items = PromptFormat("plain"), task.dev[:4]
    out = Predictor(tiny, fmt, None, batch_size=3, max_new_tokens=6, calibration="batch").predict(items)
    tok = tiny.tokenizer
    prompts = [encode_prompt(fmt, tok, render_prompt(fmt, tok, [], ex.input)) for ex in items]
    assert out.outputs == generate_lines(tiny.model, tok, prompts, max_new_tokens=6)
    assert out.scores is None and out.free is None, "generation is neither scored nor calibrated"


def test_no_demonstrations_means_zero_shot_and_no_items_means_no_work(tiny, fruit):
    predictor = Predictor(tiny, PromptFormat("plain"), fruit.labels)
    items = fruit.dev[:3]
    zero_shot, no_demos = predictor.predict(items), predictor.predict(items, [[] for _ in items])
    assert zero_shot.outputs == no_demos.outputs and torch.equal(zero_shot.scores, no_demos.scores)
    assert predictor.predict([]).outputs == []


def test_a_demonstration_list_per_item_is_required(tiny, fruit):
    with pytest.raises(ValueError):
        Predictor(tiny, PromptFormat("plain"), fruit.labels).predict(fruit.dev[:3], [[]])


# ---------------------------------------------------------------- batch calibration, per-char scoring


def test_batch_calibrate_subtracts_the_log_of_the_mean_label_probability():
    probs = torch.tensor([[0.6, 0.4], [0.8, 0.2], [0.7, 0.3]])  # (N=3, K=2); prior = (0.7, 0.3)
    scores = probs.log() + torch.tensor([[5.0], [-2.0], [0.5]])  # unnormalised: a constant per row
    expected = torch.tensor([[math.log(0.6 / 0.7), math.log(0.4 / 0.3)],
                             [math.log(0.8 / 0.7), math.log(0.2 / 0.3)],
                             [0.0, 0.0]])
    torch.testing.assert_close(batch_calibrate(scores), expected)
    # The majority label wins every raw argmax; calibrated, the first item goes to the other label.
    assert scores.argmax(-1).tolist() == [0, 0, 0]
    assert batch_calibrate(scores)[:2].argmax(-1).tolist() == [1, 0]


def test_batch_calibrate_prior_is_the_mean_of_probabilities_not_of_log_probabilities():
    probs = torch.tensor([[0.98, 0.02], [0.02, 0.98], [0.5, 0.5]])  # (3, 2); mean prob (0.5, 0.5): a no-op
    calibrated = batch_calibrate(probs.log())
    torch.testing.assert_close(calibrated, probs.log() - math.log(0.5))


def test_per_char_ranks_a_long_label_above_a_short_one_with_a_higher_sum():
    scores = torch.tensor([[-6.0, -10.0], [-3.0, -30.0]])  # (N=2, K=2) summed log-likelihoods
    lengths = torch.tensor([3.0, 10.0])  # (K,) characters: a short and a long label
    torch.testing.assert_close(per_char(scores, lengths), torch.tensor([[-2.0, -1.0], [-1.0, -3.0]]))
    assert scores.argmax(-1).tolist() == [0, 0]
    assert per_char(scores, lengths).argmax(-1).tolist() == [1, 0]


@pytest.mark.parametrize("style", ["plain", "chat"])
def test_per_char_scoring_divides_by_each_rendered_labels_length(tiny, fruit, style):
    fmt, items = PromptFormat(style, fruit.info.instruction), fruit.dev[:5]
    out = Predictor(tiny, fmt, fruit.labels, scoring="per-char").predict(items)
    summed = torch.stack([_scores(tiny, fmt, fruit.labels, [], ex.input) for ex in items])  # (N, K)
    lengths = torch.tensor([float(len(render_continuation(fmt, tiny.tokenizer, label))) for label in fruit.labels])
    torch.testing.assert_close(out.scores, summed, atol=1e-4, rtol=1e-5)
    assert out.outputs == [fruit.labels[i] for i in (summed / lengths).argmax(-1).tolist()]
    assert out.ranked("none", "sum") == [fruit.labels[i] for i in summed.argmax(-1).tolist()]


def test_batch_calibration_uses_the_items_predicted_together(tiny, fruit):
    fmt, items = PromptFormat("plain", fruit.info.instruction), fruit.dev[:8]
    out = Predictor(tiny, fmt, fruit.labels, calibration="batch").predict(items)
    summed = torch.stack([_scores(tiny, fmt, fruit.labels, [], ex.input) for ex in items])  # (N, K)
    logp = torch.log_softmax(summed, -1)
    expected = logp - logp.exp().mean(0).log()
    assert out.outputs == [fruit.labels[i] for i in expected.argmax(-1).tolist()]
    assert out.ranked() == [fruit.labels[i] for i in summed.argmax(-1).tolist()], "raw stays raw"


def test_per_char_scoring_comes_before_batch_calibration(tiny, fruit):
    fmt, items = PromptFormat("plain", fruit.info.instruction), fruit.dev[:8]
    out = Predictor(tiny, fmt, fruit.labels, calibration="batch", scoring="per-char").predict(items)
    expected = batch_calibrate(per_char(out.scores, out.lengths))
    assert out.outputs == [fruit.labels[i] for i in expected.argmax(-1).tolist()]


@pytest.mark.parametrize("kwargs", [{"calibration": "N/A"}, {"scoring": "mean"}])
def test_unknown_calibration_or_scoring_is_refused(tiny, fruit, kwargs):
    with pytest.raises(ValueError, match="content-free"):
        Predictor(tiny, PromptFormat("plain"), fruit.labels, **kwargs)
