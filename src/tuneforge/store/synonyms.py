"""Synonyms for topic matching: clean a model's generated synonym list, then find topics in text.

A model asked for synonyms of "vaccine" answers with a messy line ("1. Jab 2. shot."):
`normalize_synonyms` turns it into clean phrases, and `SynonymMatcher` finds every topic's phrases
in a query as whole words, in one pass, with an Aho–Corasick automaton over word tokens.

A word is a run of letters and digits in any script ("café", "19"). Everything else — spaces,
hyphens, punctuation, underscores — only separates words, in patterns and text alike, so
"flu-shot" matches "flu shot" and "covid-19" matches "COVID 19". Matching ignores case
(`str.casefold`). Text in decomposed unicode (e + combining accent) is not recomposed.
"""

import re
from collections import deque
from collections.abc import Iterator

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


def _key(text: str) -> tuple[str, ...]:
    """What a phrase matches on: its casefolded words, separators forgotten."""
    return tuple(word for word, _, _ in words(text))


def _clean_entry(piece: str) -> str:
    """One split piece of generated text -> a lower-case phrase without edge punctuation."""
    piece = _ASIDE.sub(" ", piece.lower())  # "shot (informal)" -> "shot"
    piece = _EDGE.sub("", " ".join(piece.split()))
    return _CONJUNCTION.sub("", piece)  # the last item of "jab, shot, and booster"


def normalize_synonyms(text: str, term: str | None = None) -> list[str]:
    """Turn a model's generated synonym line into a clean list, in first-seen order.

    Splits on commas, semicolons, slashes, bars, newlines, bullets and list numbering (not on
    spaces: "covid jab" stays one phrase); lower-cases, collapses whitespace, strips edge
    punctuation and parenthetical asides. Drops empty entries, duplicates (entries with the same
    words, so "flu-shot" repeats "flu shot"), entries over MAX_CHARS characters or MAX_WORDS words,
    and `term` itself, which `SynonymMatcher` matches anyway.
    """
    seen = {(), _key(term or "")}
    entries = []
    for piece in _SPLIT.split(text):
        entry = _clean_entry(piece)
        key = _key(entry)
        if key in seen or len(entry) > MAX_CHARS or len(entry.split()) > MAX_WORDS:
            continue
        seen.add(key)
        entries.append(entry)
    return entries


class SynonymMatcher:
    """Finds topics in text through their synonyms, as whole words and phrases, in one pass.

    An Aho–Corasick automaton whose alphabet is words: building costs O(total words in all
    patterns) and matching O(text length + matches), however many synonyms there are. Each topic
    name is a pattern for its own topic; a synonym shared by several topics reports each of them.
    """

    def __init__(self, synonyms: dict[str, list[str]]):
        self._goto: list[dict[str, int]] = [{}]  # state -> word -> next state; state 0 is the root
        self._fail: list[int] = [0]  # longest proper suffix of the state's words that is a state
        self._out: list[int] = [-1]  # pattern id that ends at this state, -1 if none
        self._link: list[int] = [-1]  # nearest suffix state (via fail) that ends a pattern
        self._hits: list[list[tuple[str, str]]] = []  # pattern id -> [(topic, synonym)]
        self._length: list[int] = []  # pattern id -> number of words
        for topic, phrases in synonyms.items():
            for phrase in [topic, *phrases]:
                self._add(_key(phrase), topic, phrase.strip())
        self._link_failures()

    @property
    def state_count(self) -> int:
        """Automaton states: at most one per pattern word, plus the root."""
        return len(self._goto)

    def _add(self, key: tuple[str, ...], topic: str, phrase: str) -> None:
        """Insert one pattern into the trie; a repeat for the same topic is ignored."""
        if not key:
            return
        state = 0
        for word in key:
            if word not in self._goto[state]:
                self._goto[state][word] = len(self._goto)
                self._goto.append({})
                self._fail.append(0)
                self._out.append(-1)
                self._link.append(-1)
            state = self._goto[state][word]
        if self._out[state] < 0:
            self._out[state] = len(self._hits)
            self._hits.append([])
            self._length.append(len(key))
        hits = self._hits[self._out[state]]
        if all(known != topic for known, _ in hits):
            hits.append((topic, phrase))

    def _link_failures(self) -> None:
        """Fill fail and output links breadth-first, so a state's suffixes are done before it."""
        queue = deque(self._goto[0].values())  # depth-1 states fail to the root
        while queue:
            state = queue.popleft()
            for word, child in self._goto[state].items():
                fail = self._fail[state]
                while fail and word not in self._goto[fail]:
                    fail = self._fail[fail]
                fail = self._goto[fail].get(word, 0)
                self._fail[child] = fail
                self._link[child] = fail if self._out[fail] >= 0 else self._link[fail]
                queue.append(child)

    def _spans(self, tokens: list[tuple[str, int, int]]) -> Iterator[tuple[int, int, int]]:
        """Every pattern occurrence as (first word, last word, pattern id), by last word,
        longest first among those ending on the same word."""
        state = 0
        for last, (word, _, _) in enumerate(tokens):
            while state and word not in self._goto[state]:
                state = self._fail[state]
            state = self._goto[state].get(word, 0)
            hit = state if self._out[state] >= 0 else self._link[state]
            while hit >= 0:
                pattern = self._out[hit]
                yield last - self._length[pattern] + 1, last, pattern
                hit = self._link[hit]

    def match(self, text: str) -> list[dict]:
        """Occurrences of any topic's patterns in `text`, in order of position.

        Each is {"topic", "synonym" (the pattern as given), "start", "end"}, offsets into `text`.
        An occurrence inside a longer one is dropped ("flu shot" hides its "shot"); occurrences
        that only cross ("new york" and "york city" in "new york city") are both kept.
        """
        tokens = words(text)
        by_first: list[list[tuple[int, int]]] = [[] for _ in tokens]
        for first, last, pattern in self._spans(tokens):
            by_first[first].append((last, pattern))  # arrives shortest first for each first word
        found, reach = [], -1  # reach: the last word covered by a kept occurrence
        for first, spans in enumerate(by_first):
            for last, pattern in reversed(spans):
                if last <= reach:
                    continue  # contained in a kept occurrence that starts no later
                reach = last
                start, end = tokens[first][1], tokens[last][2]
                found += [
                    {"topic": topic, "synonym": synonym, "start": start, "end": end}
                    for topic, synonym in self._hits[pattern]
                ]
        return found

    def topics(self, text: str) -> list[str]:
        """Distinct topics found in `text`, in order of first occurrence."""
        return list(dict.fromkeys(hit["topic"] for hit in self.match(text)))
