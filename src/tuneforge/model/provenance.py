"""A model's `tuneforge.json`: where it came from (route, method, base model, task, config) and how
to prompt it (format, instruction, labels). This module is its one reader and writer; a test forbids
naming the file anywhere else, so a new key is added here, once, with the question it answers."""

import json
from pathlib import Path

FILE = "tuneforge.json"


def read(folder: str | Path) -> dict:
    """The record beside a model ({} for a model tuneforge did not train or convert)."""
    path = Path(folder) / FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write(folder: str | Path, record: dict) -> None:
    """`record` as the folder's `tuneforge.json` (a value JSON has no type for, a path say, as its text),
    written whole under a temporary name, then renamed."""
    from tuneforge.atomic import write_text_atomic

    write_text_atomic(Path(folder) / FILE, json.dumps(record, indent=2, default=str) + "\n")


def route(record: dict) -> str:
    """The route the model comes from: `lora`, `full`, `distilled`, or `prompting` (an unchanged model)."""
    if record.get("route") == "distill":
        return "distilled"
    return record.get("method", "full") if record.get("route") == "finetune" else "prompting"


def prompt(record: dict) -> dict | None:
    """The prompt the model was trained and scored with (format, instruction, labels, template), if any."""
    return record.get("prompt")


def demonstrations(record: dict) -> dict | None:
    """How each of the model's prompts gets its demonstrations ({shots, pick, seed, pool: [input,
    target, id] rows}), for a model fine-tuned on prompts that hold them; None for a 0-shot model."""
    return record.get("demonstrations")


def training_format(record: dict) -> str:
    """The prompt format a trained model's rows had (`plain` for an unchanged model)."""
    if record.get("route") == "distill":
        return record["config"]["training"]["format"]
    return record["config"]["format"] if record.get("route") == "finetune" else "plain"


def base_model_path(record: dict) -> str | None:
    """The model a fine-tuned model was trained from, where the record names it."""
    return (record.get("base_model") or {}).get("path")
