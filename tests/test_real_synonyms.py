"""Synonym lists on the real embedded default model: an open task prompted, and the offline list job
served over HTTP to live queries."""

import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def _run(args, **kwargs):
    return subprocess.run([sys.executable, "-m", "tuneforge.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), **kwargs)


def test_open_task_generates_synonyms_on_the_real_model(tmp_path):
    import tuneforge

    results = tuneforge.prompt("synonyms", config=tuneforge.PromptingConfig(shots=(3,), picks=("similar",),
                                                                           max_new_tokens=24))
    preds = results["conditions"][0]["predictions"]
    assert results["metric"] == "list_f1" and len(preds) == results["task"]["sizes"]["test"]
    assert sum("," in p for p in preds) >= len(preds) // 2, f"few-shot answers should be lists: {preds}"


def test_synonym_lists_generated_offline_match_live_queries(tmp_path):
    """Every built-in topic's synonym list is written offline by the default recipe: a LoRA list writer
    trained on the train topics (at most 3 epochs here, for CI's time), its greedy list + 2 sampled
    ones, every term verified, the filter chosen on dev; into a store. `tuneforge serve` then answers
    the built-in live queries through /v1/match over HTTP. Their topic precision and recall there
    must be what the job reported, and the lists must find topics the topic names alone do not."""
    import httpx

    from tuneforge.data.inputs import builtin_queries_path, read_queries
    from tuneforge.batch.synonyms import score_queries
    from tuneforge.data.tasks import builtin_path, read_examples
    from tuneforge.store.sqlite import PredictionStore
    from tuneforge.store.synonyms import SynonymMatcher

    topics = tmp_path / "topics.txt"
    names = [ex.input for ex in read_examples(builtin_path("synonyms"))]
    topics.write_text("\n".join(names) + "\n")
    db = tmp_path / "synonyms.db"
    proc = _run(["synonyms", "--topics", str(topics), "--store", str(db), "--samples", "2", "--writer-epochs", "3"],
                timeout=900)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)
    store = PredictionStore(db)
    [(sid, setting)] = store.settings().items()
    stored = {r["input"]: r for r in store.rows(sid)}
    store.close()
    assert len(stored) == 122 and sum(bool(r["output"]) for r in stored.values()) > 60
    assert setting["recipe"]["samples"] == 2 and setting["recipe"]["chosen_on"] == "dev (12 topics), list F1"
    assert setting["recipe"]["writer"] == "lora" and (tmp_path / "synonyms.db.writer" / "merged").is_dir()
    print("vaccine ->", stored["vaccine"]["output"], "| car ->", stored["car"]["output"])

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tuneforge.cli", "serve", "--store", str(db), "--port", str(port)],
                              env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.2)
        queries = read_queries(builtin_queries_path())
        live = score_queries(lambda text: httpx.post(f"{base}/v1/match", json={"text": text}).json(), queries, names)
    finally:
        server.terminate()
        server.communicate(timeout=30)
    first = live["rows"][0]
    print(f"live queries over HTTP: topic precision {live['precision']:.3f} recall {live['recall']:.3f}; "
          f"{first['query']!r} -> {first['terms'] or 'no topic'}")
    assert f"live queries ({len(queries)}): topic precision {live['precision']:.3f} · recall {live['recall']:.3f}" \
        in proc.stdout, "the job's report is what the server answers"
    names_only = score_queries(lambda text: {"topics": SynonymMatcher({n: [] for n in names}).topics(text),
                                             "matches": []}, queries, names)
    assert live["recall"] > names_only["recall"], (live["recall"], names_only["recall"])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
