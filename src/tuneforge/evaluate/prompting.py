"""The prompting route: zero-, one- and few-shot prompts on an unchanged model, compared honestly.

Each condition (format x shots) is evaluated on one split; few-shot conditions with random picking
are repeated over several demonstration draws and reported as mean +- sd, with a bootstrap CI over
the evaluated items. Demonstrations come from the train split only.
"""

import statistics
import time
from dataclasses import asdict, dataclass

import torch

from tuneforge.data.limits import MAX_INPUT_TOKENS, check_input_lengths
from tuneforge.data.splits import Task, task_warnings
from tuneforge.data.tasks import Example
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.metrics import accuracy, bootstrap_ci, confusion, exact_match, macro_f1
from tuneforge.model.load import LoadedModel, weights_fingerprint
from tuneforge.model.params import count_parameters
from tuneforge.predict.generate import generate_lines
from tuneforge.predict.score import score_continuations
from tuneforge.prompts.formats import (
    PromptFormat, encode_continuation, encode_prompt, render_continuation, render_prompt,
)
from tuneforge.prompts.shots import PICKERS, pick_demos

CONTENT_FREE = "N/A"


@dataclass(frozen=True)
class PromptingConfig:
    """Settings of a prompting comparison."""

    shots: tuple[int, ...] = (0, 1, 5)
    """Numbers of demonstrations to compare."""
    formats: tuple[str, ...] = ("plain",)
    """Prompt formats to compare: `plain` and/or `chat`."""
    picks: tuple[str, ...] = ("random", "similar")
    """Demonstration pickers to compare: `first`, `random` (seeded draws) and/or `similar`."""
    draws: int = 3
    """Demonstration draws per few-shot condition (random picking only)."""
    seed: int = 0
    """Seed of the first draw; draw d uses seed + d."""
    calibrate: bool = False
    """Also report contextual calibration against the content-free input `N/A` (label tasks)."""
    split: str = "test"
    """Split to evaluate on: `test` for the final evaluation, `dev` while exploring settings."""
    batch_size: int = 16
    """Prompts per forward pass."""
    max_new_tokens: int = 48
    """Longest generated answer (open tasks)."""
    max_input_tokens: int = MAX_INPUT_TOKENS
    """Longest input of any split, in tokens; a longer row stops the comparison before it starts."""

    def __post_init__(self):
        if not self.shots or any(k < 0 for k in self.shots):
            raise TuneforgeError(f"shots must be non-negative integers, got {list(self.shots)}")
        for pick in self.picks:
            if pick not in PICKERS:
                raise TuneforgeError(f"unknown demonstration picker {pick!r}: choose {', '.join(PICKERS)}")
        if not self.picks or not self.formats:
            raise TuneforgeError("give at least one prompt format and one demonstration picker")
        for style in self.formats:
            PromptFormat(style)  # refuses an unknown format now, not after the model has loaded
        if min(self.draws, self.batch_size, self.max_new_tokens, self.max_input_tokens) < 1:
            raise TuneforgeError("draws, batch size, max new tokens and max input tokens must be at least 1")
        if self.split not in ("dev", "test"):
            raise TuneforgeError(f"evaluate on dev or test, not {self.split!r}")


def compare_prompting(loaded: LoadedModel, task: Task, cfg: PromptingConfig) -> dict:
    """Evaluate every (format, shots) condition and return the results record (JSON-ready)."""
    check_feasible(task, cfg)
    check_input_lengths(task, loaded.tokenizer, cfg.max_input_tokens)  # before the first prediction
    items = task.split(cfg.split)
    before = count_parameters(loaded.model), weights_fingerprint(loaded.model)
    conditions = []
    for style in cfg.formats:
        fmt = PromptFormat(style, task.info.instruction)
        for k in cfg.shots:
            for pick in cfg.picks if k > 0 else [None]:  # zero-shot has no demonstrations to pick
                conditions.append(run_condition(loaded, task, items, fmt, k, pick, cfg))
    after = count_parameters(loaded.model), weights_fingerprint(loaded.model)
    return {
        "route": "prompting",
        "task": {**asdict(task.info), "sizes": {s: len(task.split(s)) for s in ("train", "dev", "test")},
                 "labels": task.labels if task.info.kind == "labels" else None, "warnings": task_warnings(task)},
        "model": {"path": str(loaded.path), "fingerprint": loaded.fingerprint, "dtype": str(loaded.dtype)},
        "config": asdict(cfg),
        "split": cfg.split,
        "metric": "accuracy" if task.info.kind == "labels" else "exact_match",
        "parameters": {"before": before[0], "after": after[0], "weights_fingerprint_before": before[1],
                       "weights_fingerprint_after": after[1], "unchanged": before == after},
        "conditions": conditions,
    }


