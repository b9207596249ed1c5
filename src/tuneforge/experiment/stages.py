"""One experiment stage, run in a process of its own (`python -m tuneforge.stage_process DIR`, whose
entry point draws the progress bars and calls `run_stage_dir`).

The parent writes `DIR/input.json` (the stage's kind and its resolved settings) and waits; the stage
writes `DIR/result.json` atomically when it is done, with its wall time and the peak memory of its
process. A process per stage makes that peak the stage's own, and a killed stage leaves its
checkpoints under `DIR/run` for the next attempt to resume from.
"""

import json
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from tuneforge.atomic import write_json_atomic
from tuneforge.errors import TuneforgeError


@dataclass(frozen=True)
class Progress:
    """Where a stage reports its progress (the stage process's entry point passes the console's bars)."""

    step: Callable | None = None
    """Training: `on_step(step, total, record, elapsed)`."""
    rows: Callable | None = None
    """Batch jobs: `on_rows(done, total, elapsed)`."""


def prompting(spec: dict, stage_dir: Path, progress: Progress) -> dict:
    from tuneforge.settings_io import from_dict
    from tuneforge.evaluate.prompting import PromptingConfig, compare_prompting
    from tuneforge.model.load import load_model
    from tuneforge.model.params import size_on_disk
    from tuneforge.predict.predictor import Predictor
    from tuneforge.prompts.formats import PromptFormat

    task, cfg = load_task_spec(spec["task"]), from_dict(PromptingConfig, spec["settings"])
    loaded = load_model(spec["model"], dtype=spec["dtype"])
    # warm-up on train items, so the first condition's latency is not oneDNN's start-up
    Predictor(loaded, PromptFormat("plain"), task.label_set, batch_size=cfg.batch_size,
              max_new_tokens=cfg.max_new_tokens).predict(task.train[:8])
    results = compare_prompting(loaded, task, cfg)
    results["size_on_disk_bytes"] = size_on_disk(loaded.path)
    return results


def finetune(spec: dict, stage_dir: Path, progress: Progress) -> dict:
    from tuneforge.adapt.finetune import FinetuneConfig
    from tuneforge.adapt.finetune import finetune as run_finetune
    from tuneforge.settings_io import from_dict
    from tuneforge.model.load import load_model

    task, cfg = load_task_spec(spec["task"]), from_dict(FinetuneConfig, spec["settings"])
    out = stage_dir / "run"  # only this stage's run lives here (another hash wipes it): always resume,
    start = time.perf_counter()  # from checkpoints, or by reading back a run that finished before a kill
    results = run_finetune(load_model(spec["model"], dtype="fp32"), task, cfg, out, resume=True,
                           progress=progress.step)
    seconds = time.perf_counter() - start
    model_dir = out / ("merged" if cfg.method == "lora" else "model")
    return {"results": results, "training_seconds": seconds, "model_dir": str(model_dir),
            "serving": serving_pass(model_dir, task, cfg.format, spec["dtype"])}


def distill(spec: dict, stage_dir: Path, progress: Progress) -> dict:
    from tuneforge.adapt.distill import distill as run_distill
    from tuneforge.data.inputs import read_unlabeled
    from tuneforge.settings_io import from_dict
    from tuneforge.experiment.sections import DistillStage
    from tuneforge.model.load import load_model

    task, cfg = load_task_spec(spec["task"]), from_dict(DistillStage, spec["settings"])
    texts = read_unlabeled(cfg.unlabeled) if cfg.unlabeled else None
    out = stage_dir / "run"
    start = time.perf_counter()
    results = run_distill(load_model(spec["teacher"], dtype="fp32"), task, cfg, out, unlabeled=texts,
                          cache_dir=stage_dir.parent.parent / spec["teacher_cache"],  # in the run's folder,
                          resume=True, progress=progress.step)  # shared by every student size
    seconds = time.perf_counter() - start
    return {"results": results, "training_seconds": seconds, "model_dir": str(out / "student"),
            "serving": serving_pass(out / "student", task, cfg.training.format, spec["dtype"])}


RESULTS_VERSION = 3
"""The shape of what the stages record (2: tokens per example and per-item dev scores, which the
recommendation weighs; 3: the prompting choice's train-CV scores, and latency timed alike by every
route). Every stage hash covers it, so a stage that an older build of the same release kept in the
cache, without those figures, runs again instead of being reused."""

SERVING_BATCH = 16
"""Prompts per forward pass of an adapted route's serving pass."""


