"""Task data: the Example record, and readers for JSONL, CSV, chat and prompt/completion files.

Every reader error names the file, the line and the field, so a user can fix the row.
"""

import csv
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tuneforge.errors import TuneforgeError


@dataclass(frozen=True)
class Example:
    """One labelled example of a task."""

    input: str
    """What the model sees, e.g. `lemon`."""
    target: str
    """What the model should answer, e.g. `hesperidium`."""
    id: str
    """Stable identity; defaults to `<file stem>-<line>` when the file has none."""
    group: str | None = None
    """Optional group (for per-group audits)."""
    where: str | None = field(default=None, compare=False)
    """Where the row was read, `<file>:<line>`, for messages; None for examples made in code."""


@dataclass(frozen=True)
class TaskInfo:
    """What a task is, beside its examples."""

    name: str
    """Short name, e.g. `fruit`, or the data file's stem."""
    kind: str
    """`labels` (a closed label set, predicted by ranking) or `generate` (open text)."""
    instruction: str | None
    """Optional instruction line put before the prompt."""
    source: str
    """Where the examples came from (a path, or `builtin:<name>`)."""


def builtin_tasks() -> list[str]:
    """Names of the tasks shipped with tuneforge."""
    folder = resources.files("tuneforge.data") / "builtin"
    return sorted(p.name[: -len(".jsonl")] for p in folder.iterdir() if p.name.endswith(".jsonl"))


def builtin_path(name: str) -> Path:
    """Path of a built-in task's JSONL file."""
    if name not in builtin_tasks():
        raise TuneforgeError(
            f"unknown task {name!r}: not a file, and not a built-in task ({', '.join(builtin_tasks())})"
        )
    return Path(str(resources.files("tuneforge.data") / "builtin" / f"{name}.jsonl"))


def builtin_info(name: str) -> dict:
    """The metadata (kind, instruction, description) of a built-in task."""
    path = builtin_path(name).with_suffix(".json")
    return json.loads(path.read_text(encoding="utf-8"))


def read_examples(path: str | Path) -> list[Example]:
    """Read labelled examples from a `.jsonl`/`.json` (one object per line) or `.csv` file."""
    path = Path(path)
    if not path.is_file():
        raise TuneforgeError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        examples = _read_csv(path)
    else:
        examples = _read_jsonl(path)
    if not examples:
        raise TuneforgeError(f"{path}: no examples in the file")
    _check_unique_ids(path, examples)
    return examples


def _read_jsonl(path: Path) -> list[Example]:
    examples = []
    for lineno, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise TuneforgeError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(row, dict):
            raise TuneforgeError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        examples.append(example_from_row(row, where=f"{path}:{lineno}", default_id=f"{path.stem}-{lineno}"))
    return examples


def _read_csv(path: Path) -> list[Example]:
    rows = csv.DictReader(_lines(path))
    examples = []
    # Line 1 is the header, so data rows start at line 2.
    for lineno, row in enumerate(rows, start=2):
        if None in row:
            raise TuneforgeError(f"{path}:{lineno}: more cells than header columns")
        row = {k: v for k, v in row.items() if v not in (None, "")}
        examples.append(example_from_row(row, where=f"{path}:{lineno}", default_id=f"{path.stem}-{lineno}"))
    return examples


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise TuneforgeError(f"{path}: not UTF-8 text (byte {e.start})") from None


def example_from_row(row: dict, where: str, default_id: str) -> Example:
    """One Example from a row in any of the accepted shapes:
    `input`/`target`, `prompt`/`completion`, or chat `messages` (the last assistant turn is the target)."""
    if "messages" in row:
        source, target = _from_messages(row["messages"], where)
    elif "prompt" in row or "completion" in row:
        source = _text_field(row, "prompt", where)
        target = _text_field(row, "completion", where)
    else:
        source = _text_field(row, "input", where)
        target = _text_field(row, "target", where)
    ident = row.get("id", default_id)
    if not isinstance(ident, (str, int)) or isinstance(ident, bool):
        raise TuneforgeError(f"{where}: field 'id' must be a string or an integer")
    group = row.get("group")
    if group is not None and not isinstance(group, str):
        raise TuneforgeError(f"{where}: field 'group' must be a string")
    return Example(input=source.strip(), target=target.strip(), id=str(ident), group=group, where=where)


def input_key(text: str) -> str:
    """How two inputs are compared for sameness: surrounding whitespace dropped, case folded."""
    return text.strip().lower()


def _text_field(row: dict, field: str, where: str) -> str:
    if field not in row:
        raise TuneforgeError(f"{where}: field {field!r} is missing")
    value = row[field]
    if isinstance(value, list):  # conversational prompt/completion: a list of messages
        value = "\n".join(m.get("content", "") if isinstance(m, dict) else "" for m in value)
    if not isinstance(value, str):
        raise TuneforgeError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise TuneforgeError(f"{where}: field {field!r} is empty")
    return value


def _from_messages(messages, where: str) -> tuple[str, str]:
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise TuneforgeError(f"{where}: field 'messages' must be a list of objects with 'role' and 'content'")
    if not messages or messages[-1].get("role") != "assistant":
        raise TuneforgeError(f"{where}: field 'messages' must end with an assistant message (the target)")
    users = [m for m in messages[:-1] if m.get("role") == "user"]
    if not users:
        raise TuneforgeError(f"{where}: field 'messages' has no user message before the assistant's")
    source = _text_field(users[-1], "content", f"{where}: messages[user]")
    target = _text_field(messages[-1], "content", f"{where}: messages[assistant]")
    return source, target


def _check_unique_ids(path: Path, examples: list[Example]) -> None:
    seen = set()
    for ex in examples:
        if ex.id in seen:
            raise TuneforgeError(f"{path}: field 'id' repeats the value {ex.id!r}")
        seen.add(ex.id)
