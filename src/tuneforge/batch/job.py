"""Batch jobs: predict ahead of time for known inputs and fill the prediction store.

A job's *setting* (model fingerprint and path, dtype, prompt format, demonstrations, label set or
decoding) is written into the store once; each input's key is the setting plus the input. A re-run
computes only what the store lacks; rows are committed in chunks, so a job killed at any moment
loses at most the chunk in flight and stores nothing twice."""

import time

from tuneforge.data.splits import Task
from tuneforge.data.tasks import Example
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import LoadedModel, load_model
from tuneforge.predict.predictor import Predictor
from tuneforge.prompts.formats import PromptFormat
from tuneforge.prompts.shots import is_same_item, pick_demos
from tuneforge.settings import BatchConfig
from tuneforge.store.keys import normalize_input


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
        "labels": task.label_set,
        "format": cfg.format,
        "instruction": task.info.instruction or None,
        "demos": [[d.input, d.target] for d in demos],
        "decoding": {"greedy": True, "max_new_tokens": cfg.max_new_tokens} if task.info.kind == "generate" else None,
        "max_input_tokens": cfg.max_input_tokens,
    }


class SettingPredictor:
    """Rows for inputs under one stored setting, predicted by the one `Predictor`: the setting's
    fixed demonstration set in every prompt, and a failed row where a prompt is over its token limit."""

    def __init__(self, loaded: LoadedModel, setting: dict, batch_size: int = 16):
        if setting["model"]["fingerprint"] != loaded.fingerprint:
            raise TuneforgeError("the model does not match the store's setting (fingerprints differ)")
        fmt = PromptFormat(setting["format"], setting["instruction"])
        max_new_tokens = (setting["decoding"] or {}).get("max_new_tokens", 48)  # label settings have no decoding
        self.predictor = Predictor(loaded, fmt, setting["labels"], batch_size=batch_size, max_new_tokens=max_new_tokens)
        self.demos = [Example(i, t, f"demo-{n}") for n, (i, t) in enumerate(setting["demos"])]
        self.shots = max(len(self.demos) - 1, 0)  # the last demonstration is the spare
        self.max_input_tokens = setting["max_input_tokens"]

    def __call__(self, inputs: list[str]) -> list[dict]:
        """One row per input: {"input", "output"} or {"input", "error"}."""
        items = [Example(text, "", "\0") for text in inputs]
        demos = [[d for d in self.demos if not is_same_item(d, ex)][: self.shots] for ex in items]
        prompts, limit = self.predictor.encode(items, demos), self.max_input_tokens
        fits = [i for i, ids in enumerate(prompts) if len(ids) <= limit]  # longer prompts become failed rows
        answers = iter(self.predictor.predict_encoded([prompts[i] for i in fits], [demos[i] for i in fits]).outputs)
        return [{"input": text, "output": next(answers)} if len(ids) <= limit
                else {"input": text, "error": f"prompt has {len(ids)} tokens, more than {limit}"}
                for text, ids in zip(inputs, prompts)]


def predictor_for_setting(setting: dict, batch_size: int = 16) -> SettingPredictor:
    """Load the setting's model (same path and dtype) and build its predictor, e.g. for live misses."""
    loaded = load_model(setting["model"]["path"], dtype=setting["model"]["dtype"])  # "bfloat16" / "float32"
    return SettingPredictor(loaded, setting, batch_size)


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

    predict = SettingPredictor(loaded, setting, cfg.batch_size)
    return synonym_predictor(predict) if synonym_lists else predict


def run_batch(predict, store, setting_id: str, inputs: list[str], *, commit_every: int = 64,
              failed: list[dict] | None = None, progress=None) -> dict:
    """The local engine: `predict` over chunks of `commit_every` inputs, through the one writer loop."""

    def chunks(todo: list[str]):
        for begin in range(0, len(todo), commit_every):
            yield predict(todo[begin : begin + commit_every])

    return write_predictions(chunks, store, setting_id, inputs, failed=failed, progress=progress)


def write_predictions(chunks, store, setting_id: str, inputs: list[str], *, failed: list[dict] | None = None,
                      progress=None) -> dict:
    """The one writer loop of every engine: predict what the store lacks and commit each chunk of rows
    `chunks(todo)` yields in one transaction, so a killed job loses at most the chunk in flight.
    `failed` rows (e.g. undecodable lines) are recorded as they are. Returns done/skipped/failed counts."""
    todo = store.missing(setting_id, inputs)
    counts = {"done": 0, "skipped": len({normalize_input(t) for t in inputs}) - len(todo), "failed": 0,
              "inputs": len(inputs)}
    if failed:
        counts["failed"] += store.put_many(setting_id, failed)
    start, written = time.perf_counter(), 0
    for rows in chunks(todo) if todo else ():  # nothing to compute: start no engine
        store.put_many(setting_id, rows)
        counts["failed"] += sum(r.get("error") is not None for r in rows)
        counts["done"] += sum(r.get("error") is None for r in rows)
        written += len(rows)
        if progress:
            progress(written, len(todo), time.perf_counter() - start)
    counts["seconds"] = time.perf_counter() - start
    return counts
