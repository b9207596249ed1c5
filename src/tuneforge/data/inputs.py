"""Inputs of a batch job: JSONL (`input`, or any task row shape), CSV (`input` column) or plain lines.

A line that cannot be read (bad encoding, bad JSON) does not stop the job: it comes back as a failed
row, recorded in the store with its error. A synonym job's topics are stricter (`read_topics`), and
its live queries come with the topics each should match (`read_queries`)."""

import codecs
import csv
import io
import json
from importlib import resources
from pathlib import Path

from tuneforge.data.files import MAX_NESTING, check_header, read_rows
from tuneforge.data.tasks import example_from_row
from tuneforge.errors import TuneforgeError


def read_inputs(path: str | Path, *, unique: bool = True, blank_lines: bool = True) -> tuple[list[str], list[dict]]:
    """(inputs in file order, without duplicates when `unique`; failed rows {"input", "error"}). A
    blank line is skipped, or with `blank_lines` False (not CSV) an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise TuneforgeError(f"{path}: no such file")
    raw = path.read_bytes().removeprefix(codecs.BOM_UTF8).split(b"\n")
    inputs, failed = [], []
    lines = []
    for lineno, chunk in enumerate(raw, start=1):
        try:
            lines.append((lineno, chunk.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError as e:
            failed.append({"input": f"{path.name}:{lineno} (undecodable)", "error": f"line {lineno}: not UTF-8 "
                                                                                    f"(byte {e.start})"})
    suffix = path.suffix.lower()
    if suffix == ".csv":
        inputs = _from_csv(path, lines, failed)
    else:
        for lineno, line in lines:
            if not line.strip():
                if not blank_lines and lineno < len(raw):  # (the file's final newline ends the last line)
                    raise TuneforgeError(f"{path}:{lineno}: empty line (every line must hold an input)")
                continue
            if suffix in (".jsonl", ".json"):
                text = _from_json(path, lineno, line, failed)
                if text is not None:
                    inputs.append(text)
            else:
                inputs.append(line.strip())
    if not inputs and not failed:
        raise TuneforgeError(f"{path}: no inputs in the file")
    return list(dict.fromkeys(inputs)) if unique else inputs, failed


def _from_json(path: Path, lineno: int, line: str, failed: list[dict]) -> str | None:
    try:
        row = json.loads(line)
        if isinstance(row, str):
            return row.strip()
        if not isinstance(row, dict):
            raise ValueError("expected an object or a string")
        if "input" in row and "target" not in row:
            row = {**row, "target": "-"}
        if "prompt" in row and "completion" not in row:
            row = {**row, "completion": "-"}
        return example_from_row(row, f"{path}:{lineno}", "-").input
    except RecursionError:
        failed.append({"input": f"{path.name}:{lineno} (unreadable)", "error": f"line {lineno}: {MAX_NESTING}"})
        return None
    except (ValueError, TuneforgeError) as e:
        failed.append({"input": f"{path.name}:{lineno} (unreadable)", "error": f"line {lineno}: {e}"})
        return None


def _from_csv(path: Path, lines: list[tuple[int, str]], failed: list[dict]) -> list[str]:
    reader = csv.DictReader(io.StringIO("\n".join(line for _, line in lines)))
    if reader.fieldnames is None or "input" not in reader.fieldnames:
        raise TuneforgeError(f"{path}:1: the header has no 'input' column")
    check_header(path, reader.fieldnames)
    return [row["input"].strip() for row in reader if row.get("input", "").strip()]


def read_unlabeled(path: str | Path) -> list[str]:
    """A distillation pool's unlabeled inputs: as `read_inputs` reads them, but a line that cannot be
    read stops the run (it would silently shrink the pool)."""
    inputs, failed = read_inputs(path)
    if failed:
        raise TuneforgeError(f"{path}: {failed[0]['error']} (unlabeled inputs)")
    return inputs


def read_topics(path: str | Path) -> list[str]:
    """A topics file's topics (plain lines, JSONL or CSV, as batch inputs are read); an empty line or a
    line that cannot be read is an error naming the line, not a topic skipped."""
    topics, failed = read_inputs(path, blank_lines=False)
    if failed:
        raise TuneforgeError(f"{path}: {failed[0]['error']}")
    return topics


def builtin_queries_path() -> Path:
    """The built-in live queries for the built-in `synonyms` topics."""
    return Path(str(resources.files("tuneforge.data") / "builtin" / "queries" / "synonyms.jsonl"))


def read_queries(path: str | Path) -> list[dict]:
    """Live queries with the topics each should match: JSONL rows {"query": str, "topics": [str]}."""
    queries = []
    for where, default_id, row in read_rows(Path(path)):  # JSONL (or a JSON array), read as task files are
        if not (isinstance(row.get("query"), str) and isinstance(row.get("topics"), list)):
            raise TuneforgeError(f"{where}: expected {{\"query\": text, \"topics\": [topic, ...]}}")
        topics = [str(t) for t in row["topics"]]
        queries.append({"id": row.get("id", default_id), "query": row["query"], "topics": topics})
    return queries
