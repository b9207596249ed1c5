"""Fine-tuning's objectives: token cross-entropy, or cross-entropy over the label set's scores."""

from dataclasses import replace

import pytest
import torch

from tuneforge.adapt.finetune import FinetuneConfig, check_feasible, finetune, training_pieces
from tuneforge.adapt.losses import ce_loss, label_ce_loss
from tuneforge.adapt.rows import collate
from tuneforge.data.splits import load_task
from tuneforge.errors import TuneforgeError
from tuneforge.model.load import load_model
from tuneforge.prompts.formats import PromptFormat

CFG = FinetuneConfig(method="lora", epochs=2, batch_size=32, checkpoint_every=0, autocast="off", lr=3e-3)


@pytest.fixture(scope="module")
def fruit():
    return load_task("fruit")


def test_label_ce_is_the_softmax_cross_entropy_over_label_scores_and_tokens_add_the_golds_nll():
    scores = torch.tensor([[-1.0, -2.0, -4.0], [-3.0, -0.5, -2.0]])
    gold = torch.tensor([0, 2])
    by_hand = [-(s[g] - torch.logsumexp(s, 0)) for s, g in zip(scores, gold)]
    assert label_ce_loss(scores, gold, n_global=2) == pytest.approx(float(sum(by_hand) / 2))
    assert label_ce_loss(scores, gold, n_global=4, world_size=2) == pytest.approx(float(sum(by_hand) / 2))
    with_tokens = [h - s[g] for h, s, g in zip(by_hand, scores, gold)]  # + each gold label's own NLL
    assert label_ce_loss(scores, gold, n_global=2, tokens=True) == pytest.approx(float(sum(with_tokens) / 2))


def test_the_label_path_scores_the_gold_label_as_token_cross_entropy_does(tiny, fruit):
    """The gold label's score from the packed label path (what `labels` trains on) is minus the token
    cross-entropy the `tokens` objective sums over the same answer: one prompt, one answer, two paths."""
    fmt = PromptFormat("plain", fruit.info.instruction)
    examples = fruit.train[:4]
    task = replace(fruit, train=examples)
    tok_rows, _, _ = training_pieces(task, fmt, tiny.tokenizer, replace(CFG, objective="tokens"))
    label_rows, make_net, _ = training_pieces(task, fmt, tiny.tokenizer, replace(CFG, objective="labels"))
    net = make_net(tiny.model)
    with torch.no_grad():
        scores = net(net.collate(label_rows, tiny.tokenizer.pad_token_id))["scores"]  # (B, K)
        for b, row in enumerate(tok_rows):
            batch = collate([row], tiny.tokenizer.pad_token_id)
            logits = tiny.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            nll = ce_loss(logits[batch["rows"], batch["cols"]], batch["targets"], n_global=1)
            gold = label_rows[b].gold
            assert fruit.label_set[gold] == examples[b].target
            assert float(-scores[b, gold]) == pytest.approx(float(nll), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("objective", ["labels", "labels+tokens"])
def test_a_label_objective_trains_and_lowers_its_loss(tiny_model_dir, fruit, tmp_path, objective):
    results = finetune(load_model(tiny_model_dir, dtype="fp32", device="cpu"), fruit,
                       replace(CFG, objective=objective, epochs=3), tmp_path / "run")
    assert results["setting"]["objective"] == objective and results["config"]["objective"] == objective
    losses = [h["loss"] for h in results["history"] if "loss" in h]
    assert losses[-1] < losses[0], losses
    assert set(results["test_predictions"]) <= set(fruit.label_set)


def test_a_label_objective_is_refused_for_an_open_task():
    synonyms = load_task("synonyms")
    check_feasible(synonyms, CFG)  # tokens: any task
    with pytest.raises(TuneforgeError, match="objective 'labels' ranks a label set, but task 'synonyms' is open"):
        check_feasible(synonyms, replace(CFG, objective="labels"))
    with pytest.raises(TuneforgeError, match="unknown objective 'ranks'"):
        replace(CFG, objective="ranks")


def test_an_experiment_refuses_a_label_objective_for_an_open_task_before_any_stage(tmp_path):
    from tuneforge.experiment.run import run
    from tuneforge.experiment.sections import experiment_config

    config = experiment_config("demo", ["task.name=synonyms", "full=null", "lora.objective=labels+tokens"])
    with pytest.raises(TuneforgeError, match="^lora: objective 'labels\\+tokens' ranks a label set"):
        run(config, tmp_path / "run", cache=False)
    assert not (tmp_path / "run").exists()
