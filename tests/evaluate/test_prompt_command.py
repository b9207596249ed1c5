"""`tuneforge prompt` as a subprocess on task data with problems: an over-long row stops it at once
with one line naming the row; inputs shared by train and test are warned about, and recorded."""

import json
import os
import subprocess
import sys
import time

from transformers import AutoTokenizer

TRAIN = [{"input": "peach", "target": "drupe"}, {"input": "apple", "target": "pome"},
         {"input": "plum", "target": "drupe"}, {"input": "pear", "target": "pome"}]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def prompt_cli(tmp_path, model_dir, test_rows, *extra) -> tuple[subprocess.CompletedProcess, float]:
    train, test = write_jsonl(tmp_path / "train.jsonl", TRAIN), write_jsonl(tmp_path / "test.jsonl", test_rows)
    cmd = [sys.executable, "-m", "tuneforge.cli", "prompt", "--model", str(model_dir), "--dtype", "fp32",
           "--train", str(train), "--test", str(test), "--shots", "0,1", "--out", str(tmp_path / "r.json"), *extra]
    env = {**os.environ, "TUNEFORGE_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return proc, time.perf_counter() - start


def test_an_over_long_test_row_exits_2_with_one_line_naming_it(tmp_path, tiny_model_dir):
    long_text = " ".join(f"cherry{i}" for i in range(3000))
    n = len(AutoTokenizer.from_pretrained(tiny_model_dir)(long_text, add_special_tokens=False)["input_ids"])
    proc, seconds = prompt_cli(tmp_path, tiny_model_dir, [{"input": "quince", "target": "pome"},
                                                          {"input": long_text, "target": "drupe"}])
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert f"{tmp_path / 'test.jsonl'}:2: input is {n:,} tokens; the limit is 512 (max_input_tokens)" in lines[0]
    assert n > 5000 and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.json").exists()
    assert seconds < 120, f"took {seconds:.0f} s: the check must come before any prediction"


def test_inputs_shared_by_train_and_test_are_warned_about_and_recorded(tmp_path, tiny_model_dir):
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"input": "cherry", "target": "drupe"}])  # train stays whole
    proc, _ = prompt_cli(tmp_path, tiny_model_dir, [{"input": " Apple ", "target": "pome"},
                                                    {"input": "quince", "target": "pome"}], "--dev", str(dev))
    assert proc.returncode == 0, proc.stderr
    warning = ("tuneforge: task 'train': 1 of 2 test inputs also appear in train "
               "(duplicates across splits inflate the test score)")
    assert proc.stderr.splitlines().count(warning) == 1, proc.stderr
    results = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert results["task"]["warnings"] == [warning.split(": ", 2)[2]]
