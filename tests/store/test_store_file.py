"""Which files a PredictionStore opens: a path that cannot hold a store is refused with a
TuneforgeError naming it, before anything is written; any file name means that file."""

import sqlite3
from pathlib import Path

import pytest

from tuneforge.errors import TuneforgeError
from tuneforge.store.sqlite import PredictionStore


def other_app_db(path: Path, table: str = "users") -> Path:
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute(f"INSERT INTO {table} (name) VALUES ('ada')")
    db.commit()
    db.close()
    return path


def bad_store(case: str, d: Path) -> tuple[Path, list[str]]:
    """(store path, substrings the error must contain) for one kind of bad store."""
    if case == "text file":
        (d / "notsqlite.db").write_text("hello, not a database\n")
        return d / "notsqlite.db", ["notsqlite.db", "not a SQLite file"]
    if case == "missing folder":
        return d / "missing" / "dir" / "s.db", ["missing/dir/s.db", "does not exist"]
    if case == "parent is a file":
        (d / "plain").write_text("x")
        return d / "plain" / "s.db", ["plain/s.db", "not a folder"]
    if case == "unwritable place":  # root ignores chmod; /proc takes no new files, even from root
        return Path("/proc/s.db"), ["/proc/s.db", "cannot create"]
    if case == "a folder":
        return d, [str(d), "folder"]
    if case == "another application's file":
        return other_app_db(d / "app.db"), ["app.db", "another application", "users"]
    if case == "a table of ours with other columns":
        return other_app_db(d / "app.db", table="settings"), ["app.db", "another application", "settings"]
    raise AssertionError(case)


CASES = ["text file", "missing folder", "parent is a file", "unwritable place", "a folder",
         "another application's file", "a table of ours with other columns"]


@pytest.mark.parametrize("readonly", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_a_bad_store_is_refused_and_left_as_it_was(case, readonly, tmp_path):
    path, expected = bad_store(case, tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(TuneforgeError) as error:
        PredictionStore(path, readonly=readonly)
    if not readonly or case not in ("missing folder", "parent is a file", "unwritable place"):
        for part in expected:
            assert part in str(error.value), (part, str(error.value))
    else:
        assert "no such store file" in str(error.value)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not Path("/proc/s.db").exists()


@pytest.mark.parametrize("name", ["a?mode=memory.db", "b#c.db", "c%41d.db", "d%.db", "e f?x=1#y.db"])
def test_a_store_file_has_exactly_the_name_given(name, tmp_path):
    store = PredictionStore(tmp_path / name)
    sid = store.add_setting({"task": "fruit"})
    store.put_many(sid, [{"input": "plum", "output": "drupe"}])
    store.close()
    assert (tmp_path / name).is_file()
    assert {p.name for p in tmp_path.iterdir()} <= {name, f"{name}-wal", f"{name}-shm"}
    reader = PredictionStore(tmp_path / name, readonly=True)
    assert reader.get(sid, "plum")["output"] == "drupe"
    assert reader.stats()["bytes"] > 0
    reader.close()


def test_an_empty_file_becomes_a_store(tmp_path):
    (tmp_path / "empty.db").touch()  # an empty file is an empty SQLite database
    store = PredictionStore(tmp_path / "empty.db")
    assert store.settings() == {}
    store.close()
