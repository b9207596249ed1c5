import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from tuneforge.adapt.losses import kd_loss, label_kd_loss
from tuneforge.adapt.student import check_vocabularies, kept_layers, layers_for_ratio, prune_layers
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import load_model

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("n, keep, expected", [(30, 7, [0, 5, 10, 14, 19, 24, 29]), (30, 2, [0, 29]), (4, 3, [0, 2, 3]),
                                               (6, 1, [0]), (5, 4, [0, 1, 3, 4])])
def test_kept_layers_are_spread_with_first_and_last(n, keep, expected):
    assert kept_layers(n, keep) == expected


@pytest.mark.parametrize("keep", [0, 4, 5])
def test_impossible_layer_counts_are_refused(keep):
    with pytest.raises(TuneforgeError, match="keep between 1 and 3"):
        kept_layers(4, keep)


def test_pruned_student_copies_the_right_teacher_weights(tiny_builder, tmp_path):
    teacher = load_model(tiny_builder(tmp_path / "four-layers", layers=4), dtype="fp32").model
    student = prune_layers(teacher, kept_layers(4, 3))
    assert len(teacher.model.layers) == 4, "the teacher is untouched"
    assert len(student.model.layers) == 3 and student.config.num_hidden_layers == 3
    t, s = teacher.state_dict(), student.state_dict()
    for new, old in enumerate([0, 2, 3]):
        for name, value in s.items():
            if name.startswith(f"model.layers.{new}."):
                assert torch.equal(value, t[name.replace(f"layers.{new}.", f"layers.{old}.", 1)])
    assert torch.equal(s["model.embed_tokens.weight"], t["model.embed_tokens.weight"])
    assert torch.equal(s["model.norm.weight"], t["model.norm.weight"])
    assert student.model.embed_tokens.weight.data_ptr() != teacher.model.embed_tokens.weight.data_ptr()
    ids = torch.tensor([[3, 4, 5, 6]])
    assert student(input_ids=ids).logits.shape == teacher(input_ids=ids).logits.shape


def test_layers_for_a_parameter_budget(tiny):
    model = tiny.model  # 2 layers
    per_layer = sum(p.numel() for p in model.model.layers[0].parameters())
    total = sum(p.numel() for p in model.parameters())
    keep = layers_for_ratio(model, 0.99)
    assert keep == 1 and total - per_layer <= 0.99 * total
    with pytest.raises(TuneforgeError, match="even one layer"):
        layers_for_ratio(model, 0.05)
    with pytest.raises(TuneforgeError, match="between 0 and 1"):
        layers_for_ratio(model, 1.5)


def _kl_and_ce_by_hand(student: list[float], teacher: list[float], gold: int, T: float) -> tuple[float, float]:
    """KL(softmax(teacher / T) ‖ softmax(student / T)) and CE(student, gold), in plain floats."""
    p = [math.exp(x / T) for x in teacher]
    p = [x / sum(p) for x in p]
    q = [math.exp(x / T) for x in student]
    q = [x / sum(q) for x in q]
    kl = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
    return kl, -math.log(math.exp(student[gold]) / sum(math.exp(x) for x in student))


def test_kd_loss_equals_a_hand_computation():
    T, alpha = 2.0, 0.25
    kl, ce = _kl_and_ce_by_hand([1.0, 0.0, -1.0], [0.0, 2.0, 0.0], 1, T)
    expected = alpha * T * T * kl + (1 - alpha) * ce
    got = kd_loss(torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]]), torch.tensor([1]), n_global=1,
                  alpha=alpha, temperature=T)
    assert got.item() == pytest.approx(expected)


def test_label_kd_loss_equals_a_hand_computation():
    T = 2.0
    kl, ce = _kl_and_ce_by_hand([1.0, 0.0, -1.0], [0.0, 2.0, 0.0], 1, T)
    expected = (5 * T * T * kl + 2 * ce + 1 * 0.3) / 8
    got = label_kd_loss(torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([[0.0, 2.0, 0.0]]), torch.tensor([1]),
                        n_global=1, weights=(5, 2, 1), temperature=T, hidden=torch.tensor([0.3]))
    assert got.item() == pytest.approx(expected)


def test_kd_term_is_zero_when_the_student_is_the_teacher():
    torch.manual_seed(0)
    logits = torch.randn(5, 7)
    assert kd_loss(logits, logits.clone(), torch.zeros(5, dtype=torch.long), 5, alpha=1.0).item() == pytest.approx(0, abs=1e-6)


