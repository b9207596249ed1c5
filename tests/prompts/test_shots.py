"""Picking demonstrations: first-k, seeded random and most similar; never the query itself."""

import pytest

from tuneforge.data.tasks import Example
from tuneforge.errors import TuneforgeError
from tuneforge.prompts.shots import PICKERS, is_same_item, most_similar, pick_demos

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
