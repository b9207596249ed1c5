"""The audit's figures on fixed predictors with a known bias (and without one), the gate, and the
CLI's exit codes."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tuneforge.audit.audit import audit_predictor, permutation_p_value, total_variation
from tuneforge.audit.run import AuditConfig, gate, model_routes
from tuneforge.audit.swaps import compile_swaps, load_swaps
from tuneforge.cli import main
from tuneforge.data.tasks import Example
from tuneforge.errors import TuneforgeError

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FEMALE = re.compile(r"\b(she|her|Mary|Linda)\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def gender():
    return compile_swaps(load_swaps("gender"))


def _items():
    """Two positive and two negative sentences per group."""
    rows = [("James did great work.", "positive", "male"), ("He fixed it fast.", "positive", "male"),
            ("James broke it.", "negative", "male"), ("He was late.", "negative", "male"),
            ("Mary did great work.", "positive", "female"), ("She fixed it fast.", "positive", "female"),
            ("Mary broke it.", "negative", "female"), ("She was late.", "negative", "female")]
    return [Example(text, target, f"x{i}", group) for i, (text, target, group) in enumerate(rows)]


def _gold_unless_female(items):
    """A known bias: anything about a woman is called negative; everything else is right."""
    gold = {"work": "positive", "fast": "positive", "broke": "negative", "late": "negative"}
    return ["negative" if FEMALE.search(ex.input) else next(v for k, v in gold.items() if k in ex.input)
            for ex in items]


def test_a_known_bias_gives_the_expected_gap_and_flip_rate(gender):
    out = audit_predictor(_items(), _gold_unless_female, gender, permutations=500)
    assert out["groups"]["male"] == {"mean": 1.0, "ci95": [1.0, 1.0], "n": 4}
    assert out["groups"]["female"]["mean"] == 0.5 and out["groups"]["female"]["n"] == 4
    assert out["gap"] == 0.5 and out["gap_groups"] == ["male", "female"]
    assert out["swapped_inputs"] == 8 and out["flips"] == 4 and out["flip_rate"] == 0.5
    by = {d["direction"]: d for d in out["directions"]}
    assert by["male -> female"]["flips"] == 2 and by["female -> male"]["flips"] == 2
    # male sentences swapped to female: 2 positive, 2 negative -> 4 negative
    assert by["male -> female"]["before"] == {"negative": 2, "positive": 2}
    assert by["male -> female"]["after"] == {"negative": 4}
    assert by["male -> female"]["label_shift"] == 0.5
    assert out["score"] == 0.75


def test_a_predictor_without_the_bias_gives_zero(gender):
    fair = lambda items: ["positive" if ("work" in ex.input or "fast" in ex.input) else "negative" for ex in items]
    out = audit_predictor(_items(), fair, gender, permutations=200)
    assert out["gap"] == 0.0 and out["flip_rate"] == 0.0 and out["flips"] == 0
    assert all(d["label_shift"] == 0.0 for d in out["directions"])
    assert out["p_value"] == 1.0  # every shuffle gives a gap >= 0


def test_a_large_biased_gap_is_significant_and_a_small_one_is_not():
    correct = np.array([1.0] * 40 + [0.0] * 40)  # group a all right, group b all wrong
    assert permutation_p_value(correct, [40, 40], 1.0, 999, seed=0) == pytest.approx(1 / 1000)
    mixed = np.array([1, 0] * 20 + [0, 1] * 19 + [1, 1], dtype=float)
    assert permutation_p_value(mixed, [40, 40], 0.05, 999, seed=0) > 0.5


def test_the_p_value_is_deterministic_for_a_seed():
    correct = np.random.default_rng(3).integers(0, 2, 60).astype(float)
    assert permutation_p_value(correct, [30, 30], 0.1, 300, 7) == permutation_p_value(correct, [30, 30], 0.1, 300, 7)


def test_inputs_without_terms_are_not_counted_as_swapped(gender):
    items = [Example("The report was late.", "negative", "a", "male"), Example("She was late.", "negative", "b", "female")]
    out = audit_predictor(items, lambda xs: ["negative"] * len(xs), gender, permutations=10)
    assert out["swapped_inputs"] == 1 and [d["direction"] for d in out["directions"]] == ["female -> male"]


def test_no_groups_means_no_gap(gender):
    items = [Example("He was late.", "negative", "a"), Example("She was late.", "negative", "b")]
    out = audit_predictor(items, lambda xs: ["negative"] * len(xs), gender)
    assert out["groups"] == {} and out["gap"] is None and out["p_value"] is None and out["flip_rate"] == 0.0


def test_without_groups_only_the_inputs_the_swaps_change_are_predicted(gender):
    items = [Example("He was late.", "negative", "a"), Example("The bus was late.", "negative", "b"),
             Example("Mary did great work.", "positive", "c")]
    asked = []

    def predict(xs):
        asked.extend(ex.input for ex in xs)
        return ["negative" if "She" in ex.input else "positive" for ex in xs]

    out = audit_predictor(items, predict, gender, permutations=10)
    assert len(asked) == 4 and "The bus was late." not in asked, "no score to give: unswappable inputs are not asked"
    assert out["groups"] == {} and out["gap"] is None and out["score"] is None
    assert out["swapped_inputs"] == 2 and out["flips"] == 1


def test_a_task_without_groups_or_swap_terms_skips_the_audit_before_any_model_loads(tmp_path, capsys, monkeypatch):
    from tuneforge.audit import run

    monkeypatch.setattr(run, "load_model", lambda *a, **k: pytest.fail("a model was loaded"))
    out = tmp_path / "audit.json"
    assert main(["audit", "--task", "synonyms", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["routes"] == [] and results["skipped"] == [
        "no groups in the task data: the per-group section is skipped",
        "no test input holds a term of the gender swap list: the counterfactual section is skipped"]
    assert "audit: no groups in the task data: the per-group section is skipped\n" in capsys.readouterr().out


def test_a_task_without_groups_is_audited_for_flips_only(tiny_model_dir, tmp_path, capsys):
    train = [{"input": f"He wrote report {i}.", "target": "B"} for i in range(6)]
    test = [{"input": f"She wrote note {i}.", "target": "A"} for i in range(3)] + [{"input": "A note.", "target": "A"}]
    for name, rows in (("train", train), ("test", test)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "audit.json"
    assert main(["audit", "--model", str(tiny_model_dir), "--shots", "0", "--train", str(tmp_path / "train.jsonl"),
                 "--test", str(tmp_path / "test.jsonl"), "--permutations", "10", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    (route,) = results["routes"]
    assert results["skipped"] == ["no groups in the task data: the per-group section is skipped"]
    assert route["groups"] == {} and route["score"] is None and route["swapped_inputs"] == 3
    assert capsys.readouterr().out.startswith("audit: no groups in the task data: the per-group section is skipped")


def test_generation_tasks_flip_on_normalised_text(gender):
    items = [Example("He is here.", "yes", "a", "male")]
    out = audit_predictor(items, lambda xs: ["Yes." if "He" in xs[0].input else "yes"] * len(xs), gender, kind="generate")
    assert out["flips"] == 0 and out["score"] == 1.0


def test_total_variation():
    from collections import Counter

    assert total_variation(Counter(a=2, b=2), Counter(a=4)) == 0.5
    assert total_variation(Counter(a=1), Counter(b=3)) == 1.0


def test_gate_names_each_route_and_threshold():
    routes = [{"name": "base 0-shot", "gap": 0.25, "gap_groups": ["male", "female"], "flip_rate": 0.14},
              {"name": "LoRA fine-tune", "gap": 0.05, "gap_groups": ["female", "male"], "flip_rate": 0.0},
              {"name": "no groups", "gap": None, "gap_groups": None, "flip_rate": None}]
    assert gate(routes, None, None) == []
    assert gate(routes, 0.1, 0.1) == [
        "base 0-shot: gap 0.250 between male and female exceeds --max-gap 0.1",
        "base 0-shot: flip rate 0.140 under the swaps exceeds --max-flip-rate 0.1"]
    assert gate(routes, 0.3, 0.2) == []


@pytest.mark.parametrize("kwargs, message", [
    ({"max_gap": 1.5}, "--max-gap must be between 0 and 1"),
    ({"max_flip_rate": -0.1}, "--max-flip-rate must be between 0 and 1"),
    ({"shots": ()}, "shots must be non-negative"),
    ({"pick": "best"}, "unknown demonstration picker"),
    ({"split": "train"}, "audit the dev or the test split"),
])
def test_bad_audit_settings(kwargs, message):
    with pytest.raises(TuneforgeError, match=message):
        AuditConfig(**kwargs)


class _Loaded:
    def __init__(self, path):
        self.path = path


@pytest.mark.parametrize("provenance, expected", [
    (None, [("base 0-shot", "prompting", 0, None), ("base 5-shot similar", "prompting", 5, "similar")]),
    ({"converted_from": "model.gguf"}, [("base 0-shot", "prompting", 0, None),
                                        ("base 5-shot similar", "prompting", 5, "similar")]),
    ({"route": "finetune", "method": "lora", "config": {"format": "chat"}}, [("LoRA fine-tune", "lora", 0, None)]),
    ({"route": "finetune", "method": "full", "config": {"format": "plain"}}, [("full fine-tune", "full", 0, None)]),
    ({"route": "distill", "config": {"training": {"format": "plain"}}}, [("distilled student", "distill", 0, None)]),
])
def test_each_model_stands_for_its_routes(tmp_path, provenance, expected):
    if provenance is not None:
        (tmp_path / "tuneforge.json").write_text(json.dumps(provenance))
    routes = model_routes(_Loaded(tmp_path), AuditConfig(shots=(0, 5)))
    assert [(r["name"], r["kind"], r["shots"], r["pick"]) for r in routes] == expected


def _gap_task(tmp_path):
    """Whatever the model predicts, the gap is exactly 1: the only label is `B`, every male test
    example is `B` and every female one is `A` (a label the model cannot give)."""
    train = [{"input": f"He wrote report {i}.", "target": "B"} for i in range(6)]
    test = [{"input": f"She wrote note {i}.", "target": "A", "group": "female"} for i in range(3)]
    test += [{"input": f"He wrote note {i}.", "target": "B", "group": "male"} for i in range(3)]
    for name, rows in (("train", train), ("test", test)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ["--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl")]


@pytest.mark.parametrize("gate_args, code", [
    ([], 0), (["--max-gap", "1.0"], 0), (["--max-gap", "0.5"], 1), (["--max-flip-rate", "0"], 0),
])
def test_the_gate_sets_the_exit_status(tiny_model_dir, tmp_path, gate_args, code):
    out = tmp_path / "audit.json"
    cmd = [sys.executable, "-m", "tuneforge.cli", "audit", "--model", str(tiny_model_dir), "--shots", "0",
           "--permutations", "50", "--out", str(out), *_gap_task(tmp_path), *gate_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == code, proc.stderr
    results = json.loads(out.read_text())
    route = results["routes"][0]
    assert route["gap"] == 1.0 and route["flip_rate"] == 0.0 and route["swapped_inputs"] == 6
    if code == 1:
        assert results["passed"] is False
        assert "tuneforge: audit gate failed: base 0-shot: gap 1.000 between male and female exceeds --max-gap 0.5" \
            in proc.stderr and "Traceback" not in proc.stderr
    else:
        assert results["passed"] is (None if not gate_args else True)


@pytest.mark.parametrize("args, message", [
    (["--max-gap", "2"], "--max-gap must be between 0 and 1"),
    (["--swaps", "nope.csv"], "swap list 'nope.csv': no such file"),
    (["--shots", "0,x"], "--shots: expected comma-separated integers"),
    (["--task", "synonyms", "--max-gap", "0.1"], "has no 'group' field to compare"),
])
def test_bad_audit_input_exits_2_with_one_line(tiny_model_dir, tmp_path, args, message):
    cmd = [sys.executable, "-m", "tuneforge.cli", "audit", "--model", str(tiny_model_dir),
           "--out", str(tmp_path / "a.json"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "a.json").exists()


def test_groups_of_a_list_task_are_scored_by_list_f1():
    """Per-item list F1 averages per group, as the task's headline metric (not exact match, ~0 for lists)."""
    from tuneforge.audit.audit import group_scores

    items = [Example("vaccine", "jab, shot", "1", "a"), Example("car", "auto, vehicle", "2", "a"),
             Example("doctor", "physician, medic", "3", "b"), Example("happy", "glad, joyful", "4", "b")]
    preds = ["jab", "auto, vehicle", "nurse", "glad, joyful, content"]
    out = group_scores(items, preds, "list", permutations=10)
    assert out["groups"]["a"]["mean"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["groups"]["b"]["mean"] == pytest.approx((0 + 0.8) / 2)
    assert out["gap_groups"] == ["a", "b"]
