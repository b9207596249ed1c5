"""Task data: the Example record, and how a row of any accepted shape becomes one (input/target,
text/label, prompt/completion, Alpaca, chat messages, or fields the user names).

Every reader error names the file, the row and the field, and lists the fields the row has, so a
user can fix the row or name the fields. (`files.py` reads the rows of each file format.)
"""

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from tuneforge.data.files import field_names, read_rows
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
    targets: str = "text"
    """`text`, or `list` when each target is a comma-separated list ("jab, shot, booster"): an open
    task then scores its answers by list precision, recall and F1 instead of exact match."""


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


@dataclass(frozen=True)
class Fields:
    """Which field of a row is the input and which the target, when a file's names are not one of
    the conventions `example_from_row` knows (`--input-field text --target-field label`)."""

    input: str | None = None
    target: str | None = None


@dataclass(frozen=True)
class TaskFile:
    """What a data file holds: its examples, and the instruction every row shares, if they share one
    (Alpaca's `instruction`, a chat file's system message)."""

    examples: list[Example]
    instruction: str | None = None


# Recognised (input, target) names, tried in order; the first pair with a name in the row decides.
CONVENTIONS = (("input", "target"), ("prompt", "completion"), ("text", "label"), ("question", "answer"),
               ("sentence", "label"))
SHAPES = "input/target, prompt/completion, text/label, question/answer, instruction/input/output, messages"


def read_examples(source, fields: Fields = Fields()) -> list[Example]:
    """The examples of a data file (see `read_task_file`)."""
    return read_task_file(source, fields).examples


def read_task_file(source, fields: Fields = Fields()) -> TaskFile:
    """Read labelled examples from a file path (JSONL, JSON array, CSV, TSV, Parquet, a saved
    `datasets` directory), or from rows given in Python: a list of dicts or a pandas DataFrame.

    Rows with their own instruction (Alpaca, a chat system message) keep it: shared by every row it
    becomes the task's instruction, else each row's input starts with its own."""
    rows, name = _rows_of(source)
    read = [_example_and_instruction(row, where, default_id, fields) for where, default_id, row in rows]
    if not read:
        raise TuneforgeError(f"{name}: no examples in the file")
    instructions = {instruction for _, instruction in read}
    if len(instructions) == 1:
        examples, shared = [ex for ex, _ in read], instructions.pop()
    else:
        examples, shared = [_with_instruction(ex, instruction) for ex, instruction in read], None
    _check_unique_ids(name, examples)
    return TaskFile(examples, shared)


def _rows_of(source):
    """(rows as (where, default id, row), a name for messages) of a path, a list of dicts or a DataFrame."""
    if hasattr(source, "to_dict") and not isinstance(source, dict):  # a pandas DataFrame
        source = source.to_dict("records")
    if isinstance(source, list):
        if not all(isinstance(row, dict) for row in source):
            raise TuneforgeError("rows given in Python must be dicts (or a DataFrame)")
        return [(f"row {i}", f"row-{i}", row) for i, row in enumerate(source, start=1)], "the rows given"
    path = Path(source)
    return list(read_rows(path)), str(path)


def _with_instruction(ex: Example, instruction: str | None) -> Example:
    if instruction is None:
        return ex
    return Example(f"{instruction}\n\n{ex.input}", ex.target, ex.id, ex.group, ex.where)


def example_from_row(row: dict, where: str, default_id: str, fields: Fields = Fields()) -> Example:
    """One Example from a row: the input and target fields `fields` names, else one of the
    conventions (`CONVENTIONS`, Alpaca `instruction`/`input`/`output`, chat `messages`: the last
    assistant turn is the target). A row's own instruction is put before its input."""
    ex, instruction = _example_and_instruction(row, where, default_id, fields)
    return _with_instruction(ex, instruction)


def _example_and_instruction(row: dict, where: str, default_id: str, fields: Fields) -> tuple[Example, str | None]:
    instruction = None
    if fields.input is None and fields.target is None and "messages" in row:
        source, target, instruction = _from_messages(row["messages"], where)
    elif fields.input is None and fields.target is None and {"instruction", "output"} <= row.keys():
        source, target, instruction = _from_alpaca(row, where)
    else:
        input_name, target_name = _field_names(row, where, fields)
        source = _text_field(row, input_name, where, fields)
        target = _target_field(row, target_name, where, fields)
    ident = row.get("id", default_id)
    if not isinstance(ident, (str, int)) or isinstance(ident, bool):
        raise TuneforgeError(f"{where}: field 'id' must be a string or an integer")
    group = row.get("group")
    if group is not None and not isinstance(group, str):
        raise TuneforgeError(f"{where}: field 'group' must be a string")
    return Example(input=source.strip(), target=target.strip(), id=str(ident), group=group, where=where), instruction


