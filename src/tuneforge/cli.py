"""The `tuneforge` command: the parser and `main`. Bad input exits 2 with one line; what each
subcommand does is in `commands.py`."""

import argparse
import logging
import os
import sys
import warnings

from tuneforge.commands import (
    cmd_audit, cmd_batch, cmd_demo, cmd_distill, cmd_finetune, cmd_model, cmd_prompt, cmd_report, cmd_run, cmd_serve,
    cmd_store, cmd_tasks,
)
from tuneforge.data.limits import MAX_INPUT_TOKENS
from tuneforge.errors import TuneforgeError


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
    _quiet_libraries()
    try:
        return args.func(args) or 0
    except TuneforgeError as e:
        print(f"tuneforge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tuneforge: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tuneforge", description="Turn a foundation LLM into a task model, every route compared.")
    parser.set_defaults(overrides_allowed=False)  # only run and demo take --section.key=value
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("prompt", help="compare zero-, one- and few-shot prompting on a task",
                       description="Compare zero-, one- and few-shot prompting of an unchanged model on a task.")
    _task_args(p)
    _model_args(p)
    _prompting_args(p)
    p.set_defaults(func=cmd_prompt)

    p = sub.add_parser("finetune", help="fine-tune a model on a task: LoRA or every weight",
                       description="Fine-tune on the train split (LoRA through peft, or every weight), evaluate on "
                                   "dev while training, keep the best, evaluate on test once. Runs data-parallel "
                                   "under `accelerate launch`.")
    _task_args(p)
    p.add_argument("--model", default=None, help="local Hugging Face model directory or hub id "
                                                   "(default: the embedded SmolLM2-135M-Instruct)")
    _finetune_args(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("distill", help="distil a fine-tuned teacher into a smaller student",
                       description="Prune the teacher's layers into a student (or take a smaller model with the "
                                   "same vocabulary) and train it on the teacher's logits, its answers for "
                                   "unlabeled inputs, or the labels alone; compare teacher and student on test.")
    _task_args(p)
    p.add_argument("--teacher", required=True, help="the teacher: a fine-tuned model directory (e.g. runs/lora/merged)")
    p.add_argument("--student", help="a smaller model directory to use as the student (default: prune the teacher)")
    p.add_argument("--layers", type=int, help="teacher layers the pruned student keeps")
    p.add_argument("--params-ratio", type=float, default=0.4, help="largest student / teacher parameters (default 0.4)")
    p.add_argument("--kd", default="logits", help="logits, sequence or none (labels only)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the KD term (default 0.5)")
    p.add_argument("--temperature", type=float, default=2.0, help="KD temperature (default 2)")
    p.add_argument("--unlabeled", help="inputs without targets, labelled by the teacher (plain lines/JSONL/CSV)")
    p.set_defaults(func=cmd_distill)
    _finetune_args(p, method="full", epochs=8, lr=3e-4, out="runs/distill")

    p = sub.add_parser("batch", help="predict ahead of time into a prediction store",
                       description="Run a model over known inputs and store the predictions (SQLite). "
                                   "Re-runs compute only what the store lacks; a killed job resumes.")
    p.add_argument("--inputs", help="inputs: JSONL (input field), CSV (input column) or plain lines")
    p.add_argument("--from-misses", action="store_true", help="also predict the misses the server queued")
    _batch_args(p, default_task="fruit")
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("synonyms", help="generate synonym lists for topics into a store",
                       description="For each topic, the model writes a synonym list offline (few-shot on the "
                                   "built-in synonyms task); `tuneforge serve` matches live text against them.")
    p.add_argument("--topics", required=True, help="topics file (plain lines, JSONL or CSV)")
    _batch_args(p, default_task="synonyms", default_shots=3)
    p.set_defaults(func=cmd_batch, from_misses=False, synonym_lists=True)

    from tuneforge.serve.listen import REQUEST_SECONDS

    p = sub.add_parser("serve", help="serve predictions from a store over HTTP (OpenAI-compatible too)",
                       description="Answer lookups, synonym matches and OpenAI-style completions from a prediction "
                                   "store. Binds 127.0.0.1 unless --host says otherwise.")
    p.add_argument("--store", required=True, help="the SQLite prediction store")
    p.add_argument("--setting", help="setting id lookups use (default: the newest)")
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
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("store", help="inspect or export a prediction store",
                       description="Statistics (rows, failures, hits, size) or an export to JSONL / Parquet.")
    p.add_argument("action", choices=["stats", "export"])
    p.add_argument("--store", required=True, help="the SQLite prediction store")
    p.add_argument("--out", help="export file (.jsonl or .parquet)")
    p.set_defaults(func=cmd_store)

    p = sub.add_parser("audit", help="bias audit: per-group scores and counterfactual swaps, across routes",
                       description="Audit models for bias on a task: score per group (the examples' 'group' "
                                   "field) with CIs, the largest gap and its permutation p-value, and how often "
                                   "predictions flip when gendered words and names (or your own swap list) are "
                                   "swapped. --max-gap / --max-flip-rate make it a gate: exit status 1 when exceeded.")
    _task_args(p)
    p.add_argument("--model", action="append", default=None,
                   help="a model to audit; repeat it to compare routes side by side. `default` (the default) is "
                        "the embedded model, prompted once per --shots; a fine-tuned or distilled run directory "
                        "is audited as trained")
    p.add_argument("--dtype", default="auto", help="auto (bf16 where the CPU has it), bf16 or fp32")
    p.add_argument("--swaps", default="gender", help="built-in swap list (gender) or a JSON/CSV/TSV file of pairs")
    p.add_argument("--shots", default="0,5", help="shot counts for base models (default: %(default)s)")
    p.add_argument("--pick", default="similar", help="demonstration picker for few-shot (default: %(default)s)")
    p.add_argument("--split", default="test", help="split to audit (default: %(default)s)")
    p.add_argument("--permutations", type=int, default=2000, help="shuffles for the gap's p-value")
    p.add_argument("--seed", type=int, default=0, help="seed of permutations, bootstrap and demonstrations")
    p.add_argument("--max-gap", type=float, default=None, help="gate: largest allowed gap between groups")
    p.add_argument("--max-flip-rate", type=float, default=None, help="gate: largest allowed flip rate")
    p.add_argument("--out", default=None, help="results JSON (default: runs/audit-<task>.json)")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("run", help="run an experiment: every route on one task, one report",
                       description="Run the experiment a YAML file describes (model, task, a section per route: "
                                   "prompting, lora, full, distill, audit, batch, synonyms, report). Each stage is "
                                   "cached by a hash of its settings and inputs; a killed run resumes. Override any "
                                   "setting with --section.key=value, e.g. --lora.lr=2e-4.")
    p.add_argument("config", help="the experiment's YAML file")
    p.add_argument("--out", default=None, help="run directory (default: runs/<name>)")
    p.set_defaults(func=cmd_run, overrides_allowed=True)

    p = sub.add_parser("demo", help="the built-in experiment on the embedded default model",
                       description="Every route on the built-in fruit task with the embedded default model: "
                                   "prompting 0/1/5 shots, LoRA, distillation, the bias audit, the recommended "
                                   "route into a prediction store, synonym lists; then report.html. Override "
                                   "settings as in `tuneforge run` (--lora.epochs=2).")
    p.add_argument("--out", default="runs/demo", help="run directory (default: %(default)s)")
    p.set_defaults(func=cmd_demo, overrides_allowed=True)

    p = sub.add_parser("report", help="rewrite a run's report from its results.json",
                       description="Rewrite report.html and report.md of a finished run from its results.json "
                                   "alone; no stage runs again.")
    p.add_argument("run_dir", help="the run directory (holds results.json)")
    p.add_argument("--margin", type=float, default=None, help="the recommendation's margin (default: the run's)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("tasks", help="list the built-in tasks", description="List the built-in tasks.")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("model", help="show a model's path, fingerprint and parameters",
                       description="Load a model (converting the embedded default on first use) and describe it.")
    _model_args(p)
    p.set_defaults(func=cmd_model)
    return parser


def _task_args(p):
    g = p.add_argument_group("task data")
    g.add_argument("--task", default=None, help="built-in task name or a data file (JSONL/CSV); see `tuneforge tasks`")
    g.add_argument("--train", help="train split file (with --test: use these splits instead of splitting --task)")
    g.add_argument("--dev", help="dev split file (optional)")
    g.add_argument("--test", help="test split file")
    g.add_argument("--split-seed", type=int, default=0, help="seed of the train/dev/test split (default: 0)")
    g.add_argument("--instruction", default=None, help="instruction line (default: the task's own, if any)")
    g.add_argument("--no-instruction", action="store_true", help="no instruction line")


def _model_args(p):
    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, help="local Hugging Face model directory or hub id "
                                                   "(default: the embedded SmolLM2-135M-Instruct)")
    g.add_argument("--dtype", default="auto", help="auto (bf16 where the CPU has it), bf16 or fp32")


