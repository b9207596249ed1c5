"""The prompting route: zero-, one- and few-shot prompts on an unchanged model, compared honestly.

Each condition (format x shots) is evaluated on one split; few-shot conditions with random picking
are repeated over several demonstration draws and reported as mean +- sd, with a bootstrap CI over
the evaluated items. Demonstrations come from the train split only.
"""

import time
from dataclasses import asdict, dataclass

from tuneforge.data.limits import MAX_INPUT_TOKENS, check_input_lengths
from tuneforge.data.splits import Task, task_warnings
from tuneforge.data.tasks import Example
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.metrics import summarize
from tuneforge.model.load import LoadedModel, weights_fingerprint
from tuneforge.model.params import count_parameters
from tuneforge.predict.predictor import CALIBRATIONS, SCORINGS, Predictor
from tuneforge.prompts.formats import PromptFormat
from tuneforge.prompts.shots import PICKERS, pick_demos


@dataclass(frozen=True)
class PromptingConfig:
    """Settings of a prompting comparison."""

    shots: tuple[int, ...] = (0, 1, 5)
    """Numbers of demonstrations to compare."""
    formats: tuple[str, ...] = ("plain",)
    """Prompt formats to compare: `plain` and/or `chat`."""
    picks: tuple[str, ...] = ("random", "similar")
    """Demonstration pickers to compare: `first`, `random` (seeded draws), `similar` and/or `balanced`
    (labels round-robin, seeded draws)."""
    draws: int = 3
    """Demonstration draws per few-shot condition (random and balanced picking only)."""
    seed: int = 0
    """Seed of the first draw; draw d uses seed + d."""
    calibrate: bool = False
    """Also report calibrated predictions (label tasks), calibrated as `calibration` says."""
    calibration: str = "content-free"
    """With `calibrate`: `content-free` (against the input `N/A`) or `batch` (against the mean label
    probability over the evaluated items, arXiv 2309.17249)."""
    scoring: str = "sum"
    """Label score: `sum` (summed log-likelihood) or `per-char` (divided by the label's length in
    characters, lm-evaluation-harness's acc_norm)."""
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
        if self.calibration not in CALIBRATIONS:
            raise TuneforgeError(f"unknown calibration {self.calibration!r}: choose {', '.join(CALIBRATIONS)}")
        if self.scoring not in SCORINGS:
            raise TuneforgeError(f"unknown scoring {self.scoring!r}: choose {', '.join(SCORINGS)}")
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
        predictor = Predictor(loaded, PromptFormat(style, task.info.instruction), task.label_set,
                              batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, calibrate=cfg.calibrate,
                              calibration=cfg.calibration, scoring=cfg.scoring)
        for k in cfg.shots:
            for pick in cfg.picks if k > 0 else [None]:  # zero-shot has no demonstrations to pick
                conditions.append(run_condition(predictor, task, items, k, pick, cfg))
    after = count_parameters(loaded.model), weights_fingerprint(loaded.model)
    return {
        "route": "prompting",
        "task": {**asdict(task.info), "sizes": task.sizes(), "labels": task.label_set, "warnings": task_warnings(task)},
        "model": {"path": str(loaded.path), "fingerprint": loaded.fingerprint, "dtype": str(loaded.dtype)},
        "config": asdict(cfg),
        "split": cfg.split,
        "metric": task.metric,
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


def run_condition(predictor: Predictor, task: Task, items: list[Example], k: int, pick: str | None,
                  cfg: PromptingConfig) -> dict:
    """One (format, shots, picker) condition, over several draws where the picker is seeded."""
    seeded = pick in ("random", "balanced")  # first-k and similar are fixed
    seeds = [cfg.seed + d for d in range(cfg.draws if seeded else 1)]
    start = time.perf_counter()
    draws = []
    for seed in seeds:
        demos = [pick_demos(task.train, ex, k, pick or "first", seed, labelled=task.label_set is not None)
                 for ex in items]
        draws.append(predictor.predict(items, demos).variants())
    seconds = time.perf_counter() - start
    gold = [ex.target for ex in items]
    return {
        "format": predictor.fmt.id, "style": predictor.fmt.style, "shots": k, "pick": pick,
        "draws": len(seeds), "seeds": seeds,
        "variants": {v: summarize(gold, [d[v] for d in draws], task.info.kind) for v in draws[0]},
        "predictions": draws[0],
        "seconds": seconds, "ms_per_example": 1000 * seconds / (len(seeds) * len(items)),
    }
