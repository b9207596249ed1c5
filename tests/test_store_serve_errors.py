"""The real `tuneforge store`, `serve` and `batch` commands as subprocesses: a bad store, --out,
--host or --port exits 2 with one `tuneforge: error:` line naming it, no traceback, nothing written;
a running server warns when it is public without a key, takes its key from the environment, and
closes connections that never finish their request."""

import os
import queue
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tuneforge.store.sqlite import PredictionStore

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def cli(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuneforge.cli", *map(str, args)], cwd=cwd, env=env or ENV,
                          capture_output=True, text=True, timeout=300)


def assert_one_error_line(proc: subprocess.CompletedProcess, *expected: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tuneforge: error: "), proc.stderr
    for part in expected:
        assert str(part) in lines[0], (part, lines[0])


def snapshot(d: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def fruit_store(path: Path) -> Path:
    store = PredictionStore(path)
    store.put_many(store.add_setting({"task": "fruit", "mode": "labels"}), [{"input": "apple", "output": "pome"}])
    store.close()
    return path


def bad_store(case: str, d: Path) -> tuple[Path, list[str]]:
    """(--store value, substrings the error line must contain)."""
    if case == "text file":
        (d / "notsqlite.db").write_text("not a database\n")
        return d / "notsqlite.db", ["notsqlite.db", "not a SQLite file"]
    if case == "another application's file":
        db = sqlite3.connect(d / "app.db")
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.commit()
        db.close()
        return d / "app.db", ["app.db", "another application", "users"]
    if case == "missing folder":
        return d / "missing" / "dir" / "s.db", ["missing/dir/s.db", "does not exist"]
    if case == "parent is a file":
        (d / "plain").write_text("x")
        return d / "plain" / "s.db", ["plain/s.db", "not a folder"]
    if case == "unwritable place":  # tests run as root, which chmod does not stop; /proc takes no new files
        return Path("/proc/s.db"), ["/proc/s.db", "cannot"]
    raise AssertionError(case)


def command(name: str, store: Path, d: Path, model_dir: Path | None) -> list:
    if name == "store stats":
        return ["store", "stats", "--store", store]
    if name == "store export":
        return ["store", "export", "--store", store, "--out", d / "e.jsonl"]
    if name == "serve":
        return ["serve", "--store", store, "--port", "0"]
    (d / "fruits.txt").write_text("lemon\napple\n")
    return ["batch", "--store", store, "--inputs", d / "fruits.txt", "--model", model_dir, "--dtype", "fp32"]


CASES = [(cmd, case) for cmd in ["store stats", "store export", "serve", "batch"]
         for case in ["text file", "another application's file"]]
CASES += [("batch", case) for case in ["missing folder", "parent is a file", "unwritable place"]]


@pytest.mark.parametrize("name, case", CASES)
def test_a_bad_store_exits_2_with_one_line_and_is_left_as_it_was(name, case, tmp_path, request):
    model_dir = request.getfixturevalue("tiny_model_dir") if name == "batch" else None
    store, expected = bad_store(case, tmp_path)
    args = command(name, store, tmp_path, model_dir)
    before = snapshot(tmp_path)
    assert_one_error_line(cli(*args, cwd=tmp_path), *expected)
    assert snapshot(tmp_path) == before  # bytes unchanged, no new file (no export, no -wal, no folder)
    assert not Path("/proc/s.db").exists()


def test_store_paths_with_uri_characters_name_exactly_that_file(tmp_path, tiny_model_dir):
    (tmp_path / "out").mkdir()
    (tmp_path / "fruits.txt").write_text("lemon\n")
    name = "a?mode=memory#b%41.db"
    store = f"out/{name}"
    done = cli("batch", "--store", store, "--inputs", "fruits.txt", "--model", tiny_model_dir, "--dtype", "fp32",
               cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("done 1"), done.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} <= {name, f"{name}-wal", f"{name}-shm"}
    assert (tmp_path / "out" / name).is_file()
    stats = cli("store", "stats", "--store", store, cwd=tmp_path)
    assert stats.returncode == 0 and '"rows": 1' in stats.stdout, stats.stderr


def test_export_to_another_format_exits_2_and_writes_nothing(tmp_path):
    fruit_store(tmp_path / "s.db")
    before = snapshot(tmp_path)
    assert_one_error_line(cli("store", "export", "--store", "s.db", "--out", "e.csv", cwd=tmp_path),
                          "--out e.csv", ".jsonl", ".parquet")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("args, expected", [
    (["--port", "70000"], ["--port 70000", "1 to 65535"]),
    (["--port", "-1"], ["--port -1", "1 to 65535"]),
    (["--host", "no-such-host.invalid"], ["--host no-such-host.invalid", "resolve"]),
    (["--request-timeout", "0"], ["--request-timeout 0"]),
])
def test_a_bad_host_or_port_exits_2_with_one_line(args, expected, tmp_path):
    fruit_store(tmp_path / "s.db")
    before = snapshot(tmp_path)
    assert_one_error_line(cli("serve", "--store", "s.db", *args, cwd=tmp_path), *expected)
    assert snapshot(tmp_path) == before


def test_a_port_in_use_exits_2_with_one_line(tmp_path):
    fruit_store(tmp_path / "s.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli("serve", "--store", "s.db", "--port", port, cwd=tmp_path)
    assert_one_error_line(proc, f"--port {port}", "in use")


@contextmanager
def server(*args, cwd: Path, env: dict | None = None):
    """A `tuneforge serve` process; yields (its base URL on 127.0.0.1, the lines it wrote so far: its
    warnings, then where it listens)."""
    proc = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "serve", *map(str, args)], cwd=cwd,
                            env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    seen = []
    try:
        while not (seen and "serving" in seen[-1]):
            seen.append(lines.get(timeout=120))  # queue.Empty fails the test if the server never starts
        port = re.search(r" on http://[^ ]+:(\d+) ", seen[-1]).group(1)
        yield f"http://127.0.0.1:{port}", seen
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=30)


def test_a_public_host_without_a_key_warns_and_half_requests_are_closed(tmp_path):
    fruit_store(tmp_path / "s.db")
    with server("--store", "s.db", "--host", "0.0.0.0", "--port", "0", "--request-timeout", "2",
                cwd=tmp_path) as (url, stderr):
        assert stderr[0].startswith("tuneforge: warning: ") and "TUNEFORGE_API_KEY" in stderr[0], stderr
        port = int(url.rsplit(":", 1)[1])
        stalled = [socket.create_connection(("127.0.0.1", port), timeout=15) for _ in range(20)]
        for i, sock in enumerate(stalled[:-1]):  # half a request line, half the headers, half a body, nothing
            sock.sendall([b"GET /v1/lookup?input=app", b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
                          b"POST /v1/lookup HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n{"][i % 3])
        start = time.monotonic()
        for sock in stalled:
            assert sock.recv(1024) == b""  # closed by the server (a 15 s socket timeout would raise)
            sock.close()
        assert 1.5 < time.monotonic() - start < 15
        assert httpx.get(f"{url}/v1/lookup", params={"input": "apple"}).status_code == 200


def test_the_api_key_comes_from_the_environment_and_silences_the_warning(tmp_path):
    fruit_store(tmp_path / "s.db")
    env = {**ENV, "TUNEFORGE_API_KEY": "s3cret"}
    with server("--store", "s.db", "--host", "0.0.0.0", "--port", "0", cwd=tmp_path, env=env) as (url, stderr):
        assert not any("warning" in line for line in stderr), stderr
        assert httpx.get(f"{url}/v1/lookup", params={"input": "apple"}).status_code == 401
        wrong = httpx.get(f"{url}/v1/lookup", params={"input": "apple"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        good = httpx.get(f"{url}/v1/lookup", params={"input": " apple "}, headers={"Authorization": "Bearer s3cret"})
        assert good.status_code == 200 and good.json()["results"][0]["output"] == "pome"
