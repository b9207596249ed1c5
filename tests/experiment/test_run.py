"""`tuneforge run`: config errors, stage caching by hash, a killed run resuming, the report
rebuilt from results alone — on a tiny random model (the real model runs in the test_real_*.py files)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tuneforge.cli import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

EXPERIMENT = """\
name: tiny
model: {model}
dtype: fp32
task: {{name: fruit}}
prompting: {{shots: [0, 1], picks: [random], draws: 2, cv_items: 8}}
lora: {{epochs: 1, batch_size: 8, lrs: [0.001, 0.003]}}
distill: {{layers: 1, training: {{epochs: 1}}}}
audit: {{shots: [0], permutations: 50}}
batch: {{route: lora}}
synonyms: {{topics: {topics}, max_new_tokens: 6, samples: 1, writer: few-shot}}
"""


@pytest.fixture(scope="module")
def tiny3(tiny_builder, tmp_path_factory):
    return tiny_builder(tmp_path_factory.mktemp("tiny3"), layers=3)


@pytest.fixture(scope="module")
def experiment_file(tiny3, tmp_path_factory):
    folder = tmp_path_factory.mktemp("experiment")
    (folder / "topics.txt").write_text("apple\nvaccine\n")
    path = folder / "tiny.yaml"
    path.write_text(EXPERIMENT.format(model=tiny3, topics=folder / "topics.txt"))
    return path


def _run(config: Path, out: Path, *overrides: str) -> dict:
    """The run without the stage cache across folders (test_stage_cache.py has it): what runs here
    depends on the run folder alone, whatever ran before in this session."""
    from tuneforge.api import run

    return run(str(config), overrides=list(overrides), out=out, echo=lambda line: None, cache=False)


def _ran(results: dict) -> set[str]:
    return {s["name"] for s in results["stages"] if not s["cached"]}


@pytest.fixture(scope="module")
def first_run(experiment_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    return out, _run(experiment_file, out)


def test_every_stage_runs_once_then_comes_from_the_cache(experiment_file, first_run):
    out, results = first_run
    stages = ["prompting", "lora", "distill", "audit", "batch", "synonyms"]
    assert [s["name"] for s in results["stages"]] == stages and _ran(results) == set(stages)
    again = _run(experiment_file, out)
    assert _ran(again) == set()
    assert [r["score"] for r in again["routes"]] == [r["score"] for r in results["routes"]]


@pytest.mark.parametrize("override, expected", [
    ("lora.lr=5e-3", {"lora", "distill", "audit", "batch"}),   # the teacher, its student, what reads them
    ("distill.alpha=0.9", {"distill", "audit"}),
    ("audit.permutations=60", {"audit"}),
    ("prompting.draws=1", {"prompting"}),                       # the store serves lora: not affected
    ("synonyms.max_new_tokens=5", {"synonyms"}),
])
def test_a_changed_setting_reruns_exactly_the_dependent_stages(experiment_file, first_run, tmp_path, override,
                                                               expected):
    import shutil

    out = tmp_path / "tiny"
    shutil.copytree(first_run[0], out)
    assert _ran(_run(experiment_file, out, override)) == expected


def test_more_student_sizes_are_routes_of_their_own_taught_from_the_same_teacher_outputs(experiment_file, first_run,
                                                                                        tmp_path):
    import shutil

    out = tmp_path / "tiny"
    shutil.copytree(first_run[0], out)
    results = _run(experiment_file, out, "distill.sizes=2")
    assert _ran(results) == {"distill-2"}, "the first student, the audit and the store are unchanged"
    by = {r["name"]: r for r in results["routes"]}
    assert by["distilled (2 layers)"]["kind"] == "distill" and by["distilled (2 layers)"]["stage"] == "distill-2"
    assert by["distilled (2 layers)"]["parameters"]["total"] > by["distilled (1 layers)"]["parameters"]["total"]
    first, second = (json.loads((out / "stages" / s / "run" / "results.json").read_text())["pool"]
                     for s in ("distill", "distill-2"))
    assert first["teacher_labelled_now"] == first["size"] > 0
    assert second == {**first, "teacher_labelled_now": 0, "teacher_cached": first["size"]}, "no teacher pass"


def test_results_carry_every_route_and_the_parameter_facts(first_run):
    from tuneforge.experiment.report import parameter_facts

    out, results = first_run
    names = [r["name"] for r in results["routes"]]
    variants = ["", " per-char", " batch-calibrated", " batch-calibrated per-char"]
    assert names == [f"prompting {k}{v}" for k in ("0-shot", "1-shot random") for v in variants] + \
        ["LoRA fine-tune", "distilled (1 layers)"]
    facts = {f["route"]: f["holds"] for f in parameter_facts(results)}
    assert all(facts.values()), facts
    by = {r["name"]: r for r in results["routes"]}
    assert len(by["prompting 1-shot random"]["dev_score"]["per_draw"]) == by["prompting 1-shot random"]["draws"] == 2
    prompting = [r for r in results["routes"] if r["kind"] == "prompting"]
    chosen = [r for r in prompting if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["score"] is not None
    assert chosen[0]["dev_score"]["mean"] == max(r["dev_score"]["mean"] for r in prompting)
    assert all(r["score"] is None for r in prompting if not r["chosen"]), "test is scored for the chosen one only"
    lora = by["LoRA fine-tune"]
    assert lora["history"] and lora["training_seconds"] > 0 and [t["lr"] for t in lora["trials"]] == [0.001, 0.003]
    assert lora["setting"]["lr"] == next(t["lr"] for t in lora["trials"] if t["chosen"])
    assert lora["dev_score"]["mean"] is not None and results["recommendation"]["chosen_on"] == "dev"
    assert results["task"]["dev_origin"].startswith("split from one file")
    assert all(r["peak_memory_bytes"] > 10_000_000 and r["ms_per_example"] > 0 for r in results["routes"])
    store = results["store"]
    assert store["route"] == "LoRA fine-tune" and store["rows"] == store["inputs"] == 245 and store["coverage"] == 1
    assert results["synonyms"]["rows"] == 2
    assert {r["name"] for r in results["audit"]["routes"]} == {"base 0-shot", "LoRA fine-tune", "distilled student"}
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert json.loads((out / "results.json").read_text())["routes"] == results["routes"]


def test_the_store_holds_the_served_routes_test_predictions(first_run):
    out, results = first_run
    serving = json.loads((out / "stages" / "lora" / "result.json").read_text())["result"]["serving"]
    _assert_store_matches(results, serving["predictions"], "tiny-lora")


def _assert_store_matches(results: dict, predictions: list[str], name: str) -> None:
    """Every test input answered from the store has the prediction the experiment scored on test."""
    from tuneforge.data.splits import load_task
    from tuneforge.store.sqlite import PredictionStore

    store = results["store"]
    assert store["name"] == name
    db = PredictionStore(store["path"], readonly=True)
    try:
        assert db.names()[store["setting"]]["name"] == name
        test = load_task("fruit").test
        rows = db.get_many(store["setting"], [ex.input for ex in test])
        assert [rows[ex.input]["output"] for ex in test] == predictions
    finally:
        db.close()


def test_a_winning_prompting_condition_with_per_input_demonstrations_and_calibration_is_served(tiny3, tmp_path):
    """Prompting wins (it alone runs): its dev-chosen similar-picked, batch-calibrated condition fills
    the store, and the store answers every test input as the experiment scored it."""
    from tuneforge.api import run

    config = tmp_path / "similar.yaml"
    config.write_text(f"name: similar\nmodel: {tiny3}\ndtype: fp32\ntask: {{name: fruit}}\n"
                      "prompting: {shots: [2], picks: [similar], calibrations: [batch], scorings: [per-char]}\n"
                      "lora: null\ndistill: null\naudit: null\n")
    results = run(str(config), out=tmp_path / "similar", echo=lambda line: None)
    (chosen,) = [r for r in results["routes"] if r["chosen"]]
    assert results["recommendation"]["route"] == chosen["name"] == results["store"]["route"]
    assert (chosen["pick"], chosen["calibration"], chosen["scoring"]) == ("similar", "batch", "per-char")
    conditions = json.loads((tmp_path / "similar" / "stages" / "prompting" / "result.json").read_text())
    (scored,) = [c for c in conditions["result"]["conditions"] if c["chosen"]]
    _assert_store_matches(results, scored["predictions"], "similar-prompting")


def test_a_lora_route_trained_with_demonstrations_is_served_from_the_store_with_them(tiny3, tmp_path):
    """LoRA alone, on 2-shot similar prompts: the store's setting picks each input's demonstrations
    from the train pool as training did, and answers every test input as the serving pass scored it;
    `tuneforge predict` on the run folder answers the same."""
    from tuneforge.api import predict, run
    from tuneforge.data.splits import load_task

    config = tmp_path / "shots.yaml"
    config.write_text(f"name: shots\nmodel: {tiny3}\ndtype: fp32\ntask: {{name: fruit}}\nprompting: null\n"
                      "lora: {lr: 0.003, epochs: 1, shots: [2], autocast: 'off'}\nfull: null\ndistill: null\n"
                      "audit: null\nsynonyms: null\n")
    results = run(str(config), out=tmp_path / "shots", echo=lambda line: None, cache=False)
    (lora,) = results["routes"]
    assert (lora["shots"], lora["pick"], lora["seed"]) == (2, "similar", 0)
    stage = json.loads((tmp_path / "shots" / "stages" / "lora" / "result.json").read_text())["result"]
    assert stage["results"]["demonstrations"]["shots"] == 2
    _assert_store_matches(results, stage["serving"]["predictions"], "shots-lora")
    test = load_task("fruit").test
    rows = predict(tmp_path / "shots", [ex.input for ex in test], dtype="fp32")
    assert [r["output"] for r in rows] == stage["serving"]["predictions"]


def test_a_real_run_writes_the_declared_shape(first_run):
    """The producer side of the results record: the report's fixture is held to the same shape."""
    from tuneforge.experiment.records import shape_problems

    assert shape_problems(first_run[1]) == []


