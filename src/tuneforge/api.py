"""The Python API: what each `tuneforge` subcommand does, as functions.

What needs torch is imported inside each verb, after its task data and files are read: a bad file is
refused in a second, not after torch has loaded."""

from pathlib import Path

from tuneforge.atomic import check_writable, write_json_atomic
from tuneforge.data.source import TaskSource, task_source
from tuneforge.data.splits import load_task, warn_about_task  # load_task: in `__all__`
from tuneforge.data.tasks import builtin_info, builtin_path, builtin_tasks, read_examples
from tuneforge.errors import TuneforgeError
from tuneforge.experiment.sections import experiment_config
from tuneforge.settings import (
    AuditConfig, BatchConfig, DistillConfig, FinetuneConfig, PromptingConfig, SynonymsConfig,
)


def prompt(task: "str | TaskSource" = "fruit", *, model: str | None = None, dtype: str = "auto",
        config: PromptingConfig = PromptingConfig(), out: str | Path | None = None) -> dict:
    """Compare zero-, one- and few-shot prompting of `model` (default: the embedded model) on `task`.

    Returns the results record; with `out`, also writes it there as JSON (atomically)."""
    source, data = _task(task, out, folder=False)
    from tuneforge.evaluate.prompting import check_feasible, compare_prompting
    from tuneforge.model.load import load_model

    check_feasible(data, config)
    loaded = load_model(model, dtype=dtype)
    results = compare_prompting(loaded, data, config)
    results["task"]["split_seed"] = source.split_seed
    if out is not None:
        write_json_atomic(out, results)
    return results


def finetune(task: "str | TaskSource" = "fruit", *, model: str | None = None,
        config: FinetuneConfig = FinetuneConfig(), out: str | Path = "runs/finetune", resume: bool = False,
        progress=None) -> dict:
    """Fine-tune `model` (default: the embedded model) on `task` with LoRA or every weight; artifacts
    and results.json go to `out`. `resume` continues a killed run from its last checkpoint."""
    source, data = _task(task, out, folder=True)
    from tuneforge.adapt.finetune import check_feasible
    from tuneforge.adapt.finetune import finetune as run_finetune
    from tuneforge.model.load import load_model

    check_feasible(data, config)
    loaded = load_model(model, dtype="fp32")  # fp32 master weights; bf16 comes from autocast
    return run_finetune(loaded, data, config, Path(out), resume=resume, progress=progress)


def distill(task: "str | TaskSource" = "fruit", *, teacher: str, student: str | None = None,
        config: DistillConfig = DistillConfig(), out: str | Path = "runs/distill", unlabeled: str | None = None,
        teacher_cache: str | Path | None = None, resume: bool = False, progress=None) -> dict:
    """Distil the fine-tuned `teacher` (a model directory) into a smaller student on `task`."""
    from tuneforge.data.inputs import read_unlabeled

    source, data = _task(task, out, folder=True)
    texts = read_unlabeled(unlabeled) if unlabeled else None
    from tuneforge.adapt.distill import distill as run_distill
    from tuneforge.model.load import load_model

    teacher_model = load_model(teacher, dtype="fp32")
    student_model = load_model(student, dtype="fp32") if student else None
    return run_distill(teacher_model, data, config, Path(out), student=student_model, unlabeled=texts,
                       cache_dir=Path(teacher_cache) if teacher_cache else None, resume=resume, progress=progress)


def batch(inputs: str | Path | None = None, *, store: str | Path, task: str = "fruit", model: str | None = None,
        dtype: str = "auto", config: BatchConfig = BatchConfig(), from_misses: bool = False, engine: str = "local",
        actors: int = 2, progress=None) -> dict:
    """Fill the prediction store at `store` with `model`'s predictions for the inputs in `inputs`
    (or for the misses the server queued), in `task`'s prompt format and label set. Idempotent.
    `engine="ray"` runs the same job on Ray Data (`actors` model replicas), writing the same store."""
    from tuneforge.data.inputs import read_inputs
    from tuneforge.store.sqlite import PredictionStore, check_store

    if inputs is None and not from_misses:
        raise TuneforgeError("give an inputs file, or --from-misses")
    if engine not in ("local", "ray"):
        raise TuneforgeError(f"unknown engine {engine!r}: choose local or ray")
    texts, failed = read_inputs(inputs) if inputs is not None else ([], [])
    data = task_source(task).load()
    check_writable(store, folder=False)  # before the model loads; the store opens once it has
    check_store(store)
    from tuneforge.batch.job import fill_store
    from tuneforge.model.load import load_model

    loaded = load_model(model, dtype=dtype)
    db = PredictionStore(store)
    try:
        summary = fill_store(db, loaded, data, config, texts, failed=failed, from_misses=from_misses, engine=engine,
                             actors=actors, progress=progress)
    finally:
        db.close()
    return {**summary, "store": str(store)}


