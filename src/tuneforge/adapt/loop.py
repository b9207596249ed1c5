"""THE training loop, shared by fine-tuning and distillation: the loss is passed in.

Single process by default; under `accelerate launch` the same code runs data-parallel (Accelerate
wraps the model; we never write a distributed engine). Every process sees the same global batches
and takes its own slice of each, so 1 and N processes follow the same trajectory.
"""

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from tuneforge.adapt.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, trainable_state
from tuneforge.adapt.rows import Row, collate, epoch_batches


@dataclass(frozen=True)
class LoopConfig:
    """Settings of the training loop (the route builds it from its own config)."""

    epochs: int
    lr: float
    batch_size: int  # rows per micro-batch, all processes together
    grad_accum: int  # micro-batches per optimizer step
    warmup_ratio: float
    schedule: str  # cosine | linear | constant
    weight_decay: float
    max_grad_norm: float
    seed: int
    eval_every: int  # optimizer steps between dev evaluations; 0 = once per epoch
    patience: int  # stop after this many evaluations without improvement; 0 = never
    checkpoint_every: int  # optimizer steps between checkpoints; 0 = not by steps
    checkpoint_seconds: float = 0.0  # seconds of training between checkpoints; 0 = not by time


class TargetLogits(torch.nn.Module):
    """Runs the decoder and the output head only at the positions that predict a target token:
    on a 49k vocabulary, the full (B, T, V) logits would cost more than the rest of the step."""

    def __init__(self, decoder: torch.nn.Module, head: torch.nn.Module):
        super().__init__()
        self.decoder, self.head = decoder, head

    collate = staticmethod(collate)
    """Rows into the batch `forward` takes (each net says how its rows are batched)."""

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return self.head(hidden[batch["rows"], batch["cols"]])  # (B, T, H) -> (N, V)


def train(net: torch.nn.Module, rows: list[Row], loss_fn, cfg: LoopConfig, *, accelerator, pad_id: int,
          evaluate=None, checkpoint_dir: Path | None = None, resume: bool = False, run_id: dict | None = None,
          progress=None) -> dict:
    """Train `net` (a TargetLogits, or another net with a `collate` for its rows) on `rows`;
    `loss_fn(output, batch, n_global, world_size)` gives this slice's share of the global mean loss.
    `evaluate()` returns a dev score (higher is better); the best weights are kept.
    Returns the history, the best score and step, and the best trainable weights."""
    torch.manual_seed(cfg.seed)
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = adamw(params, cfg)
    steps_per_epoch = epoch_steps(cfg, len(rows))
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
    model = accelerator.prepare(net)
    state = {"step": 0, "history": [], "best_score": None, "best_step": None, "stale": 0, "stopped": False}
    best = None
    if resume and checkpoint_dir and (ckpt := latest_checkpoint(checkpoint_dir)):
        state, best = load_checkpoint(ckpt, net, optimizer, scheduler, expect=run_id or {})
    lengths = [len(r.ids) for r in rows]
    start = last_checkpoint = time.perf_counter()
    while state["step"] < total_steps and not state["stopped"]:
        epoch, in_epoch = divmod(state["step"], steps_per_epoch)
        batches = epoch_batches(len(rows), lengths, cfg.batch_size, cfg.seed, epoch)
        micro = batches[in_epoch * cfg.grad_accum : (in_epoch + 1) * cfg.grad_accum]
        step_rows = [[rows[i] for i in b] for b in micro]
        loss, n_target, n_tokens = train_step(model, step_rows, loss_fn, accelerator, pad_id, net.collate)
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        elapsed = time.perf_counter() - start
        record = {"step": state["step"], "epoch": epoch, "loss": loss, "lr": scheduler.get_last_lr()[0],
                  "target_tokens": n_target, "tokens": n_tokens}
        if evaluate and _due(state["step"], cfg.eval_every or steps_per_epoch, total_steps):
            _evaluate(state, record, evaluate, net, cfg)
            if state["best_step"] == state["step"]:
                best = trainable_state(net)
        state["history"].append(record)
        if progress:
            progress(state["step"], total_steps, record, elapsed)
        if checkpoint_dir and _checkpoint_due(cfg, state["step"], total_steps, last_checkpoint, accelerator):
            if accelerator.is_main_process:
                save_checkpoint(checkpoint_dir, state["step"], net, optimizer, scheduler,
                                {**state, **(run_id or {})}, best)
            accelerator.wait_for_everyone()
            last_checkpoint = time.perf_counter()
    return {**state, "best": best, "total_steps": total_steps}


