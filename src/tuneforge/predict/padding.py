"""Token-id lists into padded tensors, in batches of similar length: shared by scoring and generation."""

from collections.abc import Iterator

import torch


def length_batches(seqs: list[list[int]], batch_size: int) -> Iterator[list[int]]:
    """Row indices of `seqs` in batches of at most `batch_size`, shortest first, to cut padding."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask (N, W), padded on the left so every row's last token is at the end."""
    width = max(len(s) for s in seqs)
    ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    return ids, mask

