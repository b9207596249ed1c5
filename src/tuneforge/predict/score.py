"""Label ranking: the log-likelihood of each candidate continuation after each prompt, batched.

Each prompt is run once (left-padded, KV cache kept); its cache is then repeated once per candidate
and only the candidates' tokens are run on top of it. So a prompt of P tokens and K candidates of
L tokens cost P + K·L token positions, not K·(P + L) as in a loop over candidates. Only the logits
that score a candidate token are computed.
"""

import torch

from tuneforge.predict.padding import left_pad, length_batches, right_pad


@torch.inference_mode()
def score_continuations(
    model, prompts: list[list[int]], continuations: list[list[int]], *, pad_id: int, batch_size: int = 16
) -> torch.Tensor:
    """Summed log-probability of every continuation after every prompt: a float32 tensor (N, K).

    `prompts` are token-id lists (N of them); `continuations` are the K candidate token-id lists,
    shared by all prompts. Prompts are bucketed by length to cut padding."""
    if any(len(c) == 0 for c in continuations):
        raise ValueError("every continuation needs at least one token")
    scores = torch.empty(len(prompts), len(continuations))
    conts, cont_mask = right_pad(continuations, pad_id)  # (K, L)
    for rows in length_batches(prompts, batch_size):
        scores[rows] = _score_batch(model, [prompts[i] for i in rows], conts, cont_mask, pad_id)
    return scores


def _score_batch(model, prompts, conts, cont_mask, pad_id) -> torch.Tensor:
    device = model.device
    ids, mask = left_pad(prompts, pad_id)  # (B, P)
    ids, mask, conts, cont_mask = ids.to(device), mask.to(device), conts.to(device), cont_mask.to(device)
    B, K, L = ids.shape[0], conts.shape[0], conts.shape[1]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: real tokens start at position 0
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1)
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V): scores each candidate's 1st token
    total = first[:, conts[:, 0]]  # (B, K)
    if L == 1:
        return total.cpu()
    cache = out.cache
    cache.batch_repeat_interleave(K)  # (B·K, ...): prompt b's cache for each of its K candidates
    step_ids = conts[:, :-1].repeat(B, 1)  # (B·K, L-1): candidate tokens fed in, each predicting the next
    step_mask = torch.cat([mask.repeat_interleave(K, dim=0), cont_mask[:, :-1].repeat(B, 1)], dim=1)
    step_pos = mask.sum(-1).repeat_interleave(K)[:, None] + torch.arange(L - 1, device=device)  # (B·K, L-1)
    logits = model(input_ids=step_ids, attention_mask=step_mask, position_ids=step_pos, cache=cache).logits
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B·K, L-1, V)
    targets = conts[:, 1:].repeat(B, 1)  # (B·K, L-1)
    token_logp = logp.gather(-1, targets[..., None])[..., 0] * cont_mask[:, 1:].repeat(B, 1)
    return (total + token_logp.sum(-1).view(B, K)).cpu()


@torch.inference_mode()
def score_naive(model, prompt: list[int], continuation: list[int]) -> float:
    """The reference: one forward pass over prompt + continuation, summing the continuation's log-probs.
    Used by tests and the benchmark to check the batched path."""
    ids = torch.tensor([prompt + continuation], device=model.device)
    logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)  # (P+L, V)
    start = len(prompt)
    return sum(logp[start - 1 + j, tok].item() for j, tok in enumerate(continuation))

