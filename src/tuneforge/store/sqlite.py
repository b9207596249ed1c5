"""The prediction store: one SQLite file (WAL), written by batch jobs, read by the server.

It knows keys, inputs and outputs, never models. Writes go in transactions of many rows; a key is
stored at most once (INSERT OR IGNORE), so a job killed at any moment and run again stores each input
exactly once. Readers see committed rows only, while a writer goes on."""

import json
import shlex
import sqlite3
import time
from functools import cache
from pathlib import Path
from urllib.parse import quote

from tuneforge.errors import TuneforgeError
from tuneforge.store.keys import canonical_json, normalize_input, prediction_key, setting_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (id TEXT PRIMARY KEY, spec TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
    key TEXT PRIMARY KEY, setting TEXT NOT NULL, input TEXT NOT NULL, output TEXT, error TEXT,
    meta TEXT, created REAL NOT NULL, hits INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS predictions_setting ON predictions (setting);
CREATE TABLE IF NOT EXISTS misses (
    key TEXT PRIMARY KEY, setting TEXT NOT NULL, input TEXT NOT NULL, count INTEGER NOT NULL, first_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pools (id TEXT PRIMARY KEY, examples TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names (
    name TEXT PRIMARY KEY, setting TEXT NOT NULL, route TEXT, created REAL NOT NULL);
"""


class PredictionStore:
    """A prediction store in the SQLite file at `path` (created when missing, in a folder that exists).

    A path that cannot hold a store (a missing folder, a file that is not SQLite, another
    application's SQLite file) raises TuneforgeError before anything is written."""

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = 30.0):
        self.path = Path(path)
        _check_place(self.path, readonly)
        self.db = _connect(self.path, readonly, timeout)
        try:
            _check_tables(self.db, self.path)
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a process kill
                self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise TuneforgeError(_open_failed(self.path, e)) from None
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def add_setting(self, spec: dict) -> str:
        """Register a job's setting; returns its id (the same spec always gives the same id)."""
        sid = setting_id(spec)
        self.db.execute("INSERT OR IGNORE INTO settings VALUES (?, ?, ?)", (sid, canonical_json(spec), time.time()))
        return sid

    def settings(self) -> dict[str, dict]:
        return {sid: json.loads(spec) for sid, spec in self.db.execute("SELECT id, spec FROM settings ORDER BY created")}

    def add_pool(self, examples: list[list[str]]) -> str:
        """Keep a demonstration pool ([input, target, id] rows: a train split) for settings that pick
        each input's demonstrations from it; returns its fingerprint (the same pool, the same id)."""
        pid = setting_id(examples)
        self.db.execute("INSERT OR IGNORE INTO pools VALUES (?, ?)", (pid, canonical_json(examples)))
        return pid

    def pool(self, pid: str) -> list[list[str]]:
        """The pool `add_pool` kept under `pid`."""
        row = self.db.execute("SELECT examples FROM pools WHERE id = ?", (pid,)).fetchone() \
            if "pools" in _tables(self.db) else None
        if row is None:
            raise TuneforgeError(f"{self.path}: the demonstration pool {pid[:12]} of a setting is missing")
        return json.loads(row[0])

    def name_setting(self, name: str, setting: str, route: str | None = None) -> None:
        """Serve `setting` under the readable `name` (a name already given moves to this setting)."""
        self.db.execute("INSERT OR REPLACE INTO names VALUES (?, ?, ?, ?)", (name, setting, route, time.time()))

    def names(self) -> dict[str, dict]:
        """Each named setting's newest name and route: {setting id: {"name", "route"}}."""
        if "names" not in _tables(self.db):  # a store written before names existed, opened read-only
            return {}
        return {sid: {"name": name, "route": route} for name, sid, route in
                self.db.execute("SELECT name, setting, route FROM names ORDER BY created, name")}

    def missing(self, setting: str, inputs: list[str]) -> list[str]:
        """The inputs that have no row yet under `setting`, in normal form (`normalize_input`), in the
        given order, without duplicates."""
        keys = {prediction_key(setting, text): text for text in dict.fromkeys(map(normalize_input, inputs))}
        have = set()
        key_list = list(keys)
        for start in range(0, len(key_list), 500):
            chunk = key_list[start : start + 500]
            marks = ",".join("?" * len(chunk))
            have.update(k for (k,) in self.db.execute(f"SELECT key FROM predictions WHERE key IN ({marks})", chunk))
        return [text for key, text in keys.items() if key not in have]

    def put_many(self, setting: str, rows: list[dict]) -> int:
        """Store rows {"input", "output" | "error", "meta"?} in one transaction, each input in normal form;
        returns how many were new."""
        now = time.time()
        values = [(prediction_key(setting, r["input"]), setting, normalize_input(r["input"]), r.get("output"),
                   r.get("error"),
                   canonical_json(r["meta"]) if r.get("meta") is not None else None, now) for r in rows]
        with self._transaction():
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO predictions (key, setting, input, output, error, meta, created)"
                                " VALUES (?, ?, ?, ?, ?, ?, ?)", values)
            new = self.db.total_changes - before
            self.db.executemany("DELETE FROM misses WHERE key = ?", [(v[0],) for v in values])
        return new

    def get(self, setting: str, text: str) -> dict | None:
        """The stored row of one input, or None."""
        row = self.db.execute("SELECT input, output, error, meta FROM predictions WHERE key = ?",
                              (prediction_key(setting, text),)).fetchone()
        if row is None:
            return None
        return {"input": row[0], "output": row[1], "error": row[2], "meta": json.loads(row[3]) if row[3] else None}

    def get_many(self, setting: str, texts: list[str], *, meta: bool = True) -> dict[str, dict]:
        """The stored rows of many inputs at once, by input in normal form (absent inputs are absent);
        without `meta`, the rows' meta is not read (a lookup needs only the answer)."""
        keys = {prediction_key(setting, text): normalize_input(text) for text in texts}
        found, key_list = {}, list(keys)
        column = "meta" if meta else "NULL"
        for start in range(0, len(key_list), 500):
            chunk = key_list[start : start + 500]
            query = f"SELECT key, output, error, {column} FROM predictions WHERE key IN ({','.join('?' * len(chunk))})"
            for key, output, error, extra in self.db.execute(query, chunk):
                found[keys[key]] = {"input": keys[key], "output": output, "error": error,
                                    "meta": json.loads(extra) if extra else None}
        return found

    def count(self, setting: str) -> int:
        """How many rows `setting` has."""
        return self.db.execute("SELECT COUNT(*) FROM predictions WHERE setting = ?", (setting,)).fetchone()[0]

    def rows(self, setting: str | None = None):
        """Every stored row (of one setting), oldest first."""
        query = "SELECT setting, input, output, error, meta, created, hits FROM predictions"
        args = ()
        if setting:
            query, args = query + " WHERE setting = ?", (setting,)
        for s, i, o, e, m, c, h in self.db.execute(query + " ORDER BY created, key", args):
            yield {"setting": s, "input": i, "output": o, "error": e, "meta": json.loads(m) if m else None,
                   "created": c, "hits": h}

    def add_hits(self, counts: dict[tuple[str, str], int]) -> None:
        """Add lookup hit counts {(setting, input): n} (the server flushes its counters here)."""
        with self._transaction():
            self.db.executemany("UPDATE predictions SET hits = hits + ? WHERE key = ?",
                                [(n, prediction_key(s, t)) for (s, t), n in counts.items()])

    def record_miss(self, setting: str, text: str) -> None:
        """Remember an input a client asked for and the store lacked (for the next batch job)."""
        self.db.execute("INSERT INTO misses VALUES (?, ?, ?, 1, ?) ON CONFLICT(key) DO UPDATE SET count = count + 1",
                        (prediction_key(setting, text), setting, normalize_input(text), time.time()))

    def misses(self, setting: str | None = None) -> list[str]:
        query, args = "SELECT input FROM misses", ()
        if setting:
            query, args = query + " WHERE setting = ?", (setting,)
        return [t for (t,) in self.db.execute(query + " ORDER BY first_seen, key", args)]

    def stats(self) -> dict:
        """Per setting: its name, route, model, task and kind, then rows, failures, hits and queued
        misses; and the file's size."""
        names, per = self.names(), {}
        for sid, spec in self.settings().items():
            per[sid] = {**describe(spec, names.get(sid)), "rows": 0, "failed": 0, "hits": 0, "queued_misses": 0}
        for sid, n, failed, hits in self.db.execute(
                "SELECT setting, COUNT(*), SUM(error IS NOT NULL), SUM(hits) FROM predictions GROUP BY setting"):
            per.setdefault(sid, {"queued_misses": 0}).update(rows=n, failed=failed or 0, hits=hits or 0)
        for sid, n in self.db.execute("SELECT setting, COUNT(*) FROM misses GROUP BY setting"):
            per.setdefault(sid, {"rows": 0, "failed": 0, "hits": 0})["queued_misses"] = n
        files = [Path(f"{self.path}{suffix}") for suffix in ("", "-wal", "-shm")]
        size = sum(f.stat().st_size for f in files if f.is_file())
        return {"path": str(self.path), "bytes": size, "settings": per}

    def _transaction(self):
        return _Transaction(self.db)


def describe(spec: dict, named: dict | None) -> dict:
    """A setting in an operator's words: the model id it is served as (its name, else its hash), the
    route, the model's folder, the task and whether it ranks labels or generates."""
    return {"name": named["name"] if named else None, "route": named["route"] if named else None,
            "model": spec.get("model", {}).get("path"), "task": spec.get("task"), "mode": spec.get("mode")}


def serve_command(path: str | Path, model: str | None) -> str:
    """The command that serves the store at `path`, answering as `model` (a setting's name or id)."""
    return f"tuneforge serve --store {shlex.quote(str(path))}" + (f" --setting {shlex.quote(model)}" if model else "")


class _Transaction:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, tb):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def check_store(path: str | Path) -> None:
    """Refuse a path that cannot hold a store, writing nothing: call it before long work that ends
    in writing the store (a batch job checks before its model loads)."""
    path = Path(path)
    _check_place(path, readonly=False)
    if path.exists():
        PredictionStore(path, readonly=True).close()


def _check_place(path: Path, readonly: bool) -> None:
    """A store file must exist to be read, and a new one needs a folder to go in (made by no one but
    the user: a mistyped folder should not quietly become a new tree)."""
    if path.is_dir():
        raise TuneforgeError(f"{path} is a folder, not a store file")
    if path.exists():
        return
    if readonly:
        raise TuneforgeError(f"{path}: no such store file")
    if not path.parent.exists():
        raise TuneforgeError(f"{path}: the folder {path.parent} does not exist; create it first")
    if not path.parent.is_dir():
        raise TuneforgeError(f"{path}: {path.parent} is a file, not a folder")


def _connect(path: Path, readonly: bool, timeout: float) -> sqlite3.Connection:
    """A connection by a quoted URI, so that '?', '#' and '%' in a file name stay part of the name."""
    uri = f"file:{quote(str(path.absolute()))}" + ("?mode=ro" if readonly else "")
    try:
        return sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False, isolation_level=None)
    except sqlite3.DatabaseError as e:
        raise TuneforgeError(_open_failed(path, e)) from None


