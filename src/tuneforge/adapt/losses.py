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


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, n_global: int,
            world_size: int = 1, alpha: float = 0.5, temperature: float = 2.0) -> torch.Tensor:
    """Logit distillation on target positions: alpha · T² · KL(teacher_T ‖ student_T) + (1 − alpha) · CE.

    `student` and `teacher` are (N, V) logits at the same positions; the KL is summed over positions
    and, like `ce_loss`, taken as this slice's share of the global mean (T² keeps the gradient scale
    independent of the temperature, as in Hinton et al.)."""
    log_p_teacher = F.log_softmax(teacher.float() / temperature, dim=-1)  # (N, V)
    log_p_student = F.log_softmax(student.float() / temperature, dim=-1)  # (N, V)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum() * world_size / n_global
    return alpha * temperature**2 * kl + (1 - alpha) * ce_loss(student, targets, n_global, world_size)


def label_kd_loss(student: torch.Tensor, teacher: torch.Tensor, gold: torch.Tensor, n_global: int,
                  world_size: int = 1, weights: tuple[float, float, float] = (5.0, 2.0, 1.0),
                  temperature: float = 2.0, hidden: torch.Tensor | None = None) -> torch.Tensor:
    """Label-set distillation, per row: soft · T² · KL(teacher_T ‖ student_T) over the K labels' scores
    + hard · CE(student scores, gold label) + cosine · `hidden` (each row's hidden-state distance),
    weighted by `weights` = (soft, hard, cosine) and divided by their sum; summed over rows as this
    slice's share of the global mean over `n_global` rows.

    student, teacher: (B, K) label scores; gold: (B,) label indices; hidden: (B,) or None."""
    log_p_teacher = F.log_softmax(teacher.float() / temperature, dim=-1)  # (B, K)
    log_p_student = F.log_softmax(student.float() / temperature, dim=-1)  # (B, K)
    soft = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1) * temperature**2  # (B,)
    hard = F.cross_entropy(student.float(), gold, reduction="none")  # (B,)
    w_soft, w_hard, w_cos = weights
    per_row = w_soft * soft + w_hard * hard + (w_cos * hidden if hidden is not None else 0.0)
    return per_row.sum() / sum(weights) * world_size / n_global


def label_ce_loss(scores: torch.Tensor, gold: torch.Tensor, n_global: int, world_size: int = 1,
                  tokens: bool = False) -> torch.Tensor:
    """Cross-entropy over the label set, per row: -log softmax(scores)[gold], the K labels' summed
    log-likelihoods being the scores a label prediction ranks by; with `tokens`, plus the gold
    label's own negative log-likelihood (token cross-entropy summed over its tokens). Summed over rows
    as this slice's share of the global mean over `n_global` rows.

    scores: (B, K) label scores with gradients; gold: (B,) label indices."""
    per_row = F.cross_entropy(scores.float(), gold, reduction="none")  # (B,)
    if tokens:
        per_row = per_row - scores.float().gather(1, gold[:, None])[:, 0]
    return per_row.sum() * world_size / n_global


def hidden_cosine(student: list[torch.Tensor], teacher: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """(B,) each row's mean of 1 − cosine similarity between each student layer's hidden states and
    its teacher layer's, over the row's real tokens (DistilBERT's cosine loss, layer by layer).

    student, teacher: lists of (B, P, H), paired; mask: (B, P) 1 on real tokens."""
    mask = mask.float()
    per_layer = [(1 - F.cosine_similarity(s.float(), t.float(), dim=-1)) * mask for s, t in zip(student, teacher,
                                                                                               strict=True)]
    return torch.stack(per_layer).sum((0, 2)) / (mask.sum(-1) * len(per_layer))  # (B,)
