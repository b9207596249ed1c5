"""Picking demonstrations for few-shot prompts: first-k, seeded random, label-balanced, or most similar
to the query.

Demonstrations come from the pool given (the train split); the query itself is never its own
demonstration, even when the same input appears in the pool under another id.
"""

import math
import random
from collections import Counter
from itertools import chain, zip_longest

from tuneforge.data.splits import Task
from tuneforge.data.tasks import Example, input_key
from tuneforge.errors import TuneforgeError

PICKERS = ("first", "random", "similar", "balanced")


def pick_demos(pool: list[Example], query: Example, k: int, method: str = "random", seed: int = 0,
               labelled: bool = True) -> list[Example]:
    """The `k` demonstrations for `query`.

    `first`: the first k of the pool. `random`: the first k of a permutation of the pool drawn with
    `seed` (the same draw for every query, so a draw is one fixed demonstration set). `similar`: the k
    most similar by character-trigram TF-IDF cosine, the most similar placed last, nearest the query.
    `balanced`: the labels covered round-robin (see `balanced`); for an open task (`labelled` False)
    it is `random`.
    """
    if k == 0:
        return []
    if method == "first":
        ranked = pool
    elif method == "balanced" and labelled:
        ranked = balanced(pool, query, k, seed)
    elif method in ("random", "balanced"):
        ranked = random.Random(seed).sample(pool, len(pool))
    elif method == "similar":
        ranked = most_similar(pool, query.input)
    else:
        raise TuneforgeError(f"unknown demonstration picker {method!r}: choose {', '.join(PICKERS)}")
    demos = [ex for ex in ranked if not is_same_item(ex, query)][:k]
    if len(demos) < k:
        raise TuneforgeError(f"{k} shots need {k} demonstrations, but the train split has only {len(demos)}")
    return demos[::-1] if method == "similar" else demos


def check_shots(task: Task, shots: int, train_rows: bool = False) -> None:
    """Refuse `shots` demonstrations where the task's train split holds fewer examples (every route
    that prompts with demonstrations calls this before its model loads); with `train_rows` (train
    items prompted too, as fine-tuning's rows are), fewer besides each item itself."""
    if shots + (train_rows and shots > 0) > len(task.train):
        besides = " besides each train row itself" if train_rows else ""
        raise TuneforgeError(f"--shots {shots} needs {shots} demonstrations{besides}, but the train split of "
                             f"{task.info.name!r} has {len(task.train)} examples")


def balanced(pool: list[Example], query: Example, k: int, seed: int) -> list[Example]:
    """Up to `k` demonstrations covering the labels round-robin, so no label outnumbers another by more
    than one (while each has examples left): small models copy their demonstrations' majority label.

    Within a label the examples are drawn at random; the labels' turn order and the final order are
    shuffled too, all with one RNG seeded by `seed`. The query is left out before the draw.
    """
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = {}
    for ex in pool:
        if not is_same_item(ex, query):
            by_label.setdefault(ex.target, []).append(ex)
    queues = [rng.sample(group, len(group)) for _, group in sorted(by_label.items())]
    rng.shuffle(queues)  # which labels get the extra turn when k is not a multiple of their number
    rounds = chain.from_iterable(zip_longest(*queues))  # one of each label per round
    demos = [ex for ex in rounds if ex is not None][:k]
    rng.shuffle(demos)  # no label always nearest the query
    return demos


def is_same_item(a: Example, b: Example) -> bool:
    """Whether two examples are the same item: the same id, or the same input text."""
    return a.id == b.id or input_key(a.input) == input_key(b.input)


def most_similar(pool: list[Example], text: str) -> list[Example]:
    """The pool ordered from most to least similar to `text` (ties keep pool order)."""
    grams = [_trigrams(ex.input) for ex in pool]
    df = Counter(g for gs in grams for g in set(gs))
    idf = {g: math.log((1 + len(pool)) / (1 + n)) + 1 for g, n in df.items()}
    query = _tfidf(_trigrams(text), idf)
    scores = [_cosine(query, _tfidf(gs, idf)) for gs in grams]
    order = sorted(range(len(pool)), key=lambda i: (-scores[i], i))
    return [pool[i] for i in order]


def _trigrams(text: str) -> Counter:
    padded = f"  {text.lower().strip()}  "
    return Counter(padded[i : i + 3] for i in range(len(padded) - 2))


def _tfidf(counts: Counter, idf: dict) -> dict:
    # Unseen trigrams get the largest idf the pool could give them.
    default = max(idf.values(), default=1.0)
    return {g: n * idf.get(g, default) for g, n in counts.items()}


def _cosine(a: dict, b: dict) -> float:
    dot = sum(v * b.get(g, 0.0) for g, v in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0
