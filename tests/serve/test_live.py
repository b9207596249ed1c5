"""The `live` miss policy with a real predictor on the tiny random model."""

import httpx
import openai

from tuneforge.batch.job import BatchConfig, SettingPredictor, build_setting
from tuneforge.data.splits import load_task
from tuneforge.serve.app import create_app
from tuneforge.store.sqlite import PredictionStore

from conftest import running


def test_a_live_miss_is_predicted_stored_and_then_served_from_the_store(tiny, tmp_path):
    spec = build_setting(tiny, load_task("fruit"), BatchConfig())
    predictor = SettingPredictor(tiny, spec)
    store = PredictionStore(tmp_path / "store.db")
    sid = store.add_setting(spec)
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
        chat = client.chat.completions.create(model=sid, messages=[{"role": "user", "content": "mango"}])
        assert chat.choices[0].message.content in spec["labels"]
        metrics = httpx.get(f"{url}/metrics").text
    assert "tuneforge_live_predictions_total 4" in metrics  # apricot, quince, fig, mango
    assert {"apricot", "quince", "fig", "mango"} <= {r["input"] for r in store.rows(sid)}
    assert store.misses(sid) == []
    store.close()
