"""The fine-tuning route: full fine-tuning of every weight, or LoRA adapters through peft.

Builds the pieces, runs the shared loop, evaluates on dev while training (keeping the best), touches
the test split once at the end, and writes standard artifacts with their provenance."""

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tuneforge.adapt.checkpoint import load_trainable
from tuneforge.adapt.loop import LoopConfig, TargetLogits, train
from tuneforge.adapt.losses import ce_loss
from tuneforge.adapt.rows import build_rows
from tuneforge.atomic import write_json_atomic
from tuneforge.data.limits import check_input_lengths
from tuneforge.data.splits import Task
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.prompting import PromptingConfig, predict_items, summarize
from tuneforge.model.load import LoadedModel, cpu_supports_bf16
from tuneforge.model.lora import LLAMA_TARGETS, add_lora, base_model, merge
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
             accelerator=None, progress=None) -> dict:
    """Fine-tune `loaded` (fp32 weights) on the train split of `task`; write artifacts under `out`."""
    from accelerate import Accelerator

    out = Path(out)
    run_id = {"run_hash": run_hash(cfg, task), "base_fingerprint": loaded.fingerprint}
    if (finished := finished_run(out, resume, run_id)) is not None:
        return finished
    check_input_lengths(task, loaded.tokenizer)
    use_bf16 = cfg.uses_bf16(loaded.device)
    accelerator = accelerator or Accelerator(mixed_precision="bf16" if use_bf16 else "no")
    base_counts = count_parameters(loaded.model, loaded.path)
    model = loaded.model
    use_training_attention(model, loaded.device)
    torch.manual_seed(cfg.seed)  # LoRA's initialisation draws from it
    if cfg.method == "lora":
        model = add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    else:
        model.requires_grad_(True)
    fmt = PromptFormat(cfg.format, task.info.instruction)
    rows = build_rows(task.train, fmt, loaded.tokenizer, cfg.max_length)
    view = LoadedModel(model, loaded.tokenizer, loaded.path, loaded.fingerprint, loaded.dtype, loaded.device)
    net = TargetLogits(base_model(model).get_decoder(), base_model(model).get_output_embeddings())
    trainable = count_parameters(model)["trainable"]

    def evaluate() -> float:
        with accelerator.autocast():
            preds = predict_items(view, task, task.dev, fmt, 0, None, PromptingConfig(split="dev"), seed=0)["raw"]
        metric = "accuracy" if task.info.kind == "labels" else "exact_match"
        return summarize([ex.target for ex in task.dev], [preds], task.info.kind)[metric]["mean"]

    result = train(net, rows, loss, loop_config(cfg, has_dev=bool(task.dev)), accelerator=accelerator,
                   pad_id=loaded.tokenizer.pad_token_id, evaluate=evaluate if task.dev else None,
                   checkpoint_dir=out / "checkpoints", resume=resume, run_id=run_id, progress=progress)
    if result["best"] is not None:
        load_trainable(net, result["best"])  # keep the best dev evaluation, not the last step
    with accelerator.autocast():  # the test split, touched once
        test_preds = predict_items(view, task, task.test, fmt, 0, None, PromptingConfig(), seed=0)["raw"]
    metrics = summarize([ex.target for ex in task.test], [test_preds], task.info.kind)
    results = {
        "route": "finetune", "method": cfg.method, "config": asdict(cfg), "peak_lr": cfg.peak_lr,
        "task": {**asdict(task.info), "sizes": {s: len(task.split(s)) for s in ("train", "dev", "test")}},
        "base_model": {"path": str(loaded.path), "fingerprint": loaded.fingerprint},
        "prompt_format": fmt.id, "metric": "accuracy" if task.info.kind == "labels" else "exact_match",
        "test": metrics, "test_predictions": test_preds,
        "best_dev_score": result["best_score"], "best_step": result["best_step"], "steps": result["step"],
        "history": result["history"], "processes": accelerator.num_processes,
        "autocast": "bf16" if use_bf16 else "off", "run_id": run_id,
    }
    if accelerator.is_main_process:
        results["parameters"] = save_artifacts(model, loaded, cfg, out, results, base_counts, trainable)
        write_json_atomic(out / "results.json", results)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the run is complete; artifacts hold it
    accelerator.wait_for_everyone()
    return results


def use_training_attention(model, device: torch.device) -> None:
    """On the CPU, plain (eager) attention: PyTorch's CPU SDPA backward costs ~3.5 ms per layer on
    short rows, eager ~1.5 (measured by bench/finetune_throughput.py's profile). GPUs keep SDPA."""
    if device.type == "cpu":
        model.set_attn_implementation("eager")


def loss(logits, batch, n_global: int, world_size: int):
    """Fine-tuning's loss: cross-entropy on the target tokens."""
    return ce_loss(logits, batch["targets"], n_global, world_size)


def save_artifacts(model, loaded, cfg: FinetuneConfig, out: Path, results: dict, base: dict, trainable: int) -> dict:
    """Full: a model directory. LoRA: an adapter directory (+ the merged model on request).
    Each gets a `tuneforge.json` with its provenance; returns the parameter accounting."""
    params = {"base": base["total"], "trainable": trainable, "trainable_pct_of_base": 100 * trainable / base["total"]}
    provenance = {k: results[k] for k in ("route", "method", "config", "base_model", "prompt_format", "task")}
    provenance["metrics"] = {results["metric"]: results["test"][results["metric"]]}
    if cfg.method == "full":
        params["after"] = count_parameters(model)["total"]
        save_dir(out / "model", lambda d: model.save_pretrained(d), loaded.tokenizer, {**provenance, "parameters": params})
        return params
    adapter_prov = {**provenance, "parameters": params}
    save_dir(out / "adapter", lambda d: model.save_pretrained(d), loaded.tokenizer, adapter_prov)
    if cfg.merge:
        merged = merge(model)
        params["after_merge"] = count_parameters(merged)["total"]
        save_dir(out / "merged", lambda d: merged.save_pretrained(d), loaded.tokenizer, {**provenance, "parameters": params})
    return params


def save_dir(target: Path, save, tokenizer, provenance: dict) -> None:
    tmp = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "tuneforge.json").write_text(json.dumps(provenance, indent=2, default=str))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


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


def finished_run(out: Path, resume: bool, run_id: dict) -> dict | None:
    """The results of the run already finished in `out` when resuming the same run (a kill after the
    results were written but before the caller used them loses nothing); None when there is none.
    Refuses to overwrite a finished run or unfinished checkpoints without --resume."""
    results_file = out / "results.json"
    if results_file.is_file():
        finished = json.loads(results_file.read_text())
        if not resume:
            raise TuneforgeError(f"{out}: holds a finished run; choose another --out (or add --resume to read it back)")
        if finished.get("run_id") != run_id:
            raise TuneforgeError(f"{out}: holds a finished run of other settings or data; choose another --out")
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # a kill may have left them behind
        return finished
    if not resume and (out / "checkpoints").is_dir() and any((out / "checkpoints").glob("step-*")):
        raise TuneforgeError(f"{out}: holds checkpoints of an unfinished run; add --resume or choose another --out")
    return None
