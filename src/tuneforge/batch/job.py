"""Batch jobs: predict ahead of time for known inputs and fill the prediction store.

A job's *setting* (model fingerprint and path, dtype, prompt format, demonstrations, label set or
decoding) is written into the store once; each input's key is the setting plus the input. A re-run
computes only what the store lacks; rows are committed in chunks, so a job killed at any moment
loses at most the chunk in flight and stores nothing twice."""

import time
from dataclasses import dataclass

from tuneforge.data.splits import Task
from tuneforge.data.tasks import Example
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import LoadedModel, load_model
from tuneforge.predict.generate import generate_lines
from tuneforge.predict.score import score_continuations
from tuneforge.prompts.formats import (
    PromptFormat, encode_continuation, encode_prompt, render_continuation, render_prompt,
)
from tuneforge.prompts.shots import is_same_item, pick_demos
from tuneforge.data.limits import MAX_INPUT_TOKENS
from tuneforge.store.keys import normalize_input


@dataclass(frozen=True)
class BatchConfig:
    """Settings of a batch job."""

    shots: int = 0
    """Demonstrations in each prompt, from the task's train split."""
    pick: str = "first"
    """How the fixed demonstration set is picked: `first` or `random` (seeded)."""
    seed: int = 0
    """Seed of a random demonstration set."""
    format: str = "plain"
    """Prompt format: `plain` or `chat`."""
    max_new_tokens: int = 48
    """Longest generated answer."""
    max_input_tokens: int = MAX_INPUT_TOKENS
    """Longer prompts are recorded as failed rows."""
    batch_size: int = 16
    """Prompts per forward pass."""
    commit_every: int = 64
    """Rows per store transaction."""

    def __post_init__(self):
        if self.pick not in ("first", "random"):
            raise TuneforgeError(f"batch jobs pick a fixed demonstration set: first or random, not {self.pick!r}")
        if min(self.batch_size, self.commit_every, self.max_new_tokens, self.max_input_tokens) < 1 or self.shots < 0:
            raise TuneforgeError("shots must be >= 0; batch size, commit size and token limits must be >= 1")


def build_setting(loaded: LoadedModel, task: Task, cfg: BatchConfig) -> dict:
    """Everything that changes an output, self-contained: a server can rebuild the predictor from it."""
    if cfg.shots > len(task.train):
        raise TuneforgeError(f"--shots {cfg.shots}: the train split of {task.info.name!r} has {len(task.train)} examples")
    # One fixed set for every input, plus a spare: an input that is itself a demonstration gets the
    # spare in its place (an item is never its own demonstration).
    anchor = Example(input="\0", target="", id="\0")
    demos = pick_demos(task.train, anchor, min(cfg.shots + 1, len(task.train)), cfg.pick, cfg.seed) if cfg.shots else []
    return {
        "model": {"fingerprint": loaded.fingerprint, "path": str(loaded.path),
                  "dtype": str(loaded.dtype).removeprefix("torch.")},
        "task": task.info.name,
        "mode": task.info.kind,
        "labels": task.labels if task.info.kind == "labels" else None,
        "format": cfg.format,
        "instruction": task.info.instruction or None,
        "demos": [[d.input, d.target] for d in demos],
        "decoding": {"greedy": True, "max_new_tokens": cfg.max_new_tokens} if task.info.kind == "generate" else None,
        "max_input_tokens": cfg.max_input_tokens,
    }


