"""The distillation route: a smaller student learns from the fine-tuned teacher.

The student is the teacher with N of its layers kept (or another model sharing its vocabulary). It
learns from a pool of inputs many times the train split (`pool.py`) that the teacher labels once,
its outputs kept on disk (`teacher_outputs`). With `kd` labels (label tasks), from the teacher's
distribution over the label set plus the hard label and a hidden-state cosine term (`label_kd.py`);
with `logits`, from the teacher's full distribution at each target position; with `sequence`, from
the teacher's answers; with `none`, from the train labels alone (the baseline that shows what the
teacher adds). Which layers the student keeps is chosen on dev among `layer_choices`, each a trial
of the training recipe (`recipe.py`). Teacher and student are tested by the same code, side by side.

Longer than 300 lines: the route whole, from the student's shape to the side-by-side test; its
parts that stand alone (the pool, the label-set loss, the student's layers) have modules of their own."""

import json
from dataclasses import asdict, replace
from pathlib import Path

import torch

from tuneforge.adapt.finetune import loop_config, run_hash
from tuneforge.adapt.label_kd import LabelScores, label_continuations, label_rows, teacher_hidden
from tuneforge.adapt.loop import TargetLogits
from tuneforge.adapt.losses import ce_loss, hidden_cosine, kd_loss, label_kd_loss
from tuneforge.adapt.pool import PoolInput, build_pool, counts, load_or_build_pool
from tuneforge.adapt.recipe import OnTest, finished_run, run_trial, save_artifact, save_run, score_on_test
from tuneforge.adapt.recipe import accelerator_for, task_record, test_pass, trial_score, use_training_attention
from tuneforge.adapt.rows import Row, build_rows
from tuneforge.adapt.student import block_influence, check_layer_indices, check_vocabularies, influential_layers
from tuneforge.adapt.student import kept_layers, layers_for_ratio, prune_layers
from tuneforge.atomic import write_json_atomic
from tuneforge.data.limits import check_input_lengths
from tuneforge.data.splits import Task
from tuneforge.data.tasks import Example
from tuneforge.errors import TuneforgeError
from tuneforge.hashing import content_hash
from tuneforge.model import provenance
from tuneforge.model.layout import check_student_layers
from tuneforge.model.load import LoadedModel
from tuneforge.model.params import count_parameters, size_on_disk
from tuneforge.predict.predictor import Predictor
from tuneforge.predict.setting import rule_demonstrations
from tuneforge.prompts.formats import PromptFormat, prompt_record
from tuneforge.settings import DistillConfig

POOL_FACTOR = 10
"""The pool's default size: this many times the train split."""
LABEL_CHUNK = 64
"""Pool inputs the teacher labels per cached file."""


