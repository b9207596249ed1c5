"""The finetune command as a user runs it: real subprocesses, SIGKILL mid-run, accelerate launch."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file


def _cmd(model_dir, out, *extra):
    return [sys.executable, "-m", "tuneforge.cli", "finetune", "--model", str(model_dir), "--out", str(out),
            "--epochs", "4", "--batch-size", "4", "--checkpoint-every", "5", *extra]


# Tiny models gain nothing from threads, and two processes spinning on 2 cores slow each other down.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600, **kw)


def _weights(out, method):
    folder = out / ("adapter" if method == "lora" else "model")
    name = "adapter_model.safetensors" if method == "lora" else "model.safetensors"
    return load_file(folder / name)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_resume_after_sigkill_gives_bit_identical_weights(tiny_model_dir, tmp_path, method):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = _run(_cmd(tiny_model_dir, reference, "--method", method))
    assert done.returncode == 0, done.stderr

    proc = subprocess.Popen(_cmd(tiny_model_dir, killed, "--method", method), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:  # the search's first trial done, the second midway
        if list((killed / "trials" / "1" / "checkpoints").glob("step-*")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    assert (killed / "trials" / "0" / "trial.json").is_file()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists()

    again = _run(_cmd(tiny_model_dir, killed, "--method", method))
    assert again.returncode == 2 and "--resume" in again.stderr, "an unfinished run is not overwritten"
    resumed = _run(_cmd(tiny_model_dir, killed, "--method", method, "--resume"))
    assert resumed.returncode == 0, resumed.stderr

    ref, got = _weights(reference, method), _weights(killed, method)
    assert ref.keys() == got.keys()
    assert all(torch.equal(ref[k], got[k]) for k in ref)
    ref_results, got_results = (json.loads((out / "results.json").read_text()) for out in (reference, killed))
    assert [h["loss"] for h in got_results["history"]] == [h["loss"] for h in ref_results["history"]]
    strip = lambda trials: [{k: v for k, v in t.items() if k != "seconds"} for t in trials]  # noqa: E731
    assert strip(got_results["trials"]) == strip(ref_results["trials"]) and len(ref_results["trials"]) == 3
    assert not (killed / "trials").exists(), "a finished run keeps no scratch"


def test_resume_from_a_run_with_another_config_is_refused(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(tiny_model_dir, out, "--epochs", "50"), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(out.glob("trials/*/checkpoints/step-*")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = sorted(p.name for p in (out / "trials" / "0" / "checkpoints").iterdir())
    other = _run(_cmd(tiny_model_dir, out, "--epochs", "50", "--lr", "0.5", "--resume"))
    assert other.returncode == 2
    assert other.stderr.count("\n") == 1 and "another run (its run hash differs" in other.stderr and "Traceback" not in other.stderr
    assert sorted(p.name for p in (out / "trials" / "0" / "checkpoints").iterdir()) == before


@pytest.mark.parametrize("extra, message", [
    (["--lr", "0"], "learning rate must be positive"),
    (["--lr=-1e-3"], "learning rate must be positive"),
    (["--lora-r", "0"], "LoRA rank must be positive"),
    (["--epochs", "0"], "epochs must be positive"),
    (["--method", "qlora"], "unknown method 'qlora'"),
    (["--lora-targets", "q_proj,attn_c"], "no module named attn_c"),
])
def test_bad_settings_exit_2_with_one_line_and_write_nothing(tiny_model_dir, tmp_path, extra, message):
    out = tmp_path / "run"
    proc = _run(_cmd(tiny_model_dir, out, *extra))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.rglob("*.safetensors"))


def test_two_processes_under_accelerate_launch_match_one(tiny_model_dir, tmp_path):
    launcher = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    common = ["--lora-dropout", "0", "--autocast", "off", "--batch-size", "8", "--epochs", "2",
              "--checkpoint-every", "0"]
    one = _run([sys.executable, "-m", "tuneforge.cli", "finetune", "--model", str(tiny_model_dir),
                "--out", str(tmp_path / "one"), *common])
    assert one.returncode == 0, one.stderr
    # `--cpu --num_processes 2` silently starts one process; these flags really start two (gloo).
    env = {**ENV, "ACCELERATE_USE_CPU": "1"}
    two = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "tuneforge.cli", "finetune",
                          "--model", str(tiny_model_dir), "--out", str(tmp_path / "two"), *common],
                         capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    r1 = json.loads((tmp_path / "one" / "results.json").read_text())
    r2 = json.loads((tmp_path / "two" / "results.json").read_text())
    assert r1["processes"] == 1 and r2["processes"] == 2
    assert len(r1["history"]) == len(r2["history"]) > 0
    # Same global batches, the gradient of the same global mean: equal up to float summation order.
    for h1, h2 in zip(r1["history"], r2["history"]):
        assert h2["loss"] == pytest.approx(h1["loss"], abs=1e-5)
        assert h2["target_tokens"] == h1["target_tokens"]


def test_lora_trained_on_a_bf16_base_merges_into_the_base_as_stored(tiny_model_dir, tmp_path):
    """Under bf16 autocast the run keeps its frozen base in bf16; the merged model is still the saved
    adapter merged into the base as read from disk (fp32 here), as peft merges it for a user."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    done = _run(_cmd(tiny_model_dir, out, "--epochs", "2", "--autocast", "on", "--merge", "--lr", "1e-2"))
    assert done.returncode == 0, done.stderr
    merged = load_file(out / "merged" / "model.safetensors")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    expected = PeftModel.from_pretrained(base, out / "adapter").merge_and_unload().state_dict()
    assert {t.dtype for t in merged.values()} == {torch.float32}
    assert any(not torch.equal(merged[k], base_w) for k, base_w in
               load_file(tiny_model_dir / "model.safetensors").items() if k in merged)  # the adapter moved it
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, expected[name], atol=0, rtol=0)
