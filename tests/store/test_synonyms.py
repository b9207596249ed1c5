"""Tests for tuneforge.batch.synonyms: cleaning generated synonym lists and whole-word matching."""

import random
import re

import pytest

from tuneforge.data.lists import split_list
from tuneforge.store.synonyms import SynonymMatcher


@pytest.mark.parametrize(
    "text, term, expected",
    [
        ("Vaccination,  immunization, JAB, jab , shot.", None, ["vaccination", "immunization", "jab", "shot"]),
        ("1. jab 2. shot", None, ["jab", "shot"]),
        ("1) jab\n2) shot\n3) booster", None, ["jab", "shot", "booster"]),
        ("jab; shot / booster", None, ["jab", "shot", "booster"]),
        ("- jab\n* shot\n• booster", None, ["jab", "shot", "booster"]),
        ("covid jab, Covid   Jab, flu-shot, flu shot", None, ["covid jab", "flu-shot"]),
        ("covid 19, covid-19 vaccine", None, ["covid 19", "covid-19 vaccine"]),
        ('"jab", \'shot\', (booster)', None, ["jab", "shot"]),
        ("shot (informal), jab", None, ["shot", "jab"]),
        ("jab, shot, and booster", None, ["jab", "shot", "booster"]),
        ("Vaccine, vaccines, jab, Jabs, allergies, allergy", "vaccine", ["jab", "allergies"]),
        ("COVID-19, covid 19 jab", "covid 19", ["covid 19 jab"]),
        ("Café, cafe", None, ["café", "cafe"]),
        ("jab, " + "x" * 61 + ", shot", None, ["jab", "shot"]),
        ("jab, one two three four five six seven, shot", None, ["jab", "shot"]),
        ("jab, one two three four five six", None, ["jab", "one two three four five six"]),
        ("", None, []),
        (" , ;; / ... \n", None, []),
        ("vaccine", "vaccine", []),
    ],
)
def test_split_list(text, term, expected):
    assert split_list(text, term) == expected


VACCINE = {"vaccine": ["jab", "shot", "immunization"]}


def spans(matcher, text):
    """(topic, synonym, matched text) for each occurrence."""
    return [(m["topic"], m["synonym"], text[m["start"] : m["end"]]) for m in matcher.match(text)]


def test_covid_jab_query_finds_vaccine_via_jab():
    matcher = SynonymMatcher(VACCINE)
    text = "where can I get my covid jab"
    assert matcher.topics(text) == ["vaccine"]
    [hit] = matcher.match(text)
    assert hit == {"topic": "vaccine", "synonym": "jab", "start": 25, "end": 28}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("the jabber talked", []),
        ("a shotgun and a slingshot", []),
        ("vaccines work", ["vaccines"]),
        ("JAB now", ["JAB"]),
        ("Get a Shot!", ["Shot"]),
        ("jab-shot", ["jab", "shot"]),
        ("(jab)", ["jab"]),
        ("my_jab", ["jab"]),
        ("the vaccine", ["vaccine"]),
    ],
)
def test_whole_words_and_case(text, expected):
    assert [found for _, _, found in spans(SynonymMatcher(VACCINE), text)] == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("covid jabs near me", [("vaccine", "jab", "jabs")]),
        ("two shots", [("vaccine", "shot", "shots")]),
        ("hay fever allergies", [("fever", "fever", "fever"), ("allergy", "allergy", "allergies")]),
        ("vacine", [("vaccine", "vaccine", "vacine")]),  # a letter dropped
        ("vaccnie appointment", [("vaccine", "vaccine", "vaccnie")]),  # two swapped
        ("vaccinne", [("vaccine", "vaccine", "vaccinne")]),  # one added
        ("immunizatoin records", [("vaccine", "immunization", "immunizatoin")]),
        ("vaccinate", []),  # two edits away
        ("on the couch", []),  # "cough" is too short to be read through a typo
        ("coughs", [("cough", "cough", "coughs")]),
        ("fevers", [("fever", "fever", "fevers")]),
        ("the allergys", [("allergy", "allergy", "allergys")]),  # a plural misspelt is still a plural
    ],
)
def test_plurals_and_typos(text, expected):
    matcher = SynonymMatcher({**VACCINE, "allergy": [], "fever": ["temperature"], "cough": []})
    assert spans(matcher, text) == expected


def test_a_typo_close_to_two_words_matches_neither():
    matcher = SynonymMatcher({"walk": ["stroll"], "page": ["scroll"]})
    assert matcher.topics("a long strol") == ["walk"]
    assert matcher.topics("a long sxroll") == []  # one edit from both


@pytest.mark.parametrize(
    "text, expected",
    [
        ("where is my flu shot?", ["flu shot"]),
        ("where is my flu-shot?", ["flu-shot"]),
        ("Flu  --  SHOT", ["Flu  --  SHOT"]),
        ("flu, then a shot", ["flu", "shot"]),  # topic name alone, no phrase
        ("covid-19 rules", ["covid-19"]),
        ("COVID 19 rules", ["COVID 19"]),
        ("covid19 rules", []),
    ],
)
def test_phrases_and_separators(text, expected):
    matcher = SynonymMatcher({"flu": ["flu shot"], "vaccine": ["shot"], "pandemic": ["covid-19"]})
    assert [found for _, _, found in spans(matcher, text)] == expected


