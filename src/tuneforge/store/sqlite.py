"""The prediction store: one SQLite file (WAL), written by batch jobs, read by the server.

It knows keys, inputs and outputs, never models. Writes go in transactions of many rows; a key is
stored at most once (INSERT OR IGNORE), so a job killed at any moment and run again stores each input
exactly once. Readers see committed rows only, while a writer goes on."""

import json
import sqlite3
import time
from pathlib import Path

from tuneforge.store.keys import canonical_json, prediction_key, setting_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (id TEXT PRIMARY KEY, spec TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS predictions (
    key TEXT PRIMARY KEY, setting TEXT NOT NULL, input TEXT NOT NULL, output TEXT, error TEXT,
    meta TEXT, created REAL NOT NULL, hits INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS predictions_setting ON predictions (setting);
CREATE TABLE IF NOT EXISTS misses (
    key TEXT PRIMARY KEY, setting TEXT NOT NULL, input TEXT NOT NULL, count INTEGER NOT NULL, first_seen REAL NOT NULL);
"""


class PredictionStore:
    """A prediction store in the SQLite file at `path` (created when missing)."""

    def __init__(self, path: str | Path, *, readonly: bool = False, timeout: float = 30.0):
        self.path = Path(path)
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        self.db = sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False, isolation_level=None)
        if not readonly:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a process kill
            self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def add_setting(self, spec: dict) -> str:
        """Register a job's setting; returns its id (the same spec always gives the same id)."""
        sid = setting_id(spec)
        self.db.execute("INSERT OR IGNORE INTO settings VALUES (?, ?, ?)", (sid, canonical_json(spec), time.time()))
        return sid

    def settings(self) -> dict[str, dict]:
        return {sid: json.loads(spec) for sid, spec in self.db.execute("SELECT id, spec FROM settings ORDER BY created")}

    def missing(self, setting: str, inputs: list[str]) -> list[str]:
        """The inputs that have no row yet under `setting` (in the given order, without duplicates)."""
        keys = {prediction_key(setting, text): text for text in dict.fromkeys(inputs)}
        have = set()
        key_list = list(keys)
        for start in range(0, len(key_list), 500):
            chunk = key_list[start : start + 500]
            marks = ",".join("?" * len(chunk))
            have.update(k for (k,) in self.db.execute(f"SELECT key FROM predictions WHERE key IN ({marks})", chunk))
        return [text for key, text in keys.items() if key not in have]

    def put_many(self, setting: str, rows: list[dict]) -> int:
        """Store rows {"input", "output" | "error", "meta"?} in one transaction; returns how many were new."""
        now = time.time()
        values = [(prediction_key(setting, r["input"]), setting, r["input"], r.get("output"), r.get("error"),
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
                        (prediction_key(setting, text), setting, text, time.time()))

    def misses(self, setting: str | None = None) -> list[str]:
        query, args = "SELECT input FROM misses", ()
        if setting:
            query, args = query + " WHERE setting = ?", (setting,)
        return [t for (t,) in self.db.execute(query + " ORDER BY first_seen, key", args)]

    def stats(self) -> dict:
        """Rows, failures, hits and misses per setting, and the file's size."""
        per = {}
        for sid, n, failed, hits in self.db.execute(
                "SELECT setting, COUNT(*), SUM(error IS NOT NULL), SUM(hits) FROM predictions GROUP BY setting"):
            per[sid] = {"rows": n, "failed": failed or 0, "hits": hits or 0}
        for sid, n in self.db.execute("SELECT setting, COUNT(*) FROM misses GROUP BY setting"):
            per.setdefault(sid, {"rows": 0, "failed": 0, "hits": 0})["queued_misses"] = n
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return {"path": str(self.path), "bytes": size, "settings": per}

    def _transaction(self):
        return _Transaction(self.db)


class _Transaction:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, tb):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