def serving_pass(model_dir: Path, task, style: str, dtype: str) -> dict:
    """The test split predicted as the model would be served (inference dtype, batched), and timed
    like every route (`predict.timing.latency`): the score, latency and tokens processed per example
    every adapted route reports; and dev, predicted alike, the score the recommendation weighs."""
    from tuneforge.evaluate.metrics import summarize
    from tuneforge.model.load import load_model
    from tuneforge.model.params import count_parameters, size_on_disk
    from tuneforge.model import provenance
    from tuneforge.predict.predictor import Predictor
    from tuneforge.predict.setting import rule_demonstrations
    from tuneforge.predict.timing import latency
    from tuneforge.prompts.formats import PromptFormat

    loaded = load_model(model_dir, dtype=dtype)
    predictor = Predictor(loaded, PromptFormat(style, task.info.instruction), task.label_set,
                          batch_size=SERVING_BATCH)
    rule, labelled = provenance.demonstrations(provenance.read(model_dir)), task.label_set is not None

    def predict(items):  # each item with the demonstrations the model was trained with, if any
        return predictor.predict(items, rule_demonstrations(rule, items, labelled))

    test_demos = rule_demonstrations(rule, task.test, labelled)
    preds = predictor.predict(task.test, test_demos).outputs
    timed = latency(predict, task.test)  # as the prompting route's chosen condition is timed
    dev = predict(task.dev).outputs  # the score the recommendation weighs, in the same dtype
    test = summarize([ex.target for ex in task.test], [preds], task.scored_as)
    record_serving_pass(model_dir, test, task.metric, str(loaded.dtype).removeprefix("torch."))
    tokens = predictor.tokens(task.test, test_demos, preds)
    return {"test": test, "predictions": preds, "tokens_per_example": sum(tokens) / len(tokens),
            "dev": summarize([ex.target for ex in task.dev], [dev], task.scored_as) if task.dev else None,
            "ms_per_example": timed["ms_per_example"], "examples_per_second": timed["examples_per_second"],
            "latency": timed, "parameters": count_parameters(loaded.model),
            "size_on_disk_bytes": size_on_disk(loaded.path)}


def record_serving_pass(model_dir: Path, test: dict, metric: str, dtype: str) -> None:
    """Beside the training run's own figure, the model's `tuneforge.json` keeps the figure the
    experiment's report shows, and says which pass produced it."""
    from tuneforge.model import provenance

    record = provenance.read(model_dir)
    record["metrics_in_report"] = {metric: test[metric], "pass": (
        f"the test split, scored by the experiment's serving pass: the saved model loaded in {dtype}, "
        f"batches of {SERVING_BATCH}; the report shows this figure")}
    provenance.write(model_dir, record)


def audit(spec: dict, stage_dir: Path, progress: Progress) -> dict:
    from tuneforge.audit.run import AuditConfig, audit_models
    from tuneforge.settings_io import from_dict

    task, cfg = load_task_spec(spec["task"]), from_dict(AuditConfig, spec["settings"])
    return audit_models([spec["model"], *spec["adapted"]], task, cfg, dtype=spec["dtype"])


def batch(spec: dict, stage_dir: Path, progress: Progress) -> dict:
    """The chosen route's predictions for the inputs into the store (idempotent: a rerun, or a
    resumed kill, predicts only what the store lacks). The test split goes first, in the batches the
    route's test pass used, so the store holds bit for bit the predictions the experiment scored
    (in bf16, other batch compositions move near-tied labels)."""
    from tuneforge.batch.job import BatchConfig, local_predictor, run_batch, store_setting
    from tuneforge.predict.setting import demo_pool
    from tuneforge.settings_io import from_dict
    from tuneforge.model.load import load_model
    from tuneforge.store.sqlite import PredictionStore

    task, cfg = load_task_spec(spec["task"]), from_dict(BatchConfig, spec["settings"])
    loaded = load_model(spec["model"], dtype=spec["dtype"])
    db = PredictionStore(spec["store"])
    try:
        setting, sid = store_setting(db, loaded, task, cfg, prior=spec.get("prior"),
                                     route=spec.get("route_slug"))
        predict = local_predictor(loaded, setting, cfg, demo_pool(task))
        summary = {"done": 0, "failed": 0}
        if spec.get("scored"):  # the test split first, batched as the route's test pass batched it
            scored = spec["scored"]
            same = local_predictor(loaded, setting, replace(cfg, batch_size=scored["batch_size"]), demo_pool(task))
            first = run_batch(same, db, sid, scored["inputs"], commit_every=max(len(scored["inputs"]), 1))
            summary = {k: first[k] for k in summary}
        rest = run_batch(predict, db, sid, spec["inputs"], commit_every=cfg.commit_every, progress=progress.rows)
        summary = {**rest, "done": rest["done"] + summary["done"], "failed": rest["failed"] + summary["failed"],
                   "skipped": rest["skipped"] - summary["done"] - summary["failed"]}
        stats = db.stats()
        keep_rows(stage_dir, db, setting, sid, demo_pool(task) if setting["demos"] else None)
    finally:
        db.close()
    rows = stats["settings"].get(sid, {"rows": 0, "failed": 0})
    return {"path": spec["store"], "route": spec["route"], "setting": sid, "name": rows.get("name"),
            "inputs": len(spec["inputs"]),
            "rows": rows["rows"], "failed": rows["failed"], "coverage": rows["rows"] / max(len(spec["inputs"]), 1),
            "size_bytes": stats["bytes"], "summary": summary}


