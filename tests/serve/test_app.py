"""The server over HTTP, for real: uvicorn on localhost, a SQLite store, httpx and the openai client."""

import time

import httpx
import openai
import pytest
from conftest import FRUIT_ID, FRUIT_ROWS, MODEL, SYNONYMS_ID, fill_store, running

from tuneforge.serve.app import create_app
from tuneforge.store.sqlite import PredictionStore


def test_get_lookup_answers_from_the_store_and_rejects_a_miss(serve):
    url = serve()
    hit = httpx.get(f"{url}/v1/lookup", params={"input": "plum"})
    assert hit.status_code == 200
    assert hit.json() == {"results": [{"input": "plum", "output": "drupe", "error": None, "source": "store"}]}
    miss = httpx.get(f"{url}/v1/lookup", params={"input": "kiwi"})
    assert miss.status_code == 404
    assert miss.json()["error"]["type"] == "not_found" and miss.json()["error"]["input"] == "kiwi"


def test_post_lookup_keeps_order_and_marks_misses(serve):
    url = serve()
    results = httpx.post(f"{url}/v1/lookup", json={"inputs": ["pear", "kiwi", "plum", "pear"]}).json()["results"]
    assert [(r["input"], r["output"], r["source"]) for r in results] == [
        ("pear", "pome", "store"), ("kiwi", None, "miss"), ("plum", "drupe", "store"), ("pear", "pome", "store")]
    assert httpx.post(f"{url}/v1/lookup", json={"inputs": []}).json() == {"results": []}


def test_a_failed_row_is_served_with_its_error(serve):
    url = serve()
    row = httpx.get(f"{url}/v1/lookup", params={"input": "durian"}).json()["results"][0]
    assert row == {"input": "durian", "output": None, "error": "prompt has 600 tokens", "source": "store"}
    response = httpx.post(f"{url}/v1/completions", json={"model": FRUIT_ID, "prompt": "durian"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "prediction_failed"


def test_queue_policy_records_misses_for_the_next_batch_job(serve, store_path):
    url = serve(miss_policy="queue")
    queued = httpx.get(f"{url}/v1/lookup", params={"input": "kiwi"})
    assert queued.status_code == 202 and queued.json()["queued"] is True
    results = httpx.post(f"{url}/v1/lookup", json={"inputs": ["plum", "fig", "kiwi"]}).json()["results"]
    assert [r["source"] for r in results] == ["store", "queued", "queued"]
    messages = [{"role": "user", "content": "date"}]
    chat = httpx.post(f"{url}/v1/chat/completions", json={"model": MODEL, "messages": messages})
    assert chat.status_code == 202 and chat.json() == {"queued": True, "inputs": ["date"]}
    store = PredictionStore(store_path, readonly=True)
    assert store.misses(FRUIT_ID) == ["kiwi", "fig", "date"]
    assert store.stats()["settings"][FRUIT_ID]["queued_misses"] == 3
    store.close()


def test_settings_default_to_the_newest_and_unknown_ones_fail_at_start(store_path, tmp_path):
    app = create_app(store_path)
    assert (app.state.lookups.setting, app.state.lookups.match_setting) == (FRUIT_ID, SYNONYMS_ID)
    app.state.lookups.close()
    for bad in [{"setting": "nope"}, {"match_setting": "nope"}, {"miss_policy": "sometimes"}]:
        with pytest.raises(ValueError):
            create_app(store_path, **bad)
    with pytest.raises(ValueError, match="no settings"):
        create_app(tmp_path / "empty.db")


def test_match_finds_topics_through_stored_synonyms(serve):
    url = serve()
    text = "where can I get my covid jab"
    body = httpx.post(f"{url}/v1/match", json={"text": text}).json()
    assert body["topics"] == ["vaccine"]
    assert [(m["synonym"], text[m["start"]:m["end"]]) for m in body["matches"]] == [("covid jab", "covid jab")]
    body = httpx.post(f"{url}/v1/match", json={"text": "Flu shot or grippe? Broken arm."}).json()
    assert body["topics"] == ["influenza", "vaccine"]  # "broken" failed in the job: no topic


def test_matcher_is_rebuilt_when_the_synonyms_setting_grows(serve, store_path):
    url = serve()
    assert httpx.post(f"{url}/v1/match", json={"text": "rubeola outbreak"}).json()["topics"] == []
    store = PredictionStore(store_path)
    store.put_many(SYNONYMS_ID, [{"input": "measles", "output": "rubeola, morbilli"}])
    store.close()
    deadline = time.monotonic() + 10
    while httpx.post(f"{url}/v1/match", json={"text": "rubeola outbreak"}).json()["topics"] != ["measles"]:
        assert time.monotonic() < deadline, "the matcher never saw the new row"
        time.sleep(0.2)


def test_a_topic_whose_list_came_out_empty_is_found_by_its_name(tmp_path):
    """The synonym job stores an empty list when no term passed its filter; the topic still exists."""
    path = fill_store(tmp_path / "store.db")
    store = PredictionStore(path)
    store.put_many(SYNONYMS_ID, [{"input": "pharmacy", "output": ""}])
    store.close()
    with running(create_app(path)) as url:
        body = httpx.post(f"{url}/v1/match", json={"text": "flu jab at the pharmacy"}).json()
    assert body["topics"] == ["influenza", "vaccine", "pharmacy"]
    assert [m["synonym"] for m in body["matches"]] == ["flu", "jab", "pharmacy"]


def test_match_without_a_synonyms_setting_is_404(tmp_path):
    with running(create_app(fill_store(tmp_path / "fruit.db", synonyms=False))) as url:
        response = httpx.post(f"{url}/v1/match", json={"text": "covid jab"})
    assert response.status_code == 404 and response.json()["error"]["type"] == "not_found"


def test_openai_client_completions_chat_models_and_a_miss(serve):
    client = openai.OpenAI(base_url=f"{serve()}/v1", api_key="x", max_retries=0)
    completion = client.completions.create(model=MODEL, prompt="plum", max_tokens=5, temperature=0.7)
    assert completion.object == "text_completion" and completion.choices[0].text == "drupe"
    assert completion.choices[0].finish_reason == "stop" and completion.model == MODEL
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        12, 3, 15)
    several = client.completions.create(model=FRUIT_ID, prompt=["pear", "lemon"])  # the hash names it too
    assert [(c.index, c.text) for c in several.choices] == [(0, "pome"), (1, "hesperidium")]
    assert several.usage is None, "rows that do not know their token counts claim none"
    messages = [{"role": "system", "content": "Give the fruit type."}, {"role": "user", "content": "plum"},
                {"role": "assistant", "content": "drupe"},
                {"role": "user", "content": [{"type": "text", "text": "pear"}]}]
    chat = client.chat.completions.create(model=MODEL, messages=messages)
    assert chat.object == "chat.completion"
    assert (chat.choices[0].message.role, chat.choices[0].message.content) == ("assistant", "pome")
    listed = client.models.list().data
    assert [model.id for model in listed] == [MODEL]
    assert listed[0].model_extra["metadata"]["setting"] == FRUIT_ID and listed[0].model_extra["metadata"]["route"] == "lora"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model=MODEL, prompt="kiwi")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "kiwi"}])
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "plum"}])
    assert unknown.value.code == "model_not_found" and MODEL in unknown.value.message


