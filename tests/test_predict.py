"""Predicting on new inputs with what a route produced: `tuneforge.predict` / `tuneforge predict` from a
fine-tuned run, its merged model, its LoRA adapter, and an experiment's run directory (a prompting
winner with demonstrations and calibration); and the saved model's portability: plain transformers,
without tuneforge, rebuilds the prompt from tuneforge.json and the chat template and predicts the same."""

import io
import json
import os
import subprocess
import sys

import pytest
import torch

from tuneforge.adapt.finetune import FinetuneConfig
from tuneforge.api import finetune, predict
from tuneforge.cli import main
from tuneforge.data.splits import load_task
from tuneforge.settings import BatchConfig

INPUTS = ["lemon", "plum", "raspberry", "a tomato", "grapefruit"]


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "lora"
    cfg = FinetuneConfig(method="lora", epochs=1, lrs=(3e-3,), batch_size=16, autocast="off", merge=True)
    return out, finetune("fruit", model=str(tiny_model_dir), config=cfg, out=out)


def test_run_merged_and_adapter_directories_predict_alike(lora_run):
    out, results = lora_run
    test = load_task("fruit").test
    by_run = predict(str(out), [ex.input for ex in test], dtype="fp32")
    # The training run's own test pass predicted the same labels (same prompt, labels, fp32).
    assert [row["output"] for row in by_run] == results["test_predictions"]
    by_merged = predict(str(out / "merged"), INPUTS, dtype="fp32")
    by_adapter = predict(str(out / "adapter"), INPUTS, dtype="fp32")  # base + adapter, merged on load
    assert [r["output"] for r in by_merged] == [r["output"] for r in by_adapter]
    for merged, adapter in zip(by_merged, by_adapter):
        assert merged["input"] == adapter["input"]
        labels = [label for label, _ in merged["logprobs"]]
        assert labels[0] == merged["output"] and set(labels) <= set(load_task("fruit").labels)
        assert [lp for _, lp in merged["logprobs"]] == pytest.approx([lp for _, lp in adapter["logprobs"]],
                                                                      abs=1e-4)


def test_tuneforge_json_records_the_prompt_and_the_pass(lora_run):
    out, _ = lora_run
    record = json.loads((out / "merged" / "tuneforge.json").read_text())
    task = load_task("fruit")
    assert record["prompt"]["format"] == "plain"
    assert record["prompt"]["instruction"] == task.info.instruction
    assert record["prompt"]["labels"] == task.labels
    assert record["prompt"]["template"] == "{instruction}\n{input}:" and record["prompt"]["answer"] == " {target}\n"
    assert "scored once by the fine-tuning run" in record["metrics"]["pass"] and "in fp32" in record["metrics"]["pass"]


PLAIN_TRANSFORMERS = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

