"""Picking demonstrations: first-k, seeded random, label-balanced and most similar; never the query itself."""

from collections import Counter

import pytest

from tuneforge.data.tasks import Example
from tuneforge.errors import TuneforgeError
from tuneforge.prompts.shots import PICKERS, balanced, is_same_item, most_similar, pick_demos

POOL = [Example(f"fruit {i}", f"label{i % 3}", f"p{i}") for i in range(20)]
OUTSIDER = Example("something else", "label0", "q-out")


def ids(examples):
    return [ex.id for ex in examples]


def test_first_takes_the_first_k():
    assert ids(pick_demos(POOL, OUTSIDER, 3, "first")) == ["p0", "p1", "p2"]


@pytest.mark.parametrize("method", PICKERS)
def test_k_zero_gives_nothing(method):
    assert pick_demos(POOL, OUTSIDER, 0, method) == []
    assert pick_demos([], OUTSIDER, 0, method) == []


@pytest.mark.parametrize("method", PICKERS)
def test_k_demos_from_the_pool_without_repeats(method):
    demos = pick_demos(POOL, OUTSIDER, 5, method, seed=1)
    assert len(demos) == 5
    assert len(set(ids(demos))) == 5
    assert all(d in POOL for d in demos)


# ---------------------------------------------------------------- the query is never its own demo


@pytest.mark.parametrize("method", PICKERS)
@pytest.mark.parametrize("query", [
    POOL[0],  # the very same example
    Example("fruit 0 renamed", "label0", "p0"),  # same id, other text
    Example("fruit 0", "label0", "elsewhere"),  # same input, other id
    Example("FRUIT 0", "label2", "elsewhere"),  # same input, other case
    Example("  Fruit 0 ", "label0", "elsewhere"),  # same input, other case and spacing
])
def test_query_is_never_its_own_demo(method, query):
    for seed in range(5):
        demos = pick_demos(POOL, query, len(POOL) - 1, method, seed=seed)
        assert "p0" not in ids(demos)
        assert len(demos) == len(POOL) - 1


@pytest.mark.parametrize("method", PICKERS)
def test_all_pool_but_the_query_is_not_enough_for_k_equal_pool(method):
    with pytest.raises(TuneforgeError):
        pick_demos(POOL, POOL[3], len(POOL), method)


def test_first_skips_the_query():
    assert ids(pick_demos(POOL, POOL[1], 3, "first")) == ["p0", "p2", "p3"]


@pytest.mark.parametrize("a, b, same", [
    (Example("x", "t", "1"), Example("y", "t", "1"), True),
    (Example("Lemon", "t", "1"), Example("lemon ", "u", "2"), True),
    (Example("lemon", "t", "1"), Example("lemons", "t", "2"), False),
])
def test_is_same_item(a, b, same):
    assert is_same_item(a, b) is same
    assert is_same_item(b, a) is same


# ---------------------------------------------------------------- random


def test_random_is_deterministic_per_seed():
    for seed in range(5):
        assert ids(pick_demos(POOL, OUTSIDER, 5, "random", seed)) == ids(pick_demos(POOL, OUTSIDER, 5, "random", seed))


def test_random_is_one_set_for_every_query_of_a_draw():
    queries = [Example(f"query {i}", "label0", f"q{i}") for i in range(10)]
    draws = [ids(pick_demos(POOL, q, 4, "random", seed=7)) for q in queries]
    assert all(d == draws[0] for d in draws)


def test_random_replaces_the_query_when_it_is_in_the_draw():
    draw = pick_demos(POOL, OUTSIDER, 4, "random", seed=7)
    inside = draw[1]
    with_query = pick_demos(POOL, inside, 4, "random", seed=7)
    assert inside.id not in ids(with_query)
    # The rest of the draw is kept in order, and one more pool item fills the gap.
    assert ids(with_query)[:3] == [d.id for d in draw if d.id != inside.id]
    assert ids(with_query)[3] == ids(pick_demos(POOL, OUTSIDER, 5, "random", seed=7))[4]


def test_different_seeds_give_different_draws():
    draws = {tuple(ids(pick_demos(POOL, OUTSIDER, 5, "random", seed))) for seed in range(10)}
    assert len(draws) > 1
    assert ids(pick_demos(POOL, OUTSIDER, 5, "random", 0)) != ids(pick_demos(POOL, OUTSIDER, 5, "random", 1))


def test_random_is_not_just_first():
    assert any(ids(pick_demos(POOL, OUTSIDER, 5, "random", s)) != ["p0", "p1", "p2", "p3", "p4"] for s in range(5))


def test_random_does_not_mutate_the_pool():
    pool = list(POOL)
    pick_demos(pool, OUTSIDER, 5, "random", seed=3)
    assert pool == POOL


# ---------------------------------------------------------------- balanced


def labelled_pool(sizes: dict[str, int]) -> list[Example]:
    """`sizes[label]` examples of each label, labels interleaved in pool order."""
    return [Example(f"{label} item {i}", label, f"{label}{i}") for label, n in sizes.items() for i in range(n)]


SKEWED = labelled_pool({"a": 12, "b": 3, "c": 3})  # a majority label that random draws would favour


def counts(demos):
    return Counter(d.target for d in demos)


