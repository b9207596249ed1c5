"""Atomic writes: write to a temporary name in the same folder, then rename over the target.

A reader (or a process killed mid-write) sees either the old file or the new one, never half."""

import json
import os
import tempfile
from pathlib import Path

from tuneforge.errors import TuneforgeError


def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # nothing half-written stays behind
        raise
    return path


def write_json_atomic(path: str | Path, data) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def check_writable(path: str | Path, *, folder: bool) -> None:
    """Refuse, before any work starts, an output `path` (a file, or a `folder`) that cannot be
    written: a folder where a file goes or the reverse, a file on the way, a place without write
    permission. Probes the nearest existing folder with a temporary file it removes again."""
    path = Path(path)
    want, other = ("a folder", "file") if folder else ("a file", "folder")
    if path.exists() and path.is_dir() != folder:
        raise TuneforgeError(f"{path}: is a {other}; give {want} for this output")
    start = path.absolute() if folder else path.absolute().parent
    existing = next(p for p in (start, *start.parents) if p.exists())
    if not existing.is_dir():
        raise TuneforgeError(f"{path}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".tuneforge-probe-")
    except OSError as e:
        raise TuneforgeError(f"{path}: cannot write in {existing} ({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)