def test_label_logprobs_are_the_stored_label_distribution(serve):
    client = openai.OpenAI(base_url=f"{serve()}/v1", api_key="x", max_retries=0)
    legacy = client.completions.create(model=MODEL, prompt="plum", logprobs=2).choices[0].logprobs
    assert legacy.tokens == ["drupe"] and legacy.token_logprobs == [-0.1]
    assert legacy.top_logprobs == [{"drupe": -0.1, "pome": -2.5}]
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "plum"}],
                                          logprobs=True, top_logprobs=3).choices[0].logprobs.content[0]
    assert (chat.token, chat.logprob) == ("drupe", -0.1)
    assert [(t.token, t.logprob) for t in chat.top_logprobs] == [("drupe", -0.1), ("pome", -2.5), ("berry", -3.0)]
    assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "plum"}]
                                          ).choices[0].logprobs is None


def test_streamed_completions_and_chat_from_the_store(serve):
    client = openai.OpenAI(base_url=f"{serve()}/v1", api_key="x", max_retries=0)
    chunks = list(client.completions.create(model=MODEL, prompt="plum", stream=True,
                                            stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "drupe"
    assert [c.choices[0].text for c in chunks if c.choices] == ["drupe", ""], "a stored answer is one chunk"
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].usage.total_tokens == 15
    chat = list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "pear"}],
                                               stream=True))
    assert chat[0].choices[0].delta.role == "assistant" and all(c.object == "chat.completion.chunk" for c in chat)
    assert "".join(c.choices[0].delta.content or "" for c in chat) == "pome"
    assert chat[-1].choices[0].finish_reason == "stop" and chat[-1].model == MODEL
    with pytest.raises(openai.NotFoundError):  # a miss is refused before any event, as without streaming
        list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "kiwi"}], stream=True))
    raw = httpx.post(f"{serve()}/v1/completions", json={"model": MODEL, "prompt": ["pear", "lemon"], "stream": True})
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [line for line in raw.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]" and all(e.startswith("data: ") for e in events)


