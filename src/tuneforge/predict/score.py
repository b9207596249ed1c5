"""Label ranking: the log-likelihood of each candidate continuation after each prompt, batched.

Each prompt is run once (left-padded, KV cache kept); the candidates' later tokens then run on top
of it packed into one row (a 4D mask keeps each candidate to the prompt and its own tokens). So a
prompt of P tokens and K candidates of lengths l_k cost P + Σ(l_k - 1) token positions, not
K·(P + L) as in a loop over candidates, and no candidate is padded. Only the logits that score a
candidate token are computed.

Prompts that share a long token prefix (the instruction and the same demonstrations, as random,
balanced and first-k picks give every item) share its cache too: the prefix is run once, batch 1,
and each batch runs only its prompts' suffixes on top of a copy of it. N prompts with a p-token
prefix then cost p + Σ(P - p) positions before the candidates, not Σ P.
"""

import copy
from dataclasses import dataclass

import torch

from tuneforge.predict.padding import left_pad, length_batches

GROUP_COST = 64
"""What a group with its own shared prefix costs beyond its positions, in positions: its extra forward
passes (the prefix, and the group's own part-filled batches)."""


@torch.inference_mode()
def score_continuations(
    model, prompts: list[list[int]], continuations: list[list[int]], *, pad_id: int, batch_size: int = 16,
    share_prefix: bool = True,
) -> torch.Tensor:
    """Summed log-probability of every continuation after every prompt: a float32 tensor (N, K).

    `prompts` are token-id lists (N of them); `continuations` are the K candidate token-id lists,
    shared by all prompts. Prompts are grouped by shared prefix (`prefix_groups`; none with
    `share_prefix` False), then bucketed by length to cut padding."""
    if any(len(c) == 0 for c in continuations):
        raise ValueError("every continuation needs at least one token")
    scores = torch.empty(len(prompts), len(continuations))
    labels = PackedLabels.of(continuations)
    groups = prefix_groups(prompts) if share_prefix else [(0, list(range(len(prompts))))]
    for width, rows in groups:
        prefix = _prefix_cache(model, prompts[rows[0]][:width]) if width else None
        suffixes = [prompts[i][width:] for i in rows]
        for batch in length_batches(suffixes, batch_size):
            picked = [rows[j] for j in batch]
            scores[picked] = _score_batch(model, prefix, [suffixes[j] for j in batch], labels, pad_id)
    return scores


def prefix_groups(prompts: list[list[int]], group_cost: int = GROUP_COST) -> list[tuple[int, list[int]]]:
    """The prompts' row indices grouped by a shared token prefix, as (prefix length, rows) pairs.

    A group of n prompts sharing a p-token prefix runs (n-1)·p fewer positions, less `group_cost`;
    the grouping saves the most. A prefix leaves every prompt at least one token of its own. The rows
    with no prefix worth sharing come last, as one group of prefix length 0."""
    order = sorted(range(len(prompts)), key=prompts.__getitem__)  # prompts sharing a prefix end up adjacent
    links = [_common(prompts[a], prompts[b]) for a, b in zip(order, order[1:])]  # (N-1,) neighbours' prefix
    runs = _split(links, [len(prompts[i]) for i in order], 0, len(order), group_cost)[1]
    alone = [i for width, lo, hi in runs if not width for i in order[lo:hi]]
    return [(width, order[lo:hi]) for width, lo, hi in runs if width] + ([(0, alone)] if alone else [])


def _split(links, lengths, lo, hi, group_cost) -> tuple[int, list[tuple[int, int, int]]]:
    """(positions saved, runs (prefix length, lo, hi)): the best cut of the sorted rows lo:hi.

    In sorted order a run's common prefix is its shortest neighbour link; cutting at every such link
    may let the parts share longer prefixes."""
    if hi - lo <= 1:
        return 0, [(0, lo, hi)]
    least = min(links[lo : hi - 1])
    width = min(least, min(lengths[lo:hi]) - 1)
    whole = max(0, (hi - lo - 1) * width - group_cost)
    cuts = [lo] + [i + 1 for i in range(lo, hi - 1) if links[i] == least] + [hi]
    parts = [_split(links, lengths, a, b, group_cost) for a, b in zip(cuts, cuts[1:])]
    saved = sum(s for s, _ in parts)
    if saved > whole:
        return saved, [run for _, runs in parts for run in runs]
    return whole, [(width if whole else 0, lo, hi)]


