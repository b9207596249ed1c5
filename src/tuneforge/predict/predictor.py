"""THE predictor: one loaded model, one prompt format, one label set (or none, for generation).

Prompting evaluation, fine-tune and distill evaluation, teacher labelling, the audit, the
experiment's serving pass, batch jobs and the server's live misses all predict through it. Labels
are ranked by summed log-likelihood (`score.py`: the prompt's KV cache shared by every label), or by
that sum per character of the label's text (`per_char`, lm-evaluation-harness's `acc_norm`), then
calibrated or not (`label_scores`); the raw scores come back too, so every other calibration and
scoring can be read from the same passes (`Predictions.ranked`). Open tasks are answered by greedy
generation of one line (`generate.py`). Demonstrations are picked by the caller (`prompts/shots.py`)
and handed in per item.
"""

from dataclasses import dataclass

import torch

from tuneforge.data.tasks import Example
from tuneforge.model.load import LoadedModel
from tuneforge.predict.generate import generate_lines
from tuneforge.predict.score import score_continuations
from tuneforge.settings import CALIBRATIONS, SCORINGS
from tuneforge.prompts.formats import (
    PromptFormat, encode_continuation, encode_prompt, render_continuation, render_prompt,
)

CONTENT_FREE = "N/A"
"""The input of contextual calibration's content-free prompt."""


@dataclass(frozen=True)
class Predictions:
    """What a predictor returns for N items."""

    outputs: list[str]
    """One answer per item: the top-ranked label under the predictor's own calibration and scoring,
    or the generated line."""
    scores: torch.Tensor | None = None
    """(N, K) summed log-probability of each label after each prompt; None when generating."""
    free: torch.Tensor | None = None
    """(N, K) the same for each item's content-free prompt, where content-free calibration was asked for."""
    labels: list[str] | None = None
    lengths: torch.Tensor | None = None
    """(K,) characters of each label's scored text (for `per-char`)."""

    def ranked(self, calibration: str = "none", scoring: str = "sum", prior: torch.Tensor | None = None
               ) -> list[str]:
        """The top label of each item under another calibration and scoring, from the same forward
        passes (content-free calibration needs the predictor to have been asked for it; batch
        calibration uses `prior`, or these items' own); generated answers, which are neither scored
        nor calibrated, as they are."""
        if self.scores is None:
            return self.outputs
        scores = label_scores(self.scores, calibration, scoring, self.lengths, self.free, prior)
        return [self.labels[i] for i in scores.argmax(-1).tolist()]

    def prior(self, scoring: str = "sum") -> torch.Tensor:
        """(K,) batch calibration's label prior over these items under `scoring` (`batch_prior`)."""
        return batch_prior(per_char(self.scores, self.lengths) if scoring == "per-char" else self.scores)

    def label_logprobs(self, calibration: str = "none", scoring: str = "sum", prior: torch.Tensor | None = None
                       ) -> torch.Tensor:
        """(N, K) log-probabilities over the label set of the ranking scores (log-softmax), which rank
        the labels as `ranked` does."""
        return torch.log_softmax(label_scores(self.scores, calibration, scoring, self.lengths, self.free, prior), -1)


