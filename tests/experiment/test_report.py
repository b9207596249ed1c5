"""The experiment report: recommendation, Pareto front and parameter facts by hand; the written
HTML and Markdown from a fixed results file; and the HTML opened in headless Chromium."""

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
from PIL import Image

from tuneforge import units
from tuneforge.experiment.decide import decide, pareto_front
from tuneforge.experiment.records import shape_problems
from tuneforge.experiment.report import parameter_facts, write_report
from tuneforge.experiment.report.selection import setting_words

FIXTURE = Path(__file__).parent / "fixtures" / "results.json"
TITLE = "tuneforge experiment report: reviews-demo"
SECTIONS = [
    "Recommendation", "Routes compared", "Score against cost", "Fine-tuning trials on dev", "Learning curves",
    "Few-shot spread across demonstration draws", "Confusion matrix of the best route", "Fairness audit",
    "Parameter counts", "Prediction store", "Synonym lists", "Stages",
]
# Figures from the fixture, in the units the report must show them in (see the fixture's routes).
KEY_FIGURES = [
    "Recommended route: distilled student",
    "0.817 (0.74–0.88)",            # full fine-tune: score with its CI
    "134.5 M", "460.8 k", "538 MB", "326 MB", "2.07 GB",
    "12.4 ms", "144.9 ex/s", "45 s", "3 min 33 s",
    "Pareto front by latency: full fine-tune, LoRA fine-tune, distilled student",
    "Pareto front by parameters: full fine-tune, distilled student",
    "0.575, 0.500, 0.650",          # the random 4-shot condition's draws (on dev: not scored on test)
    "0.125 (female vs male)", "7.8%", "male → female",
    "merged LoRA = base", "134,515,008", "81,413,568",
    "runs/reviews-demo/store.sqlite", "99.6%", "81.9 kB",
    "finetune-lora", "cached", "8 min 32 s",
]


@pytest.fixture
def results() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """The fixture's report, written once for the tests that only read it."""
    out = tmp_path_factory.mktemp("report")
    paths = write_report(json.loads(FIXTURE.read_text()), out)
    return {"html": paths["html"].read_text(), "markdown": paths["markdown"].read_text(), "dir": out}


def section(markdown: str, title: str) -> str:
    """The Markdown between the heading `title` and the next heading."""
    match = re.search(rf"^## \d+\. {re.escape(title)}\n(.*?)(?=^## |\Z)", markdown, re.M | re.S)
    assert match, f"no section {title!r}"
    return match.group(1)


# --- pareto_front ---------------------------------------------------------------------------------

def test_pareto_front_hand_made():
    points = [
        (10, 0.5),    # 0: front (nothing cheaper scores as well)
        (20, 0.7),    # 1: front (its twin, 5, does not dominate it)
        (15, 0.4),    # 2: dominated by 0 (cheaper and better)
        (30, 0.7),    # 3: dominated by 1 (same score, cheaper)
        (5, 0.3),     # 4: front (the cheapest)
        (20, 0.7),    # 5: front
        (None, 0.9),  # 6: no cost: never on the front, dominates nothing
        (1, None),    # 7: no score: likewise
    ]
    assert pareto_front(points) == [0, 1, 4, 5]


@pytest.mark.parametrize("points, front", [
    ([], []),
    ([(3.0, 0.5)], [0]),
    ([(1.0, 0.9), (2.0, 0.8), (3.0, 0.7)], [0]),          # the first dominates both
    ([(1.0, 0.5), (2.0, 0.6), (3.0, 0.7)], [0, 1, 2]),    # each costlier one scores better
])
def test_pareto_front_small_cases(points, front):
    assert pareto_front(points) == front


# --- parameter_facts ------------------------------------------------------------------------------

def test_parameter_facts_hold_for_the_fixture(results):
    facts = parameter_facts(results)
    assert [f["route"] for f in facts] == [r["name"] for r in results["routes"]]
    assert all(f["holds"] for f in facts)
    distill = facts[-1]
    assert distill == {"route": "distilled student", "kind": "distill", "claim": "distilled < base",
                       "expected": "< 134,515,008 (base)", "actual": 81413568, "holds": True}


