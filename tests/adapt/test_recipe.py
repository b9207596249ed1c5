"""The training recipe: test pass, run bookkeeping, artifacts and their provenance."""

import json
from contextlib import nullcontext
from dataclasses import replace

import pytest

from tuneforge.adapt.distill import DistillConfig, distill
from tuneforge.adapt.finetune import FinetuneConfig, loop_config, token_loss, trainable_model
from tuneforge.adapt.recipe import finished_run, run_trial, save_artifact, save_run, score_on_test
from tuneforge.adapt.rows import build_rows
from tuneforge.data.splits import load_task
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import fingerprint, load_model
from tuneforge.predict.predictor import Predictions, Predictor
from tuneforge.prompts.formats import PromptFormat


def test_the_test_pass_runs_with_dropout_off(tiny_model_dir, tmp_path):
    """With LoRA dropout at 0.5 left on, two passes over test disagree on about a third of the items."""
    loaded, task = load_model(tiny_model_dir, dtype="fp32", device="cpu"), load_task("fruit")
    cfg = FinetuneConfig(method="lora", epochs=1, lora_dropout=0.5, checkpoint_every=0)
    trainee = replace(loaded, model=trainable_model(loaded, cfg))
    fmt = PromptFormat("plain", task.info.instruction)
    rows = build_rows(task.train, fmt, loaded.tokenizer)
    run_trial(trainee, rows, token_loss, task, fmt, loop_config(cfg, has_dev=True), bf16=False, out=tmp_path,
              trial_id={}, resume=False, progress=None)
    from accelerate import Accelerator

    test = score_on_test(Predictor(trainee, fmt, task.label_set), task, Accelerator(mixed_precision="no"))
    assert test.predictions == Predictor(trainee, fmt, task.label_set).predict(task.test).outputs


def test_a_students_provenance_names_the_student_and_its_teacher_apart(tiny_model_dir, tmp_path):
    teacher, task = load_model(tiny_model_dir, dtype="fp32", device="cpu"), load_task("fruit")
    training = FinetuneConfig(method="full", epochs=1, checkpoint_every=0, autocast="off")  # one AcceleratorState
    distill(teacher, task, DistillConfig(layers=1, training=training), tmp_path / "run")  # per process
    provenance = json.loads((tmp_path / "run" / "student" / "tuneforge.json").read_text())
    student = load_model(tmp_path / "run" / "student", dtype="fp32", device="cpu")
    assert provenance["artifact"] == {"path": str(student.path.resolve()), "fingerprint": student.fingerprint}
    assert provenance["teacher"] == {"path": str(tiny_model_dir), "fingerprint": fingerprint(tiny_model_dir)}
    assert student.fingerprint != provenance["teacher"]["fingerprint"]


class _Recorder:
    """A predictor that answers each item's gold target and remembers what it was asked."""

    def __init__(self):
        self.calls = []

    def predict(self, items, demonstrations=None):
        self.calls.append((items, demonstrations))
        return Predictions([ex.target for ex in items])


class _Accelerator:
    def __init__(self, main: bool, out):
        self.is_main_process, self.out, self.events = main, out, []

    def autocast(self):
        return nullcontext()

    def wait_for_everyone(self):
        self.events.append(("wait", (self.out / "results.json").is_file()))


def test_the_test_split_is_predicted_once_after_a_warm_up_on_train(tmp_path):
    task, predictor = load_task("fruit"), _Recorder()
    on_test = score_on_test(predictor, task, _Accelerator(True, tmp_path))
    assert predictor.calls == [(task.train[:8], None), (task.test, None)]
    assert on_test.predictions == [ex.target for ex in task.test] and on_test.metrics["accuracy"]["mean"] == 1


@pytest.mark.parametrize("main", [True, False])
def test_only_the_main_process_saves_and_every_process_waits_for_it(tmp_path, main):
    (tmp_path / "checkpoints" / "step-00000001").mkdir(parents=True)
    accelerator = _Accelerator(main, tmp_path)

    def save_artifacts():
        accelerator.events.append(("artifacts", (tmp_path / "results.json").is_file()))
        return {"parameters": 7}

    returned = save_run(tmp_path, {"route": "x"}, accelerator, save_artifacts)
    if main:  # artifacts first, then results.json (the run is finished), then the wait
        assert accelerator.events == [("artifacts", False), ("wait", True)]
        assert returned == json.loads((tmp_path / "results.json").read_text()) == {"route": "x", "parameters": 7}
        assert not (tmp_path / "checkpoints").exists()
    else:
        assert accelerator.events == [("wait", False)] and returned == {"route": "x"}
        assert (tmp_path / "checkpoints" / "step-00000001").is_dir()


