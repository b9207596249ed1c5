"""Training rows: prompt + answer token ids with the prompt masked, and length-grouped batches.

The prompt is built by the same code as the prompting route (zero-shot by default, or with each row's
demonstrations), so a fine-tuned model is evaluated exactly as it was trained."""

import random
from dataclasses import dataclass

import torch

from tuneforge.data.tasks import Example
from tuneforge.prompts.formats import PromptFormat, encode_continuation, encode_prompt, render_continuation
from tuneforge.prompts.formats import render_prompt


@dataclass(frozen=True)
class Row:
    """One training sequence: `ids` = prompt + answer; the loss covers the last `n_target` tokens."""

    ids: tuple[int, ...]
    n_target: int
    source: str = "train"
    """Where the row came from (`train`, or e.g. `teacher` for teacher-labelled inputs)."""


def build_rows(examples: list[Example], fmt: PromptFormat, tokenizer, max_length: int = 256,
               demos: list[list[Example]] | None = None) -> list[Row]:
    """A Row per example, its prompt holding its `demos` (none by default); prompts too long for
    `max_length` are cut from the left."""
    rows = []
    for i, ex in enumerate(examples):
        prompt = encode_prompt(fmt, tokenizer, render_prompt(fmt, tokenizer, demos[i] if demos else [], ex.input))
        answer = encode_continuation(tokenizer, render_continuation(fmt, tokenizer, ex.target))[:max_length - 1]
        prompt = prompt[-(max_length - len(answer)):]
        rows.append(Row(tuple(prompt + answer), len(answer)))
    return rows


def epoch_batches(n_rows: int, lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Row indices of each global batch of one epoch: shuffled with (seed, epoch), then grouped so a
    batch holds rows of similar length (sorted within chunks of 50 batches), batches in random order."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = rng.sample(range(n_rows), n_rows)
    chunk = batch_size * 50
    grouped = []
    for start in range(0, n_rows, chunk):
        grouped += sorted(order[start : start + chunk], key=lambda i: lengths[i])
    batches = [grouped[i : i + batch_size] for i in range(0, n_rows, batch_size)]
    rng.shuffle(batches)
    return batches


def collate(rows: list[Row], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ids and mask, plus the (row, position) of every target token's *prediction*:
    the logit at position t predicts token t+1."""
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    pos_rows, pos_cols, targets = [], [], []
    for b, r in enumerate(rows):
        ids[b, : len(r.ids)] = torch.tensor(r.ids)
        mask[b, : len(r.ids)] = 1
        first = len(r.ids) - r.n_target
        pos_rows += [b] * r.n_target
        pos_cols += range(first - 1, len(r.ids) - 1)
        targets += r.ids[first:]
    return {"input_ids": ids, "attention_mask": mask, "rows": torch.tensor(pos_rows),
            "cols": torch.tensor(pos_cols), "targets": torch.tensor(targets)}
