"""THE predictor: one loaded model, one prompt format, one label set (or none, for generation).

Prompting evaluation, fine-tune and distill evaluation, teacher labelling, the audit, the
experiment's serving pass, batch jobs and the server's live misses all predict through it. Labels
are ranked by summed log-likelihood (`score.py`: the prompt's KV cache shared by every label); open
tasks are answered by greedy generation of one line (`generate.py`). Demonstrations are picked by
the caller (`prompts/shots.py`) and handed in per item.
"""

from dataclasses import dataclass

import torch

from tuneforge.data.tasks import Example
from tuneforge.model.load import LoadedModel
from tuneforge.predict.generate import generate_lines
from tuneforge.predict.score import score_continuations
from tuneforge.prompts.formats import (
    PromptFormat, encode_continuation, encode_prompt, render_continuation, render_prompt,
)

CONTENT_FREE = "N/A"
"""The input of contextual calibration's content-free prompt."""


@dataclass(frozen=True)
class Predictions:
    """What a predictor returns for N items."""

    outputs: list[str]
    """One answer per item: the top-ranked label, or the generated line."""
    scores: torch.Tensor | None = None
    """(N, K) summed log-probability of each label after each prompt; None when generating."""
    calibrated: list[str] | None = None
    """The top label after contextual calibration, where the predictor was asked to calibrate."""

    def variants(self) -> dict[str, list[str]]:
        """{"raw": outputs} plus {"calibrated": ...} where there is one: what evaluation reports."""
        return {"raw": self.outputs} | ({"calibrated": self.calibrated} if self.calibrated is not None else {})


class Predictor:
    """Predictions for examples under one model, prompt format and label set, batched."""

    def __init__(self, loaded: LoadedModel, fmt: PromptFormat, labels: list[str] | None, *, batch_size: int = 16,
                 max_new_tokens: int = 48, calibrate: bool = False):
        """`labels` None: answers are generated (at most `max_new_tokens`); else the labels are ranked,
        and with `calibrate` also contextually calibrated. `batch_size` prompts go per forward pass."""
        self.loaded, self.fmt, self.labels = loaded, fmt, labels
        self.batch_size, self.max_new_tokens, self.calibrate = batch_size, max_new_tokens, calibrate
        tok = loaded.tokenizer  # label continuations once, not per call (the server calls per miss)
        self.continuations = [encode_continuation(tok, render_continuation(fmt, tok, label)) for label in labels or []]

    def predict(self, items: list[Example], demonstrations: list[list[Example]] | None = None) -> Predictions:
        """Each item answered after its own demonstrations (none when `demonstrations` is None)."""
        demos = demonstrations if demonstrations is not None else [[] for _ in items]
        return self.predict_encoded(self.encode(items, demos), demos)

    def encode(self, items: list[Example], demonstrations: list[list[Example]]) -> list[list[int]]:
        """Each item's prompt as token ids: instruction, its demonstrations, then its input."""
        tok = self.loaded.tokenizer
        return [encode_prompt(self.fmt, tok, render_prompt(self.fmt, tok, demos, ex.input))
                for demos, ex in zip(demonstrations, items, strict=True)]

    def predict_encoded(self, prompts: list[list[int]], demonstrations: list[list[Example]]) -> Predictions:
        """Answers for prompts already encoded (see `encode`); the demonstrations serve calibration."""
        model, tok = self.loaded.model, self.loaded.tokenizer
        if not prompts:
            return Predictions([])
        if self.labels is None:
            return Predictions(generate_lines(model, tok, prompts, max_new_tokens=self.max_new_tokens,
                                              batch_size=self.batch_size))
        scores = self._score(prompts)  # (N, K)
        calibrated = self._top(self._calibrate(scores, demonstrations)) if self.calibrate else None
        return Predictions(self._top(scores), scores, calibrated)

    def _score(self, prompts: list[list[int]]) -> torch.Tensor:
        return score_continuations(self.loaded.model, prompts, self.continuations,
                                   pad_id=self.loaded.tokenizer.pad_token_id, batch_size=self.batch_size)

    def _top(self, scores: torch.Tensor) -> list[str]:
        return [self.labels[i] for i in scores.argmax(-1).tolist()]

    def _calibrate(self, scores: torch.Tensor, demonstrations: list[list[Example]]) -> torch.Tensor:
        """Contextual calibration: label probabilities divided by those the same prompt gives the
        content-free input `N/A`. One content-free prompt per distinct demonstration set."""
        keys = [tuple(ex.id for ex in demos) for demos in demonstrations]
        sets = list(dict.fromkeys(keys))
        by_key = dict(zip(keys, demonstrations))
        free = self.encode([Example(CONTENT_FREE, "", CONTENT_FREE)] * len(sets), [by_key[k] for k in sets])
        prior = torch.log_softmax(self._score(free), dim=-1)  # (S, K)
        row = [sets.index(k) for k in keys]
        return torch.log_softmax(scores, dim=-1) - prior[row]  # (N, K)
