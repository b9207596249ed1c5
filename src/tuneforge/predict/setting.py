"""A stored setting and the predictor built from it: everything that changes an output (model
fingerprint and path, dtype, prompt format, how each input's demonstrations are picked and from which
train split, label calibration and scoring, or decoding), self-contained but for the demonstration
pool (named by its content hash). Batch jobs write settings into the store; `tuneforge predict`, the
server's live misses and the Ray engine rebuild the predictor from a setting and its pool, here, so a
live request's path runs model -> predict, never through the batch layer."""

import torch

from tuneforge.data.splits import Task
from tuneforge.data.tasks import Example
from tuneforge.errors import TuneforgeError
from tuneforge.hashing import content_hash
from tuneforge.model import provenance
from tuneforge.model.load import LoadedModel, load_model
from tuneforge.predict.predictor import Predictor
from tuneforge.prompts.formats import PromptFormat
from tuneforge.prompts.shots import check_shots, pick_demos
from tuneforge.settings import BatchConfig

TOP_LOGPROBS = 20
"""Most label log-probabilities kept per row (OpenAI's `top_logprobs` allows up to 20)."""


def demo_pool(task: Task) -> list[list[str]]:
    """The train split as a demonstration pool: [input, target, id] rows."""
    return [[ex.input, ex.target, ex.id] for ex in task.train]


def build_setting(loaded: LoadedModel, task: Task, cfg: BatchConfig, prior: list[float] | None = None) -> dict:
    """Everything that changes an output, self-contained but for the demonstration pool (named by its
    fingerprint; `demo_pool`): a server can rebuild the predictor from the two. Batch calibration
    against `prior` (K,), or against the prior on the task's dev split when it is None."""
    check_shots(task, cfg.shots)
    calibration = {"method": cfg.calibration if task.label_set is not None else "none", "prior": None}
    if calibration["method"] == "batch":
        calibration["prior"] = prior if prior is not None else dev_prior(loaded, task, cfg)
    demos = {"shots": cfg.shots, "pick": cfg.pick, "seed": cfg.seed, "pool": content_hash(demo_pool(task)),
             "pool_size": len(task.train)} if cfg.shots else None
    return _setting(loaded, task.info.name, task.label_set, cfg.format, task.info.instruction, cfg, demos, calibration)


def artifact_setting(loaded: LoadedModel, cfg: BatchConfig) -> dict:
    """The setting of a fine-tuned or distilled model, from the prompt its `tuneforge.json` records
    (format, instruction, labels, and the demonstration rule of a model trained with them),
    uncalibrated, as it was trained and scored. Its pool: `artifact_pool`."""
    record = provenance.read(loaded.path)
    prompt = provenance.prompt(record)
    if prompt is None:
        raise TuneforgeError(f"{loaded.path}: records no prompt format (not a model tuneforge trained, or one "
                             "trained by an older tuneforge): give --task to say which task's prompt to use")
    rule = provenance.demonstrations(record)
    demos = None if rule is None else {"shots": rule["shots"], "pick": rule["pick"], "seed": rule["seed"],
                                       "pool": content_hash(rule["pool"]), "pool_size": len(rule["pool"])}
    return _setting(loaded, record["task"]["name"], prompt["labels"], prompt["format"], prompt["instruction"],
                    cfg, demos, {"method": "none", "prior": None})


def artifact_pool(folder) -> list[list[str]] | None:
    """The demonstration pool a model fine-tuned with demonstrations recorded (its train split), or
    None for a 0-shot model."""
    rule = provenance.demonstrations(provenance.read(folder))
    return None if rule is None else rule["pool"]


def rule_demonstrations(rule: dict | None, items: list[Example], labelled: bool) -> list[list[Example]] | None:
    """Each item's demonstrations under a model's recorded rule (`provenance.demonstrations`); None
    for a 0-shot model."""
    if rule is None:
        return None
    pool = [Example(i, t, ident) for i, t, ident in rule["pool"]]
    return [pick_demos(pool, ex, rule["shots"], rule["pick"], rule["seed"], labelled=labelled) for ex in items]


def _setting(loaded: LoadedModel, name: str, labels: list[str] | None, style: str, instruction: str | None,
             cfg: BatchConfig, demos: dict | None, calibration: dict) -> dict:
    labelled = labels is not None
    return {
        "model": {"fingerprint": loaded.fingerprint, "path": str(loaded.path),
                  "dtype": str(loaded.dtype).removeprefix("torch.")},
        "task": name,
        "mode": "labels" if labelled else "generate",
        "labels": labels,
        "format": style,
        "instruction": instruction or None,
        "demos": demos,
        "calibration": calibration if labelled else None,
        "scoring": cfg.scoring if labelled else None,
        "decoding": {"greedy": True, "max_new_tokens": cfg.max_new_tokens} if not labelled else None,
        "max_input_tokens": cfg.max_input_tokens,
    }


