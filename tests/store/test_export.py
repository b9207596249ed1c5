"""Exports: JSONL and Parquet, written atomically; any other --out is refused before anything is written."""

import json

import pytest

from tuneforge.errors import TuneforgeError
from tuneforge.store.export import export
from tuneforge.store.sqlite import PredictionStore


@pytest.fixture
def store(tmp_path):
    store = PredictionStore(tmp_path / "s.db")
    sid = store.add_setting({"task": "fruit"})
    store.put_many(sid, [{"input": "plum", "output": "drupe", "meta": {"n": 1}}, {"input": "fig", "error": "long"}])
    yield store
    store.close()


def test_jsonl_export_has_every_row(store, tmp_path):
    assert export(store, tmp_path / "e.jsonl") == 2
    lines = (tmp_path / "e.jsonl").read_text().splitlines()
    rows = sorted((json.loads(line) for line in lines), key=lambda r: r["input"])
    assert [(r["input"], r["output"], r["error"], r["meta"]) for r in rows] == [
        ("fig", None, "long", None), ("plum", "drupe", None, {"n": 1})]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.jsonl", "s.db", "s.db-shm", "s.db-wal"]


@pytest.mark.parametrize("out, expected", [
    ("e.csv", [".jsonl", ".parquet", ".csv"]),
    ("e", [".jsonl", ".parquet", "no extension"]),
    ("nodir/e.jsonl", ["nodir", "does not exist"]),
])
def test_a_bad_out_is_refused_and_nothing_written(store, tmp_path, out, expected):
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(TuneforgeError) as error:
        export(store, tmp_path / out)
    for part in expected:
        assert part in str(error.value)
    assert "--out" in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
