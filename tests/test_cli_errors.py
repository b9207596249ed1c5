"""The real `tuneforge` command, run as a subprocess: bad input exits 2 with one line on stderr that
says what is wrong and where, no traceback and no results file; good input writes results."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(args, cwd: Path, home: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TUNEFORGE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "tuneforge.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


FRUIT_TRAIN = [
    {"id": "t1", "input": "peach", "target": "drupe"},
    {"id": "t2", "input": "apple", "target": "pome"},
    {"id": "t3", "input": "plum", "target": "drupe"},
    {"id": "t4", "input": "pear", "target": "pome"},
    {"id": "t5", "input": "cherry", "target": "drupe"},
    {"id": "t6", "input": "quince", "target": "pome"},
]
FRUIT_TEST = [
    {"id": "e1", "input": "apricot", "target": "drupe"},
    {"id": "e2", "input": "medlar", "target": "pome"},
    {"id": "e3", "input": "nectarine", "target": "drupe"},
]


def make_case(name: str, d: Path, model_dir: Path):
    """(argv after `prompt`, substrings the error line must contain) for one bad input."""
    two_train = write_jsonl(d / "two.jsonl", FRUIT_TRAIN[:2])
    test = write_jsonl(d / "heldout.jsonl", FRUIT_TEST)
    if name == "missing file":
        return ["prompt", "--task", "nope.jsonl"], ["nope.jsonl", "no such file"]
    if name == "invalid json line":
        f = write_jsonl(d / "broken.jsonl", [FRUIT_TRAIN[0], '{"input": "plum", "target": \n'])
        return ["prompt", "--task", f], [f"{f}:2", "invalid JSON"]
    if name == "missing field":
        f = write_jsonl(d / "nofield.jsonl", FRUIT_TRAIN[:3] + [{"id": "x", "input": "kiwi"}])
        return ["prompt", "--task", f], [f"{f}:4", "'target'", "missing"]
    if name == "missing field in split file":
        f = write_jsonl(d / "badtest.jsonl", [{"id": "x", "target": "drupe"}])
        return ["prompt", "--train", two_train, "--test", f], [f"{f}:1", "'input'", "missing"]
    if name == "empty split":
        blank = d / "blanktest.jsonl"
        blank.write_text("\n   \n\n", encoding="utf-8")
        return ["prompt", "--train", two_train, "--test", blank], ["blanktest.jsonl", "no examples"]
    if name == "unknown task":
        return ["prompt", "--task", "nosuchtask"], ["nosuchtask", "fruit", "synonyms"]
    if name == "more shots than train":
        return ["prompt", "--train", two_train, "--test", test, "--shots", "5"], ["--shots", "5", "2"]
    if name == "unknown model path":
        return ["prompt", "--model", "/nonexistent/dir", "--shots", "0"], ["/nonexistent/dir", "model"]
    if name == "unknown dtype":
        return (["prompt", "--model", model_dir, "--dtype", "fp8", "--train", two_train, "--test", test,
                 "--shots", "0"], ["'fp8'", "dtype"])
    if name == "unknown format":
        return ["prompt", "--format", "plain,xml"], ["'xml'", "format"]
    if name == "unknown picker":
        return ["prompt", "--pick", "random,best"], ["'best'", "pick"]
    if name == "bad shots":
        return ["prompt", "--shots", "a,b"], ["--shots", "'a,b'"]
    if name == "unknown subcommand":
        return ["frobnicate"], ["frobnicate", "prompt"]
    if name == "unknown option":
        return ["prompt", "--shotz", "1"], ["--shotz"]
    if name == "bad calibration":
        return ["prompt", "--calibration", "none,contextual"], ["unknown calibration 'contextual'", "batch"]
    raise AssertionError(name)


CASES = [
    "missing file", "invalid json line", "missing field", "missing field in split file", "empty split",
    "unknown task", "more shots than train", "unknown model path", "unknown dtype", "unknown format",
    "unknown picker", "bad shots", "unknown subcommand", "unknown option", "bad calibration",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line(case, tmp_path, request):
    model_dir = request.getfixturevalue("tiny_model_dir") if case == "unknown dtype" else tmp_path
    args, expected = make_case(case, tmp_path, model_dir)
    out = tmp_path / "r.json"
    proc = run_cli([*args, "--out", out], cwd=tmp_path, home=tmp_path / "home")
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert proc.stderr.strip() == lines[0]
    line = lines[0]
    assert line.startswith("tuneforge"), line
    assert "error" in line
    for part in expected:
        assert str(part) in line, (part, line)
    assert not out.exists()
    assert not (tmp_path / "runs").exists()


def test_a_topic_file_with_an_empty_line_exits_2_naming_the_line(tmp_path):
    topics = tmp_path / "topics.txt"
    topics.write_text("vaccine\n\ncar\n")
    proc = run_cli(["synonyms", "--topics", topics, "--store", tmp_path / "s.db"], cwd=tmp_path,
                   home=tmp_path / "home", timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"{topics}:2: empty line" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "home").exists()


def test_happy_path_writes_results(tmp_path, tiny_model_dir):
    train = write_jsonl(tmp_path / "train.jsonl", FRUIT_TRAIN)
    test = write_jsonl(tmp_path / "test.jsonl", FRUIT_TEST)
    out = tmp_path / "r.json"
    proc = run_cli(["prompt", "--model", tiny_model_dir, "--train", train, "--test", test, "--shots", "0,1",
                    "--dtype", "fp32", "--out", out], cwd=tmp_path, home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(out) in proc.stdout
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["conditions"]
    assert {c["shots"] for c in results["conditions"]} == {0, 1}
    assert results["task"]["name"] == "train"
    assert results["task"]["sizes"] == {"train": 4, "dev": 2, "test": 3}, "dev is carved from train, one per label"
    assert results["task"]["dev_origin"].startswith("carved from the train file: 2 of its 6 examples")
    assert results["parameters"]["unchanged"] is True
    assert not list(tmp_path.glob(".r.json.tmp-*"))


def test_files_other_tools_write_are_read_as_they_are_meant(tmp_path, tiny_model_dir):
    """Excel's CSV (a byte-order mark, a quoted cell holding a line break, CR LF) as train, and a chat
    file with OpenAI content parts and a U+2028 inside a JSON string as test."""
    train = tmp_path / "excel.csv"
    train.write_bytes(("\ufeffinput,target\r\n" + "".join(f'"{ex["input"]}\nfresh",{ex["target"]}\r\n'
                                                          for ex in FRUIT_TRAIN)).encode("utf-8"))
    test = tmp_path / "chat.jsonl"
    test.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": [{"type": "text", "text": ex["input"] + "\u2028"}]},
        {"role": "assistant", "content": [{"type": "text", "text": ex["target"]}]}]}, ensure_ascii=False) + "\n"
        for ex in FRUIT_TEST), encoding="utf-8")
    out = tmp_path / "r.json"
    proc = run_cli(["prompt", "--model", tiny_model_dir, "--train", train, "--test", test, "--shots", "1",
                    "--pick", "first", "--dtype", "fp32", "--out", out],
                   cwd=tmp_path, home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["task"]["sizes"] == {"train": 4, "dev": 2, "test": 3}
    assert sorted(results["task"]["labels"]) == ["drupe", "pome"], "the header's BOM and the CR LF are gone"


@pytest.mark.parametrize("args, expected", [
    (["--help"], ["prompt", "demo", "tasks", "model"]),
    (["prompt", "--help"], ["--task", "--train", "--test", "--shots", "--model", "--dtype", "--out"]),
])
def test_help_exits_0(tmp_path, args, expected):
    proc = run_cli(args, cwd=tmp_path, home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    for word in expected:
        assert word in proc.stdout


def test_tasks_lists_builtins(tmp_path):
    proc = run_cli(["tasks"], cwd=tmp_path, home=tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert "fruit" in proc.stdout and "synonyms" in proc.stdout


DEMO = "demo.yaml"  # resolved in the test: the built-in experiment


@pytest.mark.parametrize("args, expected", [
    (["finetune", "--lrs="], "lrs: the learning-rate grid is empty"),
    (["finetune", "--budget-steps", "0"], "budget_steps must be positive, got 0"),
    (["finetune", "--budget-seconds", "0"], "budget_seconds must be positive"),
    (["finetune", "--objective", "ranks"], "unknown objective 'ranks': choose tokens, labels, labels+tokens"),
    (["finetune", "--task", "synonyms", "--objective", "labels"],
     "objective 'labels' ranks a label set, but task 'synonyms' is open"),
    (["run", DEMO, "--lora.objective=ranks"], "lora: unknown objective 'ranks'"),
    (["finetune", "--shots", "0,147"], "--shots 147 needs 147 demonstrations besides each train row itself"),
    (["finetune", "--pick", "best"], "unknown demonstration picker 'best'"),
    (["prompt", "--pick", "random,best"], "unknown demonstration picker 'best'"),
    (["prompt", "--scoring", "mean"], "unknown scoring 'mean': choose sum, per-char"),
    (["prompt", "--calibration="], "give at least one calibration"),
    (["run", DEMO, "--lora.lrs=[]"], "lora: lrs: the learning-rate grid is empty"),
    (["run", DEMO, "--full.budget_steps=0"], "full: budget_steps must be positive, got 0"),
    (["run", DEMO, "--prompting.scorings=[sum, mean]"], "prompting: unknown scoring 'mean'"),
    (["run", DEMO, "--task.dev_fraction=1"], "task: dev_fraction must be in [0, 1), got 1"),
    (["synonyms", "--topics", "t.txt", "--store", "s.db", "--samples", "0"], "samples must be at least 1, got 0"),
    (["synonyms", "--topics", "t.txt", "--store", "s.db", "--thresholds", "0.1,1.5"],
     "thresholds must each be between 0 and 1, got [0.1, 1.5]"),
    (["run", DEMO, "--synonyms.samples=0"], "synonyms: samples must be at least 1, got 0"),
    (["run", DEMO, "--synonyms.thresholds=[-0.1]"], "synonyms: thresholds must each be between 0 and 1"),
])
def test_bad_grid_and_search_settings_exit_2_with_one_line_before_any_model(tmp_path, args, expected):
    from tuneforge.experiment.sections import __file__ as config_file

    demo = Path(config_file).with_name("demo.yaml")
    argv = [str(demo) if a == DEMO else a for a in args] + (["--out", tmp_path / "run"] if args[0] == "run" else [])
    proc = run_cli(argv, cwd=tmp_path, home=tmp_path / "home", timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert args[0] != "run" or "demo.yaml:" in lines[0], "an experiment's error names its file and line"
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()
    assert not (tmp_path / "home").exists(), "refused before the default model was looked for"
