"""The fine-tuning route: full fine-tuning of every weight, or LoRA adapters through peft.

Builds its pieces (the model with adapters or every weight trainable, the rows, the loss: token
cross-entropy, or for a label task cross-entropy over the label set's scores, `objective`) and hands
them to the training recipe (`recipe.py`). A small search chooses the learning rate on dev:
one trial per rate, each stopping early on dev and keeping its best step, within a budget of steps
or seconds; the best trial's model is scored on test once and written as standard artifacts with
their provenance. Every trial is recorded."""

import copy
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from tuneforge.adapt.label_kd import LabelRow, LabelScores, label_continuations
from tuneforge.adapt.loop import LoopConfig, epoch_steps
from tuneforge.adapt.losses import ce_loss, label_ce_loss
from tuneforge.adapt.recipe import finished_run, run_trial, save_artifact, save_run, score_on_test, task_record
from tuneforge.adapt.recipe import trial_score
from tuneforge.adapt.recipe import accelerator_for, test_pass, use_training_attention
from tuneforge.adapt.rows import build_rows
from tuneforge.data.limits import check_input_lengths
from tuneforge.data.splits import Task
from tuneforge.errors import TuneforgeError
from tuneforge.hashing import content_hash
from tuneforge.model.load import LoadedModel, load_model
from tuneforge.model.lora import add_lora
from tuneforge.model.params import count_parameters
from tuneforge.predict.predictor import Predictor
from tuneforge.prompts.formats import PromptFormat, encode_prompt, prompt_record, render_prompt
from tuneforge.prompts.shots import check_shots, pick_demos
from tuneforge.settings import FinetuneConfig



def finetune(loaded: LoadedModel, task: Task, cfg: FinetuneConfig, out: Path, *, resume: bool = False,
             progress=None) -> dict:
    """Fine-tune `loaded` (fp32 weights) on the train split of `task`, the learning rate (and the
    demonstrations per prompt, `shots`) chosen on dev; write artifacts under `out`."""
    out = Path(out)
    run_id = {"run_hash": run_hash(cfg, task), "base_fingerprint": loaded.fingerprint}
    if (finished := finished_run(out, resume, run_id)) is not None:
        return finished
    check_feasible(task, cfg)
    check_input_lengths(task, loaded.tokenizer)
    base_counts = count_parameters(loaded.model, loaded.path)
    fmt = PromptFormat(cfg.format, task.info.instruction)
    bf16 = cfg.uses_bf16(loaded.device)
    use_training_attention(loaded.model, loaded.device)
    if cfg.method == "lora" and bf16:
        frozen_in_bf16(loaded.model)
    trials, (chosen, trainee) = search(loaded, task, cfg, fmt, bf16, out, run_id, resume, progress)
    chosen["chosen"] = True
    accelerator = accelerator_for(trainee, bf16)
    shots = chosen.get("shots", 0)
    test = score_on_test(Predictor(trainee, fmt, task.label_set), task, accelerator,
                         demonstrations(task, task.test, shots, cfg))
    results = {
        "route": "finetune", "method": cfg.method, "config": asdict(cfg), "peak_lr": chosen["lr"],
        "setting": {"shots": shots, "pick": cfg.pick if shots else None, "lr": chosen["lr"],
                    "objective": cfg.objective, "epochs": cfg.epochs, "best_step": chosen["best_step"],
                    "lora_r": cfg.lora_r if cfg.method == "lora" else None},
        "demonstrations": demonstration_rule(task, shots, cfg),
        "trials": trials,
        "task": task_record(task), "base_model": {"path": str(loaded.path), "fingerprint": loaded.fingerprint},
        "prompt_format": fmt.id, "prompt": prompt_record(fmt, task.label_set), "metric": task.metric,
        "test": test.metrics, "test_predictions": test.predictions,
        "best_dev_score": chosen["dev_score"], "best_step": chosen["best_step"], "steps": chosen["steps"],
        "history": chosen.pop("history"), "processes": accelerator.num_processes,
        "autocast": "bf16" if bf16 else "off", "run_id": run_id,
    }
    for trial in trials:
        trial.pop("history", None)
    return save_run(out, results, accelerator,
                    lambda: save_artifacts(trainee.model, loaded.tokenizer, cfg, out, results, base_counts,
                                           base_dtype=loaded.dtype))


