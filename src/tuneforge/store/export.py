"""Exporting a prediction store: JSONL (always) or Parquet (with pyarrow), written atomically."""

import json
from pathlib import Path

from tuneforge.atomic import atomic_path
from tuneforge.errors import TuneforgeError

FORMATS = (".jsonl", ".parquet")


def check_out(out: str | Path) -> Path:
    """`out` as a Path, if it names a file of a format we write in a folder that exists."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        given = out.suffix or "no extension"
        raise TuneforgeError(f"--out {out}: export to a {' or '.join(FORMATS)} file, not {given}")
    if not out.parent.is_dir():
        raise TuneforgeError(f"--out {out}: the folder {out.parent} does not exist; create it first")
    if out.is_dir():
        raise TuneforgeError(f"--out {out} is a folder; give a file name")
    return out


def export(store, out: str | Path) -> int:
    """Write every row of `store` to `out` (.jsonl or .parquet); returns the number of rows."""
    out = check_out(out)
    rows = list(store.rows())
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".jsonl":
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        else:
            _write_parquet(rows, tmp)
    return len(rows)


def _write_parquet(rows: list[dict], path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise TuneforgeError("Parquet export needs pyarrow: pip install pyarrow") from None
    table = pa.Table.from_pylist([{**r, "meta": json.dumps(r["meta"]) if r["meta"] else None} for r in rows])
    pq.write_table(table, path)
