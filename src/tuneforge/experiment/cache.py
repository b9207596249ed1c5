"""The stage cache: finished experiment stages kept by their hash, for any later run in any folder.

A stage finished in a run folder is kept as `<cache>/<hash>/` (default cache:
`<tuneforge home>/cache/stages`): `entry.json` (its stage and kind, the run folder it was made in,
when) and `stage/`, a copy of its stage folder. A run whose stage has that hash takes the folder
instead of running the stage again.

Files are hard-linked where the filesystem allows (a model is not stored twice), else copied; a
finished stage's files are never written in place, so the cache and the run folders that share a
file keep it right. The JSON files naming paths in the run folder a stage was made in are rewritten,
when the stage is taken into another, to name the same place there (a model_dir, say).

An entry is written under a temporary name (`.tmp-*`) and renamed into place once complete: a run
sees it whole or not at all; of two runs keeping the same hash at once the first rename wins and the
other drops its copy; a killed write leaves only a temporary folder that no run trusts and `clear`
removes.

A batch job (the `batch` and `synonyms` stages) writes rows into its run's prediction store; it
keeps them in its stage folder too (`rows.json`), and a run taking it from the cache puts them into
its own store (`stages.restore_rows`).
"""

import json
import os
import secrets
import shutil
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

from tuneforge.atomic import atomic_path, write_json_atomic

ENTRY = "entry.json"


def cache_root(cache: str | Path | bool | None = True) -> Path | None:
    """The cache's folder: True for `<tuneforge home>/cache/stages`, a folder of one's own, or None
    (False, None or "none": no cache)."""
    if cache is None or cache is False or str(cache) == "none":
        return None
    if cache is True:
        from tuneforge.model.load import tuneforge_home

        return tuneforge_home() / "cache" / "stages"
    return Path(cache).resolve()


def relocate(value, moves: list[tuple[str, str]]):
    """`value` (JSON data) with each string that is a path at or under a moved folder `old` naming the
    same place under its `new` (the first move that matches wins); the rest as it was."""
    if isinstance(value, dict):
        return {k: relocate(v, moves) for k, v in value.items()}
    if isinstance(value, list):
        return [relocate(v, moves) for v in value]
    if isinstance(value, str):
        for old, new in moves:
            if value == old or value.startswith(old + os.sep):
                return new + value[len(old):]
    return value


def read_finished(stage_dir: Path, digest: str, run_dir: Path) -> dict | None:
    """The record of the stage finished in `stage_dir` with this hash (None if there is none), its
    paths made to name `run_dir` if the folder was made elsewhere and moved or copied here."""
    try:
        record = json.loads((stage_dir / "result.json").read_text())
    except FileNotFoundError:
        return None
    if record["hash"] != digest:
        return None
    return relocate(record, _moves(_origin(stage_dir), stage_dir, run_dir))


def take(root: Path, digest: str, stage_dir: Path, run_dir: Path, echo) -> dict | None:
    """The kept stage of this hash put in place as `stage_dir` (atomically), its paths moved into
    `run_dir`; its record, or None when the cache has no such stage (or it cannot be read)."""
    entry = root / digest
    try:
        meta = json.loads((entry / ENTRY).read_text())
        if meta["hash"] != digest or json.loads((entry / "stage" / "result.json").read_text())["hash"] != digest:
            return None
        copy = partial(_copy_relocated, _moves(meta, stage_dir, run_dir))
        with atomic_path(stage_dir, folder=True) as tmp:
            shutil.copytree(entry / "stage", tmp, dirs_exist_ok=True, copy_function=copy)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as e:  # damaged, or removed while we copied: run the stage
        echo(f"stage {stage_dir.name}: cache entry {entry} unreadable ({e}); running the stage")
        return None
    return json.loads((stage_dir / "result.json").read_text())