@pytest.mark.parametrize("name, change, claim", [
    ("distilled student", {"total": 134515008}, "distilled < base"),         # not smaller
    ("distilled student", {"total": 140000000}, "distilled < base"),         # bigger
    ("prompting 0-shot", {"unchanged": False}, "prompting changes no weight"),  # weights moved
    ("prompting 0-shot", {"unchanged": None}, "prompting changes no weight"),   # never checked
    ("full fine-tune", {"total": 134515009}, "full fine-tune = base"),
    ("LoRA fine-tune", {"total": 134975808}, "merged LoRA = base"),          # adapter left unmerged
])
def test_parameter_facts_flag_a_broken_claim(results, name, change, claim):
    route = next(r for r in results["routes"] if r["name"] == name)
    route["parameters"].update(change)
    fact = next(f for f in parameter_facts(results) if f["route"] == name)
    assert fact["claim"] == claim and fact["holds"] is False


def test_report_marks_a_failing_claim(results, tmp_path):
    results["routes"][-1]["parameters"]["total"] = 134515008
    markdown = write_report(results, tmp_path)["markdown"].read_text()
    text = section(markdown, "Parameter counts")
    assert "| ✗ |" in text and "Claims that fail: distilled student." in text


# --- the written report ---------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["html", "markdown"])
def test_report_has_every_section_and_key_figure(report, form):
    text = report[form]
    assert TITLE in text
    for number, title in enumerate(SECTIONS, start=1):
        assert f"{number}. {title}" in text, title
    for figure in KEY_FIGURES:
        assert figure in text, figure
    assert "95% bootstrap confidence interval" in text and "test split of 120 examples" in text


def test_markdown_sections_hold_their_numbers(report):
    markdown = report["markdown"]
    assert "full fine-tune | 114 | 3 | 2.066 | 0.429 | 0.838 (114)" in section(markdown, "Learning curves")
    assert "| negative | 35 | 3 | 2 |" in section(markdown, "Confusion matrix of the best route")
    audit = section(markdown, "Fairness audit")
    assert "| prompting 0-shot | 0.125 (female vs male) | 0.31 | 7.8% | 64 | ✗ |" in audit
    assert "Every claim holds." in section(markdown, "Parameter counts")


def test_synonym_lists_say_who_wrote_them_how_and_how_good_they_are(results, tmp_path):
    scores = {"mean": 0.365, "ci95": [0.29, 0.44]}
    results["synonyms"] = {
        "model": {"path": "/runs/demo/stages/synonyms/writer/merged"},
        "recipe": {"writer": "lora", "shots": 0, "pick": None, "samples": 3, "temperature": 0.8, "seed": 0,
                   "verify": "probability of `term,` first after the topic",
                   "filter": {"threshold": 0.003, "max_terms": 8, "words": "known"},
                   "chosen_on": "dev (12 topics), list F1"},
        "choice": {"dev": {"list_f1": {"mean": 0.338, "ci95": [0.2, 0.45]}}},
        "test": {"topics": 37, "list_precision": scores, "list_recall": {"mean": 0.412, "ci95": [0.34, 0.48]},
                 "list_f1": {"mean": 0.371, "ci95": [0.31, 0.44]}},
        "live": {"queries": 72, "precision": 0.704, "recall": 0.618,
                 "rows": [{"query": "where can I get my covid jab", "expected": ["injection", "vaccine"],
                           "terms": [["vaccine", "jab"]]}]},
    }
    text = section(write_report(results, tmp_path)["markdown"].read_text(), "Synonym lists")
    for figure in ("/runs/demo/stages/synonyms/writer/merged (a LoRA list writer trained on the task's train topics)",
                   "0-shot, its trained prompt",
                   "the greedy list + 3 sampled at temperature 0.8", "probability >= 0.003, at most 8 terms, known words",
                   "dev (12 topics), list F1: 0.338 (0.20–0.45)", "| 37 | 0.365 (0.29–0.44) | 0.412 (0.34–0.48) |",
                   "topic precision 0.704, recall 0.618", '"where can I get my covid jab" finds vaccine through "jab"'):
        assert figure in text, figure


def test_html_embeds_one_svg_per_plot(report):
    html = report["html"]
    # cost x3 (parameters, latency, compute), learning curves, few-shot spread, confusion heatmap, audit groups
    assert html.count("<svg") == 7
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "figures share element ids"


def test_html_is_self_contained(report):
    html = report["html"]
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"\bsrc=", html)
    assert not re.search(r"url\((?!#)", html), "a CSS url() other than an in-page reference"


