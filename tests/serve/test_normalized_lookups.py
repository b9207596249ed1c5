"""Over real HTTP, an input is looked up in its normal form: surrounding and repeated whitespace
does not matter, case does; queued misses are stored in normal form, once."""

import httpx
from conftest import FRUIT_ID, MODEL

from tuneforge.store.sqlite import PredictionStore


def test_whitespace_variants_hit_and_case_variants_miss(serve):
    url = serve()
    for given in ["plum", " plum ", "plum\n", "\tplum  "]:
        hit = httpx.get(f"{url}/v1/lookup", params={"input": given})
        assert hit.status_code == 200, given
        assert hit.json()["results"] == [{"input": given, "output": "drupe", "error": None, "source": "store"}]
    assert httpx.get(f"{url}/v1/lookup", params={"input": "Plum"}).status_code == 404
    completion = httpx.post(f"{url}/v1/completions", json={"model": FRUIT_ID, "prompt": ["  pear", "lemon "]})
    assert [c["text"] for c in completion.json()["choices"]] == ["pome", "hesperidium"]
    chat = httpx.post(f"{url}/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user",
                                                                                      "content": " pear\n"}]})
    assert chat.json()["choices"][0]["message"]["content"] == "pome"


def test_queued_misses_are_stored_in_normal_form_once(serve, store_path):
    url = serve(miss_policy="queue")
    results = httpx.post(f"{url}/v1/lookup", json={"inputs": [" kiwi  fruit", "kiwi fruit ", "Kiwi fruit"]})
    assert [r["source"] for r in results.json()["results"]] == ["queued"] * 3
    store = PredictionStore(store_path, readonly=True)
    assert store.misses(FRUIT_ID) == ["kiwi fruit", "Kiwi fruit"]
    store.close()
