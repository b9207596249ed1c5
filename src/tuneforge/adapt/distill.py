"""The distillation route: a smaller student learns from the fine-tuned teacher.

The student is the teacher with N of its layers kept (or another model sharing its vocabulary). It
trains through the training recipe (`recipe.py`) with logit KD (the teacher's distribution at each
target position), on the teacher's own answers for unlabeled inputs, or on the labels alone (the
baseline that shows what KD adds). Teacher and student are tested by the same code, side by side."""

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import torch

from tuneforge.adapt.finetune import loop_config, run_hash
from tuneforge.adapt.loop import TargetLogits
from tuneforge.adapt.losses import ce_loss, kd_loss
from tuneforge.adapt.recipe import OnTest, finished_run, save_artifact, save_run, score_on_test, task_record
from tuneforge.adapt.recipe import train_and_test, use_training_attention
from tuneforge.adapt.rows import Row, build_rows
from tuneforge.adapt.student import check_vocabularies, layers_for_ratio, prune_layers
from tuneforge.data.limits import check_input_lengths
from tuneforge.data.splits import Task
from tuneforge.data.tasks import Example
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import LoadedModel
from tuneforge.model.params import count_parameters, size_on_disk
from tuneforge.predict.predictor import Predictor
from tuneforge.prompts.formats import PromptFormat
from tuneforge.settings import DistillConfig



def distill(teacher: LoadedModel, task: Task, cfg: DistillConfig, out: Path, *, student: LoadedModel | None = None,
            unlabeled: list[str] | None = None, resume: bool = False, progress=None) -> dict:
    """Train a student of `teacher` on `task` and write it under `out` with a side-by-side comparison."""
    out = Path(out)
    spec = student_spec(teacher, student, cfg)
    run_id = {"run_hash": run_hash(cfg.training, task) + f"|{cfg.kd}|{cfg.alpha}|{cfg.temperature}|{spec}",
              "base_fingerprint": teacher.fingerprint, "unlabeled": _texts_hash(unlabeled)}
    if (finished := finished_run(out, resume, run_id)) is not None:
        return finished
    check_input_lengths(task, student.tokenizer if student else teacher.tokenizer)
    trainee = build_student(teacher, student, spec, cfg.kd)
    fmt = PromptFormat(cfg.training.format, task.info.instruction)
    rows = student_rows(teacher, task, fmt, trainee.tokenizer, cfg, unlabeled)
    trained = train_and_test(trainee, rows, student_loss(teacher, cfg), task, fmt,
                             loop_config(cfg.training, bool(task.dev)), bf16=cfg.training.uses_bf16(trainee.device),
                             out=out, run_id=run_id, resume=resume, progress=progress)
    teacher_test = score_on_test(Predictor(teacher, fmt, task.label_set), task, trained.accelerator)
    results = {
        "route": "distill", "kd": cfg.kd, "alpha": cfg.alpha, "temperature": cfg.temperature, "student": spec,
        "config": asdict(cfg), "task": task_record(task),
        "teacher": {"path": str(teacher.path), "fingerprint": teacher.fingerprint}, "metric": task.metric,
        "rows": {"train": len(task.train), "teacher": len(rows) - len(task.train)},
        "history": trained.history, "best_dev_score": trained.best_score, "best_step": trained.best_step,
        **side_by_side(teacher_test, trained.test, task.metric),
        "parameters": {"teacher": count_parameters(teacher.model), "student": count_parameters(trainee.model)},
        "run_id": run_id,
    }
    return save_run(out, results, trained.accelerator, lambda: save_student(trainee, teacher, out, results))


def student_spec(teacher: LoadedModel, student: LoadedModel | None, cfg: DistillConfig) -> dict:
    """What the student is, as results and provenance record it (and the run id covers)."""
    if student is None:
        return {"pruned_from_teacher": True, "layers": cfg.layers or layers_for_ratio(teacher.model, cfg.params_ratio)}
    return {"pruned_from_teacher": False, "path": str(student.path)}


