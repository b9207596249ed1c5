"""`tuneforge run`: every route of one experiment, each stage cached by a hash of what it depends on,
then one results file and one report.

A stage's hash covers its resolved settings, the task's data, the base model's fingerprint, the
version of tuneforge and the hashes of the stages it builds on (the teacher of a distillation, the
models an audit reads, the route a batch job serves). Change one setting and only the stages whose
hash changes run again; a stage killed midway resumes from its checkpoints; a finished one is read
back from its result, or taken from the stage cache (`experiment/cache.py`) when another run folder
finished it.
"""

import ctypes
import hashlib
import json
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from tuneforge import __version__
from tuneforge.atomic import check_writable, write_json_atomic, write_text_atomic
from tuneforge.settings_io import to_dict
from tuneforge.data.splits import Task, warn_about_task
from tuneforge.errors import TuneforgeError
from tuneforge.hashing import content_hash
from tuneforge.experiment.cache import cache_root, keep, read_finished, relocate, take
from tuneforge.data.source import TaskSource
from tuneforge.experiment.sections import ExperimentConfig
from tuneforge.experiment.decide import recommend
from tuneforge.experiment.report import write_report
from tuneforge.experiment.routes import batch_plan, experiment_results, routes_from_stages
from tuneforge.experiment.stages import RESULTS_VERSION, restore_rows
from tuneforge.model.layout import check_lora_targets, check_student_layers, layer_count
from tuneforge.model.load import default_device, default_model_dir, fingerprint, resolve_model_dir


def run(config: ExperimentConfig, out: str | Path | None = None, *, echo=print, cache=True) -> dict:
    """Run the experiment into `out` (default runs/<name>); return the results record, which is
    also written there as results.json beside report.html and report.md. `cache`: the stage cache's
    folder (True: the one in tuneforge's home; False: none)."""
    run_dir, cache = Path(out or Path("runs") / config.name).resolve(), cache_root(cache)
    started = datetime.now(timezone.utc)
    check_writable(run_dir, folder=True)
    if cache is not None:
        check_writable(cache, folder=True)
    task = config.task.load()  # bad task data stops the run before any stage
    warn_about_task(task)
    check_inputs(config)  # ... and so does any other file or name a later stage would read
    check_finetuning(config, task)  # ... and a fine-tuning objective or shots the task cannot take
    base = (default_model_dir() if config.model is None else resolve_model_dir(config.model)).resolve()
    check_model_settings(config, base)  # ... and any layer or module name the model does not have
    common = {"task": to_dict(config.task), "dtype": config.dtype, "model": str(base)}
    # tuneforge's version too: a stage kept in the cache by an older release is not reused by a newer one
    # (nor one whose record lacks what this build's stages record: RESULTS_VERSION);
    # and the device: a stage made on a GPU (bf16 there) is not a CPU's
    prints = {"base": fingerprint(base), "task": task_fingerprint(task), "tuneforge": __version__,
              "results": RESULTS_VERSION, "device": default_device().type}
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "experiment.json", json.dumps(to_dict(config), indent=2))
    done = {}
    for name in ("prompting", "lora", "full"):
        section = getattr(config, name)
        if section is not None:
            settings = to_dict(replace(section, merge=True) if name == "lora" else section)
            kind = "prompting" if name == "prompting" else "finetune"
            spec = {**common, "kind": kind, "settings": settings}
            done[name] = run_stage(run_dir, name, spec, prints, echo, cache)
    if config.distill is not None:
        for stage, spec in _distill_specs(config, common, done):
            done[stage] = run_stage(run_dir, stage, spec, {**prints, "teacher": done[config.distill.teacher]["hash"]},
                                    echo, cache)
    adapted = [s for s in ("lora", "full", "distill") if s in done]  # the audit reads the main student
    if config.audit is not None:
        spec = {**common, "kind": "audit", "settings": to_dict(config.audit),
                "adapted": [done[s]["result"]["model_dir"] for s in adapted]}
        done["audit"] = run_stage(run_dir, "audit", spec, {**prints, **{s: done[s]["hash"] for s in adapted}}, echo,
                                   cache)
    routes = routes_from_stages(done)
    recommendation = recommend({"routes": routes}, config.report.margin, config.report.cheaper)
    if config.batch is not None:
        plan = batch_plan(config.batch, routes, recommendation, done, task, config.name)
        spec = {**common, "kind": "batch", "settings": plan["settings"], "model": plan["model"],
                "route": plan["route"], "route_slug": plan["slug"], "prior": plan["prior"], "inputs": plan["inputs"],
                "scored": plan["scored"],
                "store": str(run_dir / "store.sqlite")}
        done["batch"] = run_stage(run_dir, "batch", spec, {**prints, "route": done[plan["stage"]]["hash"]}, echo,
                                   cache)
    if config.synonyms is not None:
        spec = _synonyms_spec(config, common, run_dir)
        writer = {"writer": fingerprint(spec["model"])} if spec["model"] != common["model"] else {}
        done["synonyms"] = run_stage(run_dir, "synonyms", spec, {**prints, **writer}, echo, cache)
    results = experiment_results(config, task, base, done, routes, recommendation, started)
    write_json_atomic(run_dir / "results.json", results)
    write_report(results, run_dir)
    return results