def keep(root: Path, stage_dir: Path, echo) -> None:
    """Keep the finished stage in `stage_dir` in the cache (nothing to do when it is kept already).
    A cache that cannot be written costs the next run its reuse, never this run its result."""
    origin = _origin(stage_dir)
    entry = root / origin["hash"]
    if (entry / ENTRY).is_file():
        return
    tmp = root / f".tmp-{origin['hash'][:12]}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(stage_dir, tmp / "stage", copy_function=_link_or_copy)
        write_json_atomic(tmp / ENTRY, {"hash": origin["hash"], "stage": stage_dir.name, "kind": origin["kind"],
                                        "run_dir": origin["run_dir"], "created": _now()})
        os.rename(tmp, entry)  # fails when another run kept the same hash first: theirs stands
    except OSError as e:
        if not (entry / ENTRY).is_file():
            echo(f"stage {stage_dir.name}: not kept in the cache {root} ({e.strerror or e})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _origin(stage_dir: Path) -> dict:
    """What the stage's input.json says: its hash and kind, and the run folder its paths name."""
    spec = json.loads((stage_dir / "input.json").read_text())
    return {"hash": spec["hash"], "kind": spec["kind"], "run_dir": spec.get("run_dir", str(stage_dir.parent.parent)),
            "stage": stage_dir.name}


def _moves(origin: dict, stage_dir: Path, run_dir: Path) -> list[tuple[str, str]]:
    """From the folders a stage was made in to those it is in now: its own folder first (its name may
    differ), then the rest of its run folder."""
    old_run = origin["run_dir"]
    return [(os.path.join(old_run, "stages", origin["stage"]), str(stage_dir)), (old_run, str(run_dir))]


def _copy_relocated(moves: list[tuple[str, str]], src: str, dst: str) -> None:
    """A JSON file that names a moved path is written anew with the path moved; any other file is linked."""
    if src.endswith(".json"):
        text = Path(src).read_text(encoding="utf-8")
        if any(old in text or json.dumps(old)[1:-1] in text for old, _ in moves):
            Path(dst).write_text(json.dumps(relocate(json.loads(text), moves), indent=2) + "\n", encoding="utf-8")
            return
    _link_or_copy(src, dst)


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link, or a copy flushed to the disk where links cannot be made (another filesystem)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
        with open(dst, "rb") as fh:
            os.fsync(fh.fileno())


def entries(root: Path) -> list[dict]:
    """Every kept stage, oldest first: its entry.json, plus `bytes` (its files) and `own_bytes` (what
    removing it frees: the files no run folder shares by a hard link)."""
    found = []
    for entry in root.iterdir() if root.is_dir() else []:
        try:
            meta = json.loads((entry / ENTRY).read_text())
        except (OSError, ValueError):
            continue  # not an entry
        if meta.get("hash") != entry.name:
            continue  # a temporary folder
        files = _files([entry])
        found.append({**meta, "path": str(entry), "bytes": _bytes(files), "own_bytes": _freed(files)})
    return sorted(found, key=lambda e: e["created"])


def leftovers(root: Path) -> list[Path]:
    """Temporary folders of writes that were killed (or are under way)."""
    return sorted(root.glob(".tmp-*")) if root.is_dir() else []


def clear(root: Path, older_than_days: float | None = None) -> dict:
    """Remove the kept stages (with `older_than_days`, those made longer ago only) and the leftovers
    of killed writes; returns how many went, their bytes and the bytes freed on the disk."""
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    doomed = [Path(e["path"]) for e in entries(root)
              if cutoff is None or datetime.fromisoformat(e["created"]).timestamp() < cutoff]
    stale = [p for p in leftovers(root) if cutoff is None or p.stat().st_mtime < cutoff]
    files = _files(doomed + stale)
    summary = {"removed": len(doomed), "leftovers": len(stale), "bytes": _bytes(files), "freed": _freed(files)}
    for path in doomed + stale:
        shutil.rmtree(path, ignore_errors=True)
    return summary


def _files(folders: list[Path]) -> list[os.stat_result]:
    return [p.lstat() for folder in folders for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]


def _bytes(files: list[os.stat_result]) -> int:
    return sum({(s.st_dev, s.st_ino): s.st_size for s in files}.values())


def _freed(files: list[os.stat_result]) -> int:
    """The bytes freed by removing these files: those of files with no hard link outside them."""
    links: dict[tuple, list] = {}
    for s in files:
        links.setdefault((s.st_dev, s.st_ino), [s.st_size, s.st_nlink, 0])[2] += 1
    return sum(size for size, nlink, here in links.values() if nlink <= here)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")