def distill(teacher: LoadedModel, task: Task, cfg: DistillConfig, out: Path, *, student: LoadedModel | None = None,
            unlabeled: list[str] | None = None, generator: LoadedModel | None = None, cache_dir: Path | None = None,
            resume: bool = False, progress=None) -> dict:
    """Train a student of `teacher` on `task` and write it under `out` with a side-by-side comparison.
    `generator` writes the pool's extra inputs where `unlabeled` is None (default: the teacher's base
    model); the teacher's outputs are kept in `cache_dir` (default `out/teacher-outputs`)."""
    out, kd = Path(out), resolve_kd(cfg.kd, task)
    check_student(teacher, student, cfg, kd)
    if student is None:  # before the pool and the teacher's outputs, not after them
        check_student_layers(len(teacher.model.get_decoder().layers), cfg.layers, cfg.keep)
    run_id = {"run_hash": run_hash(cfg.training, task) + "|" + _hash([kd, asdict(cfg)]),
              "base_fingerprint": teacher.fingerprint, "student": student.fingerprint if student else None,
              "unlabeled": _hash(unlabeled)}
    if (finished := finished_run(out, resume, run_id)) is not None:
        return finished
    check_input_lengths(task, student.tokenizer if student else teacher.tokenizer)
    teacher.model.requires_grad_(False).eval()
    fmt = PromptFormat(cfg.training.format, task.info.instruction)
    pool = student_pool(teacher, task, cfg, kd, out, unlabeled, generator)
    taught, labelled_now = {}, 0
    if kd != "none":
        outputs, labelled_now = teacher_outputs(teacher, task, fmt, [p.text for p in pool],
                                                cache_dir or out / "teacher-outputs",
                                                cfg.training.uses_bf16(teacher.device))
        taught = dict(zip([p.text for p in pool], outputs))
    influence = None
    if student is None and "influence" in cfg.layer_choices and cfg.keep is None:
        prompts = Predictor(teacher, fmt, task.label_set).encode(task.train, [[] for _ in task.train])  # 0-shot
        influence = block_influence(teacher.model, prompts, teacher.tokenizer.pad_token_id)
    trials, trainee = train_students(teacher, student, task, fmt, cfg, kd, pool, taught, influence, out=out,
                                     run_id=run_id, resume=resume, progress=progress)
    chosen = next(t for t in trials if t["chosen"])
    choice, layers, history = chosen["choice"], chosen["layers"], chosen.pop("history")
    for trial in trials:
        trial.pop("history", None)
    accelerator = accelerator_for(trainee, cfg.training.uses_bf16(trainee.device))
    test = score_on_test(Predictor(trainee, fmt, task.label_set), task, accelerator)
    teacher_test = score_on_test(Predictor(teacher, fmt, task.label_set), task, accelerator,
                                 teacher_demos(teacher, task, task.test))  # as the teacher is served
    results = {
        "route": "distill", "kd": kd, "alpha": cfg.alpha, "temperature": cfg.temperature, "weights": list(cfg.weights),
        "student": student_spec(student, layers, choice), "config": asdict(cfg), "task": task_record(task),
        "teacher": {"path": str(teacher.path), "fingerprint": teacher.fingerprint}, "metric": task.metric,
        "prompt_format": fmt.id, "prompt": prompt_record(fmt, task.label_set),
        "rows": {"train": len(task.train), "teacher": chosen["rows"] - len(task.train)},
        "pool": None if kd == "none" else {"size": len(pool), "sources": counts(pool),
                                           "teacher_labelled_now": labelled_now,
                                           "teacher_cached": len(pool) - labelled_now},
        "influence": influence, "trials": trials, "setting": distill_setting(kd, layers, choice, pool),
        "history": history, "best_dev_score": chosen["dev_score"], "best_step": chosen["best_step"],
        **side_by_side(teacher_test, test, task.metric),
        "parameters": {"teacher": count_parameters(teacher.model), "student": count_parameters(trainee.model)},
        "autocast": "bf16" if accelerator.mixed_precision == "bf16" else "off", "run_id": run_id,
    }
    return save_run(out, results, accelerator, lambda: save_student(trainee, teacher, out, results))


def train_students(teacher: LoadedModel, student: LoadedModel | None, task: Task, fmt: PromptFormat,
                   cfg: DistillConfig, kd: str, pool: list[PoolInput], taught: dict, influence: list[float] | None, *,
                   out: Path, run_id: dict, resume: bool, progress) -> tuple[list[dict], LoadedModel]:
    """One trial per candidate student (`candidates`), each trained and scored on dev; returns the
    trials, the chosen one (the best dev score, the first of equals) marked, and its model."""
    trials, best = [], None
    for name, layers in candidates(teacher, student, cfg, influence):
        trainee = build_student(teacher, student, layers)
        rows, net, loss = training_pieces(teacher, trainee, task, fmt, cfg, kd, pool, taught, layers)
        trial = run_trial(trainee, rows, loss, task, fmt, loop_config(cfg.training, bool(task.dev)),
                          bf16=cfg.training.uses_bf16(trainee.device), out=out / "trials" / name,
                          trial_id={**run_id, "trial": name}, resume=resume, progress=progress, net=net)
        trials.append({"choice": name, "layers": layers, **trial})
        if best is None or trial_score(trial) > trial_score(best[0]):
            best = trials[-1], trainee  # the best so far stays in memory, the others go
    best[0]["chosen"] = True
    return trials, best[1]