def search(loaded: LoadedModel, task: Task, cfg: FinetuneConfig, fmt: PromptFormat, bf16: bool, out: Path,
           run_id: dict, resume: bool, progress) -> tuple[list[dict], tuple[dict, LoadedModel]]:
    """One trial per (shots, learning rate) of the grid, each from the base model and scored on dev,
    within the budget; every trial's record, and the best (the first of equal dev scores) with its
    trained model."""
    grid = [(k, lr) for k in (cfg.shots if task.dev else cfg.shots[:1]) for lr in cfg.grid(bool(task.dev))]
    pieces = {k: training_pieces(task, fmt, loaded.tokenizer, cfg, k) for k in dict.fromkeys(k for k, _ in grid)}
    pristine = loaded.model  # each trial starts from the base: a copy of it, the last trial the base itself
    trials, best, started = [], None, time.perf_counter()
    for i, (k, lr) in enumerate(grid):
        rows, make_net, loss = pieces[k]
        trial_cfg = replace(cfg, lr=lr)
        loop = loop_config(trial_cfg, has_dev=bool(task.dev))
        if trials and not _within_budget(cfg, loop, len(rows), trials, time.perf_counter() - started):
            trials.append({**_skipped(lr), "shots": k})
            continue
        model = pristine if i == len(grid) - 1 else copy.deepcopy(pristine)
        trainee = replace(loaded, model=trainable_model(replace(loaded, model=model), trial_cfg))
        trial = run_trial(trainee, rows, loss, task, fmt, loop, bf16=bf16, out=out / "trials" / str(i),
                          trial_id={**run_id, "trial": i, "lr": lr, "shots": k}, resume=resume, progress=progress,
                          net=make_net(trainee.model), dev_demos=demonstrations(task, task.dev, k, cfg))
        trials.append({"shots": k, **trial})
        if best is None or trial_score(trials[-1]) > trial_score(best[0]):  # the first of equal dev scores stays
            best = trials[-1], trainee
    return trials, best


def demonstrations(task: Task, items: list, shots: int, cfg: FinetuneConfig) -> list | None:
    """Each item's demonstrations from train (never the item itself), as the prompting route picks
    them; None for 0 shots."""
    if not shots:
        return None
    return [pick_demos(task.train, ex, shots, cfg.pick, cfg.seed, labelled=task.label_set is not None)
            for ex in items]


def demonstration_rule(task: Task, shots: int, cfg: FinetuneConfig) -> dict | None:
    """How the model's prompts get their demonstrations, as its `tuneforge.json` records it: enough
    for `predict`, a server or plain transformers to rebuild every prompt (the pool is the train
    split, [input, target, id] rows); None for a 0-shot model."""
    if not shots:
        return None
    return {"shots": shots, "pick": cfg.pick, "seed": cfg.seed,
            "pool": [[ex.input, ex.target, ex.id] for ex in task.train]}


def _within_budget(cfg: FinetuneConfig, loop: LoopConfig, n_rows: int, trials: list[dict], seconds: float) -> bool:
    """Whether another trial fits what is left of the search's budget (at its full length in steps)."""
    steps = loop.epochs * epoch_steps(loop, n_rows)
    spent = sum(t["steps"] for t in trials)
    return ((cfg.budget_steps is None or spent + steps <= cfg.budget_steps)
            and (cfg.budget_seconds is None or seconds < cfg.budget_seconds))


def _skipped(lr: float) -> dict:
    """A trial the budget left out: recorded, never trained."""
    return {"lr": lr, "dev_score": None, "best_step": None, "steps": 0, "seconds": 0.0, "chosen": False,
            "stopped_early": False}


def trainable_model(loaded: LoadedModel, cfg: FinetuneConfig) -> torch.nn.Module:
    """`loaded.model` ready to train: with LoRA adapters (the base frozen), or every weight trainable."""
    torch.manual_seed(cfg.seed)  # LoRA's initialisation draws from it
    if cfg.method == "lora":
        return add_lora(loaded.model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_targets)
    return loaded.model.requires_grad_(True)


def frozen_in_bf16(model: torch.nn.Module) -> None:
    """Under bf16 autocast, LoRA's frozen base weights are kept in bf16 (the adapters train in fp32,
    peft's default): half the memory, and no fp32 -> bf16 copy of every weight in every forward pass.
    Only linear layers and embeddings: norms and rotary frequencies stay in fp32."""
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            module.weight.data = module.weight.data.to(torch.bfloat16)


def check_feasible(task: Task, cfg: FinetuneConfig) -> None:
    """Refuse a label objective for an open task, and more shots than train can give a train row
    besides itself (cheap: call it before loading the model)."""
    check_shots(task, max(cfg.shots), train_rows=True)
    if cfg.objective != "tokens" and task.label_set is None:
        raise TuneforgeError(f"objective {cfg.objective!r} ranks a label set, but task {task.info.name!r} is open "
                             f"(its answers are generated): use objective tokens")