folder, inputs, other_instruction = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
record = json.load(open(f"{folder}/tuneforge.json"))["prompt"]
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def prompt_ids(text, instruction=record["instruction"]):
    messages = [{"role": "system", "content": instruction}, {"role": "user", "content": text}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok(prompt).input_ids  # plain format: the tokenizer's own special tokens


def label_logprob(ids, label):
    answer = tok(record["answer"].format(target=label), add_special_tokens=False).input_ids
    logits = model(torch.tensor([ids + answer])).logits[0, len(ids) - 1 : -1].log_softmax(-1)
    return logits.gather(1, torch.tensor(answer)[:, None]).sum().item()


with torch.no_grad():
    scores = [[label_logprob(prompt_ids(text), label) for label in record["labels"]] for text in inputs]
    ids = prompt_ids(inputs[0], other_instruction)  # greedy; stops at a newline by generation_config.json alone
    new = model.generate(torch.tensor([ids]), max_new_tokens=12)[0, len(ids):]
print(json.dumps({"labels": record["labels"], "scores": scores, "generated": tok.decode(new, skip_special_tokens=True),
                  "tuneforge_imported": "tuneforge" in sys.modules}))
"""


def test_plain_transformers_reproduces_the_predictions_without_tuneforge(lora_run, tmp_path):
    out, _ = lora_run
    merged = out / "merged"
    synonyms = load_task("synonyms").info.instruction  # an open task: tuneforge generates
    done = subprocess.run([sys.executable, "-c", PLAIN_TRANSFORMERS, str(merged), json.dumps(INPUTS), synonyms],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    plain = json.loads(done.stdout.strip().splitlines()[-1])
    assert plain["tuneforge_imported"] is False
    ours = predict(str(merged), INPUTS, dtype="fp32")
    for row, scores in zip(ours, plain["scores"]):  # each label's log-probability, normalised over the labels
        logprobs = dict(zip(plain["labels"], torch.tensor(scores).log_softmax(-1).tolist()))
        assert row["output"] == max(logprobs, key=logprobs.get)
        assert dict(row["logprobs"]) == pytest.approx({label: logprobs[label] for label, _ in row["logprobs"]},
                                                      abs=1e-4)
    # tuneforge generating for the same prompt (0-shot, plain lines) writes the same line.
    generated = predict(str(merged), INPUTS[:1], task="synonyms", dtype="fp32", config=BatchConfig(max_new_tokens=12))
    assert "\n" not in plain["generated"].rstrip("\n")  # stopped at the end of its first line
    assert plain["generated"].strip() == generated[0]["output"]


EXPERIMENT = """\
model: {model}
dtype: fp32
task: {{name: fruit}}
prompting: {{shots: [1], picks: [random], draws: 1, calibrations: [batch], scorings: [sum]}}
lora: null
distill: null
audit: null
batch: {{route: recommended}}
"""


def test_experiment_run_directory_predicts_as_its_store_serves(tiny_model_dir, tmp_path):
    from tuneforge.api import run
    from tuneforge.store.sqlite import PredictionStore

    config = tmp_path / "prompting.yaml"
    config.write_text(EXPERIMENT.format(model=tiny_model_dir))
    results = run(str(config), out=tmp_path / "run", echo=lambda line: None)
    assert results["recommendation"]["route"] == "prompting 1-shot random batch-calibrated"
    test_inputs = [ex.input for ex in load_task("fruit").test][:12]
    db = PredictionStore(tmp_path / "run" / "store.sqlite", readonly=True)
    stored = db.get_many(results["store"]["setting"], test_inputs)
    db.close()
    # Demonstrations picked per input from the stored train split, the stored calibration prior: the same rows.
    predicted = predict(str(tmp_path / "run"), test_inputs)
    assert [row["output"] for row in predicted] == [stored[text]["output"] for text in test_inputs]


def _cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "tuneforge.cli", "predict", *args], input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_cli_reads_stdin_and_writes_jsonl(lora_run, tmp_path):
    out, _ = lora_run
    done = _cli("--model", str(out), "--inputs", "-", "--dtype", "fp32", "--device", "cpu",
                stdin="\n".join(INPUTS) + "\n")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["input"] for r in rows] == INPUTS
    assert [r["output"] for r in rows] == [r["output"] for r in predict(str(out), INPUTS, dtype="fp32")]
    target = tmp_path / "preds.jsonl"
    (tmp_path / "inputs.txt").write_text("\n".join(INPUTS))
    assert main(["predict", "--model", str(out), "--inputs", str(tmp_path / "inputs.txt"), "--out", str(target)]) == 0
    assert len(target.read_text().splitlines()) == len(INPUTS)


@pytest.mark.parametrize("args, message", [
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--device", "cuda:7"], "device 'cuda:7'"),
    (["--inputs", "/nonexistent/in.txt"], "/nonexistent/in.txt: no such file"),
])
def test_cli_bad_input_is_one_line(lora_run, args, message, monkeypatch, capsys):
    out, _ = lora_run
    monkeypatch.setenv("TUNEFORGE_DEVICE", "auto")  # --device sets it: monkeypatch puts it back after
    monkeypatch.setattr("sys.stdin", io.StringIO("lemon\n"))
    base = {"--model": str(out), "--inputs": "-"}
    base.update(dict(zip(args[::2], args[1::2])))
    assert main(["predict", *[x for kv in base.items() for x in kv]]) == 2
    done = capsys.readouterr()
    assert message in done.err and len(done.err.strip().splitlines()) == 1, done.err
    assert done.out == ""


def test_a_model_without_a_record_needs_a_task(tiny_model_dir):
    from tuneforge.errors import TuneforgeError

    with pytest.raises(TuneforgeError, match="records no prompt format.*--task"):
        predict(str(tiny_model_dir), ["lemon"])
    rows = predict(str(tiny_model_dir), ["lemon"], task="fruit", dtype="fp32")
    assert rows[0]["output"] in load_task("fruit").labels


def test_predicting_never_goes_through_the_batch_layer(lora_run, tmp_path):
    """`tuneforge.predict` builds its predictor from predict/setting.py alone: a live prediction's
    path is model -> predict, as the server's (whose import contract forbids tuneforge.batch)."""
    out, _ = lora_run
    code = ("import sys, tuneforge\n"
            f"rows = tuneforge.predict({str(out)!r}, ['lemon'], dtype='fp32')\n"
            "assert rows[0]['output'], rows\n"
            "print(sorted(m for m in sys.modules if m.startswith('tuneforge.batch')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
