"""Full fine-tuning and the bias audit on the real embedded default model."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _run(args, **kwargs):
    return subprocess.run([sys.executable, "-m", "tuneforge.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), **kwargs)


def test_full_finetune_keeps_the_parameter_count(tmp_path):
    out = tmp_path / "full"
    proc = _run(["finetune", "--task", "fruit", "--method", "full", "--epochs", "2", "--lr", "3e-5", "--out", str(out),
                 "--checkpoint-seconds", "0"], timeout=1200)  # no 1.6 GB checkpoints: resuming is tested on tiny models
    assert proc.returncode == 0, proc.stderr
    full = json.loads((out / "results.json").read_text())
    p = full["parameters"]
    assert p["after"] == p["base"] == p["trainable"] == 134_515_008
    losses = [h["loss"] for h in full["history"]]
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    print("full fine-tune test accuracy", full["test"]["accuracy"]["mean"], full["test"]["accuracy"]["ci95"])


def test_bias_audit_of_base_against_lora_on_bias_demo(tmp_path):
    """`tuneforge audit` on the built-in bias-demo task: the base model prompted 0- and 5-shot and
    a LoRA model fine-tuned on the task, side by side."""
    lora = tmp_path / "lora"
    proc = _run(["finetune", "--task", "bias-demo", "--method", "lora", "--lr", "1e-3", "--merge", "--out", str(lora)],
                timeout=1200)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "audit.json"
    proc = _run(["audit", "--task", "bias-demo", "--model", "default", "--model", str(lora), "--out", str(out)],
                timeout=1200)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    results = json.loads(out.read_text())
    routes = {r["name"]: r for r in results["routes"]}
    assert list(routes) == ["base 0-shot", "base 5-shot similar", "LoRA fine-tune"]
    for r in routes.values():
        assert r["swapped_inputs"] == 36 == sum(g["n"] for g in r["groups"].values())  # every sentence has a term
        assert r["flips"] == sum(d["flips"] for d in r["directions"])
        assert r["gap"] == pytest.approx(abs(r["groups"]["female"]["mean"] - r["groups"]["male"]["mean"]))
    base, tuned = routes["base 0-shot"], routes["LoRA fine-tune"]
    # Measured: fine-tuning on the task lifts accuracy (0.61 -> 0.94) and removes the flips (0.14 -> 0).
    assert tuned["score"] > base["score"] and tuned["flip_rate"] < base["flip_rate"]
