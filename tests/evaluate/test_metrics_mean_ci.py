"""The bootstrap CI of a mean of per-item scores."""

from tuneforge.evaluate.metrics import mean_ci, paired_difference


def test_mean_ci_brackets_the_mean_is_seeded_and_narrows_with_more_items():
    few, many = [1.0, 0.0] * 10, [1.0, 0.0] * 200
    low, high = mean_ci(few)
    assert low < 0.5 < high and mean_ci(few) == [low, high]
    assert mean_ci(few, seed=1) != [low, high]
    m_low, m_high = mean_ci(many)
    assert high - low > 2 * (m_high - m_low)
    assert mean_ci([1.0] * 5) == [1.0, 1.0]


def test_a_paired_difference_is_the_mean_ci_of_the_differences():
    a, b = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    paired = paired_difference(a, b)
    assert paired["ci95"] == mean_ci([x - y for x, y in zip(a, b)]) and paired["items"] == 6