def _open_failed(path: Path, error: sqlite3.DatabaseError) -> str:
    if "not a database" in str(error):
        return f"{path} is not a SQLite file ({error}): give a prediction store or a new file name"
    if "unable to open" in str(error):
        return f"{path}: cannot create or open the store ({error}); is its folder writable?"
    return f"{path}: cannot open the store ({error})"


def _tables(db: sqlite3.Connection) -> dict[str, frozenset[str]]:
    """Each table and view of `db` (SQLite's own left out) with its column names."""
    names = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                                            "AND name NOT LIKE 'sqlite!_%' ESCAPE '!'")]
    return {name: frozenset(c for (c,) in db.execute("SELECT name FROM pragma_table_info(?)", (name,)))
            for name in names}


@cache
def _store_tables() -> dict[str, frozenset[str]]:
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    tables = _tables(db)
    db.close()
    return tables


def _check_tables(db: sqlite3.Connection, path: Path) -> None:
    """Refuse another application's SQLite file (before anything is written into it)."""
    ours = _store_tables()
    foreign = sorted(name for name, columns in _tables(db).items() if ours.get(name) != columns)
    if foreign:
        raise TuneforgeError(f"{path} is another application's SQLite file, not a prediction store (tables not "
                             f"a store's: {', '.join(foreign)}); give a store written by tuneforge, or a new file")