@pytest.mark.parametrize("pool, k, expected", [
    (POOL, 3, {"label0": 1, "label1": 1, "label2": 1}),
    (POOL, 1, None),  # one label, whichever
    (POOL, 5, None),  # 2, 2, 1 in some order
    (POOL, 7, None),  # k > labels: round-robin continues, 3, 2, 2
    (SKEWED, 3, {"a": 1, "b": 1, "c": 1}),
    (SKEWED, 6, {"a": 2, "b": 2, "c": 2}),
    (SKEWED, 9, {"a": 3, "b": 3, "c": 3}),
    (SKEWED, 12, {"a": 6, "b": 3, "c": 3}),  # b and c run out; a fills the rest
    (labelled_pool({"x": 4, "y": 4}), 8, {"x": 4, "y": 4}),
])
def test_balanced_covers_the_labels_round_robin(pool, k, expected):
    for seed in range(8):
        demos = pick_demos(pool, OUTSIDER, k, "balanced", seed)
        assert len(demos) == k and len(set(ids(demos))) == k
        got = counts(demos)
        if expected is not None:
            assert got == expected
        else:
            labels = {ex.target for ex in pool}
            full = [got.get(label, 0) for label in labels]
            assert max(full) - min(full) <= 1, got


def test_balanced_gives_every_label_the_extra_turn_across_seeds():
    # k = 4 over 3 labels: one label gets two; which one must depend on the seed, not on its name.
    doubled = {counts(pick_demos(POOL, OUTSIDER, 4, "balanced", seed)).most_common(1)[0][0] for seed in range(20)}
    assert doubled == {"label0", "label1", "label2"}


def test_balanced_is_deterministic_per_seed_and_differs_across_seeds():
    def draw(seed):
        return ids(pick_demos(SKEWED, OUTSIDER, 6, "balanced", seed))

    for seed in range(5):
        assert draw(seed) == draw(seed)
    assert len({tuple(draw(seed)) for seed in range(10)}) > 1
    assert set(draw(0)) != set(draw(1))


def test_balanced_order_is_shuffled_not_grouped_by_round():
    # Always one of each label in label order would put the same label nearest the query.
    last = {pick_demos(POOL, OUTSIDER, 3, "balanced", seed)[-1].target for seed in range(20)}
    firsts = {tuple(d.target for d in pick_demos(POOL, OUTSIDER, 6, "balanced", seed)[:3]) for seed in range(20)}
    assert last == {"label0", "label1", "label2"}
    assert any(len(set(f)) < 3 for f in firsts), "the final order is shuffled, not kept round by round"


@pytest.mark.parametrize("query", [SKEWED[13], Example("B ITEM 1", "b", "elsewhere"), Example("x", "b", "b1")])
def test_balanced_leaves_out_the_query_and_stays_balanced(query):
    for seed in range(10):
        demos = pick_demos(SKEWED, query, 6, "balanced", seed)
        assert "b1" not in ids(demos)
        assert counts(demos) == {"a": 2, "b": 2, "c": 2}  # b has two left once the query is out


def test_balanced_is_one_set_for_every_query_of_a_draw():
    queries = [Example(f"query {i}", "label0", f"q{i}") for i in range(5)]
    assert len({tuple(ids(pick_demos(POOL, q, 4, "balanced", seed=3))) for q in queries}) == 1


def test_balanced_on_an_open_task_is_random():
    for seed in range(5):
        assert (ids(pick_demos(POOL, OUTSIDER, 5, "balanced", seed, labelled=False))
                == ids(pick_demos(POOL, OUTSIDER, 5, "random", seed)))


def test_balanced_does_not_mutate_the_pool():
    pool = list(SKEWED)
    balanced(pool, OUTSIDER, 6, seed=2)
    assert pool == SKEWED


# ---------------------------------------------------------------- similar


SIMILAR_POOL = [Example("apple", "pome", "s1"), Example("banana", "berry", "s2"), Example("orange", "hesperidium", "s3")]


def test_similar_ranks_orange_first_for_blood_orange():
    query = Example("blood orange", "hesperidium", "q")
    assert most_similar(SIMILAR_POOL, query.input)[0].input == "orange"
    # The most similar demonstration is placed last, nearest the query.
    for k in (1, 2, 3):
        demos = pick_demos(SIMILAR_POOL, query, k, "similar")
        assert len(demos) == k
        assert demos[-1].input == "orange"


def test_similar_order_is_reverse_of_ranking():
    query = Example("green apple", "pome", "q")
    ranking = most_similar(POOL + SIMILAR_POOL, query.input)
    demos = pick_demos(POOL + SIMILAR_POOL, query, 4, "similar")
    assert ids(demos) == ids(ranking[:4])[::-1]
    assert demos[-1].input == "apple"


def test_similar_skips_the_query_text():
    query = Example("Orange", "hesperidium", "q")
    demos = pick_demos(SIMILAR_POOL, query, 2, "similar")
    assert "orange" not in [d.input for d in demos]


def test_similar_is_deterministic_and_ignores_seed():
    query = Example("fruit 13x", "label0", "q")
    assert ids(pick_demos(POOL, query, 5, "similar", seed=0)) == ids(pick_demos(POOL, query, 5, "similar", seed=9))


def test_most_similar_ties_keep_pool_order():
    pool = [Example("zzz", "a", "1"), Example("yyy", "a", "2"), Example("xxx", "a", "3")]
    assert ids(most_similar(pool, "qqq")) == ["1", "2", "3"]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("method", PICKERS)
def test_k_larger_than_pool(method):
    with pytest.raises(TuneforgeError) as e:
        pick_demos(SIMILAR_POOL, OUTSIDER, 4, method)
    assert "4" in str(e.value)
    assert "3" in str(e.value)


@pytest.mark.parametrize("method", PICKERS)
def test_empty_pool(method):
    with pytest.raises(TuneforgeError):
        pick_demos([], OUTSIDER, 1, method)


@pytest.mark.parametrize("method", ["best", "Random", "", "knn"])
def test_unknown_method(method):
    with pytest.raises(TuneforgeError) as e:
        pick_demos(POOL, OUTSIDER, 2, method)
    assert repr(method) in str(e.value)
    for name in PICKERS:
        assert name in str(e.value)
