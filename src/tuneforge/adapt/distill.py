"""The distillation route: a smaller student learns from the fine-tuned teacher.

The student is the teacher with N of its layers kept (or another model sharing its vocabulary). It
trains on the shared loop with logit KD (the teacher's distribution at each target position), on the
teacher's own answers for unlabeled inputs, or on the labels alone (the baseline that shows what KD
adds). Teacher and student are evaluated by the same code, side by side."""

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from tuneforge.adapt.checkpoint import load_trainable
from tuneforge.adapt.finetune import FinetuneConfig, finished_run, loop_config, run_hash, save_dir
from tuneforge.adapt.finetune import use_training_attention
from tuneforge.adapt.loop import TargetLogits, train
from tuneforge.adapt.losses import ce_loss, kd_loss
from tuneforge.adapt.rows import Row, build_rows
from tuneforge.adapt.student import check_vocabularies, layers_for_ratio, prune_layers
from tuneforge.atomic import write_json_atomic
from tuneforge.data.limits import check_input_lengths
from tuneforge.data.splits import Task
from tuneforge.data.tasks import Example
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.prompting import PromptingConfig, predict_items, summarize
from tuneforge.model.load import LoadedModel
from tuneforge.model.params import count_parameters, size_on_disk
from tuneforge.prompts.formats import PromptFormat

KD_MODES = ("logits", "sequence", "none")


@dataclass(frozen=True)
class DistillConfig:
    """Settings of a distillation run."""

    layers: int | None = None
    """Teacher layers the pruned student keeps; None: from `params_ratio`."""
    params_ratio: float = 0.4
    """Largest student as a share of the teacher's parameters (used when `layers` is None)."""
    kd: str = "logits"
    """`logits` (KL to the teacher at each target position + CE), `sequence` (CE on the teacher's
    answers for the unlabeled inputs, beside the labels), or `none` (labels only: the baseline)."""
    alpha: float = 0.5
    """Weight of the KD term against cross-entropy on the labels."""
    temperature: float = 2.0
    """Softmax temperature of the KD term."""
    training: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(method="full", epochs=8, lr=3e-4))
    """How the student trains (every weight; the shared loop's settings)."""

    def __post_init__(self):
        if self.kd not in KD_MODES:
            raise TuneforgeError(f"unknown --kd {self.kd!r}: choose {', '.join(KD_MODES)}")
        if not 0 <= self.alpha <= 1 or self.temperature <= 0:
            raise TuneforgeError("alpha must be in [0, 1] and the temperature positive")
        if self.layers is not None and self.layers < 1:
            raise TuneforgeError(f"--layers {self.layers}: the student keeps at least 1 layer")
        if not 0 < self.params_ratio < 1:
            raise TuneforgeError(f"--params-ratio {self.params_ratio}: give a ratio between 0 and 1")
        if self.training.method != "full":
            raise TuneforgeError("the student trains every weight (method full)")


