"""Fine-tuning's search: learning rates tried on dev, early stopping, a budget, test scored once."""

from dataclasses import replace

import pytest

from tuneforge.adapt import finetune as finetune_module
from tuneforge.adapt.finetune import FinetuneConfig, finetune
from tuneforge.settings import DEFAULT_LRS
from tuneforge.data.splits import load_task
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import load_model

CFG = FinetuneConfig(method="lora", epochs=2, batch_size=32, checkpoint_every=0, autocast="off")


@pytest.fixture(scope="module")
def fruit():
    return load_task("fruit")


def _run(tiny_model_dir, task, cfg, out):
    return finetune(load_model(tiny_model_dir, dtype="fp32", device="cpu"), task, cfg, out)


def _choice(results):
    return [(t["lr"], t["dev_score"], t["best_step"], t["steps"], t["chosen"]) for t in results["trials"]]


def test_each_learning_rate_is_a_trial_on_dev_and_the_best_is_scored_on_test_once(tiny_model_dir, fruit, tmp_path,
                                                                                  monkeypatch):
    tested = []
    real = finetune_module.score_on_test
    monkeypatch.setattr(finetune_module, "score_on_test",
                        lambda p, task, acc, demos: tested.append(1) or real(p, task, acc, demos))
    results = _run(tiny_model_dir, fruit, CFG, tmp_path / "run")
    trials = results["trials"]
    assert [t["lr"] for t in trials] == list(DEFAULT_LRS["lora"]) and all(t["steps"] > 0 for t in trials)
    assert len(tested) == 1, "test is predicted once, for the chosen trial"
    best = max(t["dev_score"] for t in trials)
    chosen = [t for t in trials if t["chosen"]]
    assert chosen == [next(t for t in trials if t["dev_score"] == best)], "the first trial with the best dev score"
    assert results["peak_lr"] == results["setting"]["lr"] == chosen[0]["lr"]
    assert results["best_dev_score"] == best and results["history"][-1]["step"] == chosen[0]["steps"]
    assert not (tmp_path / "run" / "trials").exists()


def test_test_labels_never_touch_the_search(tiny_model_dir, fruit, tmp_path):
    labels = fruit.labels
    poisoned = replace(fruit, test=[replace(ex, target=labels[(labels.index(ex.target) + 1) % len(labels)])
                                    if ex.target in labels else ex for ex in fruit.test])
    clean = _run(tiny_model_dir, fruit, CFG, tmp_path / "clean")
    dirty = _run(tiny_model_dir, poisoned, CFG, tmp_path / "dirty")
    assert _choice(clean) == _choice(dirty)
    assert clean["test"]["accuracy"]["mean"] != dirty["test"]["accuracy"]["mean"], "the poison reached test"


def test_a_given_rate_or_a_task_without_dev_trains_once(tiny_model_dir, fruit, tmp_path):
    given = _run(tiny_model_dir, fruit, replace(CFG, lr=3e-3), tmp_path / "given")
    assert [t["lr"] for t in given["trials"]] == [3e-3]
    no_dev = _run(tiny_model_dir, replace(fruit, dev=[]), CFG, tmp_path / "no-dev")
    assert [(t["lr"], t["dev_score"]) for t in no_dev["trials"]] == [(CFG.peak_lr, None)]


def test_the_budget_leaves_out_trials_that_would_pass_it(tiny_model_dir, fruit, tmp_path):
    steps = 2 * -(-len(fruit.train) // 32)  # epochs x batches per epoch: one trial's most steps
    results = _run(tiny_model_dir, fruit, replace(CFG, budget_steps=2 * steps), tmp_path / "run")
    ran = [t for t in results["trials"] if t["steps"]]
    assert len(ran) == 2 and results["trials"][2] == {**results["trials"][2], "steps": 0, "dev_score": None}


def test_a_trial_stops_when_dev_stops_improving(tiny_model_dir, fruit, tmp_path):
    cfg = replace(CFG, lr=1e-9, epochs=8, patience=1)  # a rate too small to move dev
    trial = _run(tiny_model_dir, fruit, cfg, tmp_path / "run")["trials"][0]
    per_epoch = -(-len(fruit.train) // 32)
    assert trial["stopped_early"] and trial["steps"] == 2 * per_epoch and trial["best_step"] == per_epoch


@pytest.mark.parametrize("kwargs, message", [
    ({"lrs": ()}, "the learning-rate grid is empty"),
    ({"lrs": (1e-4, 0.0)}, "learning rates must be positive"),
    ({"budget_steps": 0}, "budget_steps must be positive, got 0"),
    ({"budget_seconds": 0}, "budget_seconds must be positive"),
    ({"patience": -1}, "patience must be >= 0"),
])
def test_bad_search_settings_are_refused(kwargs, message):
    with pytest.raises(TuneforgeError, match=message):
        FinetuneConfig(**kwargs)
