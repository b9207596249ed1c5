import pytest
import torch
from accelerate import Accelerator

from tuneforge.adapt.finetune import loss as finetune_loss
from tuneforge.adapt.loop import LoopConfig, TargetLogits, train
from tuneforge.adapt.rows import build_rows, collate
from tuneforge.data.splits import load_task
from tuneforge.model.load import load_model
from tuneforge.prompts.formats import PromptFormat


@pytest.fixture
def fresh(tiny_model_dir):
    return load_model(tiny_model_dir, dtype="fp32", device="cpu")


def _rows(loaded, n=16):
    task = load_task("fruit")
    return build_rows(task.train[:n], PromptFormat("plain", task.info.instruction), loaded.tokenizer)


def _net(lm):
    return TargetLogits(lm.get_decoder(), lm.get_output_embeddings())


def test_one_training_step_reduces_the_loss(fresh):
    rows, pad = _rows(fresh), fresh.tokenizer.pad_token_id
    net, acc = _net(fresh.model), Accelerator(mixed_precision="no")
    cfg = LoopConfig(epochs=1, lr=1e-2, batch_size=16, grad_accum=1, warmup_ratio=0, schedule="constant",
                     weight_decay=0, max_grad_norm=1.0, seed=0, eval_every=0, patience=0, checkpoint_every=0)
    before = _loss(net, rows, pad)
    result = train(net, rows, finetune_loss, cfg, accelerator=acc, pad_id=pad)
    assert len(result["history"]) == 1
    assert result["history"][0]["loss"] == pytest.approx(before, rel=1e-5)
    assert _loss(net, rows, pad) < before - 0.01


def _loss(net, rows, pad):
    batch = collate(rows, pad)
    with torch.no_grad():
        logits = net(batch["input_ids"], batch["attention_mask"], batch["rows"], batch["cols"])
        return finetune_loss(logits, batch, len(batch["targets"]), 1).item()


def test_loss_equals_transformers_loss_with_the_prompt_masked(fresh):
    rows, pad = _rows(fresh, 6), fresh.tokenizer.pad_token_id
    batch = collate(rows, pad)
    n = len(batch["targets"])
    ours = finetune_loss(_net(fresh.model)(batch["input_ids"], batch["attention_mask"], batch["rows"], batch["cols"]),
                         batch, n, 1)
    labels = torch.full_like(batch["input_ids"], -100)
    for i, r in enumerate(rows):
        labels[i, len(r.ids) - r.n_target : len(r.ids)] = torch.tensor(r.ids[-r.n_target :])
    # transformers averages over the label tokens it is given: the same quantity.
    reference = fresh.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_masked_positions_get_no_gradient(fresh):
    rows, pad = _rows(fresh, 4), fresh.tokenizer.pad_token_id
    batch = collate(rows, pad)
    net = _net(fresh.model)
    grads = {}

    def keep_grad(module, args, out):
        out.last_hidden_state.register_hook(lambda g: grads.setdefault("h", g))

    handle = net.decoder.register_forward_hook(keep_grad)
    logits = net(batch["input_ids"], batch["attention_mask"], batch["rows"], batch["cols"])
    finetune_loss(logits, batch, len(batch["targets"]), 1).backward()
    handle.remove()
    g = grads["h"].abs().sum(-1)  # (B, T): gradient reaching each position's final hidden state
    target = torch.zeros_like(g, dtype=torch.bool)
    target[batch["rows"], batch["cols"]] = True
    assert (g[~target] == 0).all(), "prompt and padding positions must not feed the loss"
    assert (g[target] > 0).all()
