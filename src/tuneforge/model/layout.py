"""What a model directory holds, read from its files without loading it (no torch): its number of
layers (config.json) and the names of its modules (the safetensors headers). Settings that name layers
or modules are checked against them before any weights load, so a typo stops a run in one line
instead of after the stages before the one that reads it."""

import json
import struct
from pathlib import Path

from tuneforge.errors import TuneforgeError

MAX_HEADER = 100_000_000
"""Largest safetensors header read (a 135M-parameter model's is 26 kB)."""


def layer_count(model_dir: Path) -> int | None:
    """The model's decoder layers, from its config.json (None where it does not say)."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    count = config.get("num_hidden_layers", config.get("n_layer"))
    return count if isinstance(count, int) else None


def weight_shapes(model_dir: Path) -> dict[str, list[int]] | None:
    """Every weight's name and shape, from the headers of the directory's safetensors files (None
    where it has none)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    shapes = {}
    for path in files:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > MAX_HEADER:
                return None
            header = json.loads(f.read(size))
        shapes.update({name: meta["shape"] for name, meta in header.items() if name != "__metadata__"})
    return shapes


def check_lora_targets(model_dir: Path, targets: tuple[str, ...], key: str = "lora_targets") -> None:
    """Refuse LoRA target names no module of the model has (peft matches a target to a module
    name's last part), listing the linear layers it does have."""
    shapes = weight_shapes(model_dir)
    if shapes is None:
        return  # weights in another format: peft's own check runs once the model is loaded
    modules = {name.rsplit(".", 2)[-2] for name in shapes if name.count(".") >= 1}
    missing = [t for t in targets if t not in modules]
    if missing:
        linear = sorted({name.rsplit(".", 2)[-2] for name, shape in shapes.items()
                         if name.endswith(".weight") and len(shape) == 2 and "embed" not in name})
        raise TuneforgeError(f"{key}: the model has no module named {', '.join(map(repr, missing))} "
                             f"(its linear layers: {', '.join(linear)})")


def check_student_layers(n_layers: int, layers: int | None = None, keep: tuple[int, ...] | None = None,
                         flags: tuple[str, str] = ("--layers", "--keep")) -> None:
    """Refuse a pruned student's layer count or kept layers that the teacher's `n_layers` cannot give;
    `flags` are the names the messages give them (`distill.layers`, `distill.keep` in an experiment)."""
    if layers is not None and not 1 <= layers < n_layers:
        raise TuneforgeError(f"{flags[0]} {layers}: keep between 1 and {n_layers - 1} of the teacher's "
                             f"{n_layers} layers")
    if keep is None:
        return
    bad = [i for i in keep if not 0 <= i < n_layers]
    if bad:
        raise TuneforgeError(f"{flags[1]}: layer {bad[0]} is out of range: the teacher's layers are 0 to "
                             f"{n_layers - 1}")
    if len(set(keep)) != len(keep) or not 1 <= len(keep) < n_layers:
        raise TuneforgeError(f"{flags[1]}: give 1 to {n_layers - 1} distinct layers of the teacher's {n_layers}")
