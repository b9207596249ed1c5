"""The `tuneforge` command: the parser and `main`. Bad input exits 2 with one line; what each
subcommand does is in `commands.py`. A route's settings get their flags from its config dataclass
(`flags.py`); only the flags that are not settings (data, model, where results go) are written here.

Longer than 300 lines: the help text of each subcommand and of its few non-setting flags."""

import argparse
import os
import sys

from tuneforge.commands import (
    cmd_audit, cmd_batch, cmd_cache, cmd_demo, cmd_distill, cmd_export, cmd_finetune, cmd_model, cmd_predict,
    cmd_prompt, cmd_report, cmd_run, cmd_serve, cmd_store, cmd_synonyms, cmd_tasks,
)
from tuneforge.errors import TuneforgeError
from tuneforge.flags import add_settings
from tuneforge.logs import quiet_libraries


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, exit status 2 (argparse would print the whole usage first)."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not args.overrides_allowed:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = _overrides(extra, parser)
    if args.device != "auto":  # read where models load, here and in the stage processes a run starts
        os.environ["TUNEFORGE_DEVICE"] = args.device
    quiet_libraries()
    try:
        return args.func(args) or 0
    except TuneforgeError as e:
        print(f"tuneforge: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tuneforge: interrupted", file=sys.stderr)
        return 130


MAX_MESSAGE = 1000
"""Longest error line printed: a message quoting a huge value stays readable."""


def one_line(message: str) -> str:
    """`message` on one line (a line break inside is shown as a space), cut at `MAX_MESSAGE` characters."""
    text = " ".join(message.splitlines())
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + f"... ({len(text):,} characters)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tuneforge", description="Turn a foundation LLM into a task model, every route compared.")
    parser.set_defaults(overrides_allowed=False, device="auto")  # only run and demo take --section.key=value
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_prompt, _finetune, _distill, _predict, _batch, _synonyms, _serve, _store, _audit, _run, _demo, _report,
                _cache, _tasks, _model, _export):
        add(sub)
    return parser


def _prompt(sub) -> None:
    from tuneforge.settings import PromptingConfig

    p = sub.add_parser("prompt", help="compare zero-, one- and few-shot prompting on a task",
                       description="Compare zero-, one- and few-shot prompting of an unchanged model on a task.")
    _task_args(p)
    _model_args(p)
    add_settings(p, PromptingConfig(), "prompting", flags={"formats": "--format", "picks": "--pick",
                                                            "calibrations": "--calibration", "scorings": "--scoring"})
    p.add_argument("--out", default=None, help="results JSON (default: runs/prompt-<task>.json)")
    p.set_defaults(func=cmd_prompt)


def _finetune(sub) -> None:
    from tuneforge.settings import FinetuneConfig

    p = sub.add_parser("finetune", help="fine-tune a model on a task: LoRA or every weight",
                       description="Fine-tune on the train split (LoRA through peft, or every weight), evaluate on "
                                   "dev while training, keep the best, evaluate on test once. Runs data-parallel "
                                   "under `accelerate launch`.")
    _task_args(p)
    _model_args(p, dtype=False)  # training runs in fp32
    add_settings(p, FinetuneConfig(), "fine-tuning")
    _run_dir_args(p, out="runs/finetune")
    p.set_defaults(func=cmd_finetune)


def _distill(sub) -> None:
    from tuneforge.settings import DistillConfig

    p = sub.add_parser("distill", help="distil a fine-tuned teacher into a smaller student",
                       description="Prune the teacher's layers into a student (or take a smaller model with the "
                                   "same vocabulary) and train it on a pool of inputs the teacher labels (its "
                                   "label-set distribution, logits or answers), or on the labels alone; compare "
                                   "teacher and student on test.")
    _task_args(p)
    p.add_argument("--teacher", required=True, help="the teacher: a fine-tuned model directory (e.g. runs/lora/merged)")
    p.add_argument("--student", help="a smaller model directory to use as the student (default: prune the teacher)")
    p.add_argument("--unlabeled", help="inputs without targets for the pool, labelled by the teacher (plain "
                                       "lines/JSONL/CSV; default: inputs the teacher's base model writes)")
    p.add_argument("--teacher-cache", help="folder keeping the teacher's outputs on the pool, for reruns and other "
                                           "students (default: OUT/teacher-outputs)")
    _device_arg(p)
    add_settings(p, DistillConfig(), "distillation")  # its `training` settings keep finetune's flag names
    _run_dir_args(p, out="runs/distill")
    p.set_defaults(func=cmd_distill)