def adamw(params: list[torch.nn.Parameter], cfg: LoopConfig) -> torch.optim.AdamW:
    """AdamW over `params`, fused into one kernel per step where torch has one for their device (CPU
    and CUDA): a LoRA model has ~400 small tensors, and a loop over them costs more than the update."""
    fused = (params[0].device.type if params else "cpu") in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


def train_step(model, micro: list[list[Row]], loss_fn, accelerator, pad_id: int, collate_rows=collate
               ) -> tuple[float, int, int]:
    """Forward and backward over the micro-batches of one optimizer step; this process takes every
    world_size-th row of each. Returns the global mean loss and the global target/all token counts."""
    world, rank = accelerator.num_processes, accelerator.process_index
    n_global = sum(r.n_target for batch in micro for r in batch)
    loss_sum, counts = torch.zeros((), device=accelerator.device), torch.zeros(2)
    for j, batch in enumerate(micro):
        mine = batch[rank::world]
        weight = 1.0 if mine else 0.0  # a process with no row still joins the gradient exchange
        rows_in = collate_rows(mine or batch[:1], pad_id)
        counts += torch.tensor([len(rows_in["targets"]), float(rows_in["attention_mask"].sum())]) * weight
        batch_t = {k: v.to(accelerator.device) for k, v in rows_in.items()}
        sync = nullcontext() if j == len(micro) - 1 else accelerator.no_sync(model)
        with sync, accelerator.autocast():
            loss = loss_fn(model(batch_t), batch_t, n_global, world) * weight
            accelerator.backward(loss)
        loss_sum += loss.detach().float()  # on the device: no host sync per micro-batch
    total = torch.cat([loss_sum[None], counts.to(accelerator.device)])
    total = accelerator.reduce(total, reduction="sum").cpu()  # the step's one sync
    return total[0].item() / world, int(total[1]), int(total[2])


def epoch_steps(cfg: LoopConfig, n_rows: int) -> int:
    """Optimizer steps in one pass over `n_rows` rows."""
    return math.ceil(math.ceil(n_rows / cfg.batch_size) / cfg.grad_accum)


def lr_lambda(cfg: LoopConfig, total_steps: int):
    """Linear warm-up, then cosine or linear decay to zero (or constant)."""
    warmup = round(cfg.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1 - progress if cfg.schedule == "linear" else 1.0

    return factor


def _due(step: int, every: int, total: int) -> bool:
    return step % every == 0 or step == total


def _checkpoint_due(cfg: LoopConfig, step: int, total: int, since: float, accelerator) -> bool:
    """Whether a checkpoint is written after `step`: every `checkpoint_every` steps (and the last), or
    once `checkpoint_seconds` have passed since the last one. The clock is the main process's, so
    every process agrees."""
    if cfg.checkpoint_every and _due(step, cfg.checkpoint_every, total):
        return True
    if not cfg.checkpoint_seconds:
        return False
    due = torch.tensor([float(time.perf_counter() - since >= cfg.checkpoint_seconds)])
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast

        due = broadcast(due.to(accelerator.device), from_process=0).cpu()
    return bool(due.item())


def _evaluate(state: dict, record: dict, evaluate, net, cfg: LoopConfig) -> None:
    net.eval()
    score = evaluate()
    net.train()
    record["dev_score"] = score
    if state["best_score"] is None or score > state["best_score"]:
        state["best_score"], state["best_step"], state["stale"] = score, state["step"], 0
    else:
        state["stale"] += 1
        state["stopped"] = bool(cfg.patience) and state["stale"] >= cfg.patience
