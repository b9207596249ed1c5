"""The rows of a data file, whatever its format: JSONL, a JSON array, CSV, TSV, Parquet, or a
directory a Hugging Face `datasets` object was saved to (`save_to_disk`).

Each row comes with where it was read (`file:line` for text formats, `file: row N` otherwise), so
every later message can name it. The format is read from the suffix; a `.json`/`.jsonl` file is a
JSON array when its first character is `[`, else one object per line.
"""

import csv
import io
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
    """The file's text; UTF-8, with or without the byte-order mark Excel and Notepad write."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise TuneforgeError(f"{path}:{line}: not UTF-8 text (byte {e.start}: {raw[e.start]:#04x}); save the file "
                             "as UTF-8") from None


def lines_of(text: str) -> list[str]:
    """A text file's lines: split at line feeds only (CR LF too), not at the other characters
    `str.splitlines` breaks at (form feed, U+2028, ...), which JSON strings may hold as they are."""
    return [line.removesuffix("\r") for line in text.split("\n")]


MAX_NESTING = "nested too deeply to read (thousands of levels); a row holds text fields"


def _jsonl_rows(path: Path, text: str):
    for lineno, line in enumerate(lines_of(text), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            hint = _whole_file_hint(text)
            raise TuneforgeError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno}){hint}") from None
        except RecursionError:
            raise TuneforgeError(f"{path}:{lineno}: {MAX_NESTING}") from None
        if not isinstance(row, dict):
            raise TuneforgeError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}:{lineno}", f"{path.stem}-{lineno}", row


def _whole_file_hint(text: str) -> str:
    """Why a JSONL line failed when the file is one JSON document spread over lines."""
    try:
        whole = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
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
    except RecursionError:
        raise TuneforgeError(f"{path}: {MAX_NESTING}") from None
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise TuneforgeError(f"{path}: row {i}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}: row {i}", f"{path.stem}-{i}", row


def _table_rows(path: Path, delimiter: str):
    """Rows of a CSV/TSV file as the csv module reads them: a quoted cell may hold line breaks (each
    row's line is the line it starts on), and a header naming a column twice is refused."""
    reader = csv.reader(io.StringIO(text_of(path), newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    check_header(path, header)
    start = reader.line_num + 1
    for cells in reader:
        lineno, start = start, reader.line_num + 1
        if not cells:
            continue
        if len(cells) > len(header):
            raise TuneforgeError(f"{path}:{lineno}: more cells than header columns ({field_names(header)})")
        row = dict(zip(header, cells))
        yield f"{path}:{lineno}", f"{path.stem}-{lineno}", {k: v for k, v in row.items() if v != ""}


def check_header(path: Path, header: list[str]) -> None:
    """Refuse a table header that names a column twice (a reader would keep only one of them)."""
    seen = set()
    for name in header:
        if name in seen:
            raise TuneforgeError(f"{path}:1: the header names the column {name!r} twice; rename one")
        seen.add(name)


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