def _prompting_args(p):
    g = p.add_argument_group("prompting")
    g.add_argument("--shots", default="0,1,5", help="comma-separated shot counts (default: %(default)s)")
    g.add_argument("--format", default="plain", help="comma-separated prompt formats: plain, chat")
    g.add_argument("--pick", default="random,similar",
                   help="comma-separated demonstration pickers: first, random, similar (default: %(default)s)")
    g.add_argument("--draws", type=int, default=3, help="demonstration draws per few-shot condition")
    g.add_argument("--seed", type=int, default=0, help="seed of the first demonstration draw")
    g.add_argument("--calibrate", action="store_true", help="also report contextual calibration (label tasks)")
    g.add_argument("--split", default="test", help="split to evaluate: test (final) or dev")
    g.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass")
    g.add_argument("--max-input-tokens", type=int, default=MAX_INPUT_TOKENS,
                   help="longest input in tokens; a longer row is refused (default: %(default)s)")
    g.add_argument("--out", default=None, help="results JSON (default: runs/prompt-<task>.json)")


def _finetune_args(p, method="lora", epochs=None, lr=None, out="runs/finetune"):
    from tuneforge.adapt.finetune import FinetuneConfig

    d = FinetuneConfig(method=method, epochs=epochs or FinetuneConfig.epochs, lr=lr)
    g = p.add_argument_group("fine-tuning")
    g.add_argument("--method", default=d.method, help="lora or full (default: %(default)s)")
    g.add_argument("--epochs", type=int, default=d.epochs, help="passes over the train split (default: %(default)s)")
    g.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default: {d.peak_lr:g})")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="rows per micro-batch (default: %(default)s)")
    g.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimizer step")
    g.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio, help="share of steps warming up")
    g.add_argument("--schedule", default=d.schedule, help="cosine, linear or constant (default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    g.add_argument("--lora-r", type=int, default=d.lora_r, help="LoRA rank (default: %(default)s)")
    g.add_argument("--lora-alpha", type=float, default=d.lora_alpha, help="LoRA alpha (default: %(default)s)")
    g.add_argument("--lora-dropout", type=float, default=d.lora_dropout, help="LoRA dropout")
    g.add_argument("--lora-targets", default=",".join(d.lora_targets), help="comma-separated module names")
    g.add_argument("--format", default=d.format, help="prompt format of the training rows: plain or chat")
    g.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between dev evaluations (0: per epoch)")
    g.add_argument("--patience", type=int, default=d.patience, help="early stopping patience in evaluations (0: off)")
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    g.add_argument("--seed", type=int, default=d.seed, help="training seed (default: %(default)s)")
    g.add_argument("--autocast", default=d.autocast, help="bf16 autocast: auto, on or off")
    g.add_argument("--merge", action="store_true", help="LoRA: also save the merged model")
    g.add_argument("--out", default=out, help="output folder (default: %(default)s)")
    g.add_argument("--resume", action="store_true", help="continue a killed run from its last checkpoint")


def _batch_args(p, default_task: str, default_shots: int = 0):
    from tuneforge.batch.job import BatchConfig

    d = BatchConfig()
    p.add_argument("--store", required=True, help="the SQLite prediction store (created when missing)")
    p.add_argument("--task", default=default_task, help="task giving the prompt format, labels and "
                                                        "demonstrations (default: %(default)s)")
    _model_args(p)
    p.add_argument("--shots", type=int, default=default_shots, help="demonstrations per prompt (default: %(default)s)")
    p.add_argument("--pick", default=d.pick, help="fixed demonstration set: first or random")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of a random demonstration set")
    p.add_argument("--format", default=d.format, help="prompt format: plain or chat")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="longest generated answer")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="prompts per forward pass")
    p.add_argument("--commit-every", type=int, default=d.commit_every, help="rows per store transaction")
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


def _quiet_libraries() -> None:
    """Library progress bars and advice would bury tuneforge's own output; tuneforge's own status
    lines (e.g. the one-time model conversion) go to stderr."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF loader's own tqdm bar
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecations between peft and transformers
    logging.basicConfig(format="tuneforge: %(message)s", level=logging.WARNING)
    logging.getLogger("tuneforge").setLevel(logging.INFO)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
