"""Which route fills the store: pure choices over route rows."""

import pytest

from tuneforge.data.splits import load_task
from tuneforge.experiment.config import BatchStage
from tuneforge.experiment.routes import batch_plan, servable


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
DONE = {"prompting": {"result": {"model": {"path": "/base"}}}}


@pytest.mark.parametrize("route, expected", [
    (ROUTES[0], False), (ROUTES[1], True), (ROUTES[2], True),
    (_route("p", "prompting", 0.5, 1, pick="random", calibration="batch"), False),
    (_route("p", "prompting", 0.5, 1, pick="random", scoring="per-char"), False),
    (_route("p", "prompting", 0.5, 1, pick="balanced"), False),
])
def test_servable(route, expected):
    assert servable(route) is expected


def test_a_recommendation_the_store_cannot_hold_falls_back_to_the_best_it_can():
    task = load_task("fruit")
    plan = batch_plan(BatchStage(), ROUTES, {"route": "prompting 5-shot similar"}, DONE, task, margin=0.05)
    assert plan["route"] == "LoRA fine-tune" and plan["model"] == "/runs/LoRA fine-tune"
    assert "a store setting cannot hold yet" in plan["note"]
    assert plan["settings"]["shots"] == 0 and len(plan["inputs"]) == 245


def test_a_wide_margin_lets_the_cheaper_servable_route_win():
    task = load_task("fruit")
    plan = batch_plan(BatchStage(), ROUTES, {"route": "prompting 5-shot similar"}, DONE, task, margin=0.25)
    assert plan["route"] == "distilled"


def test_a_prompting_route_carries_its_demonstration_settings():
    task = load_task("fruit")
    plan = batch_plan(BatchStage(), ROUTES, {"route": "prompting 5-shot random"}, DONE, task, margin=0.05)
    assert plan["note"] is None and plan["model"] == "/base"
    assert (plan["settings"]["shots"], plan["settings"]["pick"], plan["settings"]["format"]) == (5, "random", "plain")


def test_without_a_servable_route_the_best_servable_prompting_condition_on_dev_is_stored():
    task = load_task("fruit")
    routes = [ROUTES[0], ROUTES[1], _route("prompting 0-shot", "prompting", 0.2, 5, chosen=False)]
    plan = batch_plan(BatchStage(), routes, {"route": "prompting 5-shot similar"}, DONE, task, margin=0.05)
    assert plan["route"] == "prompting 5-shot random", "0.30 on dev beats 0.20 (test says the reverse)"


def test_a_named_stage_is_served_as_asked():
    task = load_task("fruit")
    plan = batch_plan(BatchStage(route="distill"), ROUTES, {"route": "LoRA fine-tune"}, DONE, task, margin=0.05)
    assert plan["route"] == "distilled" and plan["note"] is None
