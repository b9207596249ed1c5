"""A sweep of bad inputs a user meets on a bad day — output paths, stores, experiment files (alias
bombs, deep or odd YAML), settings that could only fail later, data files read wrong — each through
the real `tuneforge` command in a subprocess. Every one must exit 2 with one line on stderr that says
what is wrong and where, no traceback, and nothing left behind; the experiment files that would eat
memory are refused in bounded memory (each case's peak RSS is measured by the kernel, `wait4`).

The cases run two at a time (one thread each) in a module fixture; each case is then its own test."""

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
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
    for name, text in YAML_FILES.items():
        (d / f"{name}.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    _bad_data(d)
    train = [{"input": w, "target": t} for w, t in [("plum", "drupe"), ("pear", "pome"), ("peach", "drupe")]]
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    test = [{"input": w, "target": t} for w, t in [("apricot", "drupe"), ("quince", "pome")]]
    (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))


def _laughs(top: str) -> str:
    """A "billion laughs" file: 9 levels of 9 aliases each (9^9 values expanded), the last at `top`."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + f"\n{top}\n"


YAML_FILES = {  # experiment files that are not settings at all, whatever they hold
    "laughs_map": "a0: &a0 {k: lol}\n" + "".join(
        f"a{i}: &a{i} {{{', '.join(f'k{j}: *a{i - 1}' for j in range(9))}}}\n" for i in range(1, 9)) + "lora: *a8\n",
    "laughs_shots": _laughs("prompting: {shots: *l8}"),
    "laughs_name": _laughs("name: *l8"),
    "recursive": "name: x\nprompting: &a [*a]\n",
    "deep_lists": "name: " + "[" * 10_000 + "]" * 10_000 + "\n",
    "deep_maps": "name: x\nprompting: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n",
    "latin1": b"name: caf\xe9\nlora: null\n",
    "long_int": "name: x\nprompting: {seed: " + "9" * 5000 + "}\n",
    "inf_seed": "name: x\nprompting: {seed: 1e400}\n",
    "long_list": "name: [" + ", ".join(["lol"] * 5000) + "]\n",
    "huge_file": "name: x\n" + "# padding\n" * 120_000,
}


def _bad_data(d: Path) -> None:
    """Data files read wrong before: each should be refused in one line naming the file and row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def jsonl(name, rows):
        (d / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    (d / "dup.csv").write_text("input,target,input\nplum,drupe,x\napricot,drupe,y\n", encoding="utf-8")
    (d / "dup-inputs.csv").write_text("input,input\nplum,x\n", encoding="utf-8")
    (d / "numbers.csv").write_text("input,target\nplum,1\npear,2\npeach,1.0\nquince,2\ncherry,1\napple,2\n", encoding="utf-8")
    (d / "latin1.csv").write_bytes(b"input,target\nplum,drupe\ncaf\xe9,drupe\n")
    (d / "deep.jsonl").write_text('{"input": ' + "[" * 100_000 + "]" * 100_000 + ', "target": "x"}\n')
    (d / "deep.json").write_text('[{"input": ' + "[" * 100_000 + "]" * 100_000 + ', "target": "x"}]\n')
    jsonl("image-part.jsonl", [{"messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/a.png"}}]},
        {"role": "assistant", "content": "drupe"}]}])
    jsonl("int-content.jsonl", [{"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]}])
    jsonl("list-input.jsonl", [{"input": ["plum", "pear"], "target": "drupe"}])
    pq.write_table(pa.table({"input": [{"name": "plum"}], "target": ["drupe"]}), d / "struct.parquet")
    pq.write_table(pa.table({"input": ["plum"], "target": [[1, 2]]}), d / "int-list.parquet")
    pq.write_table(pa.table({"input": [[{"role": "user", "content": {"a": "b"}}]], "target": ["x"]}),
                   d / "mixed.parquet")


def _prompt(train: str, test: str = "test.jsonl") -> list[str]:
    return ["prompt", "--model", "{model}", "--train", train, "--test", test, "--shots", "0", "--out", "r.json"]


BOMBS = ("laughs_map", "laughs_shots", "laughs_name", "recursive", "deep_lists", "deep_maps", "long_list", "huge_file")
"""The experiment files that grew to gigabytes or hung before: refused in bounded memory."""

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
    # experiment files: memory and hangs
    ("run alias bomb in a map", ["run", "laughs_map.yaml"], ["laughs_map.yaml:", "more than 10,000 values"]),
    ("run alias bomb in shots", ["run", "laughs_shots.yaml"], ["laughs_shots.yaml:", "more than 10,000 values"]),
    ("run alias bomb in the name", ["run", "laughs_name.yaml"], ["laughs_name.yaml:", "more than 10,000 values"]),
    ("run recursive alias", ["run", "recursive.yaml"], ["recursive.yaml:2", "contains it"]),
    ("run 10,000 nested lists", ["run", "deep_lists.yaml"], ["deep_lists.yaml:1", "nested more than 32 levels"]),
    ("run 10,000 nested maps", ["run", "deep_maps.yaml"], ["deep_maps.yaml:2", "nested more than 32 levels"]),
    ("run a long list quoted short", ["run", "long_list.yaml"], ["long_list.yaml:1", "name: expected a string",
                                                                  "(5,000 items)"]),
    ("run a file of megabytes", ["run", "huge_file.yaml"], ["huge_file.yaml", "over 1,000 kB"]),
    ("run not UTF-8", ["run", "latin1.yaml"], ["latin1.yaml:1", "not UTF-8", "0xe9"]),
    ("run a 5,000-digit integer", ["run", "long_int.yaml"], ["long_int.yaml:2", "5,000 digits"]),
    ("run seed 1e400", ["run", "inf_seed.yaml"], ["inf_seed.yaml:2", "prompting.seed", "expected an integer, got inf"]),
    # settings that could only fail later
    ("run lrs [1e309]", ["run", "x.yaml", "--lora.lrs=[1e309]"], ["--lora.lrs=[1e309]", "lora.lrs", "got inf"]),
    ("run lr .inf", ["run", "x.yaml", "--lora.lr=.inf"], ["lora.lr must be between", "got inf"]),
    ("run max_grad_norm .nan", ["run", "x.yaml", "--lora.max_grad_norm=.nan"], ["lora.max_grad_norm", "got nan"]),
    ("run max_grad_norm -1", ["run", "x.yaml", "--lora.max_grad_norm=-1"], ["lora.max_grad_norm", "got -1"]),
    ("run weight_decay -1e9", ["run", "x.yaml", "--lora.weight_decay=-1e9"], ["lora.weight_decay", "got -1e+09"]),
    ("run seed -1", ["run", "x.yaml", "--lora.seed=-1"], ["lora.seed must be between 0 and 4,294,967,295"]),
    ("run seed 1e23", ["run", "x.yaml", "--prompting.seed=1e23"], ["prompting.seed", "expected an integer"]),
    ("run split_seed -1", ["run", "x.yaml", "--task.split_seed=-1"], ["task.split_seed must be between"]),
    ("run eval_every -5", ["run", "x.yaml", "--lora.eval_every=-5"], ["lora.eval_every", "got -5"]),
    ("run grad_accum 100000", ["run", "x.yaml", "--lora.grad_accum=100000"], ["lora.grad_accum", "1,024"]),
    ("run lora_alpha .inf", ["run", "x.yaml", "--lora.lora_alpha=.inf"], ["lora.lora_alpha", "got inf"]),
    ("run full.lr 1e-300", ["run", "x.yaml", "--full.lr=1e-300"], ["full.lr must be between 1e-12 and 1"]),
    ("run temperature .inf", ["run", "x.yaml", "--lora.epochs=1", "--distill.temperature=.inf"],
     ["distill.temperature", "got inf"]),
    ("run weights [.inf,1,1]", ["run", "x.yaml", "--lora.epochs=1", "--distill.weights=[.inf,1,1]"],
     ["distill.weights must each be between"]),
    ("run pool_size 1e8", ["run", "x.yaml", "--lora.epochs=1", "--distill.pool_size=100000000"],
     ["distill.pool_size", "10,000,000"]),
    ("run shots [100000]", ["run", "x.yaml", "--prompting.shots=[100000]"], ["prompting.shots must each be between"]),
    ("run margin .nan", ["run", "x.yaml", "--report.margin=.nan"], ["report.margin", "nan"]),
    ("run lora_targets unknown", ["run", "x.yaml", "--lora.lora_targets=[nonexistent]"],
     ["lora.lora_targets", "'nonexistent'", "q_proj"]),
    ("run keep [0,999]", ["run", "x.yaml", "--lora.epochs=1", "--distill.keep=[0,999]"],
     ["distill.keep", "layer 999 is out of range"]),
    ("run layers 1000", ["run", "x.yaml", "--lora.epochs=1", "--distill.layers=1000"],
     ["distill.layers 1000", "keep between 1 and"]),
    ("finetune --lr .inf", ["finetune", "--lr", ".inf", "--out", "ft"], ["lr must be between", "got inf"]),
    ("finetune --lora-targets unknown", ["finetune", "--model", "{model}", "--train", "train.jsonl", "--test",
                                         "test.jsonl", "--lora-targets", "qproj", "--out", "ft"], ["qproj", "no module named", "q_proj"]),
    ("distill --temperature .inf", ["distill", "--teacher", "adir", "--temperature", ".inf", "--out", "st"],
     ["temperature must be between"]),
    # data files
    ("prompt duplicate CSV column", _prompt("dup.csv"), ["dup.csv:1", "'input' twice"]),
    ("batch duplicate CSV column", ["batch", "--inputs", "dup-inputs.csv", "--store", "s.db"],
     ["dup-inputs.csv:1", "'input' twice"]),
    ("prompt one number, two labels", _prompt("numbers.csv"), ["numbers.csv:", "label '1", "is the number of label '1"]),
    ("prompt CSV not UTF-8", _prompt("latin1.csv"), ["latin1.csv:3", "not UTF-8"]),
    ("prompt deep JSONL", _prompt("deep.jsonl"), ["deep.jsonl:1", "nested too deeply"]),
    ("prompt deep JSON array", _prompt("deep.json"), ["deep.json", "nested too deeply"]),
    ("prompt image content part", _prompt("image-part.jsonl"), ["image-part.jsonl:1", "not a text part"]),
    ("prompt content a number", _prompt("int-content.jsonl"), ["int-content.jsonl:1", "'content'", "int"]),
    ("prompt input a list of strings", _prompt("list-input.jsonl"), ["list-input.jsonl:1", "'input'", "list"]),
    ("prompt Parquet struct column", _prompt("struct.parquet"), ["struct.parquet: row 1", "'input'", "dict"]),
    ("prompt Parquet list of numbers", _prompt("int-list.parquet"), ["int-list.parquet: row 1", "'target'"]),
    ("prompt Parquet mixed content", _prompt("mixed.parquet"), ["mixed.parquet: row 1", "'input'"]),
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
        proc, peak = _run(argv, d, env)
        return name, (proc, before, _files(d), d, peak)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, CASES))


# A child forked from pytest counts pytest's own pages in its peak RSS (Linux keeps the high-water mark
# across exec), so a small launcher process starts the command and reports the command's own peak.
LAUNCHER = """
import os, subprocess, sys, threading
peak_file, argv = sys.argv[1], sys.argv[2:]
child = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", *argv])
timer = threading.Timer(280, child.kill)
timer.start()
_, status, usage = os.wait4(child.pid, 0)
timer.cancel()
child.returncode = os.waitstatus_to_exitcode(status)
open(peak_file, "w").write(str(usage.ru_maxrss * 1024))
sys.exit(child.returncode)
"""


def _run(argv: list[str], cwd: Path, env: dict) -> tuple[subprocess.CompletedProcess, int]:
    """The command's result and its peak resident memory in bytes (the kernel's count, from wait4)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(peak_file), *argv], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=300)
        return proc, int(peak_file.read_text()) if peak_file.exists() else -1


def test_the_sweep_has_at_least_30_cases():
    assert len({name for name, _, _ in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("name, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(sweep, name, argv, expected):
    proc, before, after, d, _ = sweep[name]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tuneforge: error: "), proc.stderr
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert after == before, f"left behind: {sorted(after - before)}, removed: {sorted(before - after)}"
    assert not (d.parent / "escape").exists()


@pytest.mark.parametrize("name", [c[0] for c in CASES if c[1][0] == "run" and c[1][1].removesuffix(".yaml") in BOMBS])
def test_experiment_files_that_would_eat_memory_are_refused_in_bounded_memory(sweep, name):
    proc, _, _, _, peak = sweep[name]
    assert proc.returncode == 2, proc.stderr
    assert 0 < peak < 200 * 2**20, f"peak RSS {peak / 2**20:.0f} MB"
    assert len(proc.stderr) < 600, "the message quotes no expanded value"
