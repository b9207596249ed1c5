"""`tuneforge batch` then `tuneforge serve` as a user runs them: real processes, real HTTP, the
official openai client."""

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "tuneforge.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=300, **kw)


def test_batch_then_serve_then_stats(tiny_model_dir, tmp_path):
    inputs = tmp_path / "fruits.txt"
    inputs.write_text("lemon\napple\nfig\n")
    db = tmp_path / "p.db"
    first = _cli("batch", "--inputs", str(inputs), "--store", str(db), "--model", str(tiny_model_dir), "--dtype", "fp32")
    assert first.returncode == 0 and first.stdout.startswith("done 3 · skipped 0"), first.stderr
    assert "model fruit-prompting" in first.stdout
    again = _cli("batch", "--inputs", str(inputs), "--store", str(db), "--model", str(tiny_model_dir), "--dtype", "fp32")
    assert again.stdout.startswith("done 0 · skipped 3"), again.stdout

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "serve", "--store", str(db), "--port", str(port),
                               "--miss", "queue"], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        stored = httpx.get(f"{base}/v1/lookup", params={"input": "lemon"}).json()["results"][0]
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused")
        answer = client.completions.create(model="fruit-prompting", prompt="lemon").choices[0].text
        assert answer == stored["output"] and stored["source"] == "store"
        assert [m.id for m in client.models.list()] == ["fruit-prompting"]
        queued = httpx.get(f"{base}/v1/lookup", params={"input": "durian"})
        assert queued.status_code == 202
    finally:
        server.terminate()
        said = server.communicate(timeout=30)[0]
    assert f"on http://127.0.0.1:{port} (OpenAI base URL http://127.0.0.1:{port}/v1)" in said
    assert "model fruit-prompting: prompting · task fruit · 3 rows" in said
    assert "on a miss: queue · API key not required" in said
    # The queued miss is predicted by the next batch job.
    misses = _cli("batch", "--from-misses", "--store", str(db), "--model", str(tiny_model_dir), "--dtype", "fp32")
    assert misses.returncode == 0 and misses.stdout.startswith("done 1 · skipped 0"), misses.stdout + misses.stderr
    stats = _cli("store", "stats", "--store", str(db))
    (per_setting,) = json.loads(stats.stdout)["settings"].values()
    # Two hits on "lemon" (lookup + completion), flushed by the server when it stopped.
    assert per_setting == {"name": "fruit-prompting", "route": "prompting", "model": str(tiny_model_dir),
                           "task": "fruit", "mode": "labels", "rows": 4, "failed": 0, "hits": 2, "queued_misses": 0}
    out = tmp_path / "p.jsonl"
    assert _cli("store", "export", "--store", str(db), "--out", str(out)).returncode == 0
    assert len(out.read_text().splitlines()) == 4


@pytest.mark.parametrize("args, message", [
    (["serve", "--store", "/nonexistent.db"], "no such store"),
    (["store", "stats", "--store", "/nonexistent.db"], "no such store"),
    (["batch", "--inputs", "/nonexistent.txt", "--store", "x.db"], "no such file"),
    (["batch", "--store", "x.db"], "give an inputs file"),
])
def test_bad_input_exits_2_with_one_line(args, message, tmp_path):
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "x.db").exists()