class Predictor:
    """Predictions for inputs under one setting: label ranking or greedy generation, batched."""

    def __init__(self, loaded: LoadedModel, setting: dict, batch_size: int = 16):
        if setting["model"]["fingerprint"] != loaded.fingerprint:
            raise TuneforgeError("the model does not match the store's setting (fingerprints differ)")
        self.loaded, self.setting, self.batch_size = loaded, setting, batch_size
        self.fmt = PromptFormat(setting["format"], setting["instruction"])
        self.demos = [Example(i, t, f"demo-{n}") for n, (i, t) in enumerate(setting["demos"])]
        self.shots = max(len(self.demos) - 1, 0)
        tok = loaded.tokenizer
        labels = setting["labels"] or []  # label continuations once, not per call (the server calls per miss)
        self.continuations = [encode_continuation(tok, render_continuation(self.fmt, tok, label)) for label in labels]

    def __call__(self, inputs: list[str]) -> list[dict]:
        """One row per input: {"input", "output"} or {"input", "error"}."""
        tok, rows, prompts = self.loaded.tokenizer, [], []
        for text in inputs:
            query = Example(text, "", "\0")
            demos = [d for d in self.demos if not is_same_item(d, query)][: self.shots]
            ids = encode_prompt(self.fmt, tok, render_prompt(self.fmt, tok, demos, text))
            too_long = len(ids) > self.setting["max_input_tokens"]
            rows.append({"input": text, "error": f"prompt has {len(ids)} tokens, more than "
                                                 f"{self.setting['max_input_tokens']}"} if too_long else None)
            if not too_long:
                prompts.append(ids)
        outputs = iter(self._predict(prompts) if prompts else [])
        return [row or {"input": text, "output": next(outputs)} for row, text in zip(rows, inputs)]

    def _predict(self, prompts: list[list[int]]) -> list[str]:
        tok, model = self.loaded.tokenizer, self.loaded.model
        if self.setting["mode"] == "generate":
            return generate_lines(model, tok, prompts, max_new_tokens=self.setting["decoding"]["max_new_tokens"],
                                  batch_size=self.batch_size)
        labels = self.setting["labels"]
        scores = score_continuations(model, prompts, self.continuations, pad_id=tok.pad_token_id,
                                     batch_size=self.batch_size)
        return [labels[i] for i in scores.argmax(-1).tolist()]


def predictor_for_setting(setting: dict, batch_size: int = 16) -> Predictor:
    """Load the setting's model (same path and dtype) and build its predictor, e.g. for live misses."""
    loaded = load_model(setting["model"]["path"], dtype=setting["model"]["dtype"])  # "bfloat16" / "float32"
    return Predictor(loaded, setting, batch_size)


def store_setting(store, loaded: LoadedModel, task: Task, cfg: BatchConfig, *, synonym_lists: bool = False
                  ) -> tuple[dict, str]:
    """The job's setting, marked when outputs are normalised into synonym lists, and its id in `store`."""
    setting = build_setting(loaded, task, cfg)
    if synonym_lists:
        setting = {**setting, "postprocess": "synonym_lists"}
    return setting, store.add_setting(setting)


def local_predictor(loaded: LoadedModel, setting: dict, cfg: BatchConfig, *, synonym_lists: bool = False):
    """The local engine's predictor for `setting`, normalising outputs into synonym lists if asked."""
    from tuneforge.batch.synonyms import synonym_predictor

    predict = Predictor(loaded, setting, cfg.batch_size)
    return synonym_predictor(predict) if synonym_lists else predict


def run_batch(predict, store, setting_id: str, inputs: list[str], *, commit_every: int = 64,
              failed: list[dict] | None = None, progress=None) -> dict:
    """Predict the inputs the store lacks, committing every `commit_every` rows.
    `failed` rows (e.g. undecodable lines) are recorded as they are. Returns done/skipped/failed counts."""
    todo = store.missing(setting_id, inputs)
    skipped = len({normalize_input(t) for t in inputs}) - len(todo)
    counts = {"done": 0, "skipped": skipped, "failed": 0, "inputs": len(inputs)}
    if failed:
        counts["failed"] += store.put_many(setting_id, failed)
    start = time.perf_counter()
    for begin in range(0, len(todo), commit_every):
        rows = predict(todo[begin : begin + commit_every])
        store.put_many(setting_id, rows)
        counts["failed"] += sum(r.get("error") is not None for r in rows)
        counts["done"] += sum(r.get("error") is None for r in rows)
        if progress:
            progress(begin + len(rows), len(todo), time.perf_counter() - start)
    counts["seconds"] = time.perf_counter() - start
    return counts