def _common(a: list[int], b: list[int]) -> int:
    """The length of the common prefix of two token-id lists."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _prefix_cache(model, prefix: list[int]):
    """The KV cache of one prefix, run alone (batch 1)."""
    ids = torch.tensor([prefix], device=model.device)  # (1, p)
    return model(input_ids=ids, use_cache=True, logits_to_keep=1).cache


def _score_batch(model, prefix, prompts, labels: "PackedLabels", pad_id) -> torch.Tensor:
    """(B, K) scores of B prompts, each the tokens after `prefix` (a KV cache of p tokens, or None)."""
    ids, mask = left_pad(prompts, pad_id)  # (B, P)
    ids, mask = ids.to(model.device), mask.to(model.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens start at position 0
    cache = None
    if prefix is not None:  # [prefix][pads][suffix]: the suffix's positions go on where the prefix ends
        B = ids.shape[0]
        cache = copy.deepcopy(prefix)  # forward passes grow a cache in place; the prefix's serves every batch
        cache.batch_repeat_interleave(B)
        p = cache.get_seq_length()
        positions, mask = positions + p, torch.cat([mask.new_ones(B, p), mask], dim=1)  # (B, P), (B, p+P)
    return label_scores(model, ids, mask, positions, labels, cache=cache)[0].cpu()


def label_scores(model, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, labels: "PackedLabels", *,
                 cache=None, hidden: bool = False) -> tuple[torch.Tensor, tuple | None]:
    """(B, K) summed log-probability of each candidate after each of B left-padded prompts `ids`
    (B, P) at `positions` (B, P), on `cache` (a prefix's, or None; `mask` (B, C) covers it too),
    with gradients where they are enabled (distillation trains on these scores); with `hidden`, also
    the hidden states after each layer at the prompts' positions, (B, P, H) each."""
    device = ids.device
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                logits_to_keep=1, output_hidden_states=hidden)
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V): scores each candidate's 1st token
    total = first[:, labels.first.to(device)]  # (B, K)
    states = out.hidden_states[1:] if hidden else None
    T = len(labels.feed)
    if not T:
        return total, states
    # Every candidate's later tokens in one packed row per prompt, on the prompt's cache: each token
    # sees the whole prompt and its own candidate's earlier tokens (a 4D additive mask), so no
    # candidate is padded and the cache is not copied per candidate.
    B, C = mask.shape
    allowed = torch.cat([mask.bool()[:, None, :].expand(B, T, C), labels.local.to(device).expand(B, T, T)], dim=-1)
    autocast = torch.is_autocast_enabled(device.type)  # the mask in the dtype attention computes in
    dtype = torch.get_autocast_dtype(device.type) if autocast else next(model.parameters()).dtype
    bias = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)
    step_pos = mask.sum(-1)[:, None] + labels.offset.to(device)  # (B, T)
    logits = model(input_ids=labels.feed.to(device).repeat(B, 1), attention_mask=bias[:, None], position_ids=step_pos,
                   cache=out.cache).logits  # (B, T, V)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.target.to(device).repeat(B, 1)[..., None])[..., 0]
    return total.index_add(1, labels.candidate.to(device), logp), states  # (B, K)


@dataclass(frozen=True)
class PackedLabels:
    """K candidates laid out for `_score_batch`: their first tokens, then their later tokens packed
    into one row of T positions."""

    first: torch.Tensor  # (K,) each candidate's first token, scored from the prompt's last position
    feed: torch.Tensor  # (T,) tokens fed in: each candidate's tokens but its last
    target: torch.Tensor  # (T,) the token each fed one predicts (the next of its candidate)
    candidate: torch.Tensor  # (T,) which candidate each position belongs to
    offset: torch.Tensor  # (T,) its offset within its candidate (0 = the candidate's first token)
    local: torch.Tensor  # (T, T) which packed positions each may attend to: its candidate's, up to itself

    @classmethod
    def of(cls, continuations: list[list[int]]) -> "PackedLabels":
        later = [(k, j, c[j], c[j + 1]) for k, c in enumerate(continuations) for j in range(len(c) - 1)]
        candidate = torch.tensor([k for k, *_ in later], dtype=torch.long)
        offset = torch.tensor([j for _, j, *_ in later], dtype=torch.long)
        local = (candidate[:, None] == candidate[None, :]) & (offset[None, :] <= offset[:, None])
        return cls(torch.tensor([c[0] for c in continuations]), torch.tensor([f for *_, f, _ in later], dtype=torch.long),
                   torch.tensor([t for *_, t in later], dtype=torch.long), candidate, offset, local)


@torch.inference_mode()
def score_naive(model, prompt: list[int], continuation: list[int]) -> float:
    """The reference: one forward pass over prompt + continuation, summing the continuation's log-probs.
    Used by tests and the benchmark to check the batched path."""
    ids = torch.tensor([prompt + continuation], device=model.device)
    logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (P+L, V)
    start = len(prompt)
    return sum(logp[start - 1 + j, tok].item() for j, tok in enumerate(continuation))