def _field_names(row: dict, where: str, fields: Fields) -> tuple[str, str]:
    """(input name, target name): the ones given, the rest from the first convention the row follows."""
    # A convention whose input the row has wins over one whose target it has (`sentence`/`label`).
    for known in ({pair[0] for pair in CONVENTIONS}, {pair[1] for pair in CONVENTIONS}):
        for input_name, target_name in CONVENTIONS:
            if {input_name, target_name} & known & row.keys():
                return fields.input or input_name, fields.target or target_name
    if fields.input and fields.target:
        return fields.input, fields.target
    raise TuneforgeError(f"{where}: no input and target fields (the row has {field_names(row)}); name them with "
                         f"--input-field FIELD --target-field FIELD (input_field/target_field in a task section); "
                         f"known without naming: {SHAPES}")


def _from_alpaca(row: dict, where: str) -> tuple[str, str, str | None]:
    """Alpaca (LLaMA-Factory's default): `instruction`, an optional `input`, `output`."""
    instruction = _text_field(row, "instruction", where)
    target = _target_field(row, "output", where)
    if not str(row.get("input") or "").strip():  # the instruction is the whole prompt
        return instruction, target, None
    return _text_field(row, "input", where), target, instruction.strip()


def input_key(text: str) -> str:
    """How two inputs are compared for sameness: surrounding whitespace dropped, case folded."""
    return text.strip().lower()


def _text_field(row: dict, name: str, where: str, fields: Fields = Fields(), *, joiner: str | None = None) -> str:
    """The text of field `name`. A list is read as the OpenAI API writes text: a list of messages
    (conversational prompt/completion) or of content parts (`{"type": "text", "text": ...}`); a list
    of plain strings is a list target's terms where `joiner` is given, else refused."""
    if name not in row:
        hint = _hint(name, fields)
        raise TuneforgeError(f"{where}: field {name!r} is missing (the row has {field_names(row)}){hint}")
    value = row[name]
    if isinstance(value, list):
        value = _text_of_list(value, name, where, joiner)
    if not isinstance(value, str):
        raise TuneforgeError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise TuneforgeError(f"{where}: field {name!r} is empty")
    return value


def _text_of_list(items: list, name: str, where: str, joiner: str | None) -> str:
    if joiner is not None and items and all(isinstance(v, str) for v in items):
        return joiner.join(v.strip() for v in items)
    texts = []
    for i, item in enumerate(items):
        part = item.get("text") if isinstance(item, dict) and item.get("type") == "text" else None
        content = item.get("content") if isinstance(item, dict) and "type" not in item else None
        if isinstance(content, list):  # a message whose content is itself a list of parts
            content = _text_of_list(content, f"{name}[{i}].content", where, None)
        text = part if isinstance(part, str) else content
        if not isinstance(text, str):
            raise TuneforgeError(f"{where}: field {name!r} is a list, and item {i} is not a text part "
                                 f'({{"type": "text", "text": ...}}) nor a message with text content; got '
                                 f"{_kind(item)}")
        texts.append(text)
    if not texts:
        raise TuneforgeError(f"{where}: field {name!r} is an empty list")
    return "\n".join(texts)


def _kind(value) -> str:
    if isinstance(value, dict):
        return f"an object with keys {field_names(value)}"[:120]
    return type(value).__name__


def _target_field(row: dict, name: str, where: str, fields: Fields = Fields()) -> str:
    """A target is text; a number (a class id, a score) is read as its shortest text, so 1 and 1.0 are
    one label, `1`; a list of strings is a list target's terms ("jab, shot")."""
    value = row.get(name)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        value = int(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return _text_field(row, name, where, fields, joiner=", ")


def _hint(name: str, fields: Fields) -> str:
    if name in (fields.input, fields.target):
        return ": check --input-field/--target-field"
    role = "input" if any(name == pair[0] for pair in CONVENTIONS) else "target"
    return f"; name the {role} field with --{role}-field FIELD"


def _from_messages(messages, where: str) -> tuple[str, str, str | None]:
    """OpenAI chat rows: the last user turn is the input, the final assistant turn the target, the
    system message (if any) the instruction."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise TuneforgeError(f"{where}: field 'messages' must be a list of objects with 'role' and 'content'")
    if not messages or messages[-1].get("role") != "assistant":
        raise TuneforgeError(f"{where}: field 'messages' must end with an assistant message (the target)")
    users = [m for m in messages[:-1] if m.get("role") == "user"]
    if not users:
        raise TuneforgeError(f"{where}: field 'messages' has no user message before the assistant's")
    source = _text_field(users[-1], "content", f"{where}: messages[user]")
    target = _text_field(messages[-1], "content", f"{where}: messages[assistant]")
    systems = [m for m in messages if m.get("role") == "system"]
    system = _text_field(systems[0], "content", f"{where}: messages[system]").strip() if systems else None
    return source, target, system


def _check_unique_ids(name: str, examples: list[Example]) -> None:
    seen = set()
    for ex in examples:
        if ex.id in seen:
            raise TuneforgeError(f"{ex.where or name}: field 'id' repeats the value {ex.id!r}")
        seen.add(ex.id)