def _predict(sub) -> None:
    from tuneforge.settings import BatchConfig

    p = sub.add_parser("predict", help="predict with a trained model (or an experiment's winner) on new inputs",
                       description="Predict for new inputs, one JSON line each (input, output and, for a label "
                                   "task, the labels' log-probabilities), with the prompt format and labels the "
                                   "model was trained with (its tuneforge.json), or an experiment's recommended "
                                   "route as its store serves it (prompting settings included).")
    p.add_argument("--model", required=True,
                   help="a fine-tuned or distilled run or model directory, a LoRA adapter directory, an experiment's "
                        "run directory, or any model with --task")
    p.add_argument("--inputs", required=True, help="inputs: a file (JSONL, CSV with an input column, or plain "
                                                   "lines), or - for standard input")
    p.add_argument("--task", help="the task whose prompt to use, for a model that records none (e.g. the base model)")
    p.add_argument("--dtype", default="auto", help=_DTYPE_HELP)
    _device_arg(p)
    p.add_argument("--out", help="write the predictions here (JSONL) instead of standard output")
    add_settings(p, BatchConfig(), "prompt (for --task)")
    p.set_defaults(func=cmd_predict)


def _batch(sub) -> None:
    from tuneforge.settings import BatchConfig

    p = sub.add_parser("batch", help="predict ahead of time into a prediction store",
                       description="Run a model over known inputs and store the predictions (SQLite). "
                                   "Re-runs compute only what the store lacks; a killed job resumes.")
    p.add_argument("--inputs", help="inputs: JSONL (input field), CSV (input column) or plain lines")
    p.add_argument("--from-misses", action="store_true", help="also predict the misses the server queued")
    _batch_args(p, BatchConfig(), task="fruit")
    p.set_defaults(func=cmd_batch)


def _synonyms(sub) -> None:
    from tuneforge.settings import SynonymsConfig

    p = sub.add_parser("synonyms", help="generate synonym lists for topics into a store",
                       description="For each topic, the model writes synonym lists offline (its greedy list and "
                                   "sampled ones), scores every term it wrote and keeps the likeliest, by a filter "
                                   "chosen on the task's dev topics; `tuneforge serve` matches live text against "
                                   "them. Prints the list scores on the task's test topics and the topic precision "
                                   "and recall over live queries.")
    p.add_argument("--topics", required=True, help="topics file (plain lines, JSONL or CSV)")
    p.add_argument("--queries", help="live queries to score the lists with: JSONL rows {\"query\", \"topics\"} "
                                     "(default: the built-in ones, with --task synonyms)")
    p.add_argument("--store", required=True, help="the SQLite prediction store (created when missing)")
    p.add_argument("--writer-dir", help="where --writer lora trains its list writer, or finds it trained "
                                        "(default: STORE.writer beside the store)")
    p.add_argument("--task", default="synonyms",
                   help="task giving the instruction, the demonstrations and writer's training (train) and the "
                        "topics the filter is chosen on (dev) (default: %(default)s)")
    _model_args(p)
    add_settings(p, SynonymsConfig(), "synonym lists")
    p.set_defaults(func=cmd_synonyms)


def _serve(sub) -> None:
    from tuneforge.serve.listen import REQUEST_SECONDS

    p = sub.add_parser("serve", help="serve predictions from a store over HTTP (OpenAI-compatible too)",
                       description="Answer lookups, synonym matches and OpenAI-style completions from a prediction "
                                   "store. Binds 127.0.0.1 unless --host says otherwise.")
    p.add_argument("--store", required=True, help="the SQLite prediction store")
    p.add_argument("--setting", help="the setting to serve, by its name (the model id, e.g. demo-lora) or its id "
                                     "(default: the newest that is not synonym lists)")
    p.add_argument("--match-setting", help="setting whose synonym lists feed /v1/match (default: newest generate)")
    p.add_argument("--miss", default="reject", choices=["reject", "live", "queue"],
                   help="on a miss: 404, run the model and store the answer, or queue it for `batch --from-misses`")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s); a non-loopback one without an API key is "
                        "served with a warning")
    p.add_argument("--port", type=int, default=8000, help="port, 1-65535, or 0 for any free one (default: "
                                                          "%(default)s; the address is printed at start)")
    p.add_argument("--api-key", default=os.environ.get("TUNEFORGE_API_KEY"),
                   help="require `Authorization: Bearer KEY` on every request but /healthz (default: the "
                        "TUNEFORGE_API_KEY environment variable, if set; it keeps the key out of `ps`)")
    p.add_argument("--request-timeout", type=float, default=REQUEST_SECONDS,
                   help="seconds a client has to send a whole request before it is disconnected "
                        "(default: %(default)g)")
    p.add_argument("--max-body-bytes", type=int, default=65536, help="largest request body")
    p.add_argument("--max-batch", type=int, default=256, help="most inputs in one lookup request")
    _device_arg(p)  # for live misses
    p.set_defaults(func=cmd_serve)


