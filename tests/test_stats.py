"""Statistics against known values."""

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest

from eegbench.errors import InvalidInputError
from eegbench.stats import (
    hierarchical_bootstrap_ci,
    holm,
    image_sign_flip_test,
    mean_sd,
    sign_flip_test,
    significance_tiers,
    subject_trials,
)
from eegbench.tasks import resolve_inference_target


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


def _brute_force_image_p(a, b):
    """Every sign pattern of every (subject, trial) difference, zeros included: the share whose mean
    over subjects of per-subject mean differences is at least as far from 0 as the observed one."""
    subjects = sorted(set(a) & set(b))
    diffs = [np.asarray(a[s], float) - np.asarray(b[s], float) for s in subjects]
    flat = np.concatenate(diffs)
    owner = np.concatenate([[i] * len(d) for i, d in enumerate(diffs)])

    def statistic(values):
        return np.mean([values[owner == i].mean() for i in range(len(subjects))])

    observed = abs(statistic(flat))
    extreme = [abs(statistic(flat * np.array(signs))) >= observed - 1e-12
               for signs in itertools.product([1, -1], repeat=len(flat))]
    return np.mean(extreme)


def test_image_test_of_five_wins_is_two_in_thirty_two():
    assert image_sign_flip_test({"s1": np.ones(5)}, {"s1": np.zeros(5)}) == pytest.approx(2 / 32)
    # spread over subjects, with ties (equal outcomes) that cannot flip: still 5 nonzero differences
    a = {"s1": [1, 1, 0, 1], "s2": [1, 0.5, 1, 0]}
    b = {"s1": [0, 0, 0, 1], "s2": [0, 0, 0, 0]}
    assert image_sign_flip_test(a, b) == pytest.approx(2 / 32)


@pytest.mark.parametrize("a, b", [
    ({"s1": [1, 0, 1, 1], "s2": [0.5, 1, 1]}, {"s1": [0, 1, 0, 0], "s2": [0, 0, 1]}),  # subjects of 4 and 3 trials
    ({"s1": [1, 1, 0], "s2": [0, 1, 1, 1, 1], "s3": [1]}, {"s1": [0, 0, 1], "s2": [1, 0, 0, 0, 0], "s3": [0]}),
    ({"s1": [0.2, 0.9, 0.4], "s2": [1, 0, 0]}, {"s1": [0.1, 0.3, 0.4], "s2": [0, 1, 0], "s9": [1, 1, 1]}),
])
def test_image_test_is_exact_for_small_inputs(a, b):
    assert image_sign_flip_test(a, b) == pytest.approx(_brute_force_image_p(a, b))


def test_image_test_weighs_subjects_equally():
    # s1 loses 1 of 2 trials (mean -0.5), s2 wins 4 of 10 (mean +0.4): every sign pattern is at least as far
    # from 0 as the observed mean -0.05, so p = 1; pooling the 12 trials would test the sum 3 of five +-1: 12/32
    a = {"s1": [0, 1], "s2": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]}
    b = {"s1": [1, 1], "s2": [0] * 10}
    assert image_sign_flip_test(a, b) == pytest.approx(_brute_force_image_p(a, b)) == pytest.approx(1.0)
    pooled = image_sign_flip_test({"all": a["s1"] + a["s2"]}, {"all": b["s1"] + b["s2"]})
    assert pooled == pytest.approx(12 / 32)


def test_monte_carlo_image_test_is_close_to_exact_and_never_zero():
    rng = np.random.default_rng(3)
    a = {f"s{i}": rng.random(8) for i in range(2)}
    b = {f"s{i}": rng.random(8) + 0.15 for i in range(2)}  # 16 nonzero differences: 65536 sign patterns
    exact = image_sign_flip_test(a, b, n_resamples=2 ** 16)
    assert 0.01 < exact < 0.5
    sampled = image_sign_flip_test(a, b, n_resamples=5000, seed=1)
    assert sampled == pytest.approx(exact, abs=0.02) and sampled != exact
    assert image_sign_flip_test(a, b, n_resamples=5000, seed=1) == sampled  # seeded
    always = image_sign_flip_test({"s1": np.ones(40)}, {"s1": np.zeros(40)}, n_resamples=999)
    assert always == pytest.approx(1 / 1000)  # (1 + 0) / (1 + n): never 0


def test_image_test_ignores_subject_order_and_needs_equal_trials():
    rng = np.random.default_rng(4)
    a = {f"s{i}": rng.random(50) for i in range(4)}
    b = {f"s{i}": rng.random(50) for i in range(4)}
    reordered = (dict(reversed(list(a.items()))), dict(reversed(list(b.items()))))
    assert image_sign_flip_test(*reordered) == image_sign_flip_test(a, b)
    small_a, small_b = {s: v[:3] for s, v in a.items()}, {s: v[:3] for s, v in b.items()}  # 12 values: exact
    renamed = ({f"t{3 - i}": small_a[f"s{i}"] for i in range(4)}, {f"t{3 - i}": small_b[f"s{i}"] for i in range(4)})
    assert image_sign_flip_test(*renamed) == pytest.approx(image_sign_flip_test(small_a, small_b))
    with pytest.raises(InvalidInputError, match="same test trials in both entries"):
        image_sign_flip_test({"s1": np.ones(5)}, {"s1": np.ones(4)})


def test_image_test_of_identical_outcomes_is_one_and_of_no_common_subject_nan():
    outcomes = {"s1": np.array([1.0, 0.0, 0.5]), "s2": np.array([0.0, 1.0, 1.0])}
    assert image_sign_flip_test(outcomes, dict(outcomes)) == 1.0
    assert math.isnan(image_sign_flip_test({"s1": [1.0]}, {"s2": [0.0]}))


def test_image_level_tiers_separate_what_four_subjects_cannot():
    rng = np.random.default_rng(5)
    base = {f"s{i}": (rng.random(200) < 0.4).astype(float) for i in range(4)}
    better = {s: np.maximum(v, rng.random(200) < 0.2) for s, v in base.items()}  # wins some images, loses none
    scores = [{s: v.mean() for s, v in entry.items()} for entry in (base, better)]
    assert significance_tiers(scores) == [1, 1]  # over 4 subjects p >= 0.125
    assert significance_tiers([base, better], test=image_sign_flip_test) == [2, 1]


def test_inference_target_resolves_auto_by_subject_count():
    assert resolve_inference_target("auto", 4) == "images" and resolve_inference_target("auto", 7) == "images"
    assert resolve_inference_target("auto", 8) == "subjects" and resolve_inference_target("auto", 10) == "subjects"
    assert resolve_inference_target("subjects", 4) == "subjects" and resolve_inference_target("images", 10) == "images"
    with pytest.raises(InvalidInputError, match="Unknown inference target 'trials'"):
        resolve_inference_target("trials", 4)


def test_subject_trials_give_hits_or_ranks_averaged_over_seeds():
    def record(seed, better, tied):
        return SimpleNamespace(subject="sub-01", seed=seed, per_trial=SimpleNamespace(n_better=better, n_tied=tied))

    records = [record(0, [0, 3, 0], [0, 0, 2]), record(1, [2, 3, 0], [0, 0, 0])]
    # ranks: seed 0 (1, 4, 1 + 2/2 = 2), seed 1 (3, 4, 1); top-1 hits (ties shared): (1, 0, 1/3), (0, 0, 1)
    assert subject_trials(records, None)["sub-01"] == pytest.approx([2.0, 4.0, 1.5])
    assert subject_trials(records, 1)["sub-01"] == pytest.approx([0.5, 0.0, 2 / 3])
