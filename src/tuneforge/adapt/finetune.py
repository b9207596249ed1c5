"""The fine-tuning route: full fine-tuning of every weight, or LoRA adapters through peft.

Builds its pieces (the model with adapters or every weight trainable, the rows, cross-entropy) and
hands them to the training recipe (`recipe.py`), then writes standard artifacts with their provenance."""

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from tuneforge.adapt.loop import LoopConfig
from tuneforge.adapt.losses import ce_loss
from tuneforge.adapt.recipe import finished_run, save_artifact, save_run, task_record, train_and_test
from tuneforge.adapt.recipe import use_training_attention
from tuneforge.adapt.rows import build_rows
from tuneforge.data.limits import check_input_lengths
from tuneforge.data.splits import Task
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import LoadedModel, cpu_supports_bf16
from tuneforge.model.lora import LLAMA_TARGETS, add_lora, merge
from tuneforge.model.params import count_parameters
from tuneforge.prompts.formats import PromptFormat

METHODS = ("lora", "full")


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of a fine-tuning run."""

    method: str = "lora"
    """`lora` (adapters through peft; the base stays frozen) or `full` (every weight trains)."""
    epochs: int = 4
    """Passes over the train split."""
    lr: float | None = None
    """Peak learning rate; None picks the method's default (LoRA 1e-3, full 5e-5)."""
    batch_size: int = 16
    """Rows per micro-batch (all processes together)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    warmup_ratio: float = 0.1
    """Share of the steps spent warming up linearly."""
    schedule: str = "cosine"
    """Decay after warm-up: `cosine`, `linear` or `constant`."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: float = 32.0
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    lora_targets: tuple[str, ...] = LLAMA_TARGETS
    """Names of the modules that get adapters (default: every linear layer of a llama block)."""
    format: str = "plain"
    """Prompt format of the training rows, the same as the prompting route's zero-shot prompt."""
    max_length: int = 256
    """Longest training row in tokens (prompts are cut from the left)."""
    eval_every: int = 0
    """Optimizer steps between dev evaluations; 0 = once per epoch."""
    patience: int = 0
    """Early stopping after this many dev evaluations without improvement; 0 = never."""
    checkpoint_every: int = 10
    """Optimizer steps between checkpoints; 0 = none."""
    seed: int = 0
    """Seed of the data order, initialisation and dropout."""
    autocast: str = "auto"
    """bf16 autocast with fp32 master weights: `auto` (where the CPU or GPU has bf16), `on` or `off`."""
    merge: bool = False
    """LoRA: also save the merged model."""

    def __post_init__(self):
        checks = [
            (self.method in METHODS, f"unknown method {self.method!r}: choose lora or full"),
            (self.lr is None or self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.epochs > 0, f"epochs must be positive, got {self.epochs}"),
            (self.batch_size > 0 and self.grad_accum > 0, "batch size and gradient accumulation must be positive"),
            (self.lora_r > 0, f"LoRA rank must be positive, got {self.lora_r}"),
            (self.lora_alpha > 0, f"LoRA alpha must be positive, got {self.lora_alpha}"),
            (0 <= self.lora_dropout < 1, f"LoRA dropout must be in [0, 1), got {self.lora_dropout}"),
            (0 <= self.warmup_ratio < 1, f"warm-up ratio must be in [0, 1), got {self.warmup_ratio}"),
            (self.schedule in ("cosine", "linear", "constant"), f"unknown schedule {self.schedule!r}"),
            (self.autocast in ("auto", "on", "off"), f"autocast must be auto, on or off, not {self.autocast!r}"),
            (self.max_length > 1, "max length must be at least 2"),
        ]
        for ok, message in checks:
            if not ok:
                raise TuneforgeError(message)

    def uses_bf16(self, device: torch.device) -> bool:
        """Whether training runs under bf16 autocast on `device`."""
        native = device.type == "cuda" or (device.type == "cpu" and cpu_supports_bf16())
        return self.autocast == "on" or (self.autocast == "auto" and native)

    @property
    def peak_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return 1e-3 if self.method == "lora" else 5e-5


