"""Building a student: a copy of the teacher keeping N of its layers (spread evenly, first and last
kept), or another smaller model whose vocabulary matches the teacher's."""

import copy

import torch

from tuneforge.errors import TuneforgeError
from tuneforge.model.params import count_parameters


def kept_layers(n_layers: int, keep: int) -> list[int]:
    """Indices of `keep` layers out of `n_layers`, evenly spread, the first and the last included."""
    if not 1 <= keep < n_layers:
        raise TuneforgeError(f"--layers {keep}: keep between 1 and {n_layers - 1} of the teacher's {n_layers} layers")
    if keep == 1:
        return [0]
    return sorted({round(i * (n_layers - 1) / (keep - 1)) for i in range(keep)})


def prune_layers(teacher: torch.nn.Module, keep: int) -> torch.nn.Module:
    """A new model with the teacher's embeddings, head and norm, and `keep` of its decoder layers,
    weights copied (the teacher is left untouched)."""
    layers = teacher.get_decoder().layers
    indices = kept_layers(len(layers), keep)
    student = copy.deepcopy(teacher)
    decoder = student.get_decoder()
    decoder.layers = torch.nn.ModuleList([decoder.layers[i] for i in indices])
    for new_index, layer in enumerate(decoder.layers):
        layer.self_attn.layer_idx = new_index  # the KV cache is indexed by position in the stack
    student.config.num_hidden_layers = keep
    if getattr(student.config, "layer_types", None):
        student.config.layer_types = [student.config.layer_types[i] for i in indices]
    return student


def layers_for_ratio(teacher: torch.nn.Module, ratio: float) -> int:
    """The most layers a pruned student may keep with at most `ratio` × the teacher's parameters."""
    if not 0 < ratio < 1:
        raise TuneforgeError(f"--params-ratio {ratio}: give a ratio between 0 and 1")
    counts = count_parameters(teacher)
    n_layers = len(teacher.get_decoder().layers)
    per_layer = sum(p.numel() for p in teacher.get_decoder().layers[0].parameters())
    fixed = counts["total"] - per_layer * n_layers
    keep = int((ratio * counts["total"] - fixed) // per_layer)
    if keep < 1:
        raise TuneforgeError(f"--params-ratio {ratio}: even one layer exceeds it (embeddings alone are "
                             f"{fixed / counts['total']:.0%} of the teacher)")
    return min(keep, n_layers - 1)


def check_vocabularies(teacher_tok, student_tok) -> None:
    """Logit KD compares distributions token by token: the vocabularies must be identical."""
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        raise TuneforgeError("the student's vocabulary differs from the teacher's: logit distillation is "
                             "impossible; use --kd sequence (train on the teacher's answers), which works "
                             "across tokenizers")
