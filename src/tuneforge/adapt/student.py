"""Building a student: a copy of the teacher keeping N of its layers, or another smaller model whose
vocabulary matches the teacher's. Which layers: spread evenly, or the most influential (block
influence, Minitron arXiv 2407.14679 / ShortGPT: 1 − cosine similarity of a layer's input and output
hidden states, measured on train inputs; a layer that barely changes its input matters least);
the first and the last are always kept."""

import copy

import torch

from tuneforge.errors import TuneforgeError
from tuneforge.model.layout import check_student_layers
from tuneforge.model.params import count_parameters


def kept_layers(n_layers: int, keep: int) -> list[int]:
    """Indices of `keep` layers out of `n_layers`, evenly spread, the first and the last included."""
    if not 1 <= keep < n_layers:
        raise TuneforgeError(f"--layers {keep}: keep between 1 and {n_layers - 1} of the teacher's {n_layers} layers")
    if keep == 1:
        return [0]
    return sorted({round(i * (n_layers - 1) / (keep - 1)) for i in range(keep)})


def influential_layers(influence: list[float], keep: int) -> list[int]:
    """Indices of `keep` layers: the first and the last, then the most influential of the rest
    (ties: the earlier layer)."""
    n_layers = len(influence)
    if not 1 <= keep < n_layers:
        raise TuneforgeError(f"--layers {keep}: keep between 1 and {n_layers - 1} of the teacher's {n_layers} layers")
    ends = [0] if keep == 1 else [0, n_layers - 1]
    middle = sorted(range(1, n_layers - 1), key=lambda i: (-influence[i], i))
    return sorted(ends + middle[: keep - len(ends)])


@torch.inference_mode()
def block_influence(model: torch.nn.Module, prompts: list[list[int]], pad_id: int, batch_size: int = 16) -> list[float]:
    """Each decoder layer's influence: 1 − the mean cosine similarity of its input and output hidden
    states over the real tokens of `prompts`."""
    from tuneforge.predict.padding import left_pad, length_batches

    n_layers = len(model.get_decoder().layers)
    total, tokens = torch.zeros(n_layers), 0
    for rows in length_batches(prompts, batch_size):
        ids, mask = left_pad([prompts[i] for i in rows], pad_id)  # (B, P)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                    position_ids=positions.to(model.device), logits_to_keep=1, output_hidden_states=True)
        hidden = out.hidden_states  # (embeddings, after layer 0, ..., after the last layer), each (B, P, H)
        real = mask.to(model.device).bool()
        for i in range(n_layers):
            cos = torch.nn.functional.cosine_similarity(hidden[i].float(), hidden[i + 1].float(), dim=-1)  # (B, P)
            total[i] += cos[real].sum().cpu()
        tokens += int(real.sum())
    return (1 - total / tokens).tolist()


def check_layer_indices(indices: list[int], n_layers: int) -> list[int]:
    """A user's list of layers to keep, checked: distinct, in range, fewer than the teacher's."""
    check_student_layers(n_layers, keep=tuple(indices))
    return sorted(indices)


def prune_layers(teacher: torch.nn.Module, indices: list[int]) -> torch.nn.Module:
    """A new model with the teacher's embeddings, head and norm, and its decoder layers `indices`,
    weights copied (the teacher is left untouched)."""
    keep = len(indices)
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


def check_vocabularies(teacher_tok, student_tok, kd: str = "logits") -> None:
    """Logit and label-set KD compare the models token by token: the vocabularies must be identical."""
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        raise TuneforgeError(f"the student's vocabulary differs from the teacher's: --kd {kd} is impossible; "
                             f"use --kd sequence (train on the teacher's answers), which works across tokenizers")