def build_student(teacher: LoadedModel, student: LoadedModel | None, spec: dict, kd: str) -> LoadedModel:
    """The model that trains: `student`, or a copy of the teacher keeping `spec["layers"]` layers (its
    weights were read from the teacher's directory; it gets a path and fingerprint of its own when saved).
    The teacher is frozen: it only gives targets."""
    teacher.model.requires_grad_(False).eval()
    if student is None:
        student = replace(teacher, model=prune_layers(teacher.model, spec["layers"]))
    elif kd == "logits":
        check_vocabularies(teacher.tokenizer, student.tokenizer)
    student.model.requires_grad_(True)
    use_training_attention(student.model, student.device)
    return student


def student_rows(teacher: LoadedModel, task: Task, fmt: PromptFormat, tokenizer, cfg: DistillConfig,
                 unlabeled: list[str] | None) -> list[Row]:
    """The train split's rows, then (with `unlabeled` inputs) rows of the teacher's answers for them."""
    rows = build_rows(task.train, fmt, tokenizer, cfg.training.max_length)
    if unlabeled:
        if cfg.kd == "none":
            raise TuneforgeError("--unlabeled needs a teacher: use --kd sequence or --kd logits")
        labelled = teacher_labels(teacher, task, fmt, unlabeled)
        answered = build_rows(labelled, fmt, tokenizer, cfg.training.max_length)
        rows += [Row(r.ids, r.n_target, "teacher") for r in answered]
    return rows


def student_loss(teacher: LoadedModel, cfg: DistillConfig):
    """The student's loss: cross-entropy on the targets, or with logit KD, the KL to the teacher's
    distribution at the same target positions mixed with it (`kd_loss`)."""
    teacher_net = TargetLogits(teacher.model.get_decoder(), teacher.model.get_output_embeddings())

    def loss(logits, batch, n_global, world_size):
        if cfg.kd != "logits":
            return ce_loss(logits, batch["targets"], n_global, world_size)
        with torch.no_grad():  # the teacher only gives targets
            t_logits = teacher_net(batch["input_ids"], batch["attention_mask"], batch["rows"], batch["cols"])  # (N, V)
        return kd_loss(logits, t_logits, batch["targets"], n_global, world_size, cfg.alpha, cfg.temperature)

    return loss


def save_student(student: LoadedModel, teacher: LoadedModel, out: Path, results: dict) -> dict:
    """The student's directory, its `tuneforge.json` naming the student and its teacher apart; returns
    the parameter accounting with each model's size on disk."""
    keys = ("route", "kd", "alpha", "temperature", "student", "config", "teacher", "task")
    provenance = {k: results[k] for k in keys}
    provenance["metrics"] = {"student": results["student_test"][results["metric"]]}
    save_artifact(out / "student", student.model, student.tokenizer, provenance)
    params = results["parameters"]
    return {"parameters": {"teacher": {**params["teacher"], "size_on_disk_bytes": size_on_disk(teacher.path)},
                           "student": {**params["student"], "size_on_disk_bytes": size_on_disk(out / "student")}}}


def _texts_hash(texts: list[str] | None) -> str | None:
    return None if texts is None else hashlib.sha256(json.dumps(texts).encode()).hexdigest()


def teacher_labels(teacher: LoadedModel, task: Task, fmt: PromptFormat, inputs: list[str]) -> list[Example]:
    """The teacher's answers for unlabeled inputs (label ranking or greedy generation, batched)."""
    items = [Example(text, "", f"unlabeled-{i}") for i, text in enumerate(inputs)]
    preds = Predictor(teacher, fmt, task.label_set).predict(items).outputs
    return [Example(ex.input, p, ex.id) for ex, p in zip(items, preds) if p]


def side_by_side(teacher: OnTest, student: OnTest, metric: str) -> dict:
    """Teacher and student on test: their figures, latencies, the share of the teacher's score the
    student keeps and its speed-up."""
    return {
        "teacher_test": teacher.metrics, "teacher_ms_per_example": teacher.ms_per_example,
        "student_test": student.metrics, "student_ms_per_example": student.ms_per_example,
        "accuracy_retained": student.metrics[metric]["mean"] / max(teacher.metrics[metric]["mean"], 1e-9),
        "speedup": teacher.ms_per_example / student.ms_per_example,
    }