def distill(teacher: LoadedModel, task: Task, cfg: DistillConfig, out: Path, *, student: LoadedModel | None = None,
            unlabeled: list[str] | None = None, resume: bool = False, progress=None) -> dict:
    """Train a student of `teacher` on `task` and write it under `out` with a side-by-side comparison."""
    from accelerate import Accelerator

    out = Path(out)
    if student is None:
        spec = {"pruned_from_teacher": True, "layers": cfg.layers or layers_for_ratio(teacher.model, cfg.params_ratio)}
    else:
        spec = {"pruned_from_teacher": False, "path": str(student.path)}
    run_id = {"run_hash": run_hash(cfg.training, task) + f"|{cfg.kd}|{cfg.alpha}|{cfg.temperature}|{spec}",
              "base_fingerprint": teacher.fingerprint, "unlabeled": _texts_hash(unlabeled)}
    if (finished := finished_run(out, resume, run_id)) is not None:
        return finished
    check_input_lengths(task, student.tokenizer if student else teacher.tokenizer)
    teacher.model.requires_grad_(False).eval()
    if student is None:
        student_model = prune_layers(teacher.model, spec["layers"])
    else:
        if cfg.kd == "logits":
            check_vocabularies(teacher.tokenizer, student.tokenizer)
        student_model = student.model
    student_model.requires_grad_(True)
    use_training_attention(student_model, teacher.device)
    s_tok = student.tokenizer if student else teacher.tokenizer
    fmt = PromptFormat(cfg.training.format, task.info.instruction)
    rows = build_rows(task.train, fmt, s_tok, cfg.training.max_length)
    if unlabeled:
        if cfg.kd == "none":
            raise TuneforgeError("--unlabeled needs a teacher: use --kd sequence or --kd logits")
        labelled = teacher_labels(teacher, task, fmt, unlabeled)
        rows += [Row(r.ids, r.n_target, "teacher") for r in build_rows(labelled, fmt, s_tok, cfg.training.max_length)]
    use_bf16 = cfg.training.uses_bf16(teacher.device)
    accelerator = Accelerator(mixed_precision="bf16" if use_bf16 else "no")
    net = TargetLogits(student_model.get_decoder(), student_model.get_output_embeddings())
    teacher_net = TargetLogits(teacher.model.get_decoder(), teacher.model.get_output_embeddings())
    view = LoadedModel(student_model, s_tok, teacher.path, teacher.fingerprint, teacher.dtype, teacher.device)

    def loss(logits, batch, n_global, world_size):
        if cfg.kd != "logits":
            return ce_loss(logits, batch["targets"], n_global, world_size)
        with torch.no_grad():  # the teacher only gives targets
            t_logits = teacher_net(batch["input_ids"], batch["attention_mask"], batch["rows"], batch["cols"])
        return kd_loss(logits, t_logits, batch["targets"], n_global, world_size, cfg.alpha, cfg.temperature)

    def evaluate() -> float:
        with accelerator.autocast():
            preds = predict_items(view, task, task.dev, fmt, 0, None, PromptingConfig(split="dev"), seed=0)["raw"]
        return summarize([e.target for e in task.dev], [preds], task.info.kind)[_metric(task)]["mean"]

    result = train(net, rows, loss, loop_config(cfg.training, bool(task.dev)), accelerator=accelerator,
                   pad_id=s_tok.pad_token_id, evaluate=evaluate if task.dev else None,
                   checkpoint_dir=out / "checkpoints", resume=resume, run_id=run_id, progress=progress)
    if result["best"] is not None:
        load_trainable(net, result["best"])
    net.eval()
    teacher_view = LoadedModel(teacher.model, teacher.tokenizer, teacher.path, teacher.fingerprint, teacher.dtype,
                               teacher.device)
    side = compare_on_test(teacher_view, view, task, fmt, accelerator)
    results = {
        "route": "distill", "kd": cfg.kd, "alpha": cfg.alpha, "temperature": cfg.temperature, "student": spec,
        "config": asdict(cfg), "task": {**asdict(task.info), "sizes": {s: len(task.split(s)) for s in ("train", "dev", "test")}},
        "teacher": {"path": str(teacher.path), "fingerprint": teacher.fingerprint}, "metric": _metric(task),
        "rows": {"train": len(task.train), "teacher": len(rows) - len(task.train)},
        "history": result["history"], "best_dev_score": result["best_score"], "best_step": result["best_step"],
        **side, "run_id": run_id,
    }
    if accelerator.is_main_process:
        provenance = {k: results[k] for k in ("route", "kd", "alpha", "temperature", "student", "config", "teacher", "task")}
        provenance["metrics"] = {"student": results["student_test"][results["metric"]]}
        save_dir(out / "student", lambda d: student_model.save_pretrained(d), s_tok, provenance)
        results["parameters"]["student"]["size_on_disk_bytes"] = size_on_disk(out / "student")
        results["parameters"]["teacher"]["size_on_disk_bytes"] = size_on_disk(teacher.path)
        write_json_atomic(out / "results.json", results)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return results


def _texts_hash(texts: list[str] | None) -> str | None:
    return None if texts is None else hashlib.sha256(json.dumps(texts).encode()).hexdigest()


def teacher_labels(teacher: LoadedModel, task: Task, fmt: PromptFormat, inputs: list[str]) -> list[Example]:
    """The teacher's answers for unlabeled inputs (label ranking or greedy generation, batched)."""
    items = [Example(text, "", f"unlabeled-{i}") for i, text in enumerate(inputs)]
    preds = predict_items(teacher, task, items, fmt, 0, None, PromptingConfig(), seed=0)["raw"]
    return [Example(ex.input, p, ex.id) for ex, p in zip(items, preds) if p]


def compare_on_test(teacher: LoadedModel, student: LoadedModel, task: Task, fmt, accelerator) -> dict:
    """Test metrics, parameters and latency of teacher and student, measured side by side."""
    gold, out = [e.target for e in task.test], {}
    for name, model in (("teacher", teacher), ("student", student)):
        with accelerator.autocast():
            predict_items(model, task, task.test[:8], fmt, 0, None, PromptingConfig(), seed=0)  # warm-up
            start = time.perf_counter()
            preds = predict_items(model, task, task.test, fmt, 0, None, PromptingConfig(), seed=0)["raw"]
            seconds = time.perf_counter() - start
        out[f"{name}_test"] = summarize(gold, [preds], task.info.kind)
        out[f"{name}_ms_per_example"] = 1000 * seconds / len(gold)
    metric = _metric(task)
    out["accuracy_retained"] = out["student_test"][metric]["mean"] / max(out["teacher_test"][metric]["mean"], 1e-9)
    out["speedup"] = out["teacher_ms_per_example"] / out["student_ms_per_example"]
    out["parameters"] = {"teacher": count_parameters(teacher.model), "student": count_parameters(student.model)}
    return out


def _metric(task: Task) -> str:
    return "accuracy" if task.info.kind == "labels" else "exact_match"