def distill_setting(kd: str, layers: list[int] | None, choice: str, pool: list[PoolInput]) -> dict:
    """The chosen student's setting as the report shows it: the KD, the kept layers, the pool's sources."""
    setting = {"kd": kd, "layers": f"{' '.join(map(str, layers))} ({choice})" if layers else None}
    if kd != "none":
        setting["pool"] = f"{len(pool):,} inputs: " + ", ".join(f"{n:,} {s}" for s, n in counts(pool).items())
    return setting


def resolve_kd(kd: str, task: Task) -> str:
    """`auto` as label-set KD for a label task and logit KD for an open one; `labels` needs labels."""
    if kd == "auto":
        return "labels" if task.label_set else "logits"
    if kd == "labels" and not task.label_set:
        raise TuneforgeError("--kd labels needs a task with a label set; this one is open: use logits or sequence")
    return kd


def check_student(teacher: LoadedModel, student: LoadedModel | None, cfg: DistillConfig, kd: str) -> None:
    """A student model of its own needs the teacher's vocabulary for logit or label-set KD, and
    cannot have the teacher's layers chosen for it."""
    if student is None:
        return
    if cfg.keep is not None:
        raise TuneforgeError("--keep chooses the teacher's layers for a pruned student; drop it or --student")
    if kd in ("logits", "labels"):
        check_vocabularies(teacher.tokenizer, student.tokenizer, kd)


def candidates(teacher: LoadedModel, student: LoadedModel | None, cfg: DistillConfig,
               influence: list[float] | None) -> list[tuple[str, list[int] | None]]:
    """The students to try, by name: the layers each keeps (None: a student model of its own)."""
    if student is not None:
        return [("student", None)]
    n_layers = len(teacher.model.get_decoder().layers)
    if cfg.keep is not None:
        return [("given", check_layer_indices(list(cfg.keep), n_layers))]
    keep = cfg.layers or layers_for_ratio(teacher.model, cfg.params_ratio)
    chosen = {"influence": lambda: influential_layers(influence, keep), "even": lambda: kept_layers(n_layers, keep)}
    tried = {}
    for name in cfg.layer_choices:
        layers = chosen[name]()
        if layers not in tried.values():  # the same layers twice would train the same student twice
            tried[name] = layers
    return list(tried.items())


def build_student(teacher: LoadedModel, student: LoadedModel | None, layers: list[int] | None) -> LoadedModel:
    """The model that trains: `student`, or a copy of the teacher keeping `layers` (its weights were
    read from the teacher's directory; it gets a path and fingerprint of its own when saved)."""
    if student is None:
        student = replace(teacher, model=prune_layers(teacher.model, layers))
    student.model.requires_grad_(True)
    use_training_attention(student.model, student.device)
    return student


def student_spec(student: LoadedModel | None, layers: list[int] | None, choice: str) -> dict:
    """What the student is, as results and provenance record it."""
    if student is None:
        return {"pruned_from_teacher": True, "layers": len(layers), "kept": layers, "choice": choice}
    return {"pruned_from_teacher": False, "path": str(student.path)}


def student_pool(teacher: LoadedModel, task: Task, cfg: DistillConfig, kd: str, out: Path,
                 unlabeled: list[str] | None, generator: LoadedModel | None) -> list[PoolInput]:
    """The inputs the student learns from: the train split alone for `kd` none, else the pool
    (kept in `out/pool.json`)."""
    if kd == "none":
        if unlabeled:
            raise TuneforgeError("--unlabeled needs a teacher: use --kd labels, logits or sequence")
        return [PoolInput(ex.input, "train") for ex in task.train]
    size = cfg.pool_size if cfg.pool_size is not None else POOL_FACTOR * len(task.train)
    key = _hash([size, cfg.training.seed, [ex.input for ex in task.split("train") + task.dev + task.test],
                 _hash(unlabeled), None if unlabeled is not None else _generator_id(teacher, generator)])

    def build():
        writer = None if unlabeled is not None else (generator or base_model_of(teacher))
        return build_pool(task, size - len(task.train), generator=writer, unlabeled=unlabeled, seed=cfg.training.seed)

    return load_or_build_pool(out / "pool.json", key, build)


