"""What each `tuneforge` subcommand does once its arguments are parsed: build the config, call the
Python API, print. (`cli.py` holds the parser; `flags.from_args` builds a route's config.)"""

import json
import os
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

from tuneforge.errors import TuneforgeError
from tuneforge.flags import from_args


def _main_process() -> bool:
    """Whether this is the process that prints: under `accelerate launch` (or torchrun) every
    process trains, and each is told its RANK; run on its own, a process is the main one."""
    return os.environ.get("RANK", "0") == "0"


def _task_source(args):
    """The task data flags as a TaskSource (`--no-instruction`: an empty instruction)."""
    source = from_args(args, "task_source")
    return replace(source, instruction="") if args.no_instruction else source


def cmd_distill(args) -> int:
    config = from_args(args)  # a DistillConfig, its `training` from the fine-tuning flags
    from tuneforge.api import distill
    from tuneforge.console import render_distill, training_progress

    with training_progress(main_process=_main_process()) as progress:
        results = distill(_task_source(args), teacher=args.teacher, student=args.student, config=config, out=args.out,
                          unlabeled=args.unlabeled, teacher_cache=args.teacher_cache, resume=args.resume,
                          progress=progress)
    render_distill(results)
    print(f"results: {os.path.join(args.out, 'results.json')}")
    return 0


def cmd_finetune(args) -> int:
    config = from_args(args)  # a FinetuneConfig
    from tuneforge.api import finetune
    from tuneforge.console import render_finetune, training_progress

    with training_progress(main_process=_main_process()) as progress:
        results = finetune(_task_source(args), model=args.model, config=config, out=args.out, resume=args.resume,
                           progress=progress)
    if "parameters" in results:  # the main process (the others return quietly under accelerate launch)
        render_finetune(results)
        print(f"results: {os.path.join(args.out, 'results.json')}")
    return 0