def test_offsets_point_into_original_text():
    matcher = SynonymMatcher({"coffee": ["café au lait"], "vaccine": ["jab"]})
    text = "  Un CAFÉ, au   lait? Then a JAB."
    assert spans(matcher, text) == [("coffee", "café au lait", "CAFÉ, au   lait"), ("vaccine", "jab", "JAB")]


def test_longest_match_hides_contained_ones():
    matcher = SynonymMatcher({"flu": ["flu shot"], "vaccine": ["shot", "flu shot booster"]})
    text = "a flu shot booster and a shot"
    assert spans(matcher, text) == [
        ("vaccine", "flu shot booster", "flu shot booster"),
        ("vaccine", "shot", "shot"),
    ]
    assert matcher.topics(text) == ["vaccine"]


def test_crossing_matches_are_both_kept():
    matcher = SynonymMatcher({"state": ["new york"], "city": ["york city"]})
    assert spans(matcher, "new york city") == [
        ("state", "new york", "new york"),
        ("city", "york city", "york city"),
    ]


def test_shared_synonym_reports_each_topic():
    matcher = SynonymMatcher({"vaccine": ["shot"], "photo": ["shot", "picture"], "drink": ["shot"]})
    assert spans(matcher, "one shot") == [
        ("vaccine", "shot", "shot"),
        ("photo", "shot", "shot"),
        ("drink", "shot", "shot"),
    ]
    assert matcher.topics("a picture, a shot") == ["photo", "vaccine", "drink"]


def test_repeated_synonym_within_a_topic_is_reported_once():
    matcher = SynonymMatcher({"flu": ["flu shot", "flu-shot", "FLU SHOT"]})
    assert spans(matcher, "flu shot") == [("flu", "flu shot", "flu shot")]


def test_topic_name_is_a_pattern():
    matcher = SynonymMatcher({"covid-19": []})
    assert spans(matcher, "Covid 19 news") == [("covid-19", "covid-19", "Covid 19")]


@pytest.mark.parametrize(
    "synonyms, text",
    [({}, "any text at all"), (VACCINE, ""), ({}, ""), (VACCINE, " ... -- !! "), ({"": ["", "  ", "--"]}, "a -- b")],
)
def test_empty_inputs(synonyms, text):
    matcher = SynonymMatcher(synonyms)
    assert matcher.match(text) == []
    assert matcher.topics(text) == []


def _words(text):
    """The reference's normalisation: casefolded letter-and-digit runs."""
    return re.findall(r"[^\W_]+", text.casefold())


def brute_force_matches(synonyms, text):
    """(topic, pattern) per occurrence: a `\\b...\\b` regex per pattern over normalised text,
    then drop occurrences strictly inside another one."""
    normalised = " ".join(_words(text))
    found, seen = [], set()
    for topic, phrases in synonyms.items():
        for phrase in [topic, *phrases]:
            key = " ".join(_words(phrase))
            if not key or (topic, key) in seen:
                continue
            seen.add((topic, key))
            pattern = re.compile(r"(?=\b(" + re.escape(key) + r")\b)")
            found += [(m.start(1), m.end(1), topic, key) for m in pattern.finditer(normalised)]
    found.sort(key=lambda f: (f[0], -f[1]))  # stable: shared patterns keep topic order
    spans = {(s, e) for s, e, _, _ in found}
    return [
        (topic, key)
        for s, e, topic, key in found
        if not any(s2 <= s and e <= e2 and (s2, e2) != (s, e) for s2, e2 in spans)
    ]


def test_matches_brute_force_on_random_vocabularies():
    rng = random.Random(0)
    vocab = ["a", "b", "ab", "ba", "c", "café", "19", "covid"]
    separators = [" ", "  ", "-", ", ", ". ", "_", "/", "!"]
    for _ in range(400):
        synonyms = {
            rng.choice(vocab) + str(t): [
                " ".join(rng.choices(vocab, k=rng.randint(1, 3))) for _ in range(rng.randint(0, 4))
            ]
            for t in range(rng.randint(0, 4))
        }
        tokens = [rng.choice(vocab + [v.upper() for v in vocab] + ["abc", "a1"]) for _ in range(rng.randint(0, 25))]
        text = "".join(tok + rng.choice(separators) for tok in tokens)
        matcher = SynonymMatcher(synonyms, typos=False)  # (no vocabulary word is a plural)
        expected = brute_force_matches(synonyms, text)
        assert matcher.topics(text) == list(dict.fromkeys(topic for topic, _ in expected)), text
        got = [(m["topic"], " ".join(_words(m["synonym"]))) for m in matcher.match(text)]
        assert got == expected, (synonyms, text)


def test_scales_to_ten_thousand_synonyms():
    rng = random.Random(1)
    vocab = [f"w{i}" for i in range(500)]
    synonyms = {
        f"topic{t}": [" ".join(rng.choices(vocab, k=rng.randint(1, 3))) for _ in range(100)] for t in range(100)
    }
    pattern_words = sum(len(phrase.split()) for phrases in synonyms.values() for phrase in phrases) + 100
    matcher = SynonymMatcher(synonyms)
    assert matcher.state_count <= pattern_words + 1  # build is linear in the patterns' words
    text = " ".join(rng.choices(vocab, k=1000))
    hits = matcher.match(text)
    assert hits and all(text[h["start"] : h["end"]] == h["synonym"] for h in hits)
