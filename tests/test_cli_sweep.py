"""A sweep of bad inputs a user meets on a bad day — output paths, stores, experiment files, server
flags — each through the real `tuneforge` command in a subprocess. Every one must exit 2 with one
line on stderr that says what is wrong and where, no traceback, and nothing left behind.

The cases run two at a time (one thread each) in a module fixture; each case is then its own test."""

import json
import os
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

UNWRITABLE = "/sys"  # root may write anywhere else; sysfs takes no new files, even from root

EXPERIMENT = "name: sweep\nmodel: {model}\ndtype: fp32\nprompting: {{shots: [0]}}\nlora: null\n" \
             "distill: null\naudit: null\nbatch: null\n"


def _files(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def _setup(d: Path, model: Path) -> None:
    """What the cases find in their working directory."""
    (d / "adir").mkdir()
    (d / "afile").write_text("not a folder\n")
    (d / "empty.txt").write_text("")
    (d / "notsqlite.db").write_text("hello, not a database\n")
    with sqlite3.connect(d / "foreign.db") as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    (d / "runs").mkdir()
    (d / "empty.yaml").write_text("# nothing yet\n")
    (d / "x.yaml").write_text(EXPERIMENT.format(model=model))
    (d / "escape.yaml").write_text(EXPERIMENT.format(model=model).replace("name: sweep", "name: ../../escape"))
    base = EXPERIMENT.format(model=model)
    bad = {"swaps": base.replace("audit: null\n", "audit: {swaps: nosuchlist}\n"),
           "inputs": base.replace("batch: null\n", "batch: {inputs: missing.txt}\n"),
           "dtype": base.replace("dtype: fp32\n", "dtype: fp8\n"),
           "topics": base + "synonyms: {topics: missing.txt}\n"}
    for key, text in bad.items():
        (d / f"bad-{key}.yaml").write_text(text)
    train = [{"input": w, "target": t} for w, t in [("plum", "drupe"), ("pear", "pome"), ("peach", "drupe")]]
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    test = [{"input": w, "target": t} for w, t in [("apricot", "drupe"), ("quince", "pome")]]
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))


# (name, argv, substrings the one error line must hold); {d} is the case's own working directory
CASES = [
    ("prompt --out is a folder", ["prompt", "--out", "adir"], ["adir", "is a folder"]),
    ("prompt --out not writable", ["prompt", "--out", f"{UNWRITABLE}/r.json"], [UNWRITABLE, "cannot write"]),
    ("prompt --out under a file", ["prompt", "--out", "afile/r.json"], ["afile", "is a file, not a folder"]),
    ("audit --out is a folder", ["audit", "--out", "adir"], ["adir", "is a folder"]),
    ("finetune --out is a file", ["finetune", "--out", "afile"], ["afile", "is a file"]),
    ("finetune --out not writable", ["finetune", "--out", f"{UNWRITABLE}/ft"], [UNWRITABLE, "cannot write"]),
    ("distill --out is a file", ["distill", "--teacher", "adir", "--out", "afile"], ["afile", "is a file"]),
    ("run --out is a file", ["run", "x.yaml", "--out", "afile"], ["afile", "is a file"]),
    ("run --out not writable", ["run", "x.yaml", "--out", f"{UNWRITABLE}/run"], [UNWRITABLE, "cannot write"]),
    ("run name escapes runs/", ["run", "escape.yaml"], ["../../escape", "single folder name"]),
    ("run empty file", ["run", "empty.yaml"], ["empty.yaml", "empty"]),
    ("run missing file", ["run", "nope.yaml"], ["nope.yaml", "No such file"]),
    ("run bad audit.swaps", ["run", "bad-swaps.yaml"], ["audit.swaps", "nosuchlist"]),
    ("run missing batch.inputs", ["run", "bad-inputs.yaml"], ["batch.inputs", "missing.txt", "no such file"]),
    ("run missing synonyms.topics", ["run", "bad-topics.yaml"], ["synonyms.topics", "missing.txt"]),
    ("run bad dtype", ["run", "bad-dtype.yaml"], ["'fp8'", "dtype"]),
    ("run bad override", ["run", "x.yaml", "--lora.epochs=-1"], ["lora", "epochs"]),
    ("batch empty inputs", ["batch", "--inputs", "empty.txt", "--store", "s.db"], ["empty.txt", "no inputs"]),
    ("batch missing inputs", ["batch", "--inputs", "missing.txt", "--store", "s.db"], ["missing.txt", "no such file"]),
    ("batch store not sqlite", ["batch", "--inputs", "train.jsonl", "--store", "notsqlite.db", "--model", "{model}"],
     ["notsqlite.db"]),
    ("batch store folder missing", ["batch", "--inputs", "train.jsonl", "--store", "missing/dir/s.db"],
     ["missing/dir/s.db", "does not exist"]),
    ("batch store is another app's", ["batch", "--inputs", "train.jsonl", "--store", "foreign.db"], ["foreign.db"]),
    ("batch store not writable", ["batch", "--inputs", "train.jsonl", "--store", f"{UNWRITABLE}/s.db"],
     [UNWRITABLE, "cannot write"]),
    ("batch unknown engine", ["batch", "--inputs", "train.jsonl", "--store", "s.db", "--engine", "spark"],
     ["'spark'", "local or ray"]),
    ("store stats not sqlite", ["store", "stats", "--store", "notsqlite.db"], ["notsqlite.db"]),
    ("store stats another app's", ["store", "stats", "--store", "foreign.db"], ["foreign.db"]),
    ("store stats missing", ["store", "stats", "--store", "nope.db"], ["nope.db", "no such store"]),
    ("store export wrong extension", ["store", "export", "--store", "notsqlite.db", "--out", "e.csv"], ["e.csv"]),
    ("serve store not sqlite", ["serve", "--store", "notsqlite.db"], ["notsqlite.db"]),
    ("serve port out of range", ["serve", "--store", "notsqlite.db", "--port", "70000"], ["70000", "port"]),
    ("serve unknown host", ["serve", "--store", "notsqlite.db", "--host", "no-such-host.invalid"],
     ["no-such-host.invalid"]),
    ("prompt model path mistyped", ["prompt", "--model", "runs/lora", "--shots", "0"],
     ["runs/lora", "no such model directory", "read as a path"]),
    ("prompt missing task file", ["prompt", "--task", "nope.jsonl"], ["nope.jsonl", "no such file"]),
    ("audit missing swap file", ["audit", "--model", "{model}", "--train", "train.jsonl", "--test", "test.jsonl",
                                 "--swaps", "nope.csv"], ["nope.csv"]),
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, tiny_model_dir) -> dict:
    """Each case's (process, files before, files after), run two at a time."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TUNEFORGE_HOME": str(tmp_path_factory.mktemp("home"))}

    def one(case):
        name, argv, _ = case
        d = tmp_path_factory.mktemp("case")
        _setup(d, tiny_model_dir)
        before = _files(d)
        argv = [a.replace("{model}", str(tiny_model_dir)) for a in argv]
        proc = subprocess.run([sys.executable, "-m", "tuneforge.cli", *argv], cwd=d, env=env, capture_output=True,
                              text=True, timeout=300)
        return name, (proc, before, _files(d), d)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, CASES))


def test_the_sweep_has_at_least_30_cases():
    assert len({name for name, _, _ in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("name, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(sweep, name, argv, expected):
    proc, before, after, d = sweep[name]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tuneforge: error: "), proc.stderr
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert after == before, f"left behind: {sorted(after - before)}, removed: {sorted(before - after)}"
    assert not (d.parent / "escape").exists()
