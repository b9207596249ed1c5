"""The stage cache across run folders: a rerun elsewhere runs no stage, a changed setting runs only
what depends on it, paths follow the stage into its new folder, a write is whole or absent, and
`tuneforge cache list` / `clear` account for the bytes (hard links included)."""

import json
import os
from pathlib import Path

import pytest

from tuneforge.cli import main
from tuneforge.experiment import cache
from tuneforge.experiment.cache import keep, relocate, take

EXPERIMENT = """\
name: cached
model: {model}
dtype: fp32
task: {{name: {task}}}
prompting: {{shots: [0], picks: [first], calibrations: [none], scorings: [sum]}}
lora: {{epochs: 1, batch_size: 8, lrs: [0.001]}}
distill: null
audit: {{shots: [0], permutations: 20}}
batch: {{route: lora}}
synonyms: {{topics: {topics}, shots: 1, max_new_tokens: 4, samples: 1, writer: few-shot}}
"""


@pytest.fixture
def config(tiny_model_dir, tmp_path) -> Path:
    """The experiment on 48 fruits (28 train, 5 dev, 15 test): every stage takes seconds."""
    from tuneforge.data.tasks import builtin_path

    task = tmp_path / "fruit48.jsonl"
    task.write_text("".join(Path(builtin_path("fruit")).read_text().splitlines(keepends=True)[:48]))
    (tmp_path / "topics.txt").write_text("apple\nvaccine\n")
    path = tmp_path / "cached.yaml"
    path.write_text(EXPERIMENT.format(model=tiny_model_dir, task=task, topics=tmp_path / "topics.txt"))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A tuneforge home of this test's own, so that its cache starts empty."""
    monkeypatch.setenv("TUNEFORGE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _run(config: Path, out: Path, *overrides: str) -> tuple[dict, list[str]]:
    from tuneforge.api import run

    lines = []
    return run(str(config), overrides=list(overrides), out=out, echo=lines.append), lines


def _ran(results: dict) -> set[str]:
    return {s["name"] for s in results["stages"] if not s["cached"]}


def test_a_rerun_in_another_folder_runs_no_stage_and_a_change_runs_only_its_dependents(config, home, tmp_path):
    first, _ = _run(config, tmp_path / "a")
    assert _ran(first) == {"prompting", "lora", "audit", "batch", "synonyms"}

    again, lines = _run(config, tmp_path / "b")
    kept = home / "cache" / "stages"
    assert _ran(again) == set()
    assert [line.split(" (")[0] for line in lines] == [
        f"stage {s['name']}: from cache {kept / s['hash']}" for s in first["stages"]]
    assert [r["score"] for r in again["routes"]] == [r["score"] for r in first["routes"]]
    # what the stages record names the new folder, and the files are there
    lora = next(r for r in again["routes"] if r["stage"] == "lora")
    assert lora["model_dir"] == str(tmp_path / "b" / "stages" / "lora" / "run" / "merged")
    assert (Path(lora["model_dir"]) / "model.safetensors").is_file()
    assert again["audit"]["routes"][1]["model"] == lora["model_dir"]
    assert str(tmp_path / "a") not in (tmp_path / "b" / "results.json").read_text()
    # the batch jobs' rows are in the new run's own store, under a setting naming the new model folder
    from tuneforge.store.sqlite import PredictionStore

    for job in ("store", "synonyms"):
        olds, news = first[job], again[job]
        assert news["path"] == str(tmp_path / "b" / "store.sqlite") and news["rows"] == olds["rows"] > 0
        before, after = (PredictionStore(r["path"], readonly=True) for r in (olds, news))
        assert {r["input"]: (r["output"], r["meta"]) for r in after.rows(news["setting"])} == \
            {r["input"]: (r["output"], r["meta"]) for r in before.rows(olds["setting"])}
        assert str(tmp_path / "a") not in json.dumps(after.settings()[news["setting"]])
        before.close(), after.close()

    changed, lines = _run(config, tmp_path / "c", "lora.lrs=[0.003]")
    assert _ran(changed) == {"lora", "audit", "batch"}, "the audit and the store read the LoRA model"
    assert lines[0].startswith("stage prompting: from cache ")


def test_a_stage_kept_by_a_build_recording_less_is_not_reused(config, home, tmp_path, monkeypatch):
    """The stage hash covers the shape of what stages record (`stages.RESULTS_VERSION`): a stage an
    older build of the same release kept, without the figures the recommendation now weighs, runs again."""
    from tuneforge.experiment import run

    only = ["lora=null", "audit=null", "batch=null", "synonyms=null"]
    first, _ = _run(config, tmp_path / "a", *only)
    assert _ran(first) == {"prompting"} and _ran(_run(config, tmp_path / "b", *only)[0]) == set()
    monkeypatch.setattr(run, "RESULTS_VERSION", run.RESULTS_VERSION + 1)
    assert _ran(_run(config, tmp_path / "c", *only)[0]) == {"prompting"}


def test_no_cache_keeps_and_takes_nothing(config, home, tmp_path):
    settings = ["--lora=null", "--audit=null", "--batch=null", "--out"]
    assert main(["run", str(config), "--no-cache", *settings, str(tmp_path / "a")]) == 0
    assert not (home / "cache").exists()
    assert main(["run", str(config), "--cache", str(tmp_path / "mine"), *settings, str(tmp_path / "b")]) == 0
    assert [e["stage"] for e in cache.entries(tmp_path / "mine")] == ["prompting", "synonyms"]


@pytest.mark.parametrize("value, expected", [
    ("/runs/a", "/new"),
    ("/runs/a/stages/lora/run/merged", "/new/stages/lora/run/merged"),
    ("/runs/ab/stages", "/runs/ab/stages"),           # a sibling that shares the prefix is not moved
    ("relative/runs/a", "relative/runs/a"),
    ({"x": ["/runs/a/m", 3, None]}, {"x": ["/new/m", 3, None]}),
])
def test_relocate_moves_paths_at_or_under_the_folder(value, expected):
    assert relocate(value, [("/runs/a", "/new")]) == expected


def _finished_stage(run_dir: Path, digest: str = "f" * 64) -> Path:
    """A stage folder as a finished stage leaves it: its input and result, a model with its provenance."""
    stage = run_dir / "stages" / "lora"
    (stage / "run" / "merged").mkdir(parents=True)
    model = str(stage / "run" / "merged")
    (stage / "input.json").write_text(json.dumps({"kind": "finetune", "hash": digest, "run_dir": str(run_dir)}))
    (stage / "result.json").write_text(json.dumps({"hash": digest, "result": {"model_dir": model}}))
    (stage / "run" / "merged" / "tuneforge.json").write_text(json.dumps({"artifact": {"path": model}}))
    (stage / "run" / "merged" / "model.safetensors").write_bytes(b"\0" * 4096)
    return stage


def test_a_kept_stage_is_linked_into_a_new_folder_with_its_paths_moved(tmp_path):
    root, stage = tmp_path / "cache", _finished_stage(tmp_path / "a")
    keep(root, stage, echo=pytest.fail)
    record = take(root, "f" * 64, tmp_path / "b" / "stages" / "lora", tmp_path / "b", echo=pytest.fail)
    merged = tmp_path / "b" / "stages" / "lora" / "run" / "merged"
    assert record["result"]["model_dir"] == str(merged)
    assert json.loads((merged / "tuneforge.json").read_text())["artifact"]["path"] == str(merged)
    weights = [d / "model.safetensors" for d in (stage / "run" / "merged", merged)]
    assert weights[0].stat().st_ino == weights[1].stat().st_ino, "hard-linked, not copied"
    kept = json.loads((root / ("f" * 64) / "stage" / "result.json").read_text())
    assert kept["result"]["model_dir"] == str(stage / "run" / "merged"), "the cache's own copy is untouched"


def test_of_two_runs_keeping_one_hash_the_first_stands(tmp_path, monkeypatch):
    """The other run renames its entry into place while this one is still copying: this one's rename
    fails, its copy is dropped, and nothing is reported as wrong."""
    root, ours, theirs = tmp_path / "cache", _finished_stage(tmp_path / "a"), _finished_stage(tmp_path / "b")
    write = cache.write_json_atomic

    def other_run_finishes_first(path, data):
        monkeypatch.setattr(cache, "write_json_atomic", write)
        keep(root, theirs, echo=pytest.fail)
        return write(path, data)

    monkeypatch.setattr(cache, "write_json_atomic", other_run_finishes_first)
    keep(root, ours, echo=pytest.fail)
    assert json.loads((root / ("f" * 64) / "entry.json").read_text())["run_dir"] == str(tmp_path / "b")
    assert os.listdir(root) == ["f" * 64], "no temporary folder is left behind"


def test_a_killed_write_is_never_taken_and_clear_removes_it(tmp_path):
    root, stage = tmp_path / "cache", _finished_stage(tmp_path / "a")
    keep(root, stage, echo=pytest.fail)
    os.rename(root / ("f" * 64), root / f".tmp-{'f' * 12}-123-abcd")  # complete, but never renamed into place
    (root / ("e" * 64)).mkdir()  # a folder with the right name but no entry.json: not an entry either
    assert take(root, "f" * 64, tmp_path / "b" / "stages" / "lora", tmp_path / "b", echo=pytest.fail) is None
    assert take(root, "e" * 64, tmp_path / "b" / "stages" / "lora", tmp_path / "b", echo=pytest.fail) is None
    assert cache.entries(root) == [] and len(cache.leftovers(root)) == 1
    assert cache.clear(root)["leftovers"] == 1 and cache.leftovers(root) == []


def test_cache_list_and_clear_account_for_the_bytes(home, tmp_path, capsys):
    from tuneforge import units

    root = home / "cache" / "stages"
    old, new = _finished_stage(tmp_path / "old", "a" * 64), _finished_stage(tmp_path / "new", "b" * 64)
    for stage in (old, new):
        keep(root, stage, echo=pytest.fail)
    entry = root / ("a" * 64) / "entry.json"
    entry.write_text(json.dumps({**json.loads(entry.read_text()), "created": "2020-01-01T00:00:00+00:00"}))
    (old / "run" / "merged" / "model.safetensors").unlink()  # gone from its run folder: the cache alone holds it

    assert main(["cache", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["a" * 12, "lora", "finetune"] and lines[1].endswith(str(tmp_path / "old"))
    assert lines[2].startswith("b" * 12) and lines[3].startswith(f"2 stage(s) in {root}: ")

    # the old entry frees its weights and its entry.json; its other files stay linked from its run folder
    freed = 4096 + entry.stat().st_size
    assert main(["cache", "clear", "--older-than", "30"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"removed 1 stage(s) and 0 unfinished write(s) from {root}: ")
    assert f"of which {units.size(freed)} freed on the disk" in out
    assert [e["hash"] for e in cache.entries(root)] == ["b" * 64]
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out.startswith("removed 1 stage(s)") and cache.entries(root) == []
    assert (new / "run" / "merged" / "model.safetensors").stat().st_size == 4096, "the run folder keeps its files"
