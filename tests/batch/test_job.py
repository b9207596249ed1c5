import ast
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from tuneforge.data.inputs import read_inputs
from tuneforge.batch.job import BatchConfig, run_batch
from tuneforge.predict.setting import SettingPredictor, build_setting, demo_pool
from tuneforge.data.splits import load_task
from tuneforge.store.keys import prediction_key, setting_id
from tuneforge.store.sqlite import PredictionStore


@pytest.fixture(scope="module")
def fruit():
    return load_task("fruit")


def test_keys_change_when_and_only_when_an_output_changing_setting_changes(tiny, fruit):
    base = build_setting(tiny, fruit, BatchConfig(shots=2))
    same = [BatchConfig(shots=2, batch_size=3), BatchConfig(shots=2, commit_every=5),  # speed, not output
            BatchConfig(shots=2, name="fruit-v2")]  # the name is kept beside the setting, not in it
    for cfg in same:
        assert setting_id(build_setting(tiny, fruit, cfg)) == setting_id(base)
    changed = [BatchConfig(shots=3), BatchConfig(shots=2, pick="random"), BatchConfig(shots=2, format="chat"),
               BatchConfig(shots=2, max_input_tokens=100), BatchConfig(shots=2, pick="similar"),
               BatchConfig(shots=2, scoring="per-char"), BatchConfig(shots=2, calibration="content-free")]
    ids = {setting_id(build_setting(tiny, fruit, cfg)) for cfg in changed}
    assert len(ids) == len(changed) and setting_id(base) not in ids
    other_model = replace(tiny, fingerprint="0" * 64)
    assert setting_id(build_setting(other_model, fruit, BatchConfig(shots=2))) != setting_id(base)
    other_instruction = replace(fruit, info=replace(fruit.info, instruction="Name the fruit type."))
    assert setting_id(build_setting(tiny, other_instruction, BatchConfig(shots=2))) != setting_id(base)
    generate = build_setting(tiny, load_task("synonyms"), BatchConfig(max_new_tokens=8))
    assert setting_id(generate) != setting_id(build_setting(tiny, load_task("synonyms"), BatchConfig(max_new_tokens=9)))
    sid = setting_id(base)
    assert prediction_key(sid, "lemon") != prediction_key(sid, "lime")
    assert prediction_key(sid, "lemon") == prediction_key(setting_id(dict(reversed(list(base.items())))), "lemon")


def test_batched_predictions_equal_one_at_a_time(tiny, fruit):
    for task, cfg in [(fruit, BatchConfig(shots=2)), (load_task("synonyms"), BatchConfig(shots=1, max_new_tokens=8))]:
        predict = SettingPredictor(tiny, build_setting(tiny, task, cfg), demo_pool(task), batch_size=8)
        texts = [ex.input for ex in task.test[:12]]
        batched, alone = predict(texts), [predict([t])[0] for t in texts]
        assert [(r["output"], r["meta"]["prompt_tokens"], r["meta"]["completion_tokens"]) for r in batched] == \
            [(r["output"], r["meta"]["prompt_tokens"], r["meta"]["completion_tokens"]) for r in alone]
        for b, a in zip(batched, alone):  # padding moves the last float digits, never the answer
            assert [lp for _, lp in b["meta"].get("logprobs", [])] == \
                pytest.approx([lp for _, lp in a["meta"].get("logprobs", [])], abs=1e-4)


def test_rerun_computes_only_what_is_missing_and_failures_do_not_stop_the_job(tiny, fruit, tmp_path):
    store = PredictionStore(tmp_path / "p.db")
    setting = build_setting(tiny, fruit, BatchConfig(max_input_tokens=40))
    sid = store.add_setting(setting)
    calls = []
    real = SettingPredictor(tiny, setting)

    def predict(texts):
        calls.append(list(texts))
        return real(texts)

    texts = ["lemon", "x " * 100, "fig", "apple"]  # the second is too long: a failed row
    first = run_batch(predict, store, sid, texts, commit_every=2)
    assert (first["done"], first["failed"], first["skipped"]) == (3, 1, 0)
    assert "more than 40" in store.get(sid, "x " * 100)["error"]
    second = run_batch(predict, store, sid, texts + ["plum"], commit_every=2)
    assert (second["done"], second["skipped"]) == (1, 4) and calls[-1] == ["plum"]


