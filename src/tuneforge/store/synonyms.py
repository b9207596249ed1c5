"""Synonyms for topic matching: find topics in text through their stored synonym lists.

A model asked for synonyms of "vaccine" answers with a messy line ("1. Jab 2. shot."): `split_list`
(`data/lists.py`) turns it into clean terms, and `SynonymMatcher` finds every topic's terms in a
query as whole words, in one pass, with an Aho–Corasick automaton over word tokens.

Words compare as `term_key` makes them: casefolded and singular, every non-word character only a
separator, so "flu-shots" matches "flu shot" and "covid-19" matches "COVID 19". A query word of
five letters or more that is no pattern's word is read as the one pattern word of six letters or
more within one edit (a letter dropped, added, changed or two swapped: "vacine", "vaccnie"), if
exactly one is; short words are left alone, where one edit makes another word ("couch", "cough").
"""

from collections import defaultdict, deque
from collections.abc import Iterator

from tuneforge.data.lists import singular, term_key, words

TYPO_MIN_PATTERN = 6
"""Pattern words at least this long also match a query word one edit away."""
TYPO_MIN_QUERY = 5
"""Query words shorter than this are never read as typos."""


def _deletions(word: str) -> set[str]:
    """The word itself and every form of it with one letter dropped."""
    return {word} | {word[:i] + word[i + 1:] for i in range(len(word))}


def _one_edit(a: str, b: str) -> bool:
    """Whether `a` and `b` differ by one letter dropped, added or changed, or two adjacent swapped."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                   and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))

class SynonymMatcher:
    """Finds topics in text through their synonyms, as whole words and phrases, in one pass.

    An Aho–Corasick automaton whose alphabet is words: building costs O(total words in all
    patterns) and matching O(text length + matches), however many synonyms there are. Each topic
    name is a pattern for its own topic; a synonym shared by several topics reports each of them.
    """

    def __init__(self, synonyms: dict[str, list[str]], *, typos: bool = True):
        """`typos` False: a query word matches only as itself (singular)."""
        self._goto: list[dict[str, int]] = [{}]  # state -> word -> next state; state 0 is the root
        self._fail: list[int] = [0]  # longest proper suffix of the state's words that is a state
        self._out: list[int] = [-1]  # pattern id that ends at this state, -1 if none
        self._link: list[int] = [-1]  # nearest suffix state (via fail) that ends a pattern
        self._hits: list[list[tuple[str, str]]] = []  # pattern id -> [(topic, synonym)]
        self._length: list[int] = []  # pattern id -> number of words
        for topic, phrases in synonyms.items():
            for phrase in [topic, *phrases]:
                self._add(term_key(phrase), topic, phrase.strip())
        self._link_failures()
        self._words = {word for state in self._goto for word in state}  # every word of every pattern
        self._near: dict[str, set[str]] = defaultdict(set)  # a long pattern word, or it less one letter -> words
        for word in self._words if typos else ():
            if len(word) >= TYPO_MIN_PATTERN:
                for form in _deletions(word):
                    self._near[form].add(word)

    def _read(self, word: str) -> str:
        """A query word as the automaton knows it: singular, and a typo read as the one pattern word
        within one edit (see the module's note); else as it is."""
        word = singular(word)
        if len(word) < TYPO_MIN_QUERY or word in self._words:
            return word
        close = {w for form in _deletions(word) for w in self._near.get(form, ()) if _one_edit(word, w)}
        return close.pop() if len(close) == 1 else word

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
            word = self._read(word)
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
        return self.find(text)["topics"]

    def find(self, text: str) -> dict:
        """What /v1/match answers: {"topics": distinct topics in order, "matches": `match(text)`}."""
        matches = self.match(text)
        return {"topics": list(dict.fromkeys(hit["topic"] for hit in matches)), "matches": matches}