def cmd_predict(args) -> int:
    config = from_args(args)  # a BatchConfig: the prompt, for a model that records none
    from tuneforge.api import predict
    from tuneforge.atomic import check_writable, write_text_atomic

    if args.out:
        check_writable(args.out, folder=False)
    inputs = args.inputs
    if inputs == "-":
        inputs = [line.strip() for line in sys.stdin if line.strip()]
        if not inputs:
            raise TuneforgeError("--inputs -: standard input holds no inputs")
    rows = predict(args.model, inputs, task=args.task, config=config, dtype=args.dtype, device=args.device)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if args.out:
        write_text_atomic(args.out, text)
        print(f"{len(rows):,} predictions: {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_batch(args) -> int:
    config = from_args(args)  # a BatchConfig
    from tuneforge.api import batch
    from tuneforge.console import job_progress

    with job_progress() as progress:
        summary = batch(args.inputs, store=args.store, task=args.task, model=args.model, dtype=args.dtype,
                        config=config, from_misses=args.from_misses, engine=args.engine, actors=args.actors,
                        progress=progress)
    print(f"done {summary['done']} · skipped {summary['skipped']} (already stored) · failed {summary['failed']} "
          f"· {summary['seconds']:.1f} s · model {summary['name']} (setting {summary['setting'][:12]}) "
          f"· store {summary['store']}")
    return 0


def cmd_synonyms(args) -> int:
    config = from_args(args)  # a SynonymsConfig
    from tuneforge.api import synonyms
    from tuneforge.console import job_progress, render_synonyms, training_progress

    with training_progress() as trained, job_progress() as progress:
        summary = synonyms(args.topics, store=args.store, task=args.task, model=args.model, dtype=args.dtype,
                           device=args.device, config=config, queries=args.queries, writer_dir=args.writer_dir,
                           progress=progress, training_progress=trained)
    render_synonyms(summary)
    return 0


def cmd_serve(args) -> int:
    from tuneforge.serve.app import serve

    if not os.path.isfile(args.store):
        raise TuneforgeError(f"{args.store}: no such store")
    if args.request_timeout <= 0:
        raise TuneforgeError(f"--request-timeout {args.request_timeout:g}: give a number of seconds above 0")
    try:
        serve(args.store, host=args.host, port=args.port, request_seconds=args.request_timeout, setting=args.setting,
              match_setting=args.match_setting, miss_policy=args.miss, api_key=args.api_key,
              max_body_bytes=args.max_body_bytes, max_batch=args.max_batch, announce=partial(print, flush=True))
    except ValueError as e:
        raise TuneforgeError(str(e)) from None
    return 0


def cmd_store(args) -> int:
    from tuneforge.store.export import check_out, export
    from tuneforge.store.sqlite import PredictionStore

    if not os.path.isfile(args.store):
        raise TuneforgeError(f"{args.store}: no such store")
    if args.action == "export":  # a bad --out fails before the store is opened
        if not args.out:
            raise TuneforgeError("store export: give --out FILE (.jsonl or .parquet)")
        check_out(args.out)
    db = PredictionStore(args.store)
    try:
        if args.action == "stats":
            print(json.dumps(db.stats(), indent=2))
        else:
            print(f"exported {export(db, args.out)} rows to {args.out}")
    finally:
        db.close()
    return 0


def cmd_prompt(args) -> int:
    config = from_args(args)  # a PromptingConfig
    from tuneforge.api import prompt

    source = _task_source(args)
    out = args.out or f"runs/prompt-{source.stem}.json"
    results = prompt(source, model=args.model, dtype=args.dtype, config=config, out=out)
    _print_results(results, out)
    return 0


def cmd_audit(args) -> int:
    config = from_args(args)  # an AuditConfig
    from tuneforge.api import audit
    from tuneforge.console import render_audit

    source = _task_source(args)
    out = args.out or f"runs/audit-{source.stem}.json"
    results = audit(source, models=args.model, config=config, dtype=args.dtype, out=out)
    render_audit(results)
    print(f"results: {out}")
    for line in results["violations"]:
        print(f"tuneforge: audit gate failed: {line}", file=sys.stderr)
    return 1 if results["violations"] else 0


def cmd_run(args) -> int:
    return _run_experiment(args.config, args)


def cmd_demo(args) -> int:
    return _run_experiment("demo", args)


def _run_experiment(config, args) -> int:
    from tuneforge.experiment.sections import experiment_config

    config = experiment_config(config, args.overrides)  # a bad file is refused in a second, before torch loads
    from tuneforge.api import run
    from tuneforge.console import render_experiment

    cache = False if args.no_cache else (args.cache or True)
    results = run(config, out=args.out, cache=cache)
    render_experiment(results)
    out = Path(args.out or Path("runs") / results["experiment"]["name"])
    print(f"report: {out / 'report.html'}\nresults: {out / 'results.json'}")
    return 0


def cmd_report(args) -> int:
    from tuneforge.api import report

    paths = report(args.run_dir, margin=args.margin)
    print(f"report: {paths['html']}\nmarkdown: {paths['markdown']}")
    return 0


def cmd_cache(args) -> int:
    from tuneforge import units
    from tuneforge.experiment.cache import cache_root, clear, entries, leftovers

    root = cache_root(args.cache or True)
    if root is None:
        raise TuneforgeError("cache: give the cache's folder with --cache DIR (none is no cache to act on)")
    if args.action == "clear":
        if args.older_than is not None and args.older_than < 0:
            raise TuneforgeError(f"--older-than {args.older_than:g}: give a number of days, 0 or more")
        done = clear(root, args.older_than)
        print(f"removed {done['removed']} stage(s) and {done['leftovers']} unfinished write(s) from {root}: "
              f"{units.size(done['bytes'])}, of which {units.size(done['freed'])} freed on the disk "
              f"(the rest is hard-linked into run folders)")
        return 0
    kept = entries(root)
    if kept:
        print(f"{'hash':<12}  {'stage':<12} {'kind':<9} {'size':>8}  {'made (UTC)':<16}  run folder")
    for e in kept:
        print(f"{e['hash'][:12]}  {e['stage']:<12} {e['kind']:<9} {units.size(e['bytes']):>8}  "
              f"{e['created'][:16].replace('T', ' ')}  {e['run_dir']}")
    total, own = sum(e["bytes"] for e in kept), sum(e["own_bytes"] for e in kept)
    print(f"{len(kept)} stage(s) in {root}: {units.size(total)} ({units.size(own)} of it in the cache alone; "
          f"the rest is hard-linked into run folders)")
    unfinished = leftovers(root)
    if unfinished:
        print(f"{len(unfinished)} unfinished write(s) (killed or under way): `tuneforge cache clear` removes them")
    return 0


def cmd_tasks(args) -> int:
    from tuneforge.api import tasks

    for t in tasks():
        print(f"{t['name']:<10} {t['kind']:<9} {t['examples']:>4} examples  {t.get('description', '')}")
    return 0


def cmd_model(args) -> int:
    from tuneforge.api import model_info

    print(json.dumps(model_info(args.model, args.dtype), indent=2))
    return 0


def cmd_export(args) -> int:
    from tuneforge.model.gguf_export import export_gguf
    from tuneforge.units import size

    out = args.out or os.path.join(args.run, f"model-{args.quant}.gguf")
    summary = export_gguf(args.run, out, quant=args.quant, force=args.force)
    print(f"wrote {summary['path']} · {size(summary['bytes'])} · {summary['tensors']} tensors · {summary['quant']} "
          f"· from {summary['source']}")
    return 0


def _print_results(results: dict, out: str) -> None:
    from tuneforge.console import render_prompting

    render_prompting(results)
    print(f"results: {out}")