def _store(sub) -> None:
    p = sub.add_parser("store", help="inspect or export a prediction store",
                       description="Statistics (rows, failures, hits, size) or an export to JSONL / Parquet.")
    p.add_argument("action", choices=["stats", "export"])
    p.add_argument("--store", required=True, help="the SQLite prediction store")
    p.add_argument("--out", help="export file (.jsonl or .parquet)")
    p.set_defaults(func=cmd_store)


def _audit(sub) -> None:
    from tuneforge.settings import AuditConfig

    p = sub.add_parser("audit", help="bias audit: per-group scores and counterfactual swaps, across routes",
                       description="Audit models for bias on a task: score per group (the examples' 'group' "
                                   "field) with CIs, the largest gap and its permutation p-value, and how often "
                                   "predictions flip when gendered words and names (or your own swap list) are "
                                   "swapped. --max-gap / --max-flip-rate make it a gate: exit status 1 when exceeded.")
    _task_args(p, task="bias-demo")
    p.add_argument("--model", action="append", default=None,
                   help="a model to audit; repeat it to compare routes side by side. `default` (the default) is "
                        "the embedded model, prompted once per --shots; a fine-tuned or distilled run directory "
                        "is audited as trained")
    p.add_argument("--dtype", default="auto", help=_DTYPE_HELP)
    _device_arg(p)
    add_settings(p, AuditConfig(), "audit")
    p.add_argument("--out", default=None, help="results JSON (default: runs/audit-<task>.json)")
    p.set_defaults(func=cmd_audit)


def _run(sub) -> None:
    p = sub.add_parser("run", help="run an experiment: every route on one task, one report",
                       description="Run the experiment a YAML file describes (model, task, a section per route: "
                                   "prompting, lora, full, distill, audit, batch, synonyms, report). Each stage is "
                                   "cached by a hash of its settings and inputs; a killed run resumes. Override any "
                                   "setting with --section.key=value, e.g. --lora.lr=2e-4.")
    p.add_argument("config", help="the experiment's YAML file")
    p.add_argument("--out", default=None, help="run directory (default: runs/<name>)")
    _device_arg(p)
    _stage_cache_args(p)
    p.set_defaults(func=cmd_run, overrides_allowed=True)


def _demo(sub) -> None:
    p = sub.add_parser("demo", help="the built-in experiment on the embedded default model",
                       description="Every route on the built-in fruit task with the embedded default model: "
                                   "prompting 0/1/5 shots, LoRA, distillation, the bias audit, the recommended "
                                   "route into a prediction store, synonym lists; then report.html. Override "
                                   "settings as in `tuneforge run` (--lora.epochs=2).")
    p.add_argument("--out", default="runs/demo", help="run directory (default: %(default)s)")
    _device_arg(p)
    _stage_cache_args(p)
    p.set_defaults(func=cmd_demo, overrides_allowed=True)


def _report(sub) -> None:
    p = sub.add_parser("report", help="rewrite a run's report from its results.json",
                       description="Rewrite report.html and report.md of a finished run from its results.json "
                                   "alone; no stage runs again.")
    p.add_argument("run_dir", help="the run directory (holds results.json)")
    p.add_argument("--margin", type=float, default=None, help="the recommendation's margin (default: the run's)")
    p.set_defaults(func=cmd_report)