class Predictor:
    """Predictions for examples under one model, prompt format and label set, batched."""

    def __init__(self, loaded: LoadedModel, fmt: PromptFormat, labels: list[str] | None, *, batch_size: int = 16,
                 max_new_tokens: int = 48, calibration: str = "none", scoring: str = "sum",
                 prior: torch.Tensor | None = None):
        """`labels` None: answers are generated (at most `max_new_tokens`); else the labels are ranked
        by `scoring` (one of SCORINGS) after `calibration` (one of CALIBRATIONS); batch calibration
        against a fixed `prior` (K,) when given, else against each call's items. `batch_size` prompts
        go per forward pass."""
        if calibration not in CALIBRATIONS or scoring not in SCORINGS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS} and scoring one of {SCORINGS}, "
                             f"got {calibration!r} and {scoring!r}")
        self.loaded, self.fmt, self.labels = loaded, fmt, labels
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.calibration, self.scoring, self.prior = calibration, scoring, prior
        tok = loaded.tokenizer  # label continuations once, not per call (the server calls per miss)
        rendered = [render_continuation(fmt, tok, label) for label in labels or []]
        self.continuations = [encode_continuation(tok, text) for text in rendered]
        self.lengths = torch.tensor([len(text) for text in rendered], dtype=torch.float)  # (K,)

    def predict(self, items: list[Example], demonstrations: list[list[Example]] | None = None) -> Predictions:
        """Each item answered after its own demonstrations (none when `demonstrations` is None)."""
        demos = demonstrations if demonstrations is not None else [[] for _ in items]
        return self.predict_encoded(self.encode(items, demos), demos)

    def encode(self, items: list[Example], demonstrations: list[list[Example]]) -> list[list[int]]:
        """Each item's prompt as token ids: instruction, its demonstrations, then its input."""
        tok = self.loaded.tokenizer
        return [encode_prompt(self.fmt, tok, render_prompt(self.fmt, tok, demos, ex.input))
                for demos, ex in zip(demonstrations, items, strict=True)]

    def tokens(self, items: list[Example], demonstrations: list[list[Example]] | None, outputs: list[str]
               ) -> list[int]:
        """Tokens the model processes to answer each item: its prompt, then every label's tokens (each
        is scored after the prompt) or the answer it wrote. Counted, not timed: the same on every
        run, the measure of compute per example the recommendation weighs."""
        demos = demonstrations if demonstrations is not None else [[] for _ in items]
        prompts = self.encode(items, demos)
        if self.labels is not None:
            scored = sum(len(c) for c in self.continuations)
            return [len(p) + scored for p in prompts]
        tok = self.loaded.tokenizer
        return [len(p) + len(tok(text, add_special_tokens=False).input_ids) + 1  # + the end of the line
                for p, text in zip(prompts, outputs, strict=True)]

    def predict_encoded(self, prompts: list[list[int]], demonstrations: list[list[Example]], on_text=None
                        ) -> Predictions:
        """Answers for prompts already encoded (see `encode`); the demonstrations serve calibration.
        With `on_text` (one prompt), a generated answer is handed over piece by piece as it is written,
        a label whole once ranked."""
        model, tok = self.loaded.model, self.loaded.tokenizer
        if not prompts:
            return Predictions([])
        if self.labels is None:
            return Predictions(generate_lines(model, tok, prompts, max_new_tokens=self.max_new_tokens,
                                              batch_size=self.batch_size, on_text=on_text))
        scores = self._score(prompts)  # (N, K)
        free = self._content_free(demonstrations) if self.calibration == "content-free" else None
        out = Predictions([], scores, free, self.labels, self.lengths)
        out = Predictions(out.ranked(self.calibration, self.scoring, self.prior), scores, free, self.labels,
                          self.lengths)
        if on_text is not None:
            on_text(out.outputs[0])
        return out

    def _score(self, prompts: list[list[int]]) -> torch.Tensor:
        return score_continuations(self.loaded.model, prompts, self.continuations,
                                   pad_id=self.loaded.tokenizer.pad_token_id, batch_size=self.batch_size)  # (N, K)

    def _content_free(self, demonstrations: list[list[Example]]) -> torch.Tensor:
        """(N, K) label scores after each item's demonstrations and the content-free input `N/A`:
        one prompt per distinct demonstration set."""
        keys = [tuple(ex.id for ex in demos) for demos in demonstrations]
        sets = list(dict.fromkeys(keys))
        by_key = dict(zip(keys, demonstrations))
        free = self._score(self.encode([Example(CONTENT_FREE, "", CONTENT_FREE)] * len(sets), [by_key[k] for k in sets]))
        return free[[sets.index(k) for k in keys]]  # (N, K)


def label_scores(scores: torch.Tensor, calibration: str, scoring: str, lengths: torch.Tensor,
                 free: torch.Tensor | None = None, prior: torch.Tensor | None = None) -> torch.Tensor:
    """(N, K) the scores labels are ranked by: summed log-likelihoods `scores` (N, K), per character
    with `per-char`, then calibrated: `content-free` against `free` (N, K, the same items' content-free
    prompts, scored alike), `batch` against `prior` (K,) or else the mean over the N items
    (`batch_calibrate`)."""
    if scoring == "per-char":
        scores, free = per_char(scores, lengths), None if free is None else per_char(free, lengths)
    if calibration == "batch":
        return batch_calibrate(scores, prior)
    if calibration == "content-free":
        if free is None:
            raise ValueError("content-free calibration needs the content-free prompts' scores")
        return torch.log_softmax(scores, dim=-1) - torch.log_softmax(free, dim=-1)  # (N, K)
    return scores


def per_char(scores: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each label's summed log-likelihood divided by its text's length in characters (lm-evaluation-
    harness's `acc_norm`), so a long label is not ranked last merely for having more tokens to pay for.

    scores: (N, K) summed log-probabilities; lengths: (K,) characters of each label's scored text."""
    return scores / lengths  # (N, K)


def batch_calibrate(scores: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
    """Batch calibration (Zhou et al. 2024, arXiv 2309.17249): the log of the label prior is
    subtracted from each item's label log-probabilities; no extra forward pass. The prior is `prior`
    (K,) where given — the routes estimate it once on dev and keep it, so test, the store and the
    server rank alike — else the N items' own (`batch_prior`).

    scores: (N, K) label scores; returns (N, K) log-softmax(scores) - log(prior)."""
    logp = torch.log_softmax(scores, dim=-1)  # (N, K)
    return logp - (batch_prior(scores) if prior is None else prior).log()  # (N, K)


def batch_prior(scores: torch.Tensor) -> torch.Tensor:
    """(K,) the mean label probability over the N items of `scores` (N, K)."""
    return torch.log_softmax(scores, dim=-1).exp().mean(dim=0)
