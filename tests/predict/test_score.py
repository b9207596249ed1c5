import pytest
import torch

from tuneforge.data.splits import load_task
from tuneforge.predict.score import prefix_groups, score_continuations, score_naive
from tuneforge.prompts.formats import PromptFormat, encode_continuation, encode_prompt, render_prompt
from tuneforge.prompts.shots import pick_demos

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


# Shared prefixes: the prefix run once and its cache reused must score exactly as each prompt run whole.

A, B = list(range(100, 140)), list(range(200, 240))  # two 40-token "demonstration sets"


@pytest.mark.parametrize("prompts, expected", [
    ([A + [1], A + [2, 3], A + [4]], [(40, [0, 1, 2])]),
    ([A[:20] + B + [1], A + [2], A[:20] + B + [3], A + [4], A[:20] + B + [5], A + [6]],
     [(40, [1, 3, 5]), (60, [0, 2, 4])]),  # two demonstration sets, not just their first 20 tokens
    ([B + [1], A + [2], A + [3], A + [4]], [(0, [0]), (40, [1, 2, 3])]),  # the odd one out runs alone
    ([A[:15] + [i] for i in range(4)], [(0, [0, 1, 2, 3])]),  # too short to pay for a group
    ([A + [1], A + [2]], [(0, [0, 1])]),  # too few to pay for a group
    ([A, A, A], [(39, [0, 1, 2])]),  # identical prompts keep their last token
    ([A], [(0, [0])]),
    ([], []),
])
def test_prefix_groups(prompts, expected):
    assert sorted((width, sorted(rows)) for width, rows in prefix_groups(prompts)) == expected


@pytest.fixture(scope="module")
def fruit():
    return load_task("fruit")


def _fruit_prompts(tok, task, seeds):
    """Plain 3-shot prompts for test items, item i after the random draw `seeds[i % len(seeds)]`."""
    fmt = PromptFormat("plain", task.info.instruction)
    items = task.test[:8]
    return [encode_prompt(fmt, tok, render_prompt(fmt, tok, pick_demos(task.train, ex, 3, "random",
                                                                        seeds[i % len(seeds)]), ex.input))
            for i, ex in enumerate(items)]


def _one_token_suffixes(tok, task):
    """Prompts that are all prefix but their last token."""
    base = _fruit_prompts(tok, task, [0])[0]
    return [base + [t] for t in (5, 7, 11, 13)]


@pytest.mark.parametrize("batch_size", [3, 16])
@pytest.mark.parametrize("labels", ["fruit", "one-token"])
@pytest.mark.parametrize("make, groups, padded", [
    pytest.param(lambda tok, task: _fruit_prompts(tok, task, [0]), 1, True, id="same demos"),
    pytest.param(lambda tok, task: _fruit_prompts(tok, task, [0, 1]), 2, True, id="two demo sets"),
    pytest.param(_one_token_suffixes, 1, False, id="one-token suffixes"),
])
def test_shared_prefix_scores_equal_todays_path_and_the_naive_loop(tiny, fruit, make, groups, padded, labels,
                                                                   batch_size):
    tok = tiny.tokenizer
    prompts = make(tok, fruit)
    conts = ([encode_continuation(tok, f" {label}\n") for label in fruit.labels] if labels == "fruit"
             else [[5], [7], [11]])
    found = prefix_groups(prompts)
    assert len(found) == groups and all(width > 16 for width, _ in found), "every prompt shares a long prefix"
    suffix_lengths = {len(prompts[i]) - width for width, rows in found for i in rows}
    assert (len(suffix_lengths) > 1) == padded, "suffixes of different lengths are left-padded"
    pad = tok.pad_token_id
    shared = score_continuations(tiny.model, prompts, conts, pad_id=pad, batch_size=batch_size)
    today = score_continuations(tiny.model, prompts, conts, pad_id=pad, batch_size=batch_size, share_prefix=False)
    naive = torch.tensor([[score_naive(tiny.model, p, c) for c in conts] for p in prompts])
    torch.testing.assert_close(shared, today, atol=1e-4, rtol=0)
    torch.testing.assert_close(shared, naive, atol=1e-4, rtol=0)
    assert shared.argmax(-1).tolist() == today.argmax(-1).tolist()


def test_shared_prefix_is_run_once(tiny, fruit):
    """Positions run: the prefix once, then each suffix and the candidates' later tokens packed
    without padding (T in all); not the prefix per prompt, nor every candidate padded to the longest."""
    tok = tiny.tokenizer
    prefix = _fruit_prompts(tok, fruit, [0])[0][:-1]
    prompts = [prefix + [10 + i, 20, 30] for i in range(6)]  # one 3-token suffix each: no padding
    conts = [encode_continuation(tok, f" {label}\n") for label in fruit.labels]
    N, K, P, S, L = len(prompts), len(conts), len(prefix), 3, max(len(c) for c in conts)
    T = sum(len(c) - 1 for c in conts)
    assert T < K * (L - 1)  # the labels differ in length: padding them would run more
    seen = []
    hook = tiny.model.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["input_ids"].numel()),
                                                with_kwargs=True)
    try:
        score_continuations(tiny.model, prompts, conts, pad_id=tok.pad_token_id)
        shared, seen[:] = sum(seen), []
        score_continuations(tiny.model, prompts, conts, pad_id=tok.pad_token_id, share_prefix=False)
        today = sum(seen)
    finally:
        hook.remove()
    assert shared == P + N * S + N * T
    assert today == N * (P + S) + N * T
