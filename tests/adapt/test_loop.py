import pytest
import torch
from accelerate import Accelerator

from tuneforge.adapt.finetune import token_loss as finetune_loss
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
        logits = net(batch)
        return finetune_loss(logits, batch, len(batch["targets"]), 1).item()


def test_loss_equals_transformers_loss_with_the_prompt_masked(fresh):
    rows, pad = _rows(fresh, 6), fresh.tokenizer.pad_token_id
    batch = collate(rows, pad)
    n = len(batch["targets"])
    ours = finetune_loss(_net(fresh.model)(batch),
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
    logits = net(batch)
    finetune_loss(logits, batch, len(batch["targets"]), 1).backward()
    handle.remove()
    g = grads["h"].abs().sum(-1)  # (B, T): gradient reaching each position's final hidden state
    target = torch.zeros_like(g, dtype=torch.bool)
    target[batch["rows"], batch["cols"]] = True
    assert (g[~target] == 0).all(), "prompt and padding positions must not feed the loss"
    assert (g[target] > 0).all()


def _cfg(**kw):
    base = dict(epochs=3, lr=1e-3, batch_size=4, grad_accum=1, warmup_ratio=0.0, schedule="constant",
                weight_decay=0.0, max_grad_norm=1.0, seed=0, eval_every=1, patience=0, checkpoint_every=0)
    return LoopConfig(**{**base, **kw})


def test_early_stopping_and_keeping_the_best(fresh):
    rows, pad = _rows(fresh, 16), fresh.tokenizer.pad_token_id
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.9])
    result = train(_net(fresh.model), rows, finetune_loss, _cfg(patience=2), accelerator=Accelerator(), pad_id=pad,
                   evaluate=lambda: next(scores))
    # 0.5, 0.7 (best), 0.6, 0.65: two evaluations without improvement -> stop after step 4 of 12.
    assert [h["dev_score"] for h in result["history"]] == [0.5, 0.7, 0.6, 0.65]
    assert result["stopped"] and result["best_step"] == 2 and result["best_score"] == 0.7
    assert result["best"] is not None and all(not t.requires_grad for t in result["best"].values())


@pytest.mark.parametrize("schedule, expected", [
    ("cosine", [0.5, 1.0, 1.0, 0.854, 0.5, 0.146]),
    ("linear", [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]),
    ("constant", [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]),
])
def test_warmup_then_decay(schedule, expected):
    from tuneforge.adapt.loop import lr_lambda

    factor = lr_lambda(_cfg(schedule=schedule, warmup_ratio=2 / 6), total_steps=6)
    assert [round(factor(s), 3) for s in range(6)] == expected


def test_gradient_accumulation_matches_one_big_batch(tiny_model_dir):
    def run(batch_size, grad_accum):
        loaded = load_model(tiny_model_dir, dtype="fp32", device="cpu")
        rows = _rows(loaded, 16)
        net = _net(loaded.model)
        train(net, rows, finetune_loss, _cfg(epochs=1, batch_size=batch_size, grad_accum=grad_accum, lr=1e-2),
              accelerator=Accelerator(), pad_id=loaded.tokenizer.pad_token_id)
        return [p.detach().clone() for p in net.parameters()]

    # 16 rows: one step of 16, or two micro-batches of 8 accumulated. Epoch order differs by batch size,
    # but a single step sees all 16 rows either way, and the loss is the mean over all target tokens.
    for a, b in zip(run(16, 1), run(8, 2)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_checkpoints_by_time_resume_to_the_same_weights(tiny_model_dir, tmp_path):
    """A checkpoint is due once `checkpoint_seconds` have passed (here: after every step); a run stopped
    after step 5 resumes from its step-5 checkpoint and ends with the uninterrupted run's weights.
    With an hour between checkpoints, none is written."""
    def run(folder, seconds, stop_at=None, resume=False):
        loaded = load_model(tiny_model_dir, dtype="fp32", device="cpu")
        net, seen = _net(loaded.model), []

        def progress(step, total, record, elapsed):
            seen.append(sorted(p.name for p in folder.glob("step-*")))
            if step == stop_at:
                raise KeyboardInterrupt

        result = train(net, _rows(loaded, 16), finetune_loss, _cfg(epochs=2, checkpoint_seconds=seconds),
                       accelerator=Accelerator(), pad_id=loaded.tokenizer.pad_token_id, checkpoint_dir=folder,
                       resume=resume, progress=progress)
        return result, [p.detach().clone() for p in net.parameters()], seen

    whole, weights, _ = run(tmp_path / "whole", 1e-9)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "killed", 1e-9, stop_at=6)
    assert [p.name for p in (tmp_path / "killed").glob("step-*")] == ["step-00000005"]
    resumed, resumed_weights, _ = run(tmp_path / "killed", 1e-9, resume=True)
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in whole["history"]]
    for a, b in zip(weights, resumed_weights):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    _, _, seen = run(tmp_path / "hourly", 3600.0)
    assert seen == [[]] * 8 and not (tmp_path / "hourly").exists()
