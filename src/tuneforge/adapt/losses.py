"""Losses on the logits of target positions only: pure functions, tensors in, a scalar out.

`logits` are (N, V): one row per target token of the global batch slice this process holds;
`targets` are the N token ids. `n_global` is the number of target tokens in the whole global batch
(all processes, all accumulation steps), so that summing the per-process gradients (DDP averages
them, so we scale by world size) gives the gradient of the mean over the global batch.
"""

import torch
import torch.nn.functional as F


def ce_loss(logits: torch.Tensor, targets: torch.Tensor, n_global: int, world_size: int = 1) -> torch.Tensor:
    """Cross-entropy summed over this slice's target tokens, as a share of the global mean."""
    return F.cross_entropy(logits.float(), targets, reduction="sum") * world_size / n_global