def test_a_student_with_another_vocabulary_is_refused(tiny, tmp_path):
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained(tiny.path)
    other.add_tokens(["<extra-token>"])
    with pytest.raises(TuneforgeError, match="vocabulary differs.*--kd sequence"):
        check_vocabularies(tiny.tokenizer, other)
    check_vocabularies(tiny.tokenizer, AutoTokenizer.from_pretrained(tiny.path))


def _cmd(teacher, out, *extra):
    return [sys.executable, "-m", "tuneforge.cli", "distill", "--teacher", str(teacher), "--out", str(out),
            "--layers", "1", "--epochs", "3", "--batch-size", "4", "--checkpoint-every", "5", "--pool-size", "200",
            *extra]


def test_distill_resume_after_sigkill_is_exact(tiny_model_dir, tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = subprocess.run(_cmd(tiny_model_dir, reference), capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen(_cmd(tiny_model_dir, killed), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        steps = [int(p.name.split("-")[1]) for p in killed.glob("trials/*/checkpoints/step-*")]
        if steps and max(steps) >= 10:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = subprocess.run(_cmd(tiny_model_dir, killed, "--resume"), capture_output=True, text=True, env=ENV,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(reference / "student" / "model.safetensors")
    b = load_file(killed / "student" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("extra, message", [
    (["--layers", "2"], "keep between 1 and 1"),
    (["--layers", "0"], "keeps at least 1 layer"),
    (["--params-ratio", "1.5"], "between 0 and 1"),
    (["--kd", "soft"], "unknown --kd 'soft'"),
    (["--pool-size", "0"], "--pool-size 0: the pool needs at least 1 input"),
    (["--keep", "0,2"], "--keep: layer 2 is out of range: the teacher's layers are 0 to 1"),
    (["--layer-choices", "random"], "--layer-choices random: choose from influence, even"),
])
def test_bad_distill_settings_exit_2(tiny_model_dir, tmp_path, extra, message):
    cmd = _cmd(tiny_model_dir, tmp_path / "run")
    cmd = cmd[: cmd.index("--layers")] + cmd[cmd.index("--epochs"):] + extra
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_a_teacher_that_is_not_a_model_is_refused(tmp_path):
    (tmp_path / "adapter").mkdir()
    proc = subprocess.run(_cmd(tmp_path / "adapter", tmp_path / "run"), capture_output=True, text=True, env=ENV,
                          timeout=300)
    assert proc.returncode == 2 and "not a model directory" in proc.stderr


def test_unlabeled_inputs_are_labelled_by_the_teacher_and_never_a_dev_or_test_input(tiny_model_dir, tmp_path):
    import json

    from tuneforge.data.splits import load_task

    task = load_task("fruit")
    held_out = [task.dev[0].input, task.test[0].input.upper(), f"  {task.test[1].input} "]
    unlabeled = tmp_path / "more.txt"
    unlabeled.write_text("\n".join(["ugli", "salak", *held_out, "cupuacu", "salak"]) + "\n")
    out = tmp_path / "run"
    cmd = _cmd(tiny_model_dir, out, "--kd", "sequence", "--unlabeled", str(unlabeled))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["rows"]["teacher"] == 3 and results["rows"]["train"] == len(task.train)
    assert results["pool"]["sources"] == {"train": len(task.train), "unlabeled": 3}
    pool = [p["text"] for p in json.loads((out / "pool.json").read_text())["inputs"]]
    assert pool[len(task.train):] == ["ugli", "salak", "cupuacu"]


def test_an_unlabeled_file_with_a_bad_line_is_refused_before_anything_is_written(tiny_model_dir, tmp_path):
    unlabeled = tmp_path / "more.jsonl"
    unlabeled.write_text('{"input": "quince"}\n{"input": \n')
    out = tmp_path / "run"
    proc = subprocess.run(_cmd(tiny_model_dir, out, "--unlabeled", str(unlabeled)), capture_output=True, text=True,
                          env=ENV, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "more.jsonl" in proc.stderr and "line 2" in proc.stderr
    assert not out.exists()
    good = tmp_path / "good.txt"
    good.write_text("ugli\n")
    refused = subprocess.run(_cmd(tiny_model_dir, tmp_path / "other", "--kd", "none", "--unlabeled", str(good)),
                             capture_output=True, text=True, env=ENV, timeout=300)
    assert refused.returncode == 2 and "--unlabeled needs a teacher" in refused.stderr


def test_label_set_kd_on_an_open_task_is_refused(tiny_model_dir, tmp_path):
    proc = subprocess.run(_cmd(tiny_model_dir, tmp_path / "run", "--task", "synonyms", "--kd", "labels"),
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "--kd labels needs a task with a label set" in proc.stderr and not (tmp_path / "run").exists()