def base_model_of(teacher: LoadedModel) -> LoadedModel:
    """The model the teacher was fine-tuned from (its `tuneforge.json`), or the teacher where unknown;
    in the inference dtype (bf16 where the CPU has it: it only writes inputs)."""
    from tuneforge.model.load import load_model

    base = provenance.base_model_path(provenance.read(teacher.path))
    return load_model(base, dtype="auto") if base and Path(base).is_dir() else teacher


def teacher_demos(teacher: LoadedModel, task: Task, items: list[Example]) -> list[list[Example]] | None:
    """Each item's demonstrations under the rule the teacher was fine-tuned with (None: 0-shot)."""
    rule = provenance.demonstrations(provenance.read(teacher.path))
    return rule_demonstrations(rule, items, task.label_set is not None)


def _generator_id(teacher: LoadedModel, generator: LoadedModel | None) -> str:
    return generator.fingerprint if generator else f"base-of:{teacher.fingerprint}"


def teacher_outputs(teacher: LoadedModel, task: Task, fmt: PromptFormat, texts: list[str], folder: Path,
                    bf16: bool = False) -> tuple[list, int]:
    """The teacher's output for each input — its (K,) label scores for a label task, its answer for an
    open one — and how many it computed now, under bf16 autocast where `bf16` (as the student trains;
    label ranking in bf16 agrees with fp32 on ~99.6 % of inputs). Computed once: each chunk of
    LABEL_CHUNK inputs is kept in `folder` under a name covering the teacher, the prompt and the
    inputs, written atomically, so a killed run resumes from the chunks done and no input is
    labelled twice. A teacher fine-tuned on prompts with demonstrations gets them, as it is served;
    the student learns its 0-shot prompts."""
    predictor = Predictor(teacher, fmt, task.label_set)
    rule = provenance.demonstrations(provenance.read(teacher.path))
    outputs, fresh = [], 0
    for start in range(0, len(texts), LABEL_CHUNK):
        chunk = texts[start:start + LABEL_CHUNK]
        key = _hash([teacher.fingerprint, fmt.id, task.label_set, bf16, chunk] + ([rule] if rule else []))[:16]
        path = folder / f"{start // LABEL_CHUNK:05d}-{key}.json"
        if not path.is_file():
            items = [Example(text, "", f"pool-{start + i}") for i, text in enumerate(chunk)]
            with torch.autocast(teacher.device.type, dtype=torch.bfloat16, enabled=bf16):
                preds = predictor.predict(items, rule_demonstrations(rule, items, task.label_set is not None))
            write_json_atomic(path, preds.scores.tolist() if task.label_set else preds.outputs)
            fresh += len(chunk)
        outputs += json.loads(path.read_text())
    return outputs, fresh


def training_pieces(teacher: LoadedModel, trainee: LoadedModel, task: Task, fmt: PromptFormat, cfg: DistillConfig,
                    kd: str, pool: list[PoolInput], taught: dict, layers: list[int] | None):
    """The rows (the train split with its labels, then the pool's other inputs with the teacher's
    outputs), the net that runs the student on them (None: the shared loop's), and the loss, for `kd`."""
    tok, max_length = trainee.tokenizer, cfg.training.max_length
    extra = [p for p in pool if p.source != "train"]
    if kd == "labels":
        hidden = cfg.weights[2] > 0 and layers is not None
        index = {label: i for i, label in enumerate(task.label_set)}
        texts = [ex.input for ex in task.train] + [p.text for p in extra]
        golds = [index[ex.target] for ex in task.train] + [None] * len(extra)
        sources = ["train"] * len(task.train) + [p.source for p in extra]
        rows = label_rows(texts, [taught[t] for t in texts], golds, sources, fmt, tok, max_length)
        net = LabelScores(trainee.model, label_continuations(fmt, tok, task.label_set), tok.pad_token_id, hidden)
        return rows, net, label_loss(teacher, cfg, layers if hidden else None)
    rows = build_rows(task.train, fmt, tok, max_length)
    answered = [(p, _answer(task, taught[p.text])) for p in extra]
    answered = [(p, a) for p, a in answered if a]  # a teacher that wrote nothing teaches nothing
    examples = [Example(p.text, a, f"pool-{i}") for i, (p, a) in enumerate(answered)]
    extra_rows = build_rows(examples, fmt, tok, max_length)
    rows += [Row(r.ids, r.n_target, p.source) for r, (p, _) in zip(extra_rows, answered)]
    return rows, None, logit_loss(teacher, cfg) if kd == "logits" else _ce