def synonyms(spec: dict, stage_dir: Path, progress: Progress) -> dict:
    """Synonym lists for the topics into the store, written by `spec["model"]` (the base model by
    default) or, with `writer: lora`, by a list writer fine-tuned from it first (in the stage's
    folder, so a killed stage resumes its training), the filter chosen on the synonyms task's dev
    topics; then how good they are: list scores on its test topics, topic precision and recall over
    the live queries. Idempotent, as a batch job."""
    from tuneforge.predict.setting import demo_pool
    from tuneforge.adapt.list_writer import list_writer
    from tuneforge.batch.synonyms import SynonymsConfig, evaluate_lists, run_synonyms
    from tuneforge.settings_io import from_dict
    from tuneforge.store.sqlite import PredictionStore

    task, cfg = load_task_spec(spec["task"]), from_dict(SynonymsConfig, spec["settings"])
    loaded = list_writer(spec["model"], task, cfg, stage_dir / "writer", dtype=spec["dtype"], progress=progress.step)
    db = PredictionStore(spec["store"])
    try:
        summary = run_synonyms(loaded, task, cfg, spec["inputs"], db, progress=progress.rows)
        scores = evaluate_lists(db, summary["setting"], task, spec["queries"])
        stats = db.stats()
        setting = db.settings()[summary["setting"]]
        keep_rows(stage_dir, db, setting, summary["setting"], demo_pool(task) if setting["demos"] else None)
    finally:
        db.close()
    rows = stats["settings"].get(summary["setting"], {"rows": 0, "failed": 0})
    counts = {k: summary[k] for k in ("done", "skipped", "failed", "inputs", "seconds")}
    return {"path": spec["store"], "route": spec["route"], "setting": summary["setting"], "name": summary["name"],
            "inputs": len(spec["inputs"]), "rows": rows["rows"], "failed": rows["failed"],
            "coverage": rows["rows"] / max(len(spec["inputs"]), 1), "size_bytes": stats["bytes"], "summary": counts,
            "model": summary["model"], "recipe": summary["recipe"], "choice": summary["choice"], **scores}


def keep_rows(stage_dir: Path, db, setting: dict, sid: str, pool: list | None) -> None:
    """The job's rows beside its result (`rows.json`: its setting, pool, name and rows), so the stage
    cache can put them into another run's store (`restore_rows`) instead of predicting them again."""
    named = db.names().get(sid, {"name": None, "route": None})
    rows = [{k: r[k] for k in ("input", "output", "error", "meta")} for r in db.rows(sid)]
    write_json_atomic(stage_dir / "rows.json", {"setting": setting, "pool": pool, "name": named["name"],
                                                 "route": named["route"], "rows": rows})


def restore_rows(stage_dir: Path) -> dict:
    """A batch stage taken from the stage cache into this run: its kept rows put into this run's store
    (its setting names this run's model folder now, so its id is new), its result.json saying so;
    returns the stage's record."""
    from tuneforge.store.sqlite import PredictionStore

    spec = json.loads((stage_dir / "input.json").read_text())
    kept = json.loads((stage_dir / "rows.json").read_text())
    record = json.loads((stage_dir / "result.json").read_text())
    db = PredictionStore(spec["store"])
    try:
        sid = db.add_setting(kept["setting"])
        if kept["pool"] is not None:
            db.add_pool(kept["pool"])
        if kept["name"] is not None:
            db.name_setting(kept["name"], sid, kept["route"])
        db.put_many(sid, kept["rows"])
        size = db.stats()["bytes"]
    finally:
        db.close()
    record["result"] = {**record["result"], "path": spec["store"], "setting": sid, "size_bytes": size}
    write_json_atomic(stage_dir / "result.json", record)
    return record


STAGES = {"prompting": prompting, "finetune": finetune, "distill": distill, "audit": audit, "batch": batch,
          "synonyms": synonyms}


def load_task_spec(t: dict):
    """The task of an experiment's `task` section (as plain data: the parent passes it to the stage)."""
    from tuneforge.data.source import TaskSource

    return TaskSource(**t).load()


def run_stage_dir(stage_dir: Path, progress: Progress = Progress()) -> int:
    """Run the stage `stage_dir/input.json` describes; write its result.json (or error.json, exit 2)."""
    spec = json.loads((stage_dir / "input.json").read_text())
    start = time.perf_counter()
    try:
        result = STAGES[spec["kind"]](spec, stage_dir, progress)
    except TuneforgeError as e:
        write_json_atomic(stage_dir / "error.json", {"error": str(e)})
        return 2
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    write_json_atomic(stage_dir / "result.json", {"hash": spec["hash"], "seconds": time.perf_counter() - start,
                                                   "peak_memory_bytes": peak, "result": result})
    return 0
