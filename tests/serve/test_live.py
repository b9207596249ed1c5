"""The `live` miss policy with a real predictor on the tiny random model."""

import httpx
import openai

import pytest

from tuneforge.batch.job import BatchConfig
from tuneforge.predict.setting import SettingPredictor, build_setting, demo_pool
from tuneforge.data.splits import load_task
from tuneforge.serve.app import create_app
from tuneforge.store.sqlite import PredictionStore

from conftest import running


def test_a_live_miss_is_predicted_stored_and_then_served_from_the_store(tiny, tmp_path):
    spec = build_setting(tiny, load_task("fruit"), BatchConfig())
    predictor = SettingPredictor(tiny, spec)
    store = PredictionStore(tmp_path / "store.db")
    sid = store.add_setting(spec)
    store.name_setting("fruit-prompting", sid, "prompting")
    store.put_many(sid, predictor(["plum"]))
    assert store.get(sid, "apricot") is None

    with running(create_app(tmp_path / "store.db", miss_policy="live", predictor=predictor)) as url:
        live = httpx.get(f"{url}/v1/lookup", params={"input": "apricot"}, timeout=60)
        assert live.status_code == 200
        row = live.json()["results"][0]
        assert row["source"] == "live" and row["output"] in spec["labels"] and row["error"] is None
        assert store.get(sid, "apricot")["output"] == row["output"]  # visible to another connection at once
        again = httpx.get(f"{url}/v1/lookup", params={"input": "apricot"}).json()["results"][0]
        assert again == {**row, "source": "store"}

        batch = httpx.post(f"{url}/v1/lookup", json={"inputs": ["plum", "quince", "fig", "quince"]}, timeout=60)
        assert [r["source"] for r in batch.json()["results"]] == ["store", "live", "live", "live"]
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        chat = client.chat.completions.create(model="fruit-prompting", messages=[{"role": "user", "content": "mango"}])
        assert chat.choices[0].message.content in spec["labels"]
        metrics = httpx.get(f"{url}/metrics").text
    assert "tuneforge_live_predictions_total 4.0" in metrics  # apricot, quince, fig, mango
    assert {"apricot", "quince", "fig", "mango"} <= {r["input"] for r in store.rows(sid)}
    assert store.misses(sid) == []
    store.close()


def test_streamed_live_misses_and_hits_through_the_openai_client(tiny, tmp_path):
    """A live generated answer streams piece by piece as the model writes it, a live label in one
    piece, and what streamed is what is stored and then served from the store in one chunk."""
    synonyms = load_task("synonyms")
    spec = build_setting(tiny, synonyms, BatchConfig(shots=1, max_new_tokens=12))
    predictor = SettingPredictor(tiny, spec, demo_pool(synonyms))
    store = PredictionStore(tmp_path / "store.db")
    sid = store.add_setting(spec)
    store.add_pool(demo_pool(synonyms))
    store.name_setting("words-synonyms", sid, "prompting")
    expected = predictor(["lighthouse"])[0]

    with running(create_app(tmp_path / "store.db", miss_policy="live")) as url:  # the predictor from the store
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        chunks = list(client.chat.completions.create(
            model="words-synonyms", messages=[{"role": "user", "content": "lighthouse"}], stream=True,
            stream_options={"include_usage": True}))
        pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert "".join(pieces) == expected["output"] and len(pieces) > 1, pieces
        assert chunks[-1].usage.completion_tokens == expected["meta"]["completion_tokens"] > 1
        assert store.get(sid, "lighthouse")["output"] == expected["output"]
        again = list(client.completions.create(model="words-synonyms", prompt="lighthouse", stream=True))
        assert [c.choices[0].text for c in again] == [expected["output"], ""], "from the store: one chunk"
        plain = client.completions.create(model="words-synonyms", prompt="harbour")  # a live miss, not streamed
        assert plain.choices[0].text == predictor(["harbour"])[0]["output"] and plain.usage.prompt_tokens > 0
        with pytest.raises(openai.BadRequestError) as refused:
            client.completions.create(model="words-synonyms", prompt="harbour", logprobs=1)
        assert refused.value.code == "logprobs_not_supported"

    fruit = load_task("fruit")
    labels = build_setting(tiny, fruit, BatchConfig(shots=2, pick="similar"))
    lid = store.add_setting(labels)
    store.add_pool(demo_pool(fruit))
    with running(create_app(tmp_path / "store.db", setting=lid, miss_policy="live")) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        streamed = list(client.completions.create(model=lid, prompt="tamarind", stream=True, logprobs=2))
        texts = [c.choices[0].text for c in streamed if c.choices and c.choices[0].text]
        assert texts == [store.get(lid, "tamarind")["output"]], "a label streams whole"
        assert [c.choices[0].logprobs.tokens for c in streamed if c.choices and c.choices[0].logprobs] == [texts]
        chat = client.chat.completions.create(model=lid, messages=[{"role": "user", "content": "tamarind"}],
                                              logprobs=True, top_logprobs=2)
        assert chat.choices[0].message.content == texts[0] and chat.usage.total_tokens > 0
        assert chat.choices[0].logprobs.content[0].token == texts[0]
    store.close()


def test_a_client_gone_mid_stream_still_gets_its_row_stored_and_frees_the_model(tiny, tmp_path):
    """Closing the stream after its first piece (as a disconnect does) neither loses the row nor
    keeps the live lock: the model finishes, the row is stored, the next live miss is answered."""
    import asyncio

    from tuneforge.serve.lookups import Lookups

    synonyms = load_task("synonyms")
    spec = build_setting(tiny, synonyms, BatchConfig(shots=1, max_new_tokens=12))
    store = PredictionStore(tmp_path / "store.db")
    sid = store.add_setting(spec)
    store.add_pool(demo_pool(synonyms))
    lookups = Lookups(tmp_path / "store.db", None, "live", None, None)

    async def abandon_then_ask() -> list[dict]:
        stream = lookups.stream_live("lighthouse")
        first = await anext(stream)
        assert isinstance(first, str) and first
        await stream.aclose()  # the client went away
        async with asyncio.timeout(60):
            while lookups.live_lock.locked():
                await asyncio.sleep(0.01)
        return await lookups.resolve(["harbour"])

    (row,) = asyncio.run(abandon_then_ask())
    assert row["source"] == "live" and row["output"] is not None
    assert store.get(sid, "lighthouse")["output"] == SettingPredictor(tiny, spec, demo_pool(synonyms))(
        ["lighthouse"])[0]["output"]
    assert lookups.metrics.live == 2
    lookups.close()
    store.close()
