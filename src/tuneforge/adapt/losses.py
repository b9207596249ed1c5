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
