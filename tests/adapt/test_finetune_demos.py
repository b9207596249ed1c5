"""Fine-tuning on prompts that hold demonstrations: each train row's from the rest of train, dev and
test rows' from train, the rule recorded with the model, and every later pass prompting it alike."""

from dataclasses import replace

import pytest

from tuneforge import api
from tuneforge.adapt.finetune import FinetuneConfig, check_feasible, demonstrations, finetune, training_pieces
from tuneforge.data.splits import load_task
from tuneforge.errors import TuneforgeError
from tuneforge.model import provenance
from tuneforge.model.load import load_model
from tuneforge.prompts.formats import PromptFormat, encode_prompt, render_prompt
from tuneforge.prompts.shots import is_same_item

CFG = FinetuneConfig(method="lora", epochs=1, batch_size=32, checkpoint_every=0, autocast="off", lr=3e-3)


@pytest.fixture(scope="module")
def fruit():
    return load_task("fruit")


def test_each_train_row_holds_demonstrations_from_the_rest_of_train(tiny, fruit):
    cfg = replace(CFG, shots=(3,))
    fmt = PromptFormat("plain", fruit.info.instruction)
    demos = demonstrations(fruit, fruit.train, 3, cfg)
    rows, _, _ = training_pieces(fruit, fmt, tiny.tokenizer, cfg, 3)
    for ex, row_demos, row in zip(fruit.train, demos, rows, strict=True):
        assert len(row_demos) == 3 and not any(is_same_item(d, ex) for d in row_demos)
        assert {d.id for d in row_demos} <= {e.id for e in fruit.train}
        prompt = encode_prompt(fmt, tiny.tokenizer, render_prompt(fmt, tiny.tokenizer, row_demos, ex.input))
        assert list(row.ids[: -row.n_target]) == prompt[-(len(row.ids) - row.n_target):]
    zero, _, _ = training_pieces(fruit, fmt, tiny.tokenizer, cfg, 0)
    assert all(len(z.ids) < len(r.ids) for z, r in zip(zero, rows))
    assert demonstrations(fruit, fruit.dev, 3, cfg) == demonstrations(fruit, fruit.dev, 3, cfg), "seeded"


def test_the_shots_grid_is_searched_on_dev_and_the_rule_recorded_and_reused_by_predict(tiny_model_dir, fruit,
                                                                                        tmp_path):
    out = tmp_path / "run"
    results = finetune(load_model(tiny_model_dir, dtype="fp32", device="cpu"), fruit, replace(CFG, shots=(0, 2)), out)
    assert [(t["shots"], t["lr"]) for t in results["trials"]] == [(0, 3e-3), (2, 3e-3)]
    chosen = next(t for t in results["trials"] if t["chosen"])
    assert results["setting"]["shots"] == chosen["shots"]
    rule = provenance.demonstrations(provenance.read(out / "adapter"))
    if chosen["shots"]:
        assert (rule["shots"], rule["pick"], rule["seed"]) == (2, "similar", 0)
        assert rule["pool"] == [[ex.input, ex.target, ex.id] for ex in fruit.train]
    else:
        assert rule is None
    # predict rebuilds every prompt from the recorded rule: the run's own test predictions, input for input
    rows = api.predict(out / "adapter", [ex.input for ex in fruit.test], dtype="fp32", device="cpu")
    assert [r["output"] for r in rows] == results["test_predictions"]


def test_a_model_trained_with_demonstrations_is_served_with_them(tiny_model_dir, fruit, tmp_path):
    from tuneforge.experiment.stages import serving_pass

    out = tmp_path / "run"
    shots = finetune(load_model(tiny_model_dir, dtype="fp32", device="cpu"), fruit,
                     replace(CFG, shots=(2,), merge=True), out)
    served = serving_pass(out / "merged", fruit, "plain", "fp32")
    assert served["predictions"] == shots["test_predictions"]
    zero = finetune(load_model(tiny_model_dir, dtype="fp32", device="cpu"), fruit, replace(CFG, merge=True),
                    tmp_path / "zero")
    plain = serving_pass(tmp_path / "zero" / "merged", fruit, "plain", "fp32")
    assert plain["predictions"] == zero["test_predictions"]
    assert served["tokens_per_example"] > plain["tokens_per_example"] + 2 * 3, "the demonstrations' tokens count"


def test_more_shots_than_train_can_spare_a_row_are_refused(fruit):
    small = replace(fruit, train=fruit.train[:4])
    check_feasible(small, replace(CFG, shots=(3,)))
    with pytest.raises(TuneforgeError, match="--shots 4 needs 4 demonstrations besides each train row itself"):
        check_feasible(small, replace(CFG, shots=(0, 4)))
    with pytest.raises(TuneforgeError, match="unknown demonstration picker 'best'"):
        replace(CFG, pick="best")


def test_the_audit_prompts_a_model_trained_with_demonstrations_as_it_was_trained(tiny_model_dir, fruit, tmp_path):
    from tuneforge.audit.run import AuditConfig, model_routes, route_predictor

    out = tmp_path / "run"
    results = finetune(load_model(tiny_model_dir, dtype="fp32", device="cpu"), fruit, replace(CFG, shots=(2,)), out)
    loaded = load_model(out / "adapter", dtype="fp32", device="cpu")
    (route,) = model_routes(loaded, AuditConfig())
    assert (route["shots"], route["pick"]) == (2, "similar")
    assert route_predictor(loaded, fruit, route, AuditConfig())(fruit.test) == results["test_predictions"]
