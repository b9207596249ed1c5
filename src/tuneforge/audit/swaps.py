"""Counterfactual swaps: rewrite a text with the terms of one attribute exchanged (he <-> she,
James <-> Mary), so a prediction that changes can only have changed because of that attribute.

Both directions are applied in one pass ("he told her" -> "she told him"). Terms match whole words
only: letters, digits, `_` and `-` on either side block a match, so "Heather" keeps its "he" and
"Mary-Ann" stays whole, while "he's" and "John's" are swapped. Words match in any capitalisation
and take the capitalisation of what they replace; names match only as written or in capitals
("Mark" is a name, "mark" a verb).
"""

import csv
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tuneforge.data.files import MAX_NESTING, lines_of, text_of
from tuneforge.errors import TuneforgeError

_BEFORE, _AFTER = r"(?<![\w-])", r"(?![\w-])"


@dataclass(frozen=True)
class SwapList:
    """Pairs of terms of one attribute: `pairs[i] = (term of groups[0], term of groups[1])`."""

    name: str
    groups: tuple[str, str]
    words: tuple[tuple[str, str], ...] = ()
    """Matched in any capitalisation."""
    names: tuple[tuple[str, str], ...] = ()
    """Matched as written or in capitals."""


@dataclass(frozen=True)
class Swapper:
    """A compiled swap list: `swap(text)` rewrites, `sides(text)` tells which groups' terms occur."""

    swaps: SwapList
    _words: re.Pattern
    _names: re.Pattern | None
    _partner: dict  # lower-cased word or exact name -> (partner, side of the matched term)

    def swap(self, text: str) -> str:
        """`text` with every term replaced by its partner, capitalisation kept."""
        text = self._words.sub(lambda m: match_case(m[0], self._partner[m[0].lower()][0]), text)
        if self._names is not None:
            text = self._names.sub(lambda m: match_case(m[0], self._partner[_name_key(m[0])][0]), text)
        return text

    def sides(self, text: str) -> set[int]:
        """Indices (0, 1) of the groups whose terms occur in `text`."""
        found = {self._partner[m[0].lower()][1] for m in self._words.finditer(text)}
        if self._names is not None:
            found |= {self._partner[_name_key(m[0])][1] for m in self._names.finditer(text)}
        return found


def compile_swaps(swaps: SwapList) -> Swapper:
    """Build the matchers; for a term with two partners the first pair listed wins."""
    partner: dict[str, tuple[str, int]] = {}
    for a, b in swaps.words:
        partner.setdefault(a.lower(), (b, 0))
        partner.setdefault(b.lower(), (a, 1))
    words = list(partner)  # the words alone: names join `partner` below
    for a, b in swaps.names:
        partner.setdefault(a, (b, 0))
        partner.setdefault(b, (a, 1))
    names = sorted({n for pair in swaps.names for n in pair}, key=len, reverse=True)
    return Swapper(swaps, _alternation(words, re.IGNORECASE),
                   _alternation(names + [n.upper() for n in names], 0) if names else None, partner)


def _alternation(terms: list[str], flags: int) -> re.Pattern:
    """One regex for all terms, longest first so a phrase wins over its first word."""
    body = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(f"{_BEFORE}(?:{body}){_AFTER}", flags)


def _name_key(matched: str) -> str:
    return matched if not matched.isupper() or len(matched) == 1 else matched.title()


def match_case(original: str, replacement: str) -> str:
    """`replacement` capitalised like `original`: HE -> SHE, He -> She, he -> she."""
    if original.isupper() and len(original) > 1:
        return replacement.upper()
    if original[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement.lower()


def builtin_swap_lists() -> list[str]:
    """Names of the swap lists shipped with tuneforge."""
    folder = resources.files("tuneforge.audit") / "builtin"
    return sorted(p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json"))


def load_swaps(spec: str) -> SwapList:
    """A built-in swap list by name (`gender`), or a user file: JSON like the built-in ones, or a
    CSV/TSV whose header names the two groups and whose rows are pairs of terms (matched as words)."""
    if spec in builtin_swap_lists():
        return _from_json(Path(str(resources.files("tuneforge.audit") / "builtin" / f"{spec}.json")))
    path = Path(spec)
    if not path.is_file():
        raise TuneforgeError(f"swap list {spec!r}: no such file, and not a built-in list "
                             f"(built-in: {', '.join(builtin_swap_lists())})")
    return _from_json(path) if path.suffix == ".json" else _from_table(path)


def _from_json(path: Path) -> SwapList:
    try:
        doc = json.loads(text_of(path))
    except json.JSONDecodeError as err:
        raise TuneforgeError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise TuneforgeError(f"{path}: {MAX_NESTING}") from None
    if not isinstance(doc, dict) or not _is_pair(doc.get("groups")):
        raise TuneforgeError(f"{path}: field 'groups' must name two groups, e.g. [\"male\", \"female\"]")
    pairs = {}
    for field in ("words", "names"):
        rows = doc.get(field, [])
        bad = next((i for i, p in enumerate(rows) if not _is_pair(p)), None) if isinstance(rows, list) else 0
        if bad is not None:
            raise TuneforgeError(f"{path}: field '{field}' item {bad}: expected a pair of two non-empty terms")
        pairs[field] = tuple(tuple(p) for p in rows)
    if not pairs["words"] and not pairs["names"]:
        raise TuneforgeError(f"{path}: no pairs in 'words' or 'names'")
    return SwapList(doc.get("name", path.stem), tuple(doc["groups"]), pairs["words"], pairs["names"])


def _from_table(path: Path) -> SwapList:
    delimiter = "\t" if path.suffix == ".tsv" else ","
    rows = list(csv.reader(lines_of(text_of(path)), delimiter=delimiter))  # a BOM is dropped, as data files'
    if not rows or not _is_pair([c.strip() for c in rows[0]]):
        raise TuneforgeError(f"{path}:1: the header must name the two groups, e.g. 'male{delimiter}female'")
    pairs = []
    for line, row in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if not _is_pair(cells):
            raise TuneforgeError(f"{path}:{line}: expected two non-empty terms, got {row[:4]!r:.120}")
        pairs.append(tuple(cells))
    if not pairs:
        raise TuneforgeError(f"{path}: no pairs of terms below the header")
    return SwapList(path.stem, tuple(c.strip() for c in rows[0]), tuple(pairs))


def _is_pair(value) -> bool:
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, str) and v.strip() for v in value))