def synonyms(topics: str | Path, *, store: str | Path, task: str = "synonyms", model: str | None = None,
        dtype: str = "auto", device: str | None = None, config: SynonymsConfig = SynonymsConfig(),
        queries: str | Path | None = None, writer_dir: str | Path | None = None, progress=None,
        training_progress=None) -> dict:
    """Synonym lists for the topics in the file `topics`, written by `model` (default: the embedded
    model; any local model directory, e.g. a bigger one than serves, or a list writer fine-tuned on
    `task`) into the prediction store at `store`, by the recipe of `batch/synonyms.py`: the filter
    chosen on `task`'s dev topics. Idempotent. Returns the job's counts, the choice and recipe, the
    list scores of `task`'s test topics among them, and the topic precision and recall over live
    `queries` (a JSONL file of {"query", "topics"}; default: the built-in ones, for the built-in topics).
    With `writer: lora` (the default), the LoRA list writer is trained into `writer_dir` (default:
    `<store>.writer` beside the store) first, or reused from there."""
    from tuneforge.data.inputs import builtin_queries_path, read_queries, read_topics
    from tuneforge.store.sqlite import PredictionStore, check_store

    texts = read_topics(topics)
    live = read_queries(queries) if queries is not None else None
    data = task_source(task).load()
    check_writable(store, folder=False)
    check_store(store)
    writer_dir = Path(writer_dir) if writer_dir is not None else Path(f"{store}.writer")
    from tuneforge.adapt.list_writer import list_writer
    from tuneforge.batch.synonyms import evaluate_lists, run_synonyms

    loaded = list_writer(model, data, config, writer_dir, dtype=dtype, device=device, progress=training_progress)
    db = PredictionStore(store)
    try:
        summary = run_synonyms(loaded, data, config, texts, db, progress=progress)
        if live is None and task == "synonyms":
            live = read_queries(builtin_queries_path())
        scores = evaluate_lists(db, summary["setting"], data, live)
    finally:
        db.close()
    return {**summary, **scores, "store": str(store)}


def predict(model: str | Path | None, inputs: "list[str] | str | Path", *, task: str | None = None,
        config: BatchConfig = BatchConfig(), dtype: str = "auto", device: str | None = None) -> list[dict]:
    """Predictions of `model` for `inputs` (a list of texts, or a file of them: JSONL, CSV or plain
    lines), one row each: {"input", "output"} and, for a label task, "logprobs" (the labels' log-
    probabilities, best first); {"input", "error"} for an input it cannot take (e.g. too long).

    `model` is a fine-tuned or distilled model (its run directory, model directory, or LoRA adapter
    directory: the prompt format and labels it was trained with come from its `tuneforge.json`), an
    experiment's run directory (its recommended route as the run's store serves it, prompting
    settings included: demonstrations, calibration), or any other model with `task` giving the
    prompt (0-shot unless `config` says otherwise)."""
    from tuneforge.data.inputs import read_inputs

    texts, failed = (list(inputs), []) if isinstance(inputs, (list, tuple)) else read_inputs(inputs, unique=False)
    if not texts:
        return failed
    from tuneforge.predict.setting import SettingPredictor, artifact_pool, artifact_setting, build_setting, demo_pool
    from tuneforge.model.load import load_model

    if model is not None and (Path(model) / "results.json").is_file() and (Path(model) / "experiment.json").is_file():
        from tuneforge.experiment.finished import served_predictor

        predictor = served_predictor(Path(model), config.batch_size, device)
    else:
        loaded = load_model(model, dtype=dtype, device=device)
        if task is None:
            predictor = SettingPredictor(loaded, artifact_setting(loaded, config), artifact_pool(loaded.path),
                                         config.batch_size)
        else:
            data = task_source(task).load()
            predictor = SettingPredictor(loaded, build_setting(loaded, data, config), demo_pool(data), config.batch_size)
    rows = failed
    for begin in range(0, len(texts), config.commit_every):
        rows += predictor(texts[begin : begin + config.commit_every])
    return [{"input": r["input"], "error": r["error"]} if "error" in r else
            {"input": r["input"], "output": r["output"], **({"logprobs": r["meta"]["logprobs"]}
                                                             if "logprobs" in r["meta"] else {})} for r in rows]


