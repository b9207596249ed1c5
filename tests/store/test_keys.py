"""Input normalisation: stored and looked-up inputs agree on surrounding and repeated whitespace,
never on case."""

import pytest

from tuneforge.store.keys import normalize_input, prediction_key
from tuneforge.store.sqlite import PredictionStore


@pytest.mark.parametrize("given, normal", [
    ("apple", "apple"),
    (" apple ", "apple"),
    ("\tapple\n", "apple"),
    ("green  apple", "green apple"),
    ("green \t\n apple", "green apple"),
    ("Apple", "Apple"),
    ("   ", ""),
    ("é  ü", "é ü"),
])
def test_normalize_input(given, normal):
    assert normalize_input(given) == normal
    assert normalize_input(normal) == normal  # idempotent


def test_keys_agree_on_whitespace_and_differ_on_case():
    assert prediction_key("s", " green  apple\n") == prediction_key("s", "green apple")
    assert prediction_key("s", "Apple") != prediction_key("s", "apple")
    assert prediction_key("s", "apple") != prediction_key("t", "apple")


def test_the_store_keeps_the_normal_form_and_finds_it_from_any_spelling(tmp_path):
    store = PredictionStore(tmp_path / "s.db")
    sid = store.add_setting({"task": "fruit"})
    assert store.missing(sid, [" apple ", "apple", "Apple", "green\t apple"]) == ["apple", "Apple", "green apple"]
    assert store.put_many(sid, [{"input": " apple ", "output": "pome"}, {"input": "apple", "output": "x"}]) == 1
    assert [row["input"] for row in store.rows(sid)] == ["apple"]
    assert store.get(sid, "apple\n")["output"] == "pome"
    assert store.get(sid, "Apple") is None
    assert store.missing(sid, ["  apple", "Apple"]) == ["Apple"]
    store.record_miss(sid, " kiwi  fruit ")
    store.record_miss(sid, "kiwi fruit")
    assert store.misses(sid) == ["kiwi fruit"]
    store.close()
