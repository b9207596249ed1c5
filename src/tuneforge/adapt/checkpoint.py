"""Training checkpoints: trainable weights, optimizer, scheduler, RNG states and data position.

A checkpoint is a folder written under a temporary name and renamed into place, so a run killed at
any moment leaves only complete checkpoints. Tensors go to safetensors; the optimizer state goes
through `torch.save` and comes back with `torch.load(weights_only=True)` (tensors and numbers only,
no unpickling of code).
"""

import json
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tuneforge.atomic import atomic_path
from tuneforge.errors import TuneforgeError


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name, copied to the CPU."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def save_checkpoint(folder: Path, step: int, model, optimizer, scheduler, state: dict, best: dict | None) -> Path:
    """Write checkpoint `step` atomically and delete the older ones."""
    final = folder / f"step-{step:08d}"
    with atomic_path(final, folder=True) as tmp:
        save_file(trainable_state(model), tmp / "trainable.safetensors")
        if best is not None:
            save_file(best, tmp / "best.safetensors")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        save_file(_torch_rngs(), tmp / "rng.safetensors")
        record = {**state, "step": step, "scheduler": scheduler.state_dict(), "python_rng": _py_rng()}
        (tmp / "state.json").write_text(json.dumps(record))
    for old in folder.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    done = sorted(folder.glob("step-*")) if folder.is_dir() else []
    return done[-1] if done else None


def load_checkpoint(path: Path, model, optimizer, scheduler, expect: dict) -> tuple[dict, dict | None]:
    """Restore everything saved by `save_checkpoint`; refuse a checkpoint of another run."""
    state = json.loads((path / "state.json").read_text())
    for key, value in expect.items():
        if state.get(key) != value:
            raise TuneforgeError(f"--resume: {path} belongs to another run (its {key.replace('_', ' ')} differs: "
                                 f"{str(state.get(key))[:12]} here, {str(value)[:12]} now); "
                                 f"use a new --out or drop --resume")
    load_trainable(model, load_file(path / "trainable.safetensors"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(state["scheduler"])
    _set_torch_rngs(load_file(path / "rng.safetensors"))
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    best = load_file(path / "best.safetensors") if (path / "best.safetensors").is_file() else None
    for key in ("scheduler", "python_rng", *expect):
        state.pop(key)
    return state, best


def _py_rng():
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _torch_rngs() -> dict[str, torch.Tensor]:
    """Every torch generator in use: the CPU's, and each CUDA device's (dropout on a GPU draws there)."""
    rngs = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rngs.update({f"cuda{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())})
    return rngs


def _set_torch_rngs(rngs: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(rngs["torch"])
    cuda = [rngs[f"cuda{i}"] for i in range(len(rngs) - 1)]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
