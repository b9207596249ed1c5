"""Label-set distillation: the student learns the teacher's distribution over the label set.

The scores are the ones both models predict with: each label's summed log-likelihood after the
prompt (`predict/score.py`), here with gradients: the prompt runs once, and the labels' tokens run
on top of its KV cache, packed into one row. A row is a prompt, the teacher's label scores for
it (cached on disk, so training needs no teacher pass for them) and the hard label (the gold one for
a train input, the teacher's top label for a pool input). With a hidden-state term, the teacher runs
the prompt live to give the hidden states of the layers the student kept."""

from dataclasses import dataclass

import torch

from tuneforge.adapt.rows import Row
from tuneforge.predict.padding import left_pad
from tuneforge.predict.score import PackedLabels, label_scores
from tuneforge.prompts.formats import PromptFormat, encode_continuation, encode_prompt, render_continuation
from tuneforge.prompts.formats import render_prompt


@dataclass(frozen=True)
class LabelRow(Row):
    """A prompt (`ids`, one target: the row itself), the teacher's (K,) label scores and the hard label."""

    teacher: tuple[float, ...] = ()
    gold: int = 0


def label_rows(texts: list[str], teacher_scores: list[list[float]], golds: list[int | None], sources: list[str],
               fmt: PromptFormat, tokenizer, max_length: int) -> list[LabelRow]:
    """A LabelRow per input; a missing gold label is the teacher's top one; prompts are cut from the left."""
    rows = []
    for text, scores, gold, source in zip(texts, teacher_scores, golds, sources, strict=True):
        prompt = encode_prompt(fmt, tokenizer, render_prompt(fmt, tokenizer, [], text))[-max_length:]
        top = max(range(len(scores)), key=scores.__getitem__)
        rows.append(LabelRow(tuple(prompt), 1, source, tuple(scores), top if gold is None else gold))
    return rows


def label_continuations(fmt: PromptFormat, tokenizer, labels: list[str]) -> list[list[int]]:
    """Each label's tokens after a prompt, as the predictor scores them."""
    return [encode_continuation(tokenizer, render_continuation(fmt, tokenizer, label)) for label in labels]


class LabelScores(torch.nn.Module):
    """The student's (B, K) label scores with gradients (`label_scores`, as the predictor scores), and
    with `hidden` the hidden states after each of its layers (B, P, H) for the hidden-state term."""

    def __init__(self, model: torch.nn.Module, continuations: list[list[int]], pad_id: int, hidden: bool):
        super().__init__()
        self.model, self.hidden, self.pad_id = model, hidden, pad_id
        self.labels = PackedLabels.of(continuations)

    def collate(self, rows: list[LabelRow], pad_id: int) -> dict[str, torch.Tensor]:
        ids, mask = left_pad([list(r.ids) for r in rows], pad_id)  # (B, P)
        return {"input_ids": ids, "attention_mask": mask, "positions": (mask.cumsum(-1) - 1).clamp(min=0),
                "teacher": torch.tensor([r.teacher for r in rows]), "targets": torch.tensor([r.gold for r in rows])}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict:
        scores, hidden = label_scores(self.model, batch["input_ids"], batch["attention_mask"], batch["positions"],
                                      self.labels, hidden=self.hidden)
        return {"scores": scores, "hidden": hidden}


def teacher_hidden(teacher: torch.nn.Module, batch: dict[str, torch.Tensor], layers: list[int]) -> list[torch.Tensor]:
    """The teacher's hidden states after each of `layers`, (B, P, H) each, for the batch's prompts."""
    with torch.no_grad():
        out = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      position_ids=batch["positions"], logits_to_keep=1, output_hidden_states=True)
    return [out.hidden_states[i + 1] for i in layers]
