"""The README's demo on the real embedded default model, reduced for CI: every route, the report in a
browser, and the store serving the recommended route's test predictions bit for bit."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _run(args, **kwargs):
    return subprocess.run([sys.executable, "-m", "tuneforge.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), **kwargs)


# The README's demo with fewer epochs and draws, so CI stays short; `tuneforge demo` runs the full one.
# (the synonym job's 122 built-in topics are test_synonym_lists_generated_offline_match_live_queries' own).
# Full fine-tuning has its own real-model test (test_full_finetune_keeps_the_parameter_count).
REDUCED_DEMO = ["--prompting.shots=0,5", "--prompting.cv_items=16", "--prompting.picks=similar,balanced", "--prompting.draws=2", "--lora.epochs=2", "--lora.lr=1e-3",
                "--distill.training.epochs=1", "--full=null"]


TOPICS = ["vaccine", "car", "doctor", "happy", "house", "money"]


def test_demo_runs_every_route_end_to_end_and_writes_the_report(tmp_path, browser):
    out = tmp_path / "demo"
    (tmp_path / "topics.txt").write_text("\n".join(TOPICS) + "\n")
    proc = _run(["demo", "--out", str(out), *REDUCED_DEMO, f"--synonyms.topics={tmp_path / 'topics.txt'}",
                 "--synonyms.writer=few-shot", "--synonyms.samples=2"], timeout=1500)  # (the LoRA writer: below)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    print(proc.stdout)
    results = json.loads((out / "results.json").read_text())
    by = {r["name"]: r for r in results["routes"]}
    assert {"prompting 0-shot", "prompting 5-shot balanced", "prompting 5-shot similar", "LoRA fine-tune"} <= set(by)
    student = next(r for r in results["routes"] if r["kind"] == "distill")
    assert student["parameters"]["total"] < 0.45 * by["LoRA fine-tune"]["parameters"]["total"]
    assert student["ms_per_example"] < by["LoRA fine-tune"]["ms_per_example"]
    assert by["LoRA fine-tune"]["dev_score"]["mean"] > by["prompting 0-shot"]["dev_score"]["mean"]
    assert results["recommendation"]["chosen_on"] == "dev" and "carved" not in results["task"]["dev_origin"]
    from tuneforge.experiment.report import parameter_facts

    assert all(f["holds"] for f in parameter_facts(results))
    assert results["recommendation"]["route"] in by
    assert results["store"]["coverage"] == 1.0 and results["store"]["rows"] == 245
    _assert_store_serves_the_recommended_routes_test_predictions(out, results)
    assert results["synonyms"]["rows"] == len(TOPICS) and results["synonyms"]["recipe"]["writer"] == "few-shot"
    assert results["synonyms"]["test"]["topics"] == 2  # car and house are test topics of the synonyms task
    assert {g for r in results["audit"]["routes"] for g in r["groups"]} == {"tropical", "temperate"}
    # the report opens in a browser, without console errors, and is not blank
    shot = tmp_path / "demo-report.png"
    done = browser.run(out / "report.html", tmp_path, f"--screenshot={shot}", "--window-size=1280,2400")
    print(f"screenshot: {shot}")
    browser.keep(shot)
    assert done.returncode == 0 and browser.console_lines(done.stderr) == []
    from PIL import Image

    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 24)
    assert len(colours) > 50


def _assert_store_serves_the_recommended_routes_test_predictions(out, results) -> None:
    """The store holds the recommended route, and every test input answered from it is the prediction
    the experiment scored on test."""
    from tuneforge.data.splits import load_task
    from tuneforge.store.sqlite import PredictionStore

    route = next(r for r in results["routes"] if r["name"] == results["recommendation"]["route"])
    assert results["store"]["route"] == route["name"] and results["store"]["name"].startswith("demo-")
    stage = json.loads((out / "stages" / route["stage"] / "result.json").read_text())["result"]
    if route["kind"] == "prompting":
        expected = next(c for c in stage["conditions"] if c["chosen"])["predictions"]
    else:
        expected = stage["serving"]["predictions"]
    db = PredictionStore(results["store"]["path"], readonly=True)
    test = load_task("fruit").test
    rows = db.get_many(results["store"]["setting"], [ex.input for ex in test])
    db.close()
    same = sum(rows[ex.input]["output"] == answer for ex, answer in zip(test, expected))
    print(f"store vs the experiment's test predictions ({route['name']}): {same}/{len(test)} the same")
    assert same == len(test)
