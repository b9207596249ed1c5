"""Which route fills the store: pure choices over route rows."""

import pytest

from tuneforge.data.splits import load_task
from tuneforge.experiment.sections import BatchStage
from tuneforge.errors import TuneforgeError
from tuneforge.experiment.routes import batch_plan


def _route(name, kind, mean, ms, pick=None, calibration="none", scoring="sum", stage=None, chosen=True):
    """A route whose dev score is `mean` (test scores, deliberately the other way round, never choose)."""
    return {"name": name, "kind": kind, "stage": stage or kind, "dev_score": {"mean": mean},
            "score": {"mean": 1 - mean}, "chosen": chosen, "ms_per_example": ms,
            "parameters": {"total": 100}, "pick": pick, "calibration": calibration, "scoring": scoring,
            "shots": 5 if pick else 0, "format": "plain", "seed": 0, "model_dir": f"/runs/{name}"}


ROUTES = [_route("prompting 5-shot similar", "prompting", 0.60, 40, pick="similar"),
          _route("prompting 5-shot random", "prompting", 0.30, 38, pick="random", chosen=False),
          _route("LoRA fine-tune", "lora", 0.50, 25),
          _route("distilled", "distill", 0.30, 10)]
DONE = {"prompting": {"result": {"model": {"path": "/base"}, "config": {"batch_size": 8}}}}


def test_the_recommended_prompting_route_is_stored_whatever_its_picker_calibration_and_scoring():
    task = load_task("fruit")
    similar = _route("prompting 5-shot similar batch-calibrated per-char", "prompting", 0.6, 40, pick="similar",
                     calibration="batch", scoring="per-char")
    similar["prior"] = [0.1, 0.2, 0.3, 0.4]
    plan = batch_plan(BatchStage(), [similar, *ROUTES[1:]], {"route": similar["name"]}, DONE, task, "support")
    assert plan["route"] == similar["name"] and plan["model"] == "/base" and plan["prior"] == [0.1, 0.2, 0.3, 0.4]
    settings = plan["settings"]
    assert (settings["shots"], settings["pick"], settings["calibration"], settings["scoring"]) == (
        5, "similar", "batch", "per-char")
    assert settings["name"] == "support-prompting" and len(plan["inputs"]) == 245
    # the test split is stored first, batched as the prompting route's test pass batched it
    assert plan["scored"] == {"inputs": [ex.input for ex in task.test], "batch_size": 8}


def test_an_adapted_route_is_stored_zero_shot_under_its_stage_name():
    task = load_task("fruit")
    plan = batch_plan(BatchStage(), ROUTES, {"route": "LoRA fine-tune"}, DONE, task, "support")
    assert plan["model"] == "/runs/LoRA fine-tune" and plan["prior"] is None
    assert (plan["settings"]["shots"], plan["settings"]["calibration"], plan["settings"]["name"]) == (
        0, "none", "support-lora")
    named = batch_plan(BatchStage(name="fruit-v2"), ROUTES, {"route": "LoRA fine-tune"}, DONE, task, "support")
    assert named["settings"]["name"] == "fruit-v2"


def test_a_named_stage_is_served_as_asked():
    task = load_task("fruit")
    plan = batch_plan(BatchStage(route="distill"), ROUTES, {"route": "LoRA fine-tune"}, DONE, task, "demo")
    assert plan["route"] == "distilled" and plan["settings"]["name"] == "demo-distilled"
    prompting = batch_plan(BatchStage(route="prompting"), ROUTES, {"route": "LoRA fine-tune"}, DONE, task, "demo")
    assert prompting["route"] == "prompting 5-shot similar", "the prompting stage's chosen condition"
    with pytest.raises(TuneforgeError, match="that stage is off"):
        batch_plan(BatchStage(route="full"), ROUTES, {"route": "LoRA fine-tune"}, DONE, task, "demo")
