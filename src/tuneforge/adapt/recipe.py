"""THE training recipe, shared by fine-tuning and distillation.

A route builds its own pieces (the model that trains, its training rows, its loss) and hands them
to `run_trial` / `train_on_dev`: the shared loop, dev evaluation while training, the best weights
kept; the chosen model then predicts test once (`score_on_test`). The route then writes its
results, and `save_run` puts the run on disk: its artifacts (`save_artifact`: atomic, each with a
`tuneforge.json` naming it and its provenance), then `results.json`, which marks the run finished
(`finished_run` reads it back on resume)."""

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tuneforge.adapt.checkpoint import load_trainable, trainable_state
from tuneforge.adapt.loop import LoopConfig, TargetLogits, train
from tuneforge.adapt.rows import Row
from tuneforge.atomic import atomic_path, write_json_atomic
from tuneforge.data.splits import Task
from tuneforge.errors import TuneforgeError
from tuneforge.evaluate.metrics import summarize
from tuneforge.model.load import LoadedModel, fingerprint
from tuneforge.model.lora import base_model
from tuneforge.model.provenance import write as write_provenance
from tuneforge.predict.predictor import Predictor
from tuneforge.prompts.formats import PLAIN_CHAT_TEMPLATE, PromptFormat

WARM_UP = 8
"""Train items predicted before a timed test pass, so its latency is not the kernels' start-up."""


@dataclass(frozen=True)
class OnTest:
    """A model's one pass over the test split."""

    predictions: list[str]
    metrics: dict
    """`summarize`'s figures for the predictions against the gold answers."""
    ms_per_example: float
    """Latency of the batched pass, timed after a warm-up on train items."""


@dataclass(frozen=True)
class Trained:
    """What training on dev hands back: how it went (the kept weights are in the model)."""

    history: list[dict]
    best_score: float | None
    best_step: int | None
    steps: int
    stopped_early: bool
    accelerator: object
    """The Accelerator the run trained under (processes, main process, autocast)."""


def train_on_dev(trainee: LoadedModel, rows: list[Row], loss, task: Task, fmt: PromptFormat, loop: LoopConfig, *,
                 bf16: bool, out: Path, run_id: dict, resume: bool = False, progress=None, net=None,
                 dev_demos: list | None = None) -> Trained:
    """Train `trainee.model` on `rows` with `loss` on the shared loop (checkpoints under `out`), through
    `net` (default: the model's decoder and head at the target positions, `TargetLogits`), scoring
    dev in `fmt` as it goes, each dev item with its `dev_demos` (none: zero-shot) as the model is
    trained (stopping early as `loop.patience` says); the best dev evaluation's weights are loaded
    back into the model. Test is not touched."""
    accelerator = accelerator_for(trainee, bf16)
    inner = base_model(trainee.model)  # a peft wrapper's adapters live inside the base model's modules
    net = net or TargetLogits(inner.get_decoder(), inner.get_output_embeddings())
    predictor = Predictor(trainee, fmt, task.label_set)

    def evaluate() -> float:
        with accelerator.autocast():
            preds = predictor.predict(task.dev, dev_demos).outputs
        return summarize([ex.target for ex in task.dev], [preds], task.scored_as)[task.metric]["mean"]

    result = train(net, rows, loss, loop, accelerator=accelerator, pad_id=trainee.tokenizer.pad_token_id,
                   evaluate=evaluate if task.dev else None, checkpoint_dir=out / "checkpoints", resume=resume,
                   run_id=run_id, progress=progress)
    if result["best"] is not None:
        load_trainable(net, result["best"])  # keep the best dev evaluation, not the last step
    net.eval()  # dropout off for what follows, as for every dev evaluation
    return Trained(result["history"], result["best_score"], result["best_step"], result["step"], result["stopped"],
                   accelerator)


def run_trial(trainee: LoadedModel, rows: list[Row], loss, task: Task, fmt: PromptFormat, loop: LoopConfig, *,
              bf16: bool, out: Path, trial_id: dict, resume: bool, progress, net=None,
              dev_demos: list | None = None) -> dict:
    """One trial of a search (fine-tuning's learning rates, distillation's students), trained and
    scored on dev (`train_on_dev`), its best weights left in `trainee.model`. A finished trial writes
    its record and best weights under `out`, so a resumed search reads it back instead of training
    it again."""
    record_file, weights_file = out / "trial.json", out / "best.safetensors"
    if resume and record_file.is_file() and (record := json.loads(record_file.read_text()))["id"] == trial_id:
        load_trainable(trainee.model, load_file(weights_file))
        trainee.model.eval()
        return record["trial"]
    start = time.perf_counter()
    trained = train_on_dev(trainee, rows, loss, task, fmt, loop, bf16=bf16, out=out, run_id=trial_id, resume=resume,
                           progress=progress, net=net, dev_demos=dev_demos)
    trial = {"lr": loop.lr, "dev_score": trained.best_score, "best_step": trained.best_step, "steps": trained.steps,
             "seconds": time.perf_counter() - start, "chosen": False, "stopped_early": trained.stopped_early,
             "rows": len(rows), "history": trained.history}
    if trained.accelerator.is_main_process:
        with atomic_path(weights_file) as tmp:
            save_file(trainable_state(trainee.model), tmp)
        write_json_atomic(record_file, {"id": trial_id, "trial": trial})
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return trial