def test_the_report_command_rebuilds_from_results_alone(first_run, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(first_run[0], out)
    shutil.rmtree(out / "stages")  # nothing to re-run from: the report must not need it
    (out / "report.html").unlink()
    (out / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "LoRA fine-tune" in html and "distilled (1 layers)" in html and (out / "report.md").is_file()


def test_report_of_a_directory_without_results_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


@pytest.mark.parametrize("yaml_text, overrides, message", [
    ("lora: {lrr: 1}\n", [], "unknown key 'lora.lrr'"),
    ("lora: {epochs: two}\n", [], "lora.epochs: expected an integer, got 'two'"),
    ("lora:\n  epochs: 1\n  method: full\n", [], "lora.method must be lora"),
    ("full: null\ndistill: {teacher: full}\n", [], "distill.teacher is full, but that section is off"),
    ("prompting: null\nlora: null\ndistill: null\n", [], "no route to run"),
    ("batch: {route: best}\n", [], "batch.route must be recommended or one of"),
    ("task: {name: nosuchtask}\n", [], "nosuchtask"),
    ("name: x\n", ["--lora.epochs=-1"], "lora"),
    ("name: x\n", ["--lora.nope=1"], "unknown key 'lora.nope'"),
    ("name: [unclosed\n", [], "invalid YAML"),
])
def test_bad_experiment_configs_exit_2_with_one_line(tmp_path, capsys, yaml_text, overrides, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), *overrides]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith("tuneforge: error:"), err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_an_override_that_is_not_a_setting_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tuneforge.cli", "run", "x.yaml", "--verbose"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2 and "settings are given as --section.key=value" in proc.stderr


def test_a_killed_run_resumes_with_nothing_lost(experiment_file, tmp_path):
    """SIGKILL the run while its LoRA stage trains; the stage dies with it; the rerun resumes the
    stage from its checkpoints and ends with the same history as a run never killed."""
    settings = ["--lora.epochs=3", "--lora.batch_size=4", "--lora.checkpoint_every=2", "--prompting=null",
                "--distill=null", "--audit=null", "--batch=null", "--synonyms=null"]
    cmd = [sys.executable, "-m", "tuneforge.cli", "run", str(experiment_file), "--no-cache", *settings]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # killed in the search's second trial: the first is read back, the second resumes from its checkpoints
    checkpoints = killed / "stages" / "lora" / "run" / "trials" / "1" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not (checkpoints.is_dir() and any(checkpoints.glob("step-*"))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert any(checkpoints.glob("step-*")), "the run finished or failed before it could be killed"
    time.sleep(1)  # the stage process gets SIGKILL with its parent
    assert not (killed / "stages" / "lora" / "result.json").exists()
    resumed = subprocess.run([*cmd, "--out", str(killed)], env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run([*cmd, "--out", str(tmp_path / "whole")], env=ENV, capture_output=True, text=True,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr
    lora = lambda d: json.loads((d / "results.json").read_text())["routes"][0]  # noqa: E731
    assert [h["loss"] for h in lora(killed)["history"]] == [h["loss"] for h in lora(tmp_path / "whole")["history"]]
    assert [t["dev_score"] for t in lora(killed)["trials"]] == [t["dev_score"] for t in lora(tmp_path / "whole")["trials"]]


WINDOW_SETTINGS = {
    "lora": ["--distill=null"],
    "full": ["--lora=null", "--distill=null", "--full.epochs=1", "--full.batch_size=8"],
    "distill": [],
}


@pytest.mark.parametrize("stage", ["lora", "full", "distill"])
def test_a_run_killed_after_training_but_before_scoring_resumes(experiment_file, tmp_path, stage):
    """SIGKILL the run once the stage's training run has written its results.json but before the
    stage has scored it (its result.json): the rerun reads the finished run back, never refuses it,
    and ends with the same results as a run never killed."""
    settings = ["--prompting=null", "--audit=null", "--batch=null", "--synonyms=null", *WINDOW_SETTINGS[stage]]
    cmd = [sys.executable, "-m", "tuneforge.cli", "run", str(experiment_file), "--no-cache", *settings]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--out", str(killed)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    trained, scored = killed / "stages" / stage / "run" / "results.json", killed / "stages" / stage / "result.json"
    deadline = time.time() + 300
    while time.time() < deadline and not trained.is_file() and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(1)  # the stage process gets SIGKILL with its parent
    assert trained.is_file() and not scored.exists(), "the kill missed the window between training and scoring"
    resumed = subprocess.run([*cmd, "--out", str(killed)], env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run([*cmd, "--out", str(tmp_path / "whole")], env=ENV, capture_output=True, text=True,
                           timeout=600)
    assert whole.returncode == 0, whole.stderr
    routes = lambda d: json.loads((d / "results.json").read_text())["routes"]  # noqa: E731
    keep = ("name", "score", "history", "parameters")
    assert [{k: r.get(k) for k in keep} for r in routes(killed)] == [{k: r.get(k) for k in keep} for r in routes(tmp_path / "whole")]


def test_the_python_api_takes_a_config_object_a_file_or_demo(experiment_file):
    from tuneforge.api import experiment_config
    from tuneforge.experiment.sections import ExperimentConfig

    demo = experiment_config("demo", ["lora.epochs=1", "full=null"])
    assert demo.name == "demo" and demo.lora.epochs == 1 and demo.lora.merge and demo.full is None
    assert demo.prompting.shots == (0, 1, 5) and demo.distill.teacher == "lora"
    built = experiment_config(ExperimentConfig(name="x"), ["audit.max_gap=0.2"])
    assert built.name == "x" and built.audit.max_gap == 0.2
    assert experiment_config(str(experiment_file)).synonyms.max_new_tokens == 6


def test_every_competing_route_records_what_the_verdict_weighs(first_run):
    """Counted compute and per-item dev scores for each route's chosen setting; the recommendation
    compares each with the best on the same dev items."""
    out, results = first_run
    dev = results["task"]["sizes"]["dev"]
    competing = [r for r in results["routes"] if r["chosen"]]
    for r in competing:
        assert r["tokens_per_example"] > 0, r["name"]
        assert r["flops_per_example"] == 2 * r["parameters"]["total"] * r["tokens_per_example"], r["name"]
        assert len(r["dev_score"]["per_item"]) == dev and sum(r["dev_score"]["per_item"]) / dev == \
            pytest.approx(r["dev_score"]["mean"]), r["name"]
    by = {r["name"]: r for r in competing}
    assert by["distilled (1 layers)"]["flops_per_example"] < by["LoRA fine-tune"]["flops_per_example"]
    rec = results["recommendation"]
    assert {c["route"] for c in rec["comparisons"]} == set(by) - {rec["best"]}
    assert all(c["paired"]["items"] == dev for c in rec["comparisons"]) and rec["items"] == dev
    assert rec["small_dev"]["items"] == dev  # the fruit task's dev split has 24 items


def test_a_throttled_rerun_gives_the_same_verdict(experiment_file, first_run, tmp_path):
    """The routes again in a new folder (no stage cache) while two busy processes compete for both cores:
    every latency moves, the verdict does not."""
    busy = [subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 240\nwhile time.time() < end: pass"])
            for _ in range(2)]
    try:
        again = _run(experiment_file, tmp_path / "tiny", "audit=null", "batch=null", "synonyms=null")
    finally:
        for p in busy:
            p.kill()
            p.wait()
    first = first_run[1]
    timing = {"ms_per_example"}
    assert {k: v for k, v in again["recommendation"].items() if k not in timing} == \
        {k: v for k, v in first["recommendation"].items() if k not in timing}
    assert [r["ms_per_example"] for r in again["routes"]] != [r["ms_per_example"] for r in first["routes"]]
