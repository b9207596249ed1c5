"""Serving from the store: requests/s and p50/p99 latency of store lookups under a bounded load from
127.0.0.1 (wrk, 64 connections), against a bare endpoint returning a constant on the same server stack
(same app, middleware and uvicorn), in one run; and a hit's latency against a live generation.

    python bench/serve_latency.py [--seconds 10] [--connections 64]   (needs `wrk`: apt-get install wrk)
"""

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tuneforge.store.sqlite import PredictionStore

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_line  # noqa: E402

SERVER = """
import sys, uvicorn
from tuneforge.serve.app import create_app
app = create_app(sys.argv[1])

@app.get("/bare")
async def bare():
    return {"output": "constant"}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), workers=1, log_level="warning")
"""


LABELS = [f"label {k}" for k in range(10)]


def fill_store(path: Path, n: int) -> None:
    """n rows of a 10-label setting named `bench-labels`, each with its token counts and label
    log-probabilities, as a batch job writes them."""
    store = PredictionStore(path)
    sid = store.add_setting({"bench": "serve", "model": {"fingerprint": "none"}, "labels": LABELS})
    store.name_setting("bench-labels", sid, "prompting")
    meta = {"prompt_tokens": 40, "completion_tokens": 3, "logprobs": [[label, -0.1 * (k + 1)] for k, label in
                                                                     enumerate(LABELS)]}
    store.put_many(sid, [{"input": f"item {i}", "output": f"answer {i}", "meta": meta} for i in range(n)])
    store.close()


COMPLETION = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model": "bench-labels", "prompt": "item 4242", "logprobs": 5}'
"""
"""A wrk script: an OpenAI completion of a stored input, with usage and label log-probabilities."""


def wrk(url: str, seconds: int, connections: int, script: Path | None = None) -> dict:
    extra = ["-s", str(script)] if script else []
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url],
                         capture_output=True, text=True, check=True).stdout
    unit = {"us": 1e-3, "ms": 1.0, "s": 1000.0}

    def latency(pct: str) -> float:
        value, u = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * unit[u]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": latency("50"),
            "p99": latency("99"), "non_2xx": int(errors.group(1)) if errors else 0}


def live_generation_ms() -> float:
    """One live miss: the default model generating a synonym list for one topic (after a warm-up)."""
    from tuneforge.batch.job import BatchConfig
    from tuneforge.predict.setting import SettingPredictor, build_setting, demo_pool
    from tuneforge.data.splits import load_task
    from tuneforge.model.load import load_model

    loaded = load_model()
    task = load_task("synonyms")
    predict = SettingPredictor(loaded, build_setting(loaded, task, BatchConfig(shots=3, max_new_tokens=24)),
                               demo_pool(task))
    predict(["warm up"])
    start = time.perf_counter()
    for topic in ("fever", "doctor", "injury"):
        predict([topic])
    return (time.perf_counter() - start) / 3 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("this benchmark needs wrk: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        fill_store(db, 10_000)
        script = Path(tmp) / "completion.lua"
        script.write_text(COMPLETION)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(db), str(port)])
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    httpx.get(f"{base}/healthz")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert httpx.get(f"{base}/v1/lookup", params={"input": "item 42"}).json()["results"][0]["output"] == "answer 42"
            wrk(f"{base}/bare", 2, args.connections)  # warm-up
            bare = wrk(f"{base}/bare", args.seconds, args.connections)
            hit = wrk(f"{base}/v1/lookup?input=item%204242", args.seconds, args.connections)
            completion = wrk(f"{base}/v1/completions", args.seconds, args.connections, script)
            alone = wrk(f"{base}/v1/lookup?input=item%204242", 3, 1)  # one connection: no queueing
        finally:
            server.terminate()
            server.wait()
    live = live_generation_ms()
    print(f"serving · one uvicorn worker · wrk -c{args.connections} for {args.seconds}s each, from 127.0.0.1 · "
          f"{cpu_line()}")
    for name, r in (("bare constant endpoint", bare), ("store lookup (hit)", hit),
                    ("completion (hit, usage, logprobs)", completion)):
        print(f"  {name:<34}: {r['rps']:8.0f} req/s  p50 {r['p50']:6.2f} ms  p99 {r['p99']:6.2f} ms  "
              f"non-2xx {r['non_2xx']}")
    print(f"  lookup throughput: {hit['rps'] / bare['rps']:.0%} of the bare endpoint (goal >= 70%); "
          f"p99 {hit['p99']:.2f} ms (goal <= 10 ms)")
    print(f"  completion throughput: {completion['rps'] / bare['rps']:.0%} of the bare endpoint; "
          f"p99 {completion['p99']:.2f} ms")
    print(f"  live generation (default model, 3-shot synonyms, one topic): {live:.0f} ms; a hit's p50 is "
          f"{hit['p50'] / live:.2%} of it under load, {alone['p50'] / live:.2%} alone "
          f"(p50 {alone['p50']:.2f} ms on one connection) (goal <= 1%)")


if __name__ == "__main__":
    main()
