"""The distillation pool, the teacher's kept outputs, label-set KD and the choice of kept layers."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tuneforge.adapt.label_kd import LabelScores, label_continuations, label_rows
from tuneforge.adapt.losses import hidden_cosine
from tuneforge.adapt.pool import PoolBuilder, build_pool, held_out_key, list_items, perturbations
from tuneforge.adapt.student import block_influence, check_layer_indices, influential_layers, prune_layers
from tuneforge.data.splits import load_task
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import load_model
from tuneforge.predict.score import score_continuations
from tuneforge.prompts.formats import PromptFormat

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_label_scores_with_gradients_equal_the_predictors_scores(tiny_model_dir):
    """The training path (prompt once, cache repeated per label) scores as label ranking does."""
    loaded, task = load_model(tiny_model_dir, dtype="fp32", device="cpu"), load_task("fruit")
    fmt = PromptFormat("plain", task.info.instruction)
    tok = loaded.tokenizer
    conts = label_continuations(fmt, tok, task.label_set)
    assert max(len(c) for c in conts) > 1, "the check needs labels of several tokens"
    texts = [ex.input for ex in task.train[:6]]
    rows = label_rows(texts, [[0.0] * len(conts)] * 6, [0] * 6, ["train"] * 6, fmt, tok, 256)
    net = LabelScores(loaded.model, conts, tok.pad_token_id, hidden=True)
    loaded.model.eval()
    out = net(net.collate(rows, tok.pad_token_id))
    expected = score_continuations(loaded.model, [list(r.ids) for r in rows], conts, pad_id=tok.pad_token_id)
    torch.testing.assert_close(out["scores"].detach(), expected, atol=1e-4, rtol=1e-4)
    assert len(out["hidden"]) == len(loaded.model.model.layers)
    out["scores"].sum().backward()
    assert loaded.model.model.layers[0].mlp.down_proj.weight.grad.abs().sum() > 0


def test_hidden_cosine_is_zero_for_equal_states_and_ignores_padding():
    torch.manual_seed(0)
    states = [torch.randn(2, 4, 8) for _ in range(3)]
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    assert hidden_cosine(states, [s.clone() for s in states], mask).abs().max() < 1e-6
    other = [s.clone() for s in states]
    other[0][0, 0] = -other[0][0, 0]  # a padded position: not counted
    assert hidden_cosine(states, other, mask).abs().max() < 1e-6
    other[0][0, 1] = -other[0][0, 1]  # a real one: 1 - cos = 2 on one of 3 tokens of one of 3 layers
    assert hidden_cosine(states, other, mask)[0].item() == pytest.approx(2 / 9)


@pytest.mark.parametrize("influence, keep, expected", [
    ([0.9, 0.1, 0.5, 0.2, 0.4, 0.8], 4, [0, 2, 4, 5]),
    ([0.9, 0.1, 0.5, 0.2, 0.4, 0.8], 2, [0, 5]),
    ([0.9, 0.3, 0.3, 0.3, 0.8], 3, [0, 1, 4]),  # ties: the earlier layer
    ([0.9, 0.1, 0.5], 1, [0]),
])
def test_influential_layers_keep_the_ends_and_the_most_influential(influence, keep, expected):
    assert influential_layers(influence, keep) == expected


def test_a_layer_that_changes_nothing_has_no_influence_and_is_dropped_first(tiny_builder, tmp_path):
    model = load_model(tiny_builder(tmp_path / "four", layers=4), dtype="fp32", device="cpu").model
    with torch.no_grad():  # layer 2 adds nothing to the residual stream: its output is its input
        model.model.layers[2].self_attn.o_proj.weight.zero_()
        model.model.layers[2].mlp.down_proj.weight.zero_()
    influence = block_influence(model, [[3, 4, 5, 6, 7], [8, 9, 10]], pad_id=0)
    assert len(influence) == 4 and influence[2] == pytest.approx(0, abs=1e-6)
    assert all(x > 1e-4 for i, x in enumerate(influence) if i != 2)
    assert influential_layers(influence, 3) == [0, 1, 3]
    assert len(prune_layers(model, [0, 1, 3]).model.layers) == 3


def test_a_layer_list_is_checked():
    assert check_layer_indices([5, 0, 3], 6) == [0, 3, 5]
    with pytest.raises(TuneforgeError, match="layer 6 is out of range: the teacher's layers are 0 to 5"):
        check_layer_indices([0, 6], 6)
    with pytest.raises(TuneforgeError, match="distinct"):
        check_layer_indices([1, 1], 6)


def test_the_pool_refuses_dev_and_test_inputs_in_any_case_and_keeps_each_input_once():
    task = load_task("fruit")
    pool = PoolBuilder(task)
    dev, test = task.dev[0].input, task.test[0].input
    assert not pool.add(dev, "generated") and not pool.add(f" {test.upper()} ", "generated")
    spaced = next(ex.input for ex in task.dev + task.test if " " in ex.input)
    assert not pool.add(spaced.replace(" ", "  \t"), "generated")
    assert pool.add("ugli", "generated") and not pool.add("ugli", "perturbed") and pool.add("Ugli", "perturbed")
    assert [p.text for p in pool.inputs] == ["ugli", "Ugli"]


def test_a_generated_pool_holds_no_dev_or_test_input(tiny):
    task = load_task("fruit")
    pool = build_pool(task, 4 * len(task.train), generator=tiny, seed=0)
    held_out = {held_out_key(ex.input) for ex in task.dev + task.test}
    texts = [p.text for p in pool]
    assert len(task.train) < len(texts) == len(set(texts)) <= 5 * len(task.train)
    assert not [t for t in texts if held_out_key(t) in held_out]
    assert [p.text for p in pool[: len(task.train)]] == [ex.input for ex in task.train]
    assert {p.source for p in pool} <= {"train", "generated", "perturbed"}
    again = build_pool(task, 4 * len(task.train), generator=tiny, seed=0)
    assert again == pool, "the same seed builds the same pool"


@pytest.mark.parametrize("text, items", [
    ("kiwano\n- ugli\n- salak\n- cut sh", ["kiwano", "ugli", "salak"]),
    ("1999\n- ugli,\nThe end\n- more", ["ugli"]),
    ("unfinished", []),
])
def test_list_items_read_a_generated_list(text, items):
    assert list_items(text) == items


def test_perturbations_keep_the_words():
    assert perturbations("passion fruit") == ["passion fruit", "Passion fruit", "Passion Fruit", "PASSION FRUIT",
                                              "passion fruit."]
    assert perturbations("Is it ripe?")[-1] == "Is it ripe?"


def _cmd(teacher, out, cache, *extra):
    return [sys.executable, "-m", "tuneforge.cli", "distill", "--teacher", str(teacher), "--out", str(out),
            "--teacher-cache", str(cache), "--layers", "1", "--epochs", "1", "--batch-size", "64", *extra]


def test_teacher_labelling_killed_resumes_with_no_input_labelled_twice(tiny_model_dir, tmp_path):
    unlabeled = tmp_path / "pool.txt"
    unlabeled.write_text("".join(f"made-up fruit {i}\n" for i in range(6000)))
    extra = ["--unlabeled", str(unlabeled), "--pool-size", "4000"]
    reference = subprocess.run(_cmd(tiny_model_dir, tmp_path / "ref", tmp_path / "ref-cache", *extra),
                               capture_output=True, text=True, env=ENV, timeout=600)
    assert reference.returncode == 0, reference.stderr
    cache = tmp_path / "cache"
    proc = subprocess.Popen(_cmd(tiny_model_dir, tmp_path / "killed", cache, *extra), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and len(list(cache.glob("*.json"))) < 3:
        time.sleep(0.005)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = len(list(cache.glob("*.json")))
    assert 3 <= before < 63, "killed while labelling"
    resumed = subprocess.run(_cmd(tiny_model_dir, tmp_path / "killed", cache, *extra, "--resume"),
                             capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    results = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert results["pool"]["size"] == 4000
    assert results["pool"]["teacher_labelled_now"] == 4000 - 64 * before
    kept = sorted(p.name for p in cache.glob("*.json"))
    assert kept == sorted(p.name for p in (tmp_path / "ref-cache").glob("*.json")) and len(kept) == 63
    assert all((cache / n).read_bytes() == (tmp_path / "ref-cache" / n).read_bytes() for n in kept)
    second = subprocess.run(_cmd(tiny_model_dir, tmp_path / "second", cache, *extra, "--kd", "sequence"),
                            capture_output=True, text=True, env=ENV, timeout=600)
    assert second.returncode == 0, second.stderr
    assert json.loads((tmp_path / "second" / "results.json").read_text())["pool"]["teacher_labelled_now"] == 0