def dev_prior(loaded: LoadedModel, task: Task, cfg: BatchConfig) -> list[float]:
    """Batch calibration's label prior (K,) over the task's dev split (train where it has none),
    each item with the demonstrations the setting gives it."""
    items = task.dev or task.train
    if not items:
        raise TuneforgeError(f"batch calibration needs a dev or train split to estimate the label prior; "
                             f"{task.info.name!r} has neither")
    fmt = PromptFormat(cfg.format, task.info.instruction)
    predictor = Predictor(loaded, fmt, task.label_set, batch_size=cfg.batch_size)
    demos = [pick_demos(task.train, ex, cfg.shots, cfg.pick, cfg.seed) for ex in items] if cfg.shots else None
    return predictor.predict(items, demos).prior(cfg.scoring).tolist()


class SettingPredictor:
    """Rows for inputs under one stored setting, predicted by the one `Predictor`: each input's
    demonstrations picked from `pool` as the setting says, and a failed row where a prompt is over
    its token limit. A row's meta counts its prompt and completion tokens and, for a label task,
    holds the top labels' log-probabilities."""

    def __init__(self, loaded: LoadedModel, setting: dict, pool: list[list[str]] | None = None,
                 batch_size: int = 16):
        if setting["model"]["fingerprint"] != loaded.fingerprint:
            raise TuneforgeError("the model does not match the store's setting (fingerprints differ)")
        if "demos" in setting and isinstance(setting["demos"], list):
            raise TuneforgeError("the store's setting was written by an older tuneforge; run the batch job again")
        self.demos = setting["demos"]
        if self.demos is not None and (pool is None or content_hash(pool) != self.demos["pool"]):
            raise TuneforgeError("the setting picks demonstrations from a train split this predictor was not "
                                 "given (or was given another one)")
        self.pool = [Example(i, t, ident) for i, t, ident in pool] if self.demos else []
        fmt = PromptFormat(setting["format"], setting["instruction"])
        calibration = setting.get("calibration") or {"method": "none", "prior": None}
        prior = torch.tensor(calibration["prior"]) if calibration["prior"] is not None else None
        max_new_tokens = (setting["decoding"] or {}).get("max_new_tokens", 48)  # label settings have no decoding
        self.predictor = Predictor(loaded, fmt, setting["labels"], batch_size=batch_size, max_new_tokens=max_new_tokens,
                                   calibration=calibration["method"], scoring=setting.get("scoring") or "sum",
                                   prior=prior)
        self.max_input_tokens = setting["max_input_tokens"]

    def demonstrations(self, item: Example) -> list[Example]:
        if not self.demos:
            return []
        return pick_demos(self.pool, item, self.demos["shots"], self.demos["pick"], self.demos["seed"],
                          labelled=self.predictor.labels is not None)

    def __call__(self, inputs: list[str], on_text=None) -> list[dict]:
        """One row per input: {"input", "output", "meta"} or {"input", "error"}. With `on_text` (one
        input), the answer is also handed over piece by piece as it is written (`Predictor`)."""
        items = [Example(text, "", "\0") for text in inputs]
        demos = [self.demonstrations(ex) for ex in items]
        prompts, limit = self.predictor.encode(items, demos), self.max_input_tokens
        fits = [i for i, ids in enumerate(prompts) if len(ids) <= limit]  # longer prompts become failed rows
        out = self.predictor.predict_encoded([prompts[i] for i in fits], [demos[i] for i in fits], on_text)
        answers = zip(out.outputs, self._metas(out, [len(prompts[i]) for i in fits]))
        return [dict(zip(("input", "output", "meta"), (text, *next(answers)))) if len(ids) <= limit
                else {"input": text, "error": f"prompt has {len(ids)} tokens, more than {limit}"}
                for text, ids in zip(inputs, prompts)]

    def _metas(self, out, prompt_tokens: list[int]) -> list[dict]:
        p = self.predictor
        if out.scores is None:  # generated: the answer's own tokens
            tok = p.loaded.tokenizer
            return [{"prompt_tokens": n, "completion_tokens": len(tok(text, add_special_tokens=False).input_ids)}
                    for n, text in zip(prompt_tokens, out.outputs)]
        logprobs = out.label_logprobs(p.calibration, p.scoring, p.prior)  # (N, K)
        # stable: equal labels keep their order, so the first is the answer argmax gave
        values, indices = (t[:, :TOP_LOGPROBS] for t in logprobs.sort(dim=-1, descending=True, stable=True))
        return [{"prompt_tokens": n, "completion_tokens": len(p.continuations[p.labels.index(answer)]),
                 "logprobs": [[p.labels[i], round(v, 6)] for v, i in zip(vs, ids)]}
                for n, answer, vs, ids in zip(prompt_tokens, out.outputs, values.tolist(), indices.tolist())]


def predictor_for_setting(setting: dict, pool: list[list[str]] | None = None, batch_size: int = 16
                          ) -> SettingPredictor:
    """Load the setting's model (same path and dtype) and build its predictor, e.g. for live misses."""
    loaded = load_model(setting["model"]["path"], dtype=setting["model"]["dtype"])  # "bfloat16" / "float32"
    return SettingPredictor(loaded, setting, pool, batch_size)


def setting_pool(store, setting: dict) -> list[list[str]] | None:
    """The demonstration pool `setting` picks from, read from `store` (None for a 0-shot setting)."""
    return store.pool(setting["demos"]["pool"]) if setting.get("demos") else None