def audit(task: "str | TaskSource" = "bias-demo", *, models: list[str | None] | None = None,
        config: "AuditConfig | None" = None, dtype: str = "auto", out: str | Path | None = None) -> dict:
    """Audit each of `models` (None or "default": the embedded model, prompted per shot count;
    a fine-tuned or distilled run directory: as trained) for bias on `task`: per-group scores and
    gaps, and flip rates under counterfactual swaps. `results["passed"]` is False when a
    threshold of `config` is exceeded (`results["violations"]` says where)."""
    config = config or AuditConfig()
    source, data = _task(task, out, folder=False)
    specs = [None if m in (None, "default") else m for m in (models or [None])]
    from tuneforge.audit.run import audit_models

    results = audit_models(specs, data, config, dtype=dtype)
    results["task"]["split_seed"] = source.split_seed
    if out is not None:
        write_json_atomic(out, results)
    return results


def _task(task, out: "str | Path | None", *, folder: bool) -> "tuple[TaskSource, object]":
    """Check that `out` (a file, or with `folder` a folder) can be written, then read and check the
    task data: a bad file or path is refused before torch loads."""
    if out is not None:
        check_writable(out, folder=folder)
    source = task_source(task)
    data = source.load()
    warn_about_task(data)
    return source, data


def run(config="demo", *, overrides=(), out: str | Path | None = None, echo=print,
        cache: str | Path | bool = True) -> dict:
    """Run an experiment: every route on one task, each stage cached, one report. `config` is an
    `ExperimentConfig`, a YAML file, or "demo" (the built-in experiment); `overrides` are dotted
    settings (`["lora.epochs=2"]`). `cache` is where finished stages are kept for any run folder:
    True for tuneforge's home (`cache/stages`), a folder, or False (or "none") for no such cache.
    Returns the results record (also written to `out`)."""
    from tuneforge.experiment.run import run as run_experiment

    return run_experiment(experiment_config(config, overrides), out, echo=echo, cache=cache)


def report(run_dir: str | Path, margin: float | None = None) -> dict:
    """Rewrite report.html and report.md of a finished run from its results.json alone. With
    `margin`, the recommendation is made again with it (results.json keeps the run's own)."""
    from tuneforge.experiment.finished import rewrite_report

    return rewrite_report(Path(run_dir), margin)


def model_info(model: str | None = None, dtype: str = "auto") -> dict:
    """Where a model lives, its fingerprint, dtype and parameter counts."""
    from tuneforge.model.load import load_model
    from tuneforge.model.params import count_parameters

    loaded = load_model(model, dtype=dtype)
    return {
        "path": str(loaded.path),
        "fingerprint": loaded.fingerprint,
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "device": str(loaded.device),
        "parameters": count_parameters(loaded.model, loaded.path),
    }


def tasks() -> list[dict]:
    """The built-in tasks with their kind, size and description."""
    return [
        {**builtin_info(name), "examples": len(read_examples(builtin_path(name)))} for name in builtin_tasks()
    ]


__all__ = ["run", "report", "experiment_config", "audit", "prompt", "finetune", "distill", "DistillConfig", "batch", "BatchConfig", "synonyms", "SynonymsConfig", "model_info", "tasks", "PromptingConfig", "FinetuneConfig", "load_task",
           "TaskSource"]
