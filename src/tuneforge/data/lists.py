"""List-valued targets and outputs ("vaccination, jab, shot"): how a line becomes a clean list of
terms, and what two terms compare on.

A word is a run of letters and digits in any script ("café", "19"). Everything else — spaces,
hyphens, punctuation, underscores — only separates words, so "flu-shot" and "flu shot" are one
term. Comparison ignores case (`str.casefold`). Text in decomposed unicode (e + combining accent)
is not recomposed.
"""

import re

MAX_CHARS = 60
"""Longer generated entries are the model rambling, not a synonym."""
MAX_WORDS = 6
"""Entries with more whitespace-separated words than this are dropped too."""

_WORD = re.compile(r"[^\W_]+")
# Entry separators: , ; / | newline and bullets, plus list numbering ("1." or "2)") that starts
# the text or follows whitespace and is followed by whitespace — so "covid 19" is left alone.
_SPLIT = re.compile(r"[,;/|\n•]|(?:^|(?<=\s))\(?\d{1,3}[.)](?=\s|$)")
_ASIDE = re.compile(r"\([^()]*\)")
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")
_CONJUNCTION = re.compile(r"^(?:and|or)\s+")


def words(text: str) -> list[tuple[str, int, int]]:
    """Word tokens of `text` as (casefolded word, start, end), offsets into `text` itself."""
    return [(m.group().casefold(), m.start(), m.end()) for m in _WORD.finditer(text)]


def singular(word: str) -> str:
    """A casefolded word with a regular English plural ending taken off ("shots" -> "shot",
    "allergies" -> "allergy", "boxes" -> "box"), so a term and its plural compare equal. Words of
    three letters or fewer, and those ending in "ss", "us" or "is", are left alone."""
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    return word[:-1]


def term_key(text: str) -> tuple[str, ...]:
    """What a term compares and matches on: its casefolded words, each singular, separators
    forgotten ("Flu-Shots" and "flu shot" are one term)."""
    return tuple(singular(word) for word, _, _ in words(text))


def _clean_entry(piece: str) -> str:
    """One split piece of generated text -> a lower-case phrase without edge punctuation."""
    piece = _ASIDE.sub(" ", piece.lower())  # "shot (informal)" -> "shot"
    piece = _EDGE.sub("", " ".join(piece.split()))
    return _CONJUNCTION.sub("", piece)  # the last item of "jab, shot, and booster"


def split_list(text: str, term: str | None = None) -> list[str]:
    """Turn a list-valued line (a target, or a model's generated list) into clean terms, in
    first-seen order.

    Splits on commas, semicolons, slashes, bars, newlines, bullets and list numbering (not on
    spaces: "covid jab" stays one phrase); lower-cases, collapses whitespace, strips edge
    punctuation and parenthetical asides. Drops empty entries, duplicates (entries with the same
    words, so "flu-shot" and "flu shots" repeat "flu shot"), entries over MAX_CHARS characters or MAX_WORDS words,
    and `term` itself (a topic is not its own synonym).
    """
    seen = {(), term_key(term or "")}
    entries = []
    for piece in _SPLIT.split(text):
        entry = _clean_entry(piece)
        key = term_key(entry)
        if key in seen or len(entry) > MAX_CHARS or len(entry.split()) > MAX_WORDS:
            continue
        seen.add(key)
        entries.append(entry)
    return entries