def test_write_report_writes_only_the_two_reports(report):
    assert sorted(p.name for p in report["dir"].iterdir()) == ["report.html", "report.md"]


def test_write_report_is_deterministic(results, tmp_path):
    first = write_report(results, tmp_path / "a")
    second = write_report(copy.deepcopy(results), tmp_path / "b")
    for key in ("html", "markdown"):
        assert first[key].read_bytes() == second[key].read_bytes(), key


def test_write_report_is_deterministic_across_processes(report, tmp_path):
    """Another interpreter, with another hash seed, writes the very same bytes."""
    script = ("import json, pathlib, sys; from tuneforge.experiment.report import write_report; "
              "write_report(json.loads(pathlib.Path(sys.argv[1]).read_text()), pathlib.Path(sys.argv[2]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    command = [sys.executable, "-c", script, str(FIXTURE), str(tmp_path)]
    subprocess.run(command, env=env, check=True, timeout=120)
    assert (tmp_path / "report.html").read_text() == report["html"]
    assert (tmp_path / "report.md").read_text() == report["markdown"]


def test_user_matplotlib_settings_do_not_change_the_report(report, tmp_path):
    with matplotlib.rc_context({"axes.facecolor": "black", "lines.linewidth": 5, "svg.hashsalt": None}):
        write_report(json.loads(FIXTURE.read_text()), tmp_path)
    assert (tmp_path / "report.html").read_text() == report["html"]


def test_text_is_escaped_everywhere(results, tmp_path):
    name = '<script>alert("x")</script> | $5 & co'
    results["routes"][0]["name"] = name
    paths = write_report(results, tmp_path)
    html, markdown = paths["html"].read_text(), paths["markdown"].read_text()
    assert "<script" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; | $5 &amp; co" in html
    row = next(line for line in markdown.splitlines() if line.startswith("| \\<script"))
    assert len(re.findall(r"(?<!\\)\|", row)) == 8  # 7 cells; the name's own pipe is escaped


def test_the_report_shows_the_experiments_decision_and_makes_none(results, tmp_path):
    results.update(decide(results, 0.04))
    results["pareto"]["latency"] = ["LoRA fine-tune"]  # whatever the experiment decided is what is shown
    markdown = write_report(results, tmp_path)["markdown"].read_text()
    assert "Recommended route: distilled student." in markdown and "within 0.04 of the best" in markdown
    assert "Pareto front by latency: LoRA fine-tune." in markdown
    assert "| distilled student | \\-0.037 (-0.09 to +0.00) | 80 | 1.65x | yes | yes |" in markdown


def test_the_report_command_decides_again_with_a_new_margin(results, tmp_path):
    from tuneforge.api import report

    student = next(r for r in results["routes"] if r["name"] == "distilled student")
    student["dev_score"] = {**student["dev_score"], "mean": 0.7, "per_item": [1.0] * 56 + [0.0] * 24}
    results.update(decide(results, 0.05))  # 0.1375 below the best on the same items: beyond the margin
    (tmp_path / "results.json").write_text(json.dumps(results))
    report(tmp_path)
    assert "Recommended route: full fine-tune." in (tmp_path / "report.md").read_text()
    report(tmp_path, margin=0.15)
    assert "Recommended route: distilled student." in (tmp_path / "report.md").read_text()
    assert json.loads((tmp_path / "results.json").read_text())["recommendation"]["route"] == "full fine-tune"


def test_missing_optional_parts_say_not_run(results, tmp_path):
    results["audit"] = results["store"] = None
    del results["stages"]
    for route in results["routes"]:
        route["history"] = None
    markdown = write_report(results, tmp_path)["markdown"].read_text()
    html = (tmp_path / "report.html").read_text()
    for title in ("Learning curves", "Fairness audit", "Prediction store", "Synonym lists", "Stages"):
        assert "Not run" in section(markdown, title), title
    assert html.count("Not run") == 5
    assert html.count("<svg") == 5  # cost x3, few-shot spread, confusion


def test_bare_results_still_give_a_report(tmp_path):
    """Only what a crashed experiment might leave: names and scores, a generation task, no extras."""
    results = {
        "task": {"name": "synonyms", "kind": "generate"},
        "metric": "exact_match",
        "routes": [{"name": "prompting 0-shot", "kind": "prompting", "score": {"mean": 0.2}},
                   {"name": "LoRA fine-tune", "kind": "lora", "score": None}],
    }
    paths = write_report(results, tmp_path)
    markdown = paths["markdown"].read_text()
    assert "No recommendation: the experiment recorded none." in markdown  # the report decides nothing
    assert "no confusion matrix for the best route (the task generates free text)" in markdown
    assert "Not run: no route recorded its latency" in markdown
    assert "| LoRA fine-tune | lora | – | – | – | – |" in markdown  # no setting, choice, dev or test score


def test_every_optional_field_null(results, tmp_path):
    """The schema lets any part be null; the report must still come out, with dashes."""
    for key in ("experiment", "task", "model", "metric", "audit", "store", "stages"):
        results[key] = None
    for route in results["routes"]:
        for key in list(route):
            if key not in ("name", "kind", "score", "chosen"):  # `chosen` is a bool, never null
                route[key] = None
        if route["score"]:
            route["score"] = {"mean": route["score"]["mean"], "sd": None, "ci95": None, "per_draw": None}
    results.update(decide(results, 0.05))  # as the experiment decides on what it recorded
    markdown = write_report(results, tmp_path)["markdown"].read_text()
    assert "Recommended route: full fine-tune." in markdown  # no latency anywhere: ties go to run order
    assert "Not run: no route recorded its latency" in markdown


def test_null_parts_inside_the_audit(results, tmp_path):
    audit_route = results["audit"]["routes"][0]
    for key in list(audit_route):
        if key != "name":
            audit_route[key] = None
    results["audit"]["thresholds"] = results["audit"]["passed"] = None
    markdown = write_report(results, tmp_path)["markdown"].read_text()
    assert "Thresholds: none set. Result: not judged." in markdown


def test_an_audit_without_groups_says_so_in_the_report_and_on_the_console(results, tmp_path):
    """The per-group section is skipped in one line: no empty tables per route, in the report or the
    summary `tuneforge run` prints."""
    import io

    from rich.console import Console

    from tuneforge.console import render_experiment

    skip = "no groups in the task data: the per-group section is skipped"
    results["audit"]["skipped"] = [skip]
    for route in results["audit"]["routes"]:
        route.update(groups={}, gap=None, gap_groups=None, p_value=None, score=None)
    audit = section(write_report(results, tmp_path)["markdown"].read_text(), "Fairness audit")
    assert "No groups in the task data: the per-group section is skipped." in audit
    assert "score per group" not in audit and "per swap direction" in audit  # the flips are still there
    printed = io.StringIO()
    render_experiment(results, Console(file=printed, width=200))
    assert f"audit: {skip}\n" in printed.getvalue()


def test_a_small_dev_split_is_flagged_in_the_report_and_on_the_console(results, tmp_path):
    import io

    from rich.console import Console

    from tuneforge.console import render_experiment

    for route in results["routes"]:  # the fixture's dev as if it had 24 items
        if route.get("dev_score"):
            k = round(route["dev_score"]["mean"] * 24)
            route["dev_score"] = {**route["dev_score"], "per_item": [1.0] * k + [0.0] * (24 - k)}
    results.update(decide(results, 0.05))
    assert results["recommendation"]["small_dev"]["items"] == 24
    text = section(write_report(results, tmp_path)["markdown"].read_text(), "Recommendation")
    assert "Dev has only 24 items: a difference under about 0.28 between two routes' dev scores can be noise" in text
    assert "| Route | Difference from the best on dev (95% CI) | Items |" in text
    printed = io.StringIO()
    render_experiment(results, Console(file=printed, width=220))
    assert "warning: dev has only 24 items; a difference under about 0.28" in printed.getvalue()


def test_the_prompting_choice_states_its_predictions_ties_and_dev_to_test_gap(results, tmp_path, report):
    text = section(report["markdown"], "Routes compared")
    assert ("The prompting condition was chosen among 3 on 48 train items scored by cross-validation (each with "
            "demonstrations from the rest of train, never itself), not on dev: dev, which chose nothing, scores it "
            "unbiased for the comparison of routes") in text
    assert "48 predictions with the draws, mean 0.690 (95% CI 0.61–0.77)" in text
    assert "It scores 0.690 on what chose it and 0.692 on test, a gap of +0.002" in text
    assert "tie with the best" not in text  # the fixture's choice is the best by mean, alone
    chosen = next(r for r in results["routes"] if r.get("choice"))
    chosen["choice"].update(best="prompting 4-shot random", tied=["prompting 4-shot random", chosen["name"]])
    text = section(write_report(results, tmp_path)["markdown"].read_text(), "Routes compared")
    assert ("2 conditions tie with the best by mean (prompting 4-shot random) within one standard error of their "
            "paired difference; the simplest (fewest shots, uncalibrated, summed scores) was kept: "
            "prompting 4-shot similar.") in text


def test_a_route_left_out_of_the_experiment_is_said_to_be_left_out_not_lost(results, tmp_path, report):
    assert "Not run in this experiment" not in report["markdown"]
    results["experiment"]["config"].update(full=None, lora={"lrs": [0.001]})
    markdown = write_report(results, tmp_path)["markdown"].read_text()
    assert ("Not run in this experiment (its section is null): full fine-tuning; a route left out is not a route "
            "that lost.") in markdown


def test_report_without_any_route(tmp_path):
    markdown = write_report({"routes": [], **decide({"routes": []}, 0.05)}, tmp_path)["markdown"].read_text()
    assert "No recommendation: no route was evaluated." in markdown


# --- human units ----------------------------------------------------------------------------------

@pytest.mark.parametrize("function, value, text", [
    (units.count, 134515008, "134.5 M"),
    (units.flops, 2 * 134515008 * 41, "11.0 GFLOP"),
    (units.flops, 4.2e12, "4.20 TFLOP"),
    (units.flops, 512, "512 FLOP"),
    (units.flops, None, "–"),
    (units.count, 460800, "460.8 k"),
    (units.count, 999_960, "1.0 M"),
    (units.count, 1_700_000_000, "1.7 B"),
    (units.count, 0, "0"),
    (units.size, 538090408, "538 MB"),
    (units.size, 2_070_000_000, "2.07 GB"),
    (units.size, 81920, "81.9 kB"),
    (units.size, 512, "512 B"),
    (units.seconds, 0.4, "0.4 s"),
    (units.seconds, 45.2, "45 s"),
    (units.seconds, 212.6, "3 min 33 s"),
    (units.seconds, 3725, "1 h 02 min"),
    (units.milliseconds, 12.1, "12.1 ms"),
    (units.percent, 0.996, "99.6%"),
    (units.count, None, "–"),
])
def test_human_units(function, value, text):
    assert function(value) == text


# --- in a browser ---------------------------------------------------------------------------------

def test_console_error_detection_catches_a_script_error(browser, tmp_path):
    """The check below is only worth something if a real page error reaches it."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><title>broken</title><p>x</p><script>undefined_fn()</script>")
    done = browser.run(page, tmp_path, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    errors = browser.console_lines(done.stderr)
    assert any("undefined_fn is not defined" in line for line in errors), done.stderr[-2000:]


def test_html_renders_in_chromium(browser, report, tmp_path):
    page = report["dir"] / "report.html"
    shot = tmp_path / "report.png"
    done = browser.run(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    print(f"screenshot: {shot}")
    browser.keep(shot)
    assert done.returncode == 0, done.stderr[-2000:]
    assert browser.console_lines(done.stderr) == []
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2000)
    colours = image.getcolors(maxcolors=1 << 24)
    non_white = sum(n for n, rgb in colours if rgb != (255, 255, 255))
    assert len(colours) > 50 and non_white > 0.02 * image.width * image.height

    dom = browser.run(page, tmp_path, "--dump-dom")
    assert browser.console_lines(dom.stderr) == []
    assert f"<title>{TITLE}</title>" in dom.stdout
    assert "Recommended route: distilled student." in dom.stdout


def test_store_lists_every_job_and_stages_their_peak_memory(results, tmp_path):
    changed = copy.deepcopy(results)
    main_job = {k: changed["store"][k] for k in ("route", "setting", "inputs", "rows", "failed", "coverage")}
    synonyms = {"route": "base model (synonym lists)", "setting": "f" * 64, "inputs": 122, "rows": 122,
                "failed": 0, "coverage": 1.0}
    changed["store"]["jobs"] = [main_job, synonyms]
    changed["stages"][0]["peak_memory_bytes"] = 2_340_000_000
    markdown = write_report(changed, tmp_path)["markdown"].read_text()
    store = section(markdown, "Prediction store")
    assert "Every job in this store" in store and "base model (synonym lists)" in store and "ffffffffffff" in store
    assert "tuneforge serve --store runs/reviews-demo/store.sqlite --setting reviews-demo-distilled" in store
    assert "2.34 GB" in section(markdown, "Stages")


# --- task-data warnings -----------------------------------------------------------------------------

def test_task_overlap_is_counted_under_the_introduction(results, tmp_path):
    """From a Task with duplicates across splits, through the results record, to both reports."""
    from datetime import datetime, timezone

    from tuneforge.data.splits import Task
    from tuneforge.data.tasks import Example, TaskInfo
    from tuneforge.experiment.sections import ExperimentConfig
    from tuneforge.experiment.routes import experiment_results

    def rows(split, texts):
        return [Example(t, "pome" if i % 2 else "drupe", f"{split}-{i}") for i, t in enumerate(texts)]

    train = rows("train", [f"fruit {i}" for i in range(50)])
    test = rows("test", [f"Fruit {i} " for i in range(12)] + [f"new {i}" for i in range(26)])  # 12 of 38 seen
    task = Task(TaskInfo("dupes", "labels", None, "test"), train=train, dev=[], test=test)
    record = experiment_results(ExperimentConfig(), task, tmp_path, {}, [], {}, datetime.now(timezone.utc))
    warning = "12 of 38 test inputs also appear in train (duplicates across splits inflate the test score)"
    assert record["task"]["warnings"] == [warning]

    results["task"]["warnings"] = record["task"]["warnings"]
    paths = write_report(results, tmp_path / "report")
    markdown, html = paths["markdown"].read_text(), paths["html"].read_text()
    intro = markdown.split("\n## 1. ")[0]
    assert f"**Warnings about the task data (read them before trusting any score below):**\n\n- {warning}" in intro
    assert '<div class="warnings" role="note">' in html and f"<li>{warning}</li>" in html
    assert html.index(warning) < html.index("<nav>")


def test_no_warnings_no_warnings_block(report):
    assert "Warnings about the task data" not in report["markdown"]
    assert 'class="warnings"' not in report["html"].split("</style>")[1]


# --- the shape of results.json --------------------------------------------------------------------

def test_the_fixture_has_the_shape_a_real_run_writes(results):
    """test_run.py holds a real run to the same declared shape, so the fixture cannot go stale."""
    assert shape_problems(results) == []


def test_shape_problems_name_a_missing_and_an_undeclared_key(results):
    del results["routes"][1]["score"]
    results["stages"][0]["colour"] = "red"
    results["store"] = None  # a stage that did not run: null is in the shape
    assert shape_problems(results) == ["results.routes[1]: no 'score'", "results.stages[0]: 'colour' is not declared"]


# --- choosing on dev --------------------------------------------------------------------------------

def test_report_recommends_on_dev_and_says_so(results, tmp_path):
    """LoRA beats full fine-tune on dev, full fine-tune beats LoRA on test: the report goes with dev."""
    lora = next(r for r in results["routes"] if r["name"] == "LoRA fine-tune")
    lora["dev_score"]["mean"] = 0.85
    results.update(decide(results, 0.0, cheaper=10.0))  # no route is 10x cheaper: the best ships
    text = section(write_report(results, tmp_path)["markdown"].read_text(), "Recommendation")
    assert "Recommended route: LoRA fine-tune." in text
    assert "LoRA fine-tune has the best score on dev" in text
    assert "Test scores are shown beside them and were never used to choose" in text


def test_report_says_when_the_choice_fell_back_to_test(results, tmp_path):
    for route in results["routes"]:
        route["dev_score"] = None
    results.update(decide(results, 0.05))
    text = section(write_report(results, tmp_path)["markdown"].read_text(), "Recommendation")
    assert "Chosen on test: the task has no dev split" in text and "Chosen on dev" not in text


def test_routes_table_puts_dev_and_test_side_by_side(report):
    text = section(report["markdown"], "Routes compared")
    assert ("| Route | Kind | Setting | Chosen on dev | Dev accuracy (95% CI) | Test accuracy (95% CI) | "
            "Test macro-F1 (95% CI) |") in text
    for row in [
        "| prompting 0-shot | prompting | 0-shot, chat format, content-free-calibrated, per-char scoring |  | "
        "0.550 (0.44–0.66) | – | – |",  # not chosen, so not scored on test
        "| prompting 4-shot similar | prompting | 4-shot similar, chat format, batch-calibrated, per-char scoring "
        "| ✓ | 0.700 (0.60–0.80) | 0.692 (0.61–0.78) | 0.671 (0.58–0.76) |",
        "| full fine-tune | full | lr 1e-3, labels objective, 3 epochs | ✓ | 0.838 (0.76–0.91) | "
        "0.817 (0.74–0.88) | 0.806 (0.73–0.87) |",
    ]:
        assert row in text, row


@pytest.mark.parametrize("setting, words", [
    ({"format": "chat", "shots": 5, "pick": "balanced", "calibration": "batch", "scoring": "per-char"},
     "5-shot balanced, chat format, batch-calibrated, per-char scoring"),
    ({"shots": 0, "pick": "random", "calibration": "none", "scoring": "sum"}, "0-shot, uncalibrated, sum scoring"),
    ({"epochs": 4, "objective": "labels", "lr": 0.0003}, "lr 3e-4, labels objective, 4 epochs"),
    ({"lr": 2.5e-5, "epochs": 1, "temperature": 2.0, "rank": 8}, "lr 2.5e-5, 1 epoch, temperature 2, rank 8"),
    ({"lr": None, "pick": "similar"}, "pick similar"),
    ({}, "–"),
    (None, "–"),
])
def test_setting_words(setting, words):
    assert setting_words(setting) == words


def test_trials_table_lists_every_trial(results, report):
    text = section(report["markdown"], "Fine-tuning trials on dev")
    tables = {name: text.split(f"*{name}: ")[1].split("\n\n")[1] for name in ("full fine-tune", "LoRA fine-tune")}
    assert "distilled student" not in text  # it recorded no trials
    assert tables["full fine-tune"].splitlines()[2:] == [
        "| 3e-4 | 0.800 | 114 | 114 | 1 min 20 s | no |  |",
        "| 1e-3 | 0.838 | 114 | 114 | 1 min 20 s | no | ✓ |",
        "| 3e-3 | 0.613 | 38 | 76 | 53 s | yes |  |",
    ]
    lora = next(r for r in results["routes"] if r["name"] == "LoRA fine-tune")
    rows = tables["LoRA fine-tune"].splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| 1e-4", "| 2e-4", "| 5e-4"]
    assert [row.endswith("| ✓ |") for row in rows] == [t["chosen"] for t in lora["trials"]]


def test_a_trial_with_demonstrations_says_how_many(results, tmp_path):
    lora = next(r for r in results["routes"] if r["name"] == "LoRA fine-tune")
    lora["trials"][1]["shots"] = 5
    text = section(write_report(results, tmp_path)["markdown"].read_text(), "Fine-tuning trials on dev")
    rows = text.split("*LoRA fine-tune: ")[1].split("\n\n")[1].splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == ["| 1e-4", "| 5-shot, 2e-4", "| 5e-4"]


def test_trials_with_null_parts_and_none_at_all(results, tmp_path):
    full = next(r for r in results["routes"] if r["name"] == "full fine-tune")
    full["trials"] = [dict.fromkeys(full["trials"][0])]
    markdown = write_report(results, tmp_path / "a")["markdown"].read_text()
    assert "| – | – | – | – | – | – |  |" in section(markdown, "Fine-tuning trials on dev")
    for route in results["routes"]:
        route["trials"] = None
    markdown = write_report(results, tmp_path / "b")["markdown"].read_text()
    assert "Not run: no fine-tuned route recorded the settings it tried." in markdown


def test_dev_origin_is_in_the_introduction(results, report, tmp_path):
    intro = report["markdown"].split("\n## 1. ")[0]
    assert ("How the dev split was made: split from one file with train, dev and test: 75% / 10% / 15%, "
            "stratified by label, seed 0.") in intro
    results["task"]["dev_origin"] = None
    assert "How the dev split" not in write_report(results, tmp_path)["markdown"].read_text()


@pytest.mark.parametrize("dev, warned", [  # full fine-tune's test score: 0.817 (0.742–0.883)
    (0.838, False), (0.742, False), (0.883, False), (0.741, True), (0.884, True), (0.95, True), (None, False),
])
def test_dev_and_test_disagreement_is_warned_exactly_outside_the_test_ci(results, tmp_path, dev, warned):
    full = next(r for r in results["routes"] if r["name"] == "full fine-tune")
    full["dev_score"] = None if dev is None else {**full["dev_score"], "mean": dev}
    paths = write_report(results, tmp_path)
    markdown, html = paths["markdown"].read_text(), paths["html"].read_text()
    warning = (f"full fine-tune: dev and test disagree: dev {dev:.3f}, test 0.817 (0.74–0.88): the dev split "
               "may be too small or unlike test.") if warned else None
    intro = markdown.split("\n## 1. ")[0]
    assert intro.count("dev and test disagree") == warned
    if warned:
        assert f"**Warnings about the task data (read them before trusting any score below):**\n\n- {warning}" in intro
        assert f"<li>{warning}</li>" in html and html.index(warning) < html.index("<nav>")


def test_no_disagreement_without_a_test_interval(results, tmp_path):
    """A condition not scored on test, or a test score without an interval, cannot disagree."""
    for route in results["routes"]:
        route["dev_score"] = {"mean": 0.01, "ci95": None}
        if route["score"]:
            route["score"]["ci95"] = None
    assert "dev and test disagree" not in write_report(results, tmp_path)["markdown"].read_text()


@pytest.fixture
def plotted(monkeypatch) -> list[dict]:
    """The points and labels every score-against-cost plot is drawn from."""
    from tuneforge.experiment.report import plots

    calls, draw = [], plots.tradeoff
    def spy(points, front, colours, **labels):
        calls.append({"points": points, **labels})
        return draw(points, front, colours, **labels)
    monkeypatch.setattr(plots, "tradeoff", spy)
    return calls


def test_cost_plots_draw_the_chosen_settings_dev_scores(results, tmp_path, plotted):
    markdown = write_report(results, tmp_path)["markdown"].read_text()
    chosen = {r["name"]: r["dev_score"]["mean"] for r in results["routes"] if r["chosen"]}
    assert len(chosen) == 4 and len(plotted) == 3
    for plot in plotted:
        assert {p["name"]: p["mean"] for p in plot["points"]} == chosen and plot["ylabel"] == "dev accuracy"
    assert "Dev accuracy against parameters (total), the score the choice is made on" in markdown


def test_cost_plots_draw_test_scores_where_the_choice_was_made_on_test(results, tmp_path, plotted):
    results["routes"][-1]["dev_score"] = None  # the experiment then chose on test (decide.choice_split)
    results["recommendation"]["chosen_on"] = "test"
    markdown = write_report(results, tmp_path)["markdown"].read_text()
    chosen = {r["name"]: r["score"]["mean"] for r in results["routes"] if r["chosen"]}
    assert {p["name"]: p["mean"] for p in plotted[0]["points"]} == chosen and plotted[0]["ylabel"] == "test accuracy"
    assert "Test accuracy against parameters (total); one point per route's chosen setting." in markdown


def test_few_shot_spread_reads_dev_draws_where_test_was_not_scored(report):
    text = section(report["markdown"], "Few-shot spread across demonstration draws")
    assert "| prompting 4-shot random | dev | 3 | 0.575 | 0.075 | 0.500 | 0.650 | 0.575, 0.500, 0.650 |" in text
    assert "| prompting 4-shot similar | test | 1 | 0.692 |" in text


def test_an_old_results_file_without_dev_still_gives_a_report(results, tmp_path):
    """Written before settings were chosen on dev: no dev scores, choices, settings, trials or origin."""
    del results["task"]["dev_origin"]
    for route in results["routes"]:
        for key in ("dev_score", "chosen", "setting", "trials"):
            del route[key]
        route["score"] = route["score"] or {"mean": 0.5, "ci95": [0.4, 0.6]}
    results.update(decide(results, 0.05))
    del results["recommendation"]["chosen_on"]
    markdown = write_report(results, tmp_path)["markdown"].read_text()
    rec = section(markdown, "Recommendation")
    assert "Recommended route: distilled student." in rec and "Chosen on" not in rec
    assert "| full fine-tune | full | – | – | – | 0.817 (0.74–0.88) |" in section(markdown, "Routes compared")
    assert "Test accuracy against latency (ms per example); one point" in markdown
    assert "Not run: no fine-tuned route recorded the settings it tried." in markdown