def check_inputs(config: ExperimentConfig) -> None:
    """Every file and name the stages will read, checked before the first stage starts (a bad one
    would otherwise surface only at its stage, after the training before it)."""
    from tuneforge.audit.swaps import load_swaps
    from tuneforge.data.inputs import read_inputs, read_unlabeled
    from tuneforge.data.inputs import read_queries, read_topics
    from tuneforge.model.load import check_dtype

    check_dtype(config.dtype)
    if config.audit is not None:
        _checked("audit.swaps", lambda: load_swaps(config.audit.swaps))
    for key, path, read in (("batch.inputs", config.batch and config.batch.inputs, read_inputs),
                            ("synonyms.topics", config.synonyms and config.synonyms.topics, read_topics),
                            ("synonyms.queries", config.synonyms and config.synonyms.queries, read_queries),
                            ("distill.unlabeled", config.distill and config.distill.unlabeled, read_unlabeled)):
        if path:
            _checked(key, lambda: read(path))
    if config.synonyms is not None and config.synonyms.model:
        _checked("synonyms.model", lambda: resolve_model_dir(config.synonyms.model))


def check_finetuning(config: ExperimentConfig, task) -> None:
    """Each fine-tuning section against the task: a label objective needs a label set, shots enough train."""
    from tuneforge.adapt.finetune import check_feasible

    for name in ("lora", "full"):
        if getattr(config, name) is not None:
            _checked(name, lambda: check_feasible(task, getattr(config, name)))


def check_model_settings(config: ExperimentConfig, base: Path) -> None:
    """The LoRA targets and the student's layers, checked against the base model's files (every
    teacher is the base fine-tuned: the same modules and layers) before the first stage."""
    if config.lora is not None:
        check_lora_targets(base, config.lora.lora_targets, "lora.lora_targets")
    n_layers = layer_count(base)
    if config.distill is not None and n_layers is not None:
        flags = ("distill.layers", "distill.keep")
        check_student_layers(n_layers, config.distill.layers, config.distill.keep, flags)
        for size in config.distill.sizes:
            check_student_layers(n_layers, size, flags=("distill.sizes", "distill.keep"))


def _checked(key: str, check) -> None:
    try:
        check()
    except TuneforgeError as e:
        raise TuneforgeError(f"{key}: {e}") from None


