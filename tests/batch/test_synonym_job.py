"""The synonym-list job on a tiny random model: the filter, the recipe the store records, resuming,
topic files and live-query scoring (the real model's lists: tests/test_real_synonyms.py)."""

import json
from dataclasses import replace

import pytest

from tuneforge.data.inputs import builtin_queries_path, read_queries, read_topics
from tuneforge.batch.synonyms import Candidate, ListFilter, local_match, run_synonyms, score_queries, stored_lists
from tuneforge.data.lists import split_list
from tuneforge.data.splits import load_task
from tuneforge.errors import TuneforgeError
from tuneforge.settings import SynonymsConfig
from tuneforge.store.sqlite import PredictionStore

CANDIDATES = [Candidate("jab", 0.4, 3, True), Candidate("shot", 0.2, 2, True), Candidate("medicaree", 0.05, 1, False),
              Candidate("booster", 0.004, 1, True)]


@pytest.mark.parametrize("threshold, max_terms, words, kept", [
    (0.0, 8, "any", ["jab", "shot", "medicaree", "booster"]),
    (0.01, 8, "any", ["jab", "shot", "medicaree"]),
    (0.01, 8, "known", ["jab", "shot"]),
    (0.0, 2, "any", ["jab", "shot"]),
    (0.5, 8, "any", []),
])
def test_filter_keeps_the_likeliest_terms_above_the_threshold(threshold, max_terms, words, kept):
    assert ListFilter(threshold, max_terms, words).keep(CANDIDATES) == kept


SMALL = SynonymsConfig(samples=2, thresholds=(0.0, 0.5), max_terms=(2, 4), max_new_tokens=8, batch_size=8)


def test_job_stores_lists_with_its_recipe_and_resumes_with_nothing_twice(tiny, tmp_path):
    task = load_task("synonyms")
    topics = ["immunity", "booster", "car", "vaccine", "happy"]
    first = PredictionStore(tmp_path / "a.sqlite")
    part = run_synonyms(tiny, task, SMALL, topics[:3], first)
    rest = run_synonyms(tiny, task, SMALL, topics, first)  # a second run: only what the store lacks
    assert (part["done"], rest["done"], rest["skipped"]) == (3, 2, 3)
    assert rest["setting"] == part["setting"] and rest["choice"] == part["choice"]
    whole = PredictionStore(tmp_path / "b.sqlite")
    again = run_synonyms(tiny, task, SMALL, topics, whole)
    assert stored_lists(first, part["setting"]) == stored_lists(whole, again["setting"])  # seeded per topic
    metas = [{r["input"]: r["meta"] for r in store.rows(sid)} for store, sid in ((first, part["setting"]),
                                                                                (whole, again["setting"]))]
    assert metas[0] == metas[1] and len(metas[0]) == 5

    setting = first.settings()[part["setting"]]
    recipe = setting["recipe"]
    assert setting["postprocess"] == "synonym_lists" and setting["model"]["fingerprint"] == tiny.fingerprint
    assert recipe["samples"] == 2 and recipe["shots"] == 5 and recipe["chosen_on"].startswith("dev (12 topics)")
    chosen = ListFilter(**recipe["filter"])
    assert len(part["choice"]["tried"]) == 2 * 2 * 2  # thresholds x lengths x word filters, each scored on dev
    assert chosen in [ListFilter(t["threshold"], t["max_terms"], t["words"]) for t in part["choice"]["tried"]]
    best = max(t["list_f1"] for t in part["choice"]["tried"])
    assert part["choice"]["dev"]["list_f1"]["mean"] == pytest.approx(best)
    for row in first.rows(part["setting"]):
        meta = row["meta"]
        candidates = [Candidate(*c) for c in meta["candidates"]]
        assert [c.probability for c in candidates] == sorted((c.probability for c in candidates), reverse=True)
        assert all(0 <= c.probability <= 1 and 1 <= c.votes <= 3 for c in candidates)
        assert split_list(row["output"]) == chosen.keep(candidates)  # what was kept follows the chosen filter
        assert row["input"] not in [c.term for c in candidates]  # a topic is not its own synonym
    first.close()
    whole.close()


def test_a_list_writer_tuneforge_trained_is_prompted_as_it_was_trained(tiny, tmp_path):
    """A fine-tuned writer records its prompt: the job uses it zero-shot, not the task's demonstrations."""
    from tuneforge.batch.synonyms import ListWriter

    class Trained:  # the tiny model, as if its folder recorded a trained prompt
        def __init__(self, loaded, folder):
            self.__dict__.update(loaded.__dict__)
            self.path = folder

    folder = tmp_path / "writer"
    folder.mkdir()
    (folder / "tuneforge.json").write_text(json.dumps({"prompt": {"format": "plain", "instruction": "Synonyms.",
                                                                  "labels": None}}))
    writer = ListWriter(Trained(tiny, folder), load_task("synonyms"), SMALL)
    assert writer.shots == 0 and writer.fmt.instruction == "Synonyms."
    [prompt] = writer.prompts(["car"])
    assert tiny.tokenizer.decode(prompt).endswith("Synonyms.\ncar:")


def test_topic_files_refuse_empty_lines_and_queries_are_checked(tmp_path):
    good = tmp_path / "topics.txt"
    good.write_text("vaccine\ncar\n")
    assert read_topics(good) == ["vaccine", "car"]
    bad = tmp_path / "gap.txt"
    bad.write_text("vaccine\n\ncar\n")
    with pytest.raises(TuneforgeError, match=r"gap.txt:2: empty line"):
        read_topics(bad)
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"query": "covid jab", "topics": ["vaccine"]}\n{"query": "x"}\n')
    with pytest.raises(TuneforgeError, match=r"q.jsonl:2: expected"):
        read_queries(queries)


def test_builtin_live_queries_name_builtin_topics():
    topics = {ex.input for ex in load_task("synonyms").train + load_task("synonyms").dev + load_task("synonyms").test}
    queries = read_queries(builtin_queries_path())
    assert len(queries) >= 60 and sum(not q["topics"] for q in queries) >= 5
    assert sum(len(q["topics"]) > 1 for q in queries) >= 10
    assert all(set(q["topics"]) <= topics for q in queries)


def test_live_query_scores_count_topic_pairs_and_say_which_term_matched():
    lists = {"vaccine": ["jab", "shot"], "car": ["auto"], "flu": []}
    queries = [{"id": "1", "query": "where can I get my covid jab", "topics": ["vaccine"]},
               {"id": "2", "query": "flu shot for my auto trip", "topics": ["flu", "vaccine", "trip"]},
               {"id": "3", "query": "car boot sale", "topics": []}]
    scores = score_queries(local_match(lists), queries, list(lists))
    # found: vaccine | flu, vaccine (shot), car (auto) | car -> 5 found, 3 right; expected 1 + 2 ("trip" has no list)
    assert (scores["precision"], scores["recall"]) == (pytest.approx(3 / 5), 1.0)
    assert scores["rows"][0]["terms"] == [["vaccine", "jab"]]
    assert scores["rows"][1]["expected"] == ["flu", "vaccine"]


def test_bad_settings_are_refused():
    for bad, message in [({"samples": 0}, "samples must be at least 1, got 0"),
                         ({"thresholds": (0.1, 1.5)}, "thresholds must each be between 0 and 1"),
                         ({"temperature": 0.0}, "temperature must be above 0"),
                         ({"words": ("some",)}, "words: choose among any, known")]:
        with pytest.raises(TuneforgeError, match=message):
            replace(SynonymsConfig(), **bad)
