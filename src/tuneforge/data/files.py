"""The rows of a data file, whatever its format: JSONL, a JSON array, CSV, TSV, Parquet, or a
directory a Hugging Face `datasets` object was saved to (`save_to_disk`).

Each row comes with where it was read (`file:line` for text formats, `file: row N` otherwise), so
every later message can name it. The format is read from the suffix; a `.json`/`.jsonl` file is a
JSON array when its first character is `[`, else one object per line.
"""

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from tuneforge.errors import TuneforgeError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")


def read_rows(path: Path) -> Iterator[tuple[str, str, dict]]:
    """(where, default id, row) for each row of `path`; blank lines are skipped."""
    if path.is_dir():
        yield from _dataset_rows(path)
        return
    if not path.is_file():
        raise TuneforgeError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        yield from _parquet_rows(path)
    elif suffix in TABLE_SUFFIXES:
        yield from _table_rows(path, TABLE_SUFFIXES[suffix])
    else:
        text = text_of(path)  # read once: sniffed, then parsed
        yield from (_array_rows if text.lstrip().startswith("[") else _jsonl_rows)(path, text)


def text_of(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TuneforgeError(f"{path}: not UTF-8 text (byte {e.start})") from None


def _jsonl_rows(path: Path, text: str):
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            hint = _whole_file_hint(text)
            raise TuneforgeError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno}){hint}") from None
        if not isinstance(row, dict):
            raise TuneforgeError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}:{lineno}", f"{path.stem}-{lineno}", row


def _whole_file_hint(text: str) -> str:
    """Why a JSONL line failed when the file is one JSON document spread over lines."""
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return ""
    if isinstance(whole, dict):
        return (f"; the file is one JSON object with keys {field_names(whole)}: give an array of rows "
                "or one object per line")
    return ""


def _array_rows(path: Path, text: str):
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise TuneforgeError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise TuneforgeError(f"{path}: row {i}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}: row {i}", f"{path.stem}-{i}", row


def _table_rows(path: Path, delimiter: str):
    reader = csv.DictReader(text_of(path).splitlines(), delimiter=delimiter)
    # Line 1 is the header, so data rows start at line 2.
    for lineno, row in enumerate(reader, start=2):
        if None in row:
            raise TuneforgeError(f"{path}:{lineno}: more cells than header columns ({field_names(reader.fieldnames)})")
        yield f"{path}:{lineno}", f"{path.stem}-{lineno}", {k: v for k, v in row.items() if v not in (None, "")}


def _parquet_rows(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise TuneforgeError(f"{path}: reading Parquet needs pyarrow: pip install 'tuneforge[parquet]'") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow's errors have many classes; all mean an unreadable file
        raise TuneforgeError(f"{path}: not a readable Parquet file ({str(e).splitlines()[0]})") from None
    for i, row in enumerate(rows, start=1):
        yield f"{path}: row {i}", f"{path.stem}-{i}", {k: v for k, v in row.items() if v is not None}


def is_saved_dataset(path: Path) -> bool:
    """Whether `path` is a folder `datasets` wrote with `save_to_disk` (a Dataset or a DatasetDict)."""
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _dataset_rows(path: Path):
    """A `datasets.Dataset` saved with `save_to_disk`; class-label columns become their names."""
    if not is_saved_dataset(path):
        raise TuneforgeError(f"{path}: a directory, not a data file (nor a dataset saved with `save_to_disk`)")
    try:
        from datasets import ClassLabel, DatasetDict, load_from_disk
    except ImportError:
        raise TuneforgeError(f"{path}: reading a saved dataset needs the datasets package: "
                             "pip install datasets") from None
    data = load_from_disk(str(path))
    if isinstance(data, DatasetDict):
        splits = ", ".join(data)
        raise TuneforgeError(f"{path}: a DatasetDict with splits {splits}: give one split's folder, e.g. "
                             f"--train {path}/{next(iter(data))} --test {path}/<its test split>")
    names = {col: feature.names for col, feature in data.features.items() if isinstance(feature, ClassLabel)}
    for i, row in enumerate(data, start=1):
        row = {k: (names[k][v] if k in names and isinstance(v, int) else v) for k, v in row.items()}
        yield f"{path}: row {i}", f"{path.name}-{i}", {k: v for k, v in row.items() if v is not None}


def field_names(keys) -> str:
    """Field names as a message lists them: `'a', 'b'`, or `none`."""
    return ", ".join(repr(k) for k in keys) if keys else "none"