def test_api_key_is_required_except_for_healthz(serve):
    url = serve(api_key="s3cret")
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}]:
        response = httpx.get(f"{url}/v1/lookup", params={"input": "plum"}, headers=headers)
        assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
    assert httpx.post(f"{url}/v1/lookup", json={"inputs": ["plum"]}).status_code == 401
    ok = httpx.get(f"{url}/v1/lookup", params={"input": "plum"}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret").completions.create(model=MODEL, prompt="pear")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0).completions.create(model=MODEL, prompt="pear")


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(serve):
    url = serve(max_body_bytes=1024)
    big = b'{"inputs": ["' + b"a" * 4000 + b'"]}'
    declared = httpx.post(f"{url}/v1/lookup", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["error"]["type"] == "request_too_large"

    def chunks():  # no Content-Length: the size is only known while reading
        for start in range(0, len(big), 500):
            yield big[start:start + 500]

    streamed = httpx.post(f"{url}/v1/lookup", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["error"]["type"] == "request_too_large"
    assert httpx.post(f"{url}/v1/lookup", json={"inputs": ["plum"] * 50}).status_code == 200


LONG = "x" * 4097
BAD_REQUESTS = [
    ("GET", "/v1/lookup", None),  # no input
    ("GET", f"/v1/lookup?input={LONG}", None),
    ("POST", "/v1/lookup", b"{not json"),
    ("POST", "/v1/lookup", b""),
    ("POST", "/v1/lookup", b"[1, 2]"),
    ("POST", "/v1/lookup", {}),
    ("POST", "/v1/lookup", {"inputs": "plum"}),
    ("POST", "/v1/lookup", {"inputs": ["plum", 3]}),
    ("POST", "/v1/lookup", {"inputs": [None]}),
    ("POST", "/v1/lookup", {"inputs": [LONG]}),
    ("POST", "/v1/lookup", {"inputs": ["plum"] * 257}),
    ("POST", "/v1/lookup", b'{"inputs": ["\\ud800"]}'),  # a lone surrogate
    ("POST", "/v1/match", {"text": 5}),
    ("POST", "/v1/match", {"txt": "covid jab"}),
    ("POST", "/v1/completions", {"prompt": "plum"}),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": []}),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": [1, 2, 3]}),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": {"text": "plum"}}),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": []}),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "system", "content": "hi"}]}),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": [{"content": "plum"}]}),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": "plum"}),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hi"}, {"role": "wizard"}]}),
    ("POST", "/v1/chat/completions",
     {"model": MODEL, "messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 3000}] * 2}]}),
    ("POST", "/v1/completions", {"model": "gpt-4o-mini", "prompt": "plum"}),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "plum", "stream": "yes"}),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "plum", "stream": 1}),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "plum", "logprobs": 21}),
    ("POST", "/v1/completions", {"model": MODEL, "prompt": "plum", "stream": True, "stream_options": 3}),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "plum"}],
                                      "top_logprobs": 2}),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "plum"}],
                                      "logprobs": "true"}),
    ("GET", "/v1/nothing-here", None),
    ("DELETE", "/v1/lookup", None),
]


@pytest.mark.parametrize("method,path,body", BAD_REQUESTS,
                         ids=[f"{m} {p[:30]} {str(b)[:40]}" for m, p, b in BAD_REQUESTS])
def test_bad_requests_get_a_4xx_json_error(serve, method, path, body):
    kwargs = {"json": body} if isinstance(body, (dict, list)) else {"content": body}
    headers = {"content-type": "application/json"} if body is not None else {}
    response = httpx.request(method, serve() + path, headers=headers, **kwargs)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["message"]


def test_metrics_count_hits_misses_and_request_latency(serve):
    url = serve()
    httpx.get(f"{url}/v1/lookup", params={"input": "plum"})
    httpx.get(f"{url}/v1/lookup", params={"input": "kiwi"})
    httpx.post(f"{url}/v1/lookup", json={"inputs": ["pear", "fig", "lemon"]})
    response = httpx.get(f"{url}/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = dict(line.rsplit(" ", 1) for line in response.text.splitlines() if not line.startswith("#"))
    assert samples['tuneforge_lookups_total{result="hit"}'] == "3.0"  # prometheus_client writes every value as a float
    assert samples['tuneforge_lookups_total{result="miss"}'] == "2.0"
    assert samples["tuneforge_live_predictions_total"] == "0.0"
    buckets = [float(v) for k, v in samples.items() if k.startswith("tuneforge_request_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == float(samples["tuneforge_request_seconds_count"]) >= 3
    assert 'tuneforge_request_seconds_bucket{le="0.0005"}' in samples
    assert float(samples["tuneforge_request_seconds_sum"]) > 0


def test_healthz(serve):
    assert httpx.get(f"{serve()}/healthz").json() == {"status": "ok", "model": MODEL, "setting": FRUIT_ID,
                                                        "rows": len(FRUIT_ROWS)}


def test_hit_counts_reach_the_store_on_shutdown(store_path):
    with running(create_app(store_path)) as url:
        for _ in range(3):
            httpx.get(f"{url}/v1/lookup", params={"input": "plum"})
        httpx.post(f"{url}/v1/lookup", json={"inputs": ["plum", "pear", "kiwi"]})
    store = PredictionStore(store_path, readonly=True)
    hits = {row["input"]: row["hits"] for row in store.rows(FRUIT_ID)}
    store.close()
    assert hits == {"plum": 4, "pear": 1, "lemon": 0, "durian": 0}


def test_hit_counts_are_flushed_while_serving(serve, store_path):
    url = serve()
    httpx.post(f"{url}/v1/lookup", json={"inputs": ["lemon", "lemon"]})
    store = PredictionStore(store_path, readonly=True)
    deadline = time.monotonic() + 15  # flushed every 5 s
    while {row["input"]: row["hits"] for row in store.rows(FRUIT_ID)}["lemon"] < 2:
        assert time.monotonic() < deadline, "hit counts were not flushed"
        time.sleep(0.2)
    store.close()