@pytest.mark.parametrize("results_id, checkpoints, resume, expected", [
    (None, False, False, None),
    (None, True, True, None),
    ("a", False, True, "finished"),
    ("a", True, True, "finished"),
    ("a", False, False, "holds a finished run; choose another --out (or add --resume"),
    ("b", False, True, "a finished run of other settings or data"),
    (None, True, False, "holds checkpoints of an unfinished run; add --resume"),
])
def test_a_finished_run_is_read_back_on_resume_and_refused_without(tmp_path, results_id, checkpoints, resume,
                                                                   expected):
    if checkpoints:
        (tmp_path / "checkpoints" / "step-00000003").mkdir(parents=True)
    if results_id:
        (tmp_path / "results.json").write_text(json.dumps({"run_id": {"run_hash": results_id}}))
    if expected is None or expected == "finished":
        got = finished_run(tmp_path, resume, {"run_hash": "a"})
        assert got == (None if expected is None else {"run_id": {"run_hash": "a"}})
        assert (tmp_path / "checkpoints").exists() == (checkpoints and expected is None)
    else:
        with pytest.raises(TuneforgeError, match=expected.replace("(", r"\(")):
            finished_run(tmp_path, resume, {"run_hash": "a"})


class _Tokenizer:
    def save_pretrained(self, folder):
        (folder / "tokenizer.json").write_text("{}")


class _Saves:
    """Stands for a model: writes a config and weights, or fails half-way."""

    def __init__(self, weights: bytes, fail: bool = False):
        self.weights, self.fail = weights, fail

    def save_pretrained(self, folder):
        (folder / "config.json").write_text("{}")
        if self.fail:
            raise OSError("disk full")
        (folder / "model.safetensors").write_bytes(self.weights)


PROVENANCE = {"route": "finetune", "prompt": {"format": "chat"}}  # plain would rewrite the tokenizer's files


def test_an_artifact_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    save_artifact(target, _Saves(b"old"), _Tokenizer(), PROVENANCE)
    save_artifact(target, _Saves(b"new"), _Tokenizer(), PROVENANCE)
    assert (target / "model.safetensors").read_bytes() == b"new"
    with pytest.raises(OSError, match="disk full"):
        save_artifact(target, _Saves(b"broken", fail=True), _Tokenizer(), PROVENANCE)
    assert (target / "model.safetensors").read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "no temporary is left beside it"
    provenance = json.loads((target / "tuneforge.json").read_text())
    assert provenance == {"artifact": {"path": str(target.resolve()), "fingerprint": fingerprint(target)},
                          **PROVENANCE}


def test_lora_under_bf16_keeps_the_frozen_base_in_bf16_and_trains_fp32_adapters(tiny_model_dir):
    """Under bf16 autocast the base's matrices are stored in bf16 (no per-pass re-cast), the adapters
    and norms stay fp32, and the model computes what the fp32-stored model computes under autocast."""
    import torch

    from tuneforge.adapt.finetune import frozen_in_bf16

    cfg = FinetuneConfig(method="lora", epochs=1)
    reference = trainable_model(load_model(tiny_model_dir, dtype="fp32", device="cpu"), cfg)
    loaded = load_model(tiny_model_dir, dtype="fp32", device="cpu")
    frozen_in_bf16(loaded.model)
    model = trainable_model(loaded, cfg)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert {d for n, d in dtypes.items() if "lora_" in n} == {torch.float32}
    assert {d for n, d in dtypes.items() if "norm" in n} == {torch.float32}
    assert {d for n, d in dtypes.items() if n.endswith(("proj.base_layer.weight", "embed_tokens.weight"))} == {torch.bfloat16}
    ids = torch.tensor([[1, 5, 9, 12, 7, 3]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours, theirs = model(input_ids=ids).logits.float(), reference(input_ids=ids).logits.float()
    torch.testing.assert_close(ours, theirs, atol=0.05, rtol=0.02)
    ours.sum().backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad]
    assert grads and all(g is not None and g.dtype == torch.float32 for g in grads)


def test_every_search_ranks_a_trial_without_a_dev_score_below_any_with_one():
    from tuneforge.adapt.recipe import trial_score

    trials = [{"dev_score": None}, {"dev_score": 0.0}, {"dev_score": 0.5}, {"dev_score": 0.5}, {}]
    assert max(trials, key=trial_score) is trials[2], "the first of equal best scores"
    assert trial_score(trials[0]) < trial_score(trials[1]) and trial_score(trials[4]) == trial_score(trials[0])
