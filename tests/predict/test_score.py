import pytest
import torch

from tuneforge.predict.score import score_continuations, score_naive

PROMPTS = ["plum: drupe\npear: pome\nlemon:", "apple:", "Give the botanical fruit type.\npeach: drupe\nbanana:"]
CONTINUATIONS = [" drupe\n", " pome\n", " hesperidium\n", " xylophone quartz\n", " jazz\n"]


def _encode(tok):
    prompts = [tok(p).input_ids for p in PROMPTS]
    conts = [tok(c, add_special_tokens=False).input_ids for c in CONTINUATIONS]
    return prompts, conts


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_batched_scores_equal_one_forward_per_candidate(tiny, batch_size):
    prompts, conts = _encode(tiny.tokenizer)
    assert len({len(p) for p in prompts}) == len(prompts), "prompts of different lengths exercise left padding"
    assert len({len(c) for c in conts}) > 1, "candidates of different lengths exercise right padding"
    batched = score_continuations(tiny.model, prompts, conts, pad_id=tiny.tokenizer.pad_token_id,
                                  batch_size=batch_size)
    naive = torch.tensor([[score_naive(tiny.model, p, c) for c in conts] for p in prompts])
    assert batched.shape == (len(prompts), len(conts))
    torch.testing.assert_close(batched, naive, atol=1e-4, rtol=1e-5)


def test_single_token_candidates(tiny):
    prompts, _ = _encode(tiny.tokenizer)
    conts = [[5], [7], [11]]
    batched = score_continuations(tiny.model, prompts, conts, pad_id=tiny.tokenizer.pad_token_id)
    naive = torch.tensor([[score_naive(tiny.model, p, c) for c in conts] for p in prompts])
    torch.testing.assert_close(batched, naive, atol=1e-4, rtol=1e-5)


def test_scores_are_log_probabilities(tiny):
    prompts, _ = _encode(tiny.tokenizer)
    every_token = [[i] for i in range(len(tiny.tokenizer))]
    scores = score_continuations(tiny.model, prompts, every_token, pad_id=tiny.tokenizer.pad_token_id)
    assert (scores <= 0).all()
    torch.testing.assert_close(scores.exp().sum(-1), torch.ones(len(prompts)), atol=1e-4, rtol=0)


def test_empty_candidate_is_refused(tiny):
    with pytest.raises(ValueError, match="at least one token"):
        score_continuations(tiny.model, [[1, 2]], [[3], []], pad_id=0)
