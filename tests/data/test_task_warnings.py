"""Warnings about task data that make scores misleading: inputs shared by splits (whitespace and
case ignored), a single label, a test split of one example; and where they are logged."""

import logging

import pytest

from tuneforge.data.splits import Task, task_warnings, warn_about_task
from tuneforge.data.tasks import Example, TaskInfo


def task_of(train, test, dev=(), name="t") -> Task:
    """Splits given as lists of (input, target)."""
    def examples(split, rows):
        return [Example(text, target, f"{split}-{i}") for i, (text, target) in enumerate(rows)]

    info = TaskInfo(name=name, kind="labels", instruction=None, source="test")
    return Task(info=info, train=examples("train", train), dev=examples("dev", dev), test=examples("test", test))


AB = [("apple", "pome"), ("plum", "drupe")]

CASES = {
    "no overlap": (task_of(AB, [("pear", "pome"), ("peach", "drupe")]), []),
    "test inputs in train, counted per test row": (
        task_of(AB + [("pear", "pome")], [("apple", "pome"), ("apple", "pome"), ("plum", "drupe"), ("fig", "x")]),
        ["3 of 4 test inputs also appear in train (duplicates across splits inflate the test score)"]),
    "case and surrounding whitespace ignored": (
        task_of(AB, [("  APPLE\n", "pome"), ("Pear", "pome")]),
        ["1 of 2 test inputs also appear in train (duplicates across splits inflate the test score)"]),
    "inner whitespace still counts": (task_of(AB, [("app le", "pome"), ("pear", "pome")]), []),
    "dev shares with train and test": (
        task_of(AB, [("fig", "pome"), ("kiwi", "drupe")], dev=[("plum", "drupe"), ("fig", "pome")]),
        ["1 of 2 dev inputs also appear in train (dev scores, and the settings chosen on them, are inflated)",
         "1 of 2 test inputs also appear in dev (settings chosen on dev are tuned to those test items)"]),
    "one label": (
        task_of([("apple", "pome"), ("pear", "pome")], [("quince", "pome"), ("medlar", "pome")]),
        ["the task has one label ('pome'): every score is trivially 1.000 (always answering it is always right)"]),
    "one label in train, another in test": (task_of([("apple", "pome")], [("plum", "drupe"), ("fig", "pome")]), []),
    "one test example": (task_of(AB, [("pear", "pome")]),
                         ["the test split has 1 example: its score is 0 or 1 and says little"]),
}


@pytest.mark.parametrize("name", CASES)
def test_task_warnings(name):
    task, expected = CASES[name]
    assert task_warnings(task) == expected


def test_everything_at_once_in_a_fixed_order():
    task = task_of([("apple", "pome")], [("apple", "pome")], dev=[("apple", "pome")])
    starts = ["1 of 1 dev inputs also appear in train", "1 of 1 test inputs also appear in train",
              "1 of 1 test inputs also appear in dev", "the task has one label", "the test split has 1 example"]
    warnings = task_warnings(task)
    assert len(warnings) == len(starts)
    assert all(w.startswith(start) for w, start in zip(warnings, starts)), warnings


def test_warn_about_task_logs_each_warning_under_tuneforge(caplog):
    task = task_of(AB, [("apple", "pome"), ("pear", "pome")], name="fruity")
    with caplog.at_level(logging.WARNING, logger="tuneforge"):
        returned = warn_about_task(task)
    assert returned == task_warnings(task)
    assert [(r.name.split(".")[0], r.levelno, r.getMessage()) for r in caplog.records] == [
        ("tuneforge", logging.WARNING, f"task 'fruity': {returned[0]}")]
