"""Atomic writes, the one way every writer in tuneforge puts a file or a folder in place: write a
temporary sibling, fsync it, rename it over the target.

A reader (or a process killed mid-write) sees either the old target or the new one, never half; a
write that fails leaves no temporary behind."""

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from tuneforge.errors import TuneforgeError


@contextmanager
def atomic_path(target: str | Path, *, folder: bool = False):
    """Yield a temporary sibling of `target` to write (an empty folder when `folder`); when the block
    ends, fsync it and rename it over `target`. A folder being replaced is moved aside first and
    deleted only once the new one is in place."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    _remove(tmp)  # left by a killed process that had our pid
    if folder:
        tmp.mkdir()
    try:
        yield tmp
        _fsync(tmp)
        if folder and target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            _remove(old)
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        _remove(tmp)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def _fsync(path: Path) -> None:
    """Flush a file, or every file in a folder tree, to the disk."""
    for p in [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]:
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