def finetune(loaded: LoadedModel, task: Task, cfg: FinetuneConfig, out: Path, *, resume: bool = False,
             progress=None) -> dict:
    """Fine-tune `loaded` (fp32 weights) on the train split of `task`; write artifacts under `out`."""
    out = Path(out)
    run_id = {"run_hash": run_hash(cfg, task), "base_fingerprint": loaded.fingerprint}
    if (finished := finished_run(out, resume, run_id)) is not None:
        return finished
    check_input_lengths(task, loaded.tokenizer)
    base_counts = count_parameters(loaded.model, loaded.path)
    trainee = replace(loaded, model=trainable_model(loaded, cfg))
    fmt = PromptFormat(cfg.format, task.info.instruction)
    rows = build_rows(task.train, fmt, loaded.tokenizer, cfg.max_length)
    bf16 = cfg.uses_bf16(loaded.device)
    trained = train_and_test(trainee, rows, loss, task, fmt, loop_config(cfg, has_dev=bool(task.dev)), bf16=bf16,
                             out=out, run_id=run_id, resume=resume, progress=progress)
    results = {
        "route": "finetune", "method": cfg.method, "config": asdict(cfg), "peak_lr": cfg.peak_lr,
        "task": task_record(task), "base_model": {"path": str(loaded.path), "fingerprint": loaded.fingerprint},
        "prompt_format": fmt.id, "metric": task.metric,
        "test": trained.test.metrics, "test_predictions": trained.test.predictions,
        "best_dev_score": trained.best_score, "best_step": trained.best_step, "steps": trained.steps,
        "history": trained.history, "processes": trained.accelerator.num_processes,
        "autocast": "bf16" if bf16 else "off", "run_id": run_id,
    }
    return save_run(out, results, trained.accelerator,
                    lambda: save_artifacts(trainee.model, loaded.tokenizer, cfg, out, results, base_counts))


def trainable_model(loaded: LoadedModel, cfg: FinetuneConfig) -> torch.nn.Module:
    """`loaded.model` ready to train: with LoRA adapters (the base frozen), or every weight trainable."""
    use_training_attention(loaded.model, loaded.device)
    torch.manual_seed(cfg.seed)  # LoRA's initialisation draws from it
    if cfg.method == "lora":
        return add_lora(loaded.model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    return loaded.model.requires_grad_(True)


def loss(logits, batch, n_global: int, world_size: int):
    """Fine-tuning's loss: cross-entropy on the target tokens."""
    return ce_loss(logits, batch["targets"], n_global, world_size)


def save_artifacts(model, tokenizer, cfg: FinetuneConfig, out: Path, results: dict, base: dict) -> dict:
    """Full: a model directory. LoRA: an adapter directory (+ the merged model on request).
    Each gets a `tuneforge.json` with its provenance; returns the parameter accounting for the results."""
    trainable = count_parameters(model)["trainable"]
    params = {"base": base["total"], "trainable": trainable, "trainable_pct_of_base": 100 * trainable / base["total"]}
    provenance = {k: results[k] for k in ("route", "method", "config", "base_model", "prompt_format", "task")}
    provenance["metrics"] = {results["metric"]: results["test"][results["metric"]]}
    if cfg.method == "full":
        params["after"] = count_parameters(model)["total"]
        save_artifact(out / "model", model, tokenizer, {**provenance, "parameters": params})
        return {"parameters": params}
    save_artifact(out / "adapter", model, tokenizer, {**provenance, "parameters": params})
    if cfg.merge:
        merged = merge(model)  # after the adapter is saved: merging folds the adapters away
        params["after_merge"] = count_parameters(merged)["total"]
        save_artifact(out / "merged", merged, tokenizer, {**provenance, "parameters": params})
    return {"parameters": params}


def run_hash(cfg: FinetuneConfig, task: Task) -> str:
    """sha256 of what changes the trajectory: the config and the train/dev examples."""
    rows = {s: [[e.id, e.input, e.target, e.group] for e in task.split(s)] for s in ("train", "dev")}
    payload = {"config": asdict(cfg), **rows}  # where a row was read is not part of it
    payload["config"].pop("checkpoint_every")
    payload["config"].pop("merge")
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def loop_config(cfg: FinetuneConfig, has_dev: bool) -> LoopConfig:
    return LoopConfig(epochs=cfg.epochs, lr=cfg.peak_lr, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                      warmup_ratio=cfg.warmup_ratio, schedule=cfg.schedule, weight_decay=cfg.weight_decay,
                      max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, eval_every=cfg.eval_every,
                      patience=cfg.patience if has_dev else 0, checkpoint_every=cfg.checkpoint_every)