def training_pieces(task: Task, fmt: PromptFormat, tokenizer, cfg: FinetuneConfig, shots: int = 0):
    """The train rows (each prompt with `shots` demonstrations from the rest of train), a function of
    the trial's model giving the net that runs it on them (None: the shared loop's), and the loss,
    for `cfg.objective`."""
    demos = demonstrations(task, task.train, shots, cfg)
    if cfg.objective == "tokens":
        return build_rows(task.train, fmt, tokenizer, cfg.max_length, demos), lambda model: None, token_loss
    index = {label: i for i, label in enumerate(task.label_set)}
    prompts = [encode_prompt(fmt, tokenizer, render_prompt(fmt, tokenizer, demos[i] if demos else [], ex.input))
               for i, ex in enumerate(task.train)]
    rows = [LabelRow(tuple(ids[-cfg.max_length:]), 1, "train", (), index[ex.target])
            for ids, ex in zip(prompts, task.train, strict=True)]
    continuations = label_continuations(fmt, tokenizer, task.label_set)
    with_tokens = cfg.objective == "labels+tokens"

    def loss(out, batch, n_global: int, world_size: int):
        return label_ce_loss(out["scores"], batch["targets"], n_global, world_size, tokens=with_tokens)

    return rows, lambda model: LabelScores(model, continuations, tokenizer.pad_token_id, hidden=False), loss


def token_loss(logits, batch, n_global: int, world_size: int):
    """Fine-tuning's token objective: cross-entropy on the target tokens."""
    return ce_loss(logits, batch["targets"], n_global, world_size)


def save_artifacts(model, tokenizer, cfg: FinetuneConfig, out: Path, results: dict, base: dict, *,
                   base_dtype: torch.dtype = torch.float32) -> dict:
    """Full: a model directory. LoRA: an adapter directory (+ the merged model on request: the saved
    adapter merged into the base model as read from disk, in `base_dtype`, as peft would merge it for a
    user; the base the run trained on may have been kept in bf16). Each gets a `tuneforge.json` with
    its provenance; returns the parameter accounting for the results."""
    trainable = count_parameters(model)["trainable"]
    params = {"base": base["total"], "trainable": trainable, "trainable_pct_of_base": 100 * trainable / base["total"]}
    provenance = {k: results[k] for k in ("route", "method", "config", "base_model", "prompt_format", "prompt", "task",
                                          "demonstrations")}
    provenance["metrics"] = {results["metric"]: results["test"][results["metric"]],
                             "pass": test_pass("the fine-tuning run", results["autocast"])}
    if cfg.method == "full":
        params["after"] = count_parameters(model)["total"]
        save_artifact(out / "model", model, tokenizer, {**provenance, "parameters": params})
        return {"parameters": params}
    save_artifact(out / "adapter", model, tokenizer, {**provenance, "parameters": params})
    if cfg.merge:
        merged = load_model(out / "adapter", dtype=str(base_dtype).removeprefix("torch."), device=str(model.device)).model
        params["after_merge"] = count_parameters(merged)["total"]
        save_artifact(out / "merged", merged, tokenizer, {**provenance, "parameters": params})
    return {"parameters": params}


def run_hash(cfg: FinetuneConfig, task: Task) -> str:
    """sha256 of what changes the trajectory: the config and the train/dev examples."""
    rows = {s: [[e.id, e.input, e.target, e.group] for e in task.split(s)] for s in ("train", "dev")}
    payload = {"config": asdict(cfg), **rows}  # where a row was read is not part of it
    for key in ("checkpoint_every", "checkpoint_seconds"):  # when checkpoints are written: not the trajectory
        payload["config"].pop(key)
    payload["config"].pop("merge")
    return content_hash(payload)


def loop_config(cfg: FinetuneConfig, has_dev: bool) -> LoopConfig:
    return LoopConfig(epochs=cfg.epochs, lr=cfg.peak_lr, batch_size=cfg.batch_size, grad_accum=cfg.grad_accum,
                      warmup_ratio=cfg.warmup_ratio, schedule=cfg.schedule, weight_decay=cfg.weight_decay,
                      max_grad_norm=cfg.max_grad_norm, seed=cfg.seed, eval_every=cfg.eval_every,
                      patience=cfg.patience if has_dev else 0, checkpoint_every=cfg.checkpoint_every,
                      checkpoint_seconds=cfg.checkpoint_seconds)