def check_feasible(task: Task, cfg: PromptingConfig) -> None:
    """Refuse settings the task cannot satisfy (cheap: call it before loading the model)."""
    if not task.split(cfg.split):
        raise TuneforgeError(f"task {task.info.name!r}: the {cfg.split} split is empty")
    if max(cfg.shots) > len(task.train):
        raise TuneforgeError(f"--shots {max(cfg.shots)} needs {max(cfg.shots)} demonstrations, "
                             f"but the train split of {task.info.name!r} has {len(task.train)} examples")


def run_condition(loaded, task: Task, items: list[Example], fmt: PromptFormat, k: int, pick, cfg) -> dict:
    """One (format, shots, picker) condition, over several draws where the picker is random."""
    gold = [ex.target for ex in items]
    n_draws = cfg.draws if pick == "random" else 1  # first-k and similar are deterministic
    start = time.perf_counter()
    draws = [predict_items(loaded, task, items, fmt, k, pick, cfg, seed=cfg.seed + d) for d in range(n_draws)]
    seconds = time.perf_counter() - start
    variants = {}
    for variant in draws[0]:
        preds = [d[variant] for d in draws]
        variants[variant] = summarize(gold, preds, task.info.kind)
    return {
        "format": fmt.id, "style": fmt.style, "shots": k, "pick": pick,
        "draws": n_draws, "seeds": [cfg.seed + d for d in range(n_draws)],
        "variants": variants,
        "predictions": {v: draws[0][v] for v in draws[0]},
        "seconds": seconds, "ms_per_example": 1000 * seconds / (n_draws * len(items)),
    }


def summarize(gold: list[str], preds: list[list[str]], kind: str) -> dict:
    """Metrics of one variant (raw or calibrated) over its draws: per draw, mean, sd and bootstrap CI."""
    metrics = {"accuracy": accuracy, "macro_f1": macro_f1} if kind == "labels" else {"exact_match": exact_match}
    out = {}
    for name, fn in metrics.items():
        per_draw = [fn(gold, p) for p in preds]
        out[name] = {
            "mean": statistics.fmean(per_draw),
            "sd": statistics.stdev(per_draw) if len(per_draw) > 1 else 0.0,
            "ci95": bootstrap_ci(gold, preds, fn),
            "per_draw": per_draw,
        }
    if kind == "labels":
        out["confusion"] = confusion(gold, preds[0])
    return out


def predict_items(loaded, task: Task, items, fmt: PromptFormat, k: int, pick, cfg, seed: int) -> dict[str, list[str]]:
    """Predictions for `items` with one demonstration draw: {"raw": [...]} (+ "calibrated")."""
    tok = loaded.tokenizer
    demos = [pick_demos(task.train, ex, k, pick or "first", seed) for ex in items]
    prompts = [encode_prompt(fmt, tok, render_prompt(fmt, tok, d, ex.input)) for d, ex in zip(demos, items)]
    if task.info.kind == "generate":
        return {"raw": generate_lines(loaded.model, tok, prompts, max_new_tokens=cfg.max_new_tokens,
                                      batch_size=cfg.batch_size)}
    labels = task.labels
    conts = [encode_continuation(tok, render_continuation(fmt, tok, label)) for label in labels]
    raw = score_continuations(loaded.model, prompts, conts, pad_id=tok.pad_token_id, batch_size=cfg.batch_size)
    out = {"raw": [labels[i] for i in raw.argmax(-1).tolist()]}
    if cfg.calibrate:
        out["calibrated"] = [labels[i] for i in calibrate(loaded, fmt, demos, conts, raw, cfg).argmax(-1).tolist()]
    return out


def calibrate(loaded, fmt: PromptFormat, demos: list[list[Example]], conts, raw: torch.Tensor, cfg) -> torch.Tensor:
    """Contextual calibration: label probabilities divided by those the same prompt gives the
    content-free input `N/A`. One content-free prompt per distinct demonstration set."""
    tok = loaded.tokenizer
    sets = list(dict.fromkeys(tuple(ex.id for ex in d) for d in demos))
    by_ids = {tuple(ex.id for ex in d): d for d in demos}
    free = [encode_prompt(fmt, tok, render_prompt(fmt, tok, by_ids[s], CONTENT_FREE)) for s in sets]
    prior = torch.log_softmax(score_continuations(loaded.model, free, conts, pad_id=tok.pad_token_id,
                                                  batch_size=cfg.batch_size), dim=-1)  # (S, K)
    row = [sets.index(tuple(ex.id for ex in d)) for d in demos]
    return torch.log_softmax(raw, dim=-1) - prior[row]  # (N, K)
