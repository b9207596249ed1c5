"""Lookups stay right while another process writes to the store (SQLite WAL)."""

import subprocess
import sys
import textwrap

import httpx

from tuneforge.serve.app import create_app
from tuneforge.store.sqlite import PredictionStore

from conftest import FRUIT, running

CHUNKS, CHUNK = 40, 50
TOTAL = CHUNKS * CHUNK
WRITER = textwrap.dedent(f"""
    import sys
    from tuneforge.store.sqlite import PredictionStore
    store = PredictionStore(sys.argv[1])
    print("ready", flush=True)
    for chunk in range({CHUNKS}):
        sys.stdin.readline()  # the reader's go: the write overlaps its next round of lookups
        first = chunk * {CHUNK}
        rows = [{{"input": f"new-{{i}}", "output": f"out-new-{{i}}"}} for i in range(first, first + {CHUNK})]
        store.put_many(sys.argv[2], rows)
    store.close()
""")


def test_lookups_are_a_right_hit_or_a_miss_while_another_process_writes(tmp_path):
    path = tmp_path / "store.db"
    store = PredictionStore(path)
    sid = store.add_setting(FRUIT)
    store.put_many(sid, [{"input": f"old-{i}", "output": f"out-old-{i}"} for i in range(500)])
    store.close()

    with running(create_app(path)) as url, httpx.Client(base_url=url) as client:
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), sid], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline().strip() == "ready"
        rounds, hits, misses = 0, set(), set()
        # paced by the reader, not by the clock: one chunk written during each round, however loaded the machine
        while rounds < CHUNKS or writer.poll() is None:
            if rounds < CHUNKS:
                writer.stdin.write("go\n")
                writer.stdin.flush()
            keys = [f"old-{rounds % 500}", *(f"new-{i}" for i in range(0, TOTAL, 13))]
            response = client.post("/v1/lookup", json={"inputs": keys})
            assert response.status_code == 200
            for row in response.json()["results"]:
                if row["source"] == "store":
                    assert row["output"] == "out-" + row["input"] and row["error"] is None
                    hits.add(row["input"])
                else:
                    assert row == {"input": row["input"], "output": None, "error": None, "source": "miss"}
                    assert row["input"].startswith("new-")
                    misses.add(row["input"])
            single = client.get("/v1/lookup", params={"input": keys[-1]})
            assert single.status_code == 404 or single.json()["results"][0]["output"] == "out-" + keys[-1]
            rounds += 1
        writer.stdin.close()
        assert writer.wait(timeout=60) == 0
        assert rounds >= CHUNKS and misses & hits  # some keys were read both before and after their write
        last = client.post("/v1/lookup", json={"inputs": [f"new-{i}" for i in range(0, TOTAL, 9)]})
        assert all(row["output"] == "out-" + row["input"] for row in last.json()["results"])