def test_unreadable_lines_become_failed_rows(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"input": "lemon"}\n{"input": \n\xff\xfe\n"fig"\n{"prompt": "plum"}\n{"input": "lemon"}\n')
    inputs, failed = read_inputs(path)
    assert inputs == ["lemon", "fig", "plum"]
    assert [f["error"].split(":")[0] for f in failed] == ["line 3", "line 2"]


WRITER = """
import sys
from tuneforge.batch.job import BatchConfig, run_batch
from tuneforge.predict.setting import SettingPredictor, build_setting, demo_pool
from tuneforge.data.splits import load_task
from tuneforge.model.load import load_model
from tuneforge.store.sqlite import PredictionStore
loaded = load_model(sys.argv[1], dtype="fp32", device="cpu")
task = load_task("fruit")
setting = build_setting(loaded, task, BatchConfig(shots=1))
store = PredictionStore(sys.argv[2])
sid = store.add_setting(setting)
texts = [f"{ex.input} {n}" for n in range(40) for ex in task.train]
print(run_batch(SettingPredictor(loaded, setting, demo_pool(task), 8), store, sid, texts, commit_every=16), flush=True)
"""


def test_a_job_killed_with_sigkill_and_run_again_stores_each_input_exactly_once(tiny_model_dir, tmp_path):
    db = tmp_path / "p.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tiny_model_dir), str(db)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 300
    rows = 0
    while time.monotonic() < deadline and proc.poll() is None and rows < 500:
        time.sleep(0.05)
        try:
            rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
        except sqlite3.Error:
            rows = 0
    assert proc.poll() is None, "the job ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    again = subprocess.run([sys.executable, "-c", WRITER, str(tiny_model_dir), str(db)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    con = sqlite3.connect(db)
    total, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT input) FROM predictions").fetchone()
    n_expected = 40 * len(load_task("fruit").train)
    assert total == distinct == n_expected
    summary = ast.literal_eval(again.stdout.strip().splitlines()[-1])
    # The second run skipped at least what was committed before the kill and computed only the rest.
    assert summary["skipped"] >= rows and summary["done"] + summary["skipped"] == n_expected


def test_an_input_that_is_a_demonstration_is_never_its_own(tiny, fruit, monkeypatch):
    from tuneforge.predict import predictor

    setting = build_setting(tiny, fruit, BatchConfig(shots=2))
    seen = []
    real = predictor.render_prompt
    monkeypatch.setattr(predictor, "render_prompt", lambda fmt, tok, demos, q: seen.append((q, demos)) or real(fmt, tok, demos, q))
    first = fruit.train[0].input
    SettingPredictor(tiny, setting, demo_pool(fruit))([first, "zzz"])
    (q1, d1), (q2, d2) = seen
    assert [d.input for d in d1] == [ex.input for ex in fruit.train[1:3]]
    assert [d.input for d in d2] == [ex.input for ex in fruit.train[:2]]


@pytest.mark.parametrize("cfg", [BatchConfig(shots=3, pick="similar", scoring="per-char"),
                                 BatchConfig(shots=2, pick="balanced", seed=4, calibration="batch"),
                                 BatchConfig(shots=2, pick="random", seed=1, calibration="content-free")],
                         ids=["similar-per-char", "balanced-batch", "random-content-free"])
def test_a_stored_prompting_setting_predicts_what_the_prompting_route_scored(tiny, fruit, cfg):
    """Every condition the prompting route can choose is a store setting whose rows are that
    condition's test predictions (batch calibration against the dev prior it kept)."""
    from tuneforge.evaluate.prompting import PromptingConfig, compare_prompting

    route = compare_prompting(tiny, fruit, PromptingConfig(shots=(cfg.shots,), picks=(cfg.pick,), draws=1,
                                                           seed=cfg.seed, calibrations=(cfg.calibration,),
                                                           scorings=(cfg.scoring,)))
    chosen = next(c for c in route["conditions"] if c["chosen"])
    assert (chosen["pick"], chosen["calibration"], chosen["scoring"]) == (cfg.pick, cfg.calibration, cfg.scoring)
    prior = chosen["priors"][0] if chosen["priors"] else None
    setting = build_setting(tiny, fruit, cfg, prior)
    rows = SettingPredictor(tiny, setting, demo_pool(fruit), batch_size=5)([ex.input for ex in fruit.test])
    assert [r["output"] for r in rows] == chosen["predictions"]
    assert all(r["meta"]["logprobs"][0][0] == r["output"] and r["meta"]["prompt_tokens"] > 0 for r in rows)
    if cfg.calibration == "batch":  # a job run alone estimates the same prior on dev itself
        assert build_setting(tiny, fruit, cfg)["calibration"]["prior"] == pytest.approx(prior)


def test_a_setting_refuses_a_pool_it_was_not_built_from(tiny, fruit):
    from tuneforge.errors import TuneforgeError

    setting = build_setting(tiny, fruit, BatchConfig(shots=2, pick="similar"))
    for pool in (None, demo_pool(fruit)[1:]):
        with pytest.raises(TuneforgeError, match="train split"):
            SettingPredictor(tiny, setting, pool)
