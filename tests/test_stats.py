"""Statistics against known values."""

import math

import numpy as np
import pytest

from eegbench.stats import hierarchical_bootstrap_ci, holm, mean_sd, sign_flip_test, significance_tiers


def test_sign_flip_exact_p_values():
    assert sign_flip_test([1, 2, 3, 4]) == pytest.approx(2 / 16)  # only all-plus and all-minus are as extreme
    assert sign_flip_test([1, 2, 3, 4, 5, 6]) == pytest.approx(2 / 64)
    # d = (1, -1, 2): |sum| = 2; patterns with |sum| >= 2: (+,-,+)=2, (-,+,+)=2, (+,+,+)=4 and their negatives
    assert sign_flip_test([1, -1, 2]) == pytest.approx(6 / 8)
    assert sign_flip_test([0, 0, 0]) == 1.0
    assert math.isnan(sign_flip_test([0.3]))


def test_holm_matches_the_textbook_example():
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    # sorted p (0.005, 0.01, 0.03, 0.04) x (4, 3, 2, 1) = (0.02, 0.03, 0.06, 0.04) -> monotone (.., 0.06, 0.06)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    nan_kept = holm([float("nan"), 0.01])
    assert math.isnan(nan_kept[0]) and nan_kept[1] == pytest.approx(0.01)


def test_bootstrap_ci_of_a_single_bernoulli_subject_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    hits = (rng.random(2000) < 0.3).astype(float)
    low, high = hierarchical_bootstrap_ci({"sub-01": hits}, n_resamples=4000)
    half = 1.96 * math.sqrt(hits.mean() * (1 - hits.mean()) / len(hits))
    assert low == pytest.approx(hits.mean() - half, abs=0.006)
    assert high == pytest.approx(hits.mean() + half, abs=0.006)


def test_bootstrap_ci_widens_with_between_subject_spread():
    trials = np.ones(200)
    same = {f"s{i}": trials * 0.5 for i in range(6)}
    spread = {f"s{i}": trials * v for i, v in enumerate([0.2, 0.3, 0.4, 0.6, 0.7, 0.8])}
    assert hierarchical_bootstrap_ci(same) == pytest.approx((0.5, 0.5))
    low, high = hierarchical_bootstrap_ci(spread)
    assert low < 0.4 and high > 0.6
    assert hierarchical_bootstrap_ci(spread) == (low, high)  # seeded: reproducible


def test_mean_sd():
    assert mean_sd([1.0, 3.0]) == pytest.approx((2.0, math.sqrt(2)))
    assert mean_sd([5.0]) == (5.0, 0.0)


def test_tiers_group_entries_that_are_not_separable():
    subjects = [f"s{i}" for i in range(8)]
    best = {s: 0.8 + 0.01 * i for i, s in enumerate(subjects)}
    close = {s: best[s] - (0.01 if i % 2 else -0.005) for i, s in enumerate(subjects)}  # mixed signs
    worse = {s: best[s] - 0.3 for s in subjects}  # worse on every subject: p = 2/256
    assert significance_tiers([worse, best, close]) == [2, 1, 1]
    few = {s: v for s, v in list(best.items())[:3]}
    assert significance_tiers([few, {s: v - 0.3 for s, v in few.items()}]) == [1, 1]  # 3 subjects: p >= 0.25