def score_on_test(predictor: Predictor, task: Task, accelerator, demos: list | None = None) -> OnTest:
    """The test split predicted once (each item with its `demos`, if any), batched and timed after a
    warm-up on train items."""
    with accelerator.autocast():
        predictor.predict(task.train[:WARM_UP])
        start = time.perf_counter()
        preds = predictor.predict(task.test, demos).outputs
        seconds = time.perf_counter() - start
    metrics = summarize([ex.target for ex in task.test], [preds], task.scored_as)
    return OnTest(preds, metrics, 1000 * seconds / max(len(task.test), 1))


def accelerator_for(loaded: LoadedModel, bf16: bool):
    """accelerate's Accelerator on the model's device (`--device cpu` keeps a GPU machine's run on the
    CPU), with bf16 mixed precision or none. Under `accelerate launch` it joins the processes."""
    from accelerate import Accelerator

    return Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=loaded.device.type == "cpu")


def test_pass(run: str, autocast: str) -> str:
    """Which pass produced an artifact's test figures, in words (an experiment scores the saved model
    again, in its serving dtype: the two may differ by a few items)."""
    how = "under bf16 autocast over fp32 weights" if autocast == "bf16" else "in fp32"
    return f"the test split, scored once by {run} at its end, {how}, before the model was saved"


def task_record(task: Task) -> dict:
    """The task as results and provenance record it: its description and split sizes."""
    return {**asdict(task.info), "sizes": task.sizes()}


def save_run(out: Path, results: dict, accelerator, save_artifacts) -> dict:
    """Put a finished run on disk, from the main process alone: `save_artifacts()` writes the route's
    artifacts and returns what they add to the results; then `results.json`, which marks the run
    finished; then the checkpoints go. Every process waits for that before it returns."""
    if accelerator.is_main_process:
        results = {**results, **save_artifacts()}
        write_json_atomic(out / "results.json", results)
        for scratch in ("checkpoints", "trials"):  # the run is complete; artifacts hold it
            shutil.rmtree(out / scratch, ignore_errors=True)
    accelerator.wait_for_everyone()
    return results


def trial_score(trial: dict) -> float:
    """How every search ranks its trials: by dev score, a trial without one (skipped, or no dev split)
    below any that has one; a search keeps the first of equal scores."""
    return -math.inf if trial.get("dev_score") is None else trial["dev_score"]


def save_artifact(target: Path, model, tokenizer, provenance: dict) -> None:
    """A model (or adapter) directory at `target`, written atomically: weights, tokenizer, and a
    `tuneforge.json` naming the artifact itself (path and fingerprint) before its `provenance`.
    A model trained on plain lines is saved so plain transformers prompts it the same way
    (`make_portable`)."""
    with atomic_path(target, folder=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if provenance["prompt"]["format"] == "plain":
            make_portable(tmp, tokenizer)
        # A fingerprint covers file names and bytes, not the folder: the temporary's is the target's.
        own = {"path": str(target.resolve()), "fingerprint": fingerprint(tmp, cache=False)}
        write_provenance(tmp, {"artifact": own, **provenance})


def make_portable(folder: Path, tokenizer) -> None:
    """The saved tokenizer's chat template renders the plain prompt the model was trained on, and its
    generation config stops where tuneforge stops (at any token holding a newline), greedily: so
    `apply_chat_template` + `generate` in plain transformers (or a server reading the same files)
    reproduce tuneforge's predictions."""
    (folder / "chat_template.jinja").write_text(PLAIN_CHAT_TEMPLATE)
    config_file = folder / "generation_config.json"
    if config_file.is_file():  # an adapter directory has none: its base model's applies
        stops = [i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])]
        config = json.loads(config_file.read_text())
        eos = config.get("eos_token_id")
        eos = eos if isinstance(eos, list) else [] if eos is None else [eos]
        config.update(eos_token_id=eos + [i for i in stops if i not in eos], do_sample=False)
        config_file.write_text(json.dumps(config, indent=2))


def use_training_attention(model, device: torch.device) -> None:
    """On the CPU, plain (eager) attention: PyTorch's CPU SDPA backward costs ~3.5 ms per layer on
    short rows, eager ~1.5 (measured by bench/finetune_throughput.py's profile). GPUs keep SDPA."""
    if device.type == "cpu":
        model.set_attn_implementation("eager")


def finished_run(out: Path, resume: bool, run_id: dict) -> dict | None:
    """The results of the run already finished in `out` when resuming the same run (a kill after the
    results were written but before the caller used them loses nothing); None when there is none.
    Refuses to overwrite a finished run or unfinished checkpoints without --resume."""
    results_file = out / "results.json"
    if results_file.is_file():
        finished = json.loads(results_file.read_text())
        if not resume:
            raise TuneforgeError(f"{out}: holds a finished run; choose another --out (or add --resume to read it back)")
        if finished.get("run_id") != run_id:
            raise TuneforgeError(f"{out}: holds a finished run of other settings or data; choose another --out")
        for scratch in ("checkpoints", "trials"):  # a kill may have left them behind
            shutil.rmtree(out / scratch, ignore_errors=True)
        return finished
    unfinished = any((out / "checkpoints").glob("step-*")) or any((out / "trials").glob("*/*"))
    if not resume and unfinished:
        raise TuneforgeError(f"{out}: holds checkpoints of an unfinished run; add --resume or choose another --out")
    return None