def _cache(sub) -> None:
    p = sub.add_parser("cache", help="list or clear the stages kept for reuse across run folders",
                       description="`list`: each kept stage (hash, stage, kind, size, when made, the run folder it "
                                   "came from) and the total. `clear`: remove them (--older-than: only those made "
                                   "more than DAYS ago) and say how much that freed.")
    p.add_argument("action", choices=["list", "clear"])
    p.add_argument("--older-than", type=float, default=None, metavar="DAYS",
                   help="clear only stages made more than DAYS ago")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="the stage cache (default: $TUNEFORGE_HOME/cache/stages, else ~/.cache/tuneforge/cache/stages)")
    p.set_defaults(func=cmd_cache)


def _tasks(sub) -> None:
    p = sub.add_parser("tasks", help="list the built-in tasks", description="List the built-in tasks.")
    p.set_defaults(func=cmd_tasks)


def _model(sub) -> None:
    p = sub.add_parser("model", help="show a model's path, fingerprint and parameters",
                       description="Load a model (converting the embedded default on first use) and describe it.")
    _model_args(p)
    p.set_defaults(func=cmd_model)


def _export(sub) -> None:
    p = sub.add_parser("export", help="write a model as one GGUF file for llama.cpp / Ollama",
                       description="Write a run's model (merged fine-tune, distilled student) or any local llama "
                                   "model directory as one GGUF file that llama.cpp, Ollama and LM Studio run.")
    p.add_argument("run", help="a run directory (its model/, merged/ or student/) or a model directory")
    p.add_argument("--format", default="gguf", choices=["gguf"], help="file format (default: %(default)s)")
    p.add_argument("--quant", default="f16", help="f16 (default), or q8_0: about half the size")
    p.add_argument("--out", help="the file to write (default: RUN/model-QUANT.gguf)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)


def _stage_cache_args(p) -> None:
    g = p.add_argument_group("stage cache")
    g.add_argument("--cache", default=None, metavar="DIR",
                   help="where finished stages are kept and reused from, whatever the run directory (default: "
                        "$TUNEFORGE_HOME/cache/stages, else ~/.cache/tuneforge/cache/stages; `none`: no cache)")
    g.add_argument("--no-cache", action="store_true", help="neither reuse nor keep stages across run directories")


def _task_args(p, task: str = "fruit") -> None:
    """The task data flags, one per field of `TaskSource` (its `name` is `--task`)."""
    from tuneforge.data.source import TASK_FLAGS, TaskSource

    add_settings(p, TaskSource(name=task), "task data", flags=TASK_FLAGS, key="task_source")
    p.add_argument("--no-instruction", action="store_true", help="no instruction line")


_DTYPE_HELP = "auto (bf16 where the CPU has it), bf16 or fp32"


def _device_arg(p) -> None:
    p.add_argument("--device", default="auto", help="where models run: auto (a GPU where there is one), cpu, cuda "
                                                    "or cuda:N (default: %(default)s)")


def _model_args(p, dtype: bool = True) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help="local Hugging Face model directory or hub id "
                                                   "(default: the embedded SmolLM2-135M-Instruct)")
    if dtype:
        g.add_argument("--dtype", default="auto", help=_DTYPE_HELP)
    _device_arg(g)


def _run_dir_args(p, out: str) -> None:
    g = p.add_argument_group("output")
    g.add_argument("--out", default=out, help="output folder (default: %(default)s)")
    g.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")


def _batch_args(p, defaults, task: str) -> None:
    p.add_argument("--store", required=True, help="the SQLite prediction store (created when missing)")
    p.add_argument("--task", default=task, help="task giving the prompt format, labels and demonstrations "
                                                "(default: %(default)s)")
    _model_args(p)
    add_settings(p, defaults, "batch job")
    p.add_argument("--engine", default="local", help="local, or ray (Ray Data, one model per actor)")
    p.add_argument("--actors", type=int, default=2, help="Ray actors (model replicas) with --engine ray")


def _overrides(extra: list[str], parser) -> list[str]:
    """`--a.b=value` or `--a.b value` as typed after `tuneforge run FILE`, as `a.b=value`."""
    out, i = [], 0
    while i < len(extra):
        item = extra[i]
        if not item.startswith("--") or ("=" not in item and "." not in item):
            parser.error(f"unrecognized argument {item!r}: settings are given as --section.key=value")
        if "=" not in item and i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            item, i = f"{item}={extra[i + 1]}", i + 1
        out.append(item)
        i += 1
    return out


if __name__ == "__main__":
    sys.exit(main())
