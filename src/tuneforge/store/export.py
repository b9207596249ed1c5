"""Exporting a prediction store: JSONL (always) or Parquet (with pyarrow), written atomically."""

import json
import os
from pathlib import Path

from tuneforge.errors import TuneforgeError


def export(store, out: str | Path) -> int:
    """Write every row of `store` to `out` (.jsonl or .parquet); returns the number of rows."""
    out = Path(out)
    rows = list(store.rows())
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if out.suffix == ".jsonl":
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif out.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise TuneforgeError("Parquet export needs pyarrow: pip install pyarrow") from None
        table = pa.Table.from_pylist([{**r, "meta": json.dumps(r["meta"]) if r["meta"] else None} for r in rows])
        pq.write_table(table, tmp)
    else:
        raise TuneforgeError(f"{out}: export to .jsonl or .parquet")
    os.replace(tmp, out)
    return len(rows)