def _answer(task: Task, output) -> str:
    """The teacher's answer: its top label, or the line it wrote."""
    return task.label_set[max(range(len(output)), key=output.__getitem__)] if task.label_set else output


def _ce(logits, batch, n_global, world_size):
    return ce_loss(logits, batch["targets"], n_global, world_size)


def label_loss(teacher: LoadedModel, cfg: DistillConfig, layers: list[int] | None):
    """Label-set KD (`label_kd_loss`); with `layers`, the hidden-state term against the teacher's
    hidden states after those layers, the teacher run on the prompts under no_grad."""

    def loss(out, batch, n_global, world_size):
        hidden = None
        if layers is not None:
            hidden = hidden_cosine(out["hidden"], teacher_hidden(teacher.model, batch, layers), batch["attention_mask"])
        return label_kd_loss(out["scores"], batch["teacher"], batch["targets"], n_global, world_size, cfg.weights,
                             cfg.temperature, hidden)

    return loss


def logit_loss(teacher: LoadedModel, cfg: DistillConfig):
    """Cross-entropy on the targets mixed with the KL to the teacher's distribution at the same target
    positions (`kd_loss`), the teacher run live."""
    teacher_net = TargetLogits(teacher.model.get_decoder(), teacher.model.get_output_embeddings())

    def loss(logits, batch, n_global, world_size):
        with torch.no_grad():  # the teacher only gives targets
            t_logits = teacher_net(batch)  # (N, V)
        return kd_loss(logits, t_logits, batch["targets"], n_global, world_size, cfg.alpha, cfg.temperature)

    return loss


def save_student(student: LoadedModel, teacher: LoadedModel, out: Path, results: dict) -> dict:
    """The student's directory, its `tuneforge.json` naming the student and its teacher apart; returns
    the parameter accounting with each model's size on disk."""
    keys = ("route", "kd", "alpha", "temperature", "weights", "student", "config", "teacher", "prompt_format",
            "prompt", "task")
    provenance = {k: results[k] for k in keys}
    provenance["metrics"] = {results["metric"]: results["student_test"][results["metric"]],
                             "pass": test_pass("the distillation run", results["autocast"])}
    save_artifact(out / "student", student.model, student.tokenizer, provenance)
    params = results["parameters"]
    return {"parameters": {"teacher": {**params["teacher"], "size_on_disk_bytes": size_on_disk(teacher.path)},
                           "student": {**params["student"], "size_on_disk_bytes": size_on_disk(out / "student")}}}


def _hash(value) -> str | None:
    return None if value is None else content_hash(value)


def side_by_side(teacher: OnTest, student: OnTest, metric: str) -> dict:
    """Teacher and student on test: their figures, latencies, the share of the teacher's score the
    student keeps and its speed-up."""
    return {
        "teacher_test": teacher.metrics, "teacher_ms_per_example": teacher.ms_per_example,
        "student_test": student.metrics, "student_ms_per_example": student.ms_per_example,
        "accuracy_retained": student.metrics[metric]["mean"] / max(teacher.metrics[metric]["mean"], 1e-9),
        "speedup": teacher.ms_per_example / student.ms_per_example,
    }