def run_stage(run_dir: Path, name: str, spec: dict, prints: dict, echo, cache: Path | None = None) -> dict:
    """The stage's record: read back when its hash matches a finished run, else taken from the
    stage `cache`, else run (or resumed) in a process of its own and kept in the cache."""
    stage_dir = run_dir / "stages" / name
    digest = stage_hash(spec, prints, run_dir)
    result_file, input_file = stage_dir / "result.json", stage_dir / "input.json"
    kept = cache is not None
    finished = read_finished(stage_dir, digest, run_dir)
    if finished is not None:
        echo(f"stage {name}: cached ({digest[:12]})")
        if kept:  # a run folder from before the cache, or one whose entry was cleared
            keep(cache, stage_dir, echo)
        return {**finished, "name": name, "cached": True}
    taken = take(cache, digest, stage_dir, run_dir, echo) if kept else None
    if taken is not None and spec["kind"] in ("batch", "synonyms"):  # its rows go into this run's store
        taken = restore_rows(stage_dir)
    if taken is not None:
        echo(f"stage {name}: from cache {cache / digest} ({digest[:12]})")
        return {**taken, "name": name, "cached": True}
    if not (input_file.is_file() and json.loads(input_file.read_text())["hash"] == digest):
        shutil.rmtree(stage_dir, ignore_errors=True)  # other settings: nothing there to resume
    stage_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(input_file, {**spec, "hash": digest, "run_dir": str(run_dir)})
    echo(f"stage {name}: running ({digest[:12]})")
    proc = subprocess.run([sys.executable, "-m", "tuneforge.stage_process", str(stage_dir)],
                          preexec_fn=_die_with_parent)
    if proc.returncode != 0:
        error = stage_dir / "error.json"
        reason = json.loads(error.read_text())["error"] if error.is_file() else f"exit status {proc.returncode}"
        raise TuneforgeError(f"stage {name}: {reason}")
    if kept:
        keep(cache, stage_dir, echo)
    return {**json.loads(result_file.read_text()), "name": name, "cached": False}


def stage_hash(spec: dict, prints: dict, run_dir: Path) -> str:
    """sha256 of the stage's resolved settings and of the fingerprints of what it reads (where it
    writes, the store's path, is not an input). A path into the run folder counts from the folder,
    so that a stage has one hash in every run folder: the stage cache's key."""
    inputs = relocate({k: v for k, v in spec.items() if k != "store"}, [(str(run_dir), "<run>")])
    return content_hash({"spec": inputs, "fingerprints": prints})


def task_fingerprint(task: Task) -> str:
    """sha256 of the task's three splits and its description: a changed example changes it."""
    rows = {s: [[ex.id, ex.input, ex.target, ex.group] for ex in task.split(s)] for s in ("train", "dev", "test")}
    return content_hash({"rows": rows, "info": task.info.__dict__})


def _file_hash(path: str | None) -> str | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise TuneforgeError(f"{path}: no such file")
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _distill_specs(config: ExperimentConfig, common: dict, done: dict) -> list[tuple[str, dict]]:
    """(stage, spec) of the main student and of each of `distill.sizes`, all taught by one teacher."""
    settings = to_dict(replace(config.distill, sizes=()))
    spec = {**common, "kind": "distill", "settings": settings,
            "teacher": done[config.distill.teacher]["result"]["model_dir"],
            "unlabeled": _file_hash(config.distill.unlabeled), "teacher_cache": "teacher-outputs"}
    return [(stage, {**spec, "settings": {**settings, "layers": layers or settings["layers"]}})
            for stage, layers in [("distill", None)] + [(f"distill-{n}", n) for n in config.distill.sizes]]


def _synonyms_spec(config: ExperimentConfig, common: dict, run_dir: Path) -> dict:
    from tuneforge.data.inputs import builtin_queries_path, read_queries, read_topics
    from tuneforge.data.tasks import builtin_path

    section = config.synonyms
    topics = read_topics(section.topics or builtin_path("synonyms"))
    queries = section.queries or (None if section.topics else builtin_queries_path())
    settings = {k: v for k, v in to_dict(section).items() if k not in ("topics", "model", "queries")}
    settings["name"] = section.name or f"{config.name}-synonyms"
    model = str(resolve_model_dir(section.model).resolve()) if section.model else common["model"]
    return {**common, "task": to_dict(TaskSource(name="synonyms")), "kind": "synonyms", "settings": settings,
            "model": model, "route": "synonym lists", "inputs": topics,
            "queries": read_queries(queries) if queries else None, "store": str(run_dir / "store.sqlite")}


def _die_with_parent() -> None:
    """A stage dies with the run that started it (Linux), so a killed run leaves no stage behind
    to race the next attempt for its checkpoints."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
