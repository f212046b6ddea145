"""Statistics of leaderboard entries: aggregation, uncertainty and paired comparisons.

* Headline: per subject, the mean over seeds; then the mean over subjects, with the SD across
  subjects.
* 95 % confidence interval by a hierarchical bootstrap: resample subjects, then test images within
  each resampled subject (per-trial outcomes come from the result files).
* SD across seeds: per subject, the SD of the seeds' scores, averaged over subjects.
* Paired comparisons over subjects: an exact sign-flip permutation test (``scipy.stats.
  permutation_test``) of the per-subject differences, Holm-corrected across a table.
* Significance tiers instead of strict ranks: tier 1 holds the best entry and every entry not
  significantly worse than it; tier 2 does the same among the rest, and so on.

All resampling is seeded, so the same result files always give the same numbers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from eegbench.results import ResultRecord

ALPHA = 0.05


def seed_averaged(records: Iterable[ResultRecord], metric: str) -> dict[str, float]:
    """Per subject, the mean of ``metric`` over that subject's seeds."""
    by_subject: dict[str, list[float]] = defaultdict(list)
    for record in records:
        by_subject[record.subject].append(record.scores[metric])
    return {subject: float(np.mean(values)) for subject, values in sorted(by_subject.items())}


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def seed_sd(records: Iterable[ResultRecord], metric: str) -> float | None:
    """SD across seeds within each subject, averaged over subjects (None with a single seed)."""
    by_subject: dict[str, list[float]] = defaultdict(list)
    for record in records:
        by_subject[record.subject].append(record.scores[metric])
    sds = [np.std(values, ddof=1) for values in by_subject.values() if len(values) > 1]
    return float(np.mean(sds)) if sds else None


def trial_hits(record: ResultRecord, k: int) -> np.ndarray:
    """Per-test-trial top-``k`` outcome of a record, ties counted as in the harness."""
    better = np.asarray(record.per_trial["n_better"], dtype=float)
    tied = np.asarray(record.per_trial["n_tied"], dtype=float)
    return np.clip((k - better) / (tied + 1.0), 0.0, 1.0)


def subject_trials(records: Iterable[ResultRecord], k: int) -> dict[str, np.ndarray]:
    """Per subject, the seed-averaged per-trial outcomes ``(n_trials,)``."""
    by_subject: dict[str, list[np.ndarray]] = defaultdict(list)
    for record in records:
        by_subject[record.subject].append(trial_hits(record, k))
    return {subject: np.mean(np.stack(hits), axis=0) for subject, hits in sorted(by_subject.items())}


def hierarchical_bootstrap_ci(per_subject: Mapping[str, np.ndarray], *, level: float = 0.95,
                              n_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the mean over subjects, resampling subjects then trials within subjects.

    Parameters
    ----------
    per_subject : mapping of subject to array of shape (n_trials,)
        Per-trial outcomes (already averaged over seeds).
    """
    rng = np.random.default_rng(seed)
    arrays = list(per_subject.values())
    n_subjects = len(arrays)
    n_trials = max(len(a) for a in arrays)
    padded = np.full((n_subjects, n_trials), np.nan)
    for i, array in enumerate(arrays):
        padded[i, : len(array)] = array
    lengths = np.array([len(a) for a in arrays])
    subjects = rng.integers(0, n_subjects, size=(n_resamples, n_subjects))
    trials = (rng.random((n_resamples, n_subjects, n_trials)) * lengths[subjects][..., None]).astype(int)
    valid = np.arange(n_trials)[None, None] < lengths[subjects][..., None]
    draws = np.where(valid, padded[subjects[..., None], trials], 0.0).sum(-1) / lengths[subjects]
    means = draws.mean(1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def sign_flip_test(differences: Sequence[float]) -> float:
    """Two-sided exact sign-flip permutation test that the mean paired difference is zero.

    With ``n`` subjects there are ``2**n`` sign patterns, so the smallest attainable p-value is
    ``2 / 2**n`` (0.125 with 4 subjects, 0.002 with 10). Returns NaN with fewer than 2 pairs.
    """
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return float("nan")
    if np.all(d == 0):
        return 1.0
    result = sps.permutation_test((d,), np.mean, permutation_type="samples", alternative="two-sided",
                                  n_resamples=np.inf)
    return float(min(1.0, result.pvalue))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone); NaNs are passed through."""
    p = np.asarray(pvalues, dtype=float)
    finite = np.flatnonzero(~np.isnan(p))
    adjusted = p.copy()
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(order) - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted.tolist()


def paired_differences(a: Mapping[str, float], b: Mapping[str, float]) -> list[float]:
    """``a - b`` for the subjects both have, in subject order."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def significance_tiers(scores: Sequence[Mapping[str, float]], alpha: float = ALPHA) -> list[int]:
    """Tier of each entry (1 = best) from per-subject scores.

    Entries are ranked by mean score. Tier 1 is the best entry plus every entry whose paired
    sign-flip test against it is not significant after Holm correction; the remaining entries are
    tiered the same way, recursively.
    """
    means = [np.mean(list(s.values())) for s in scores]
    remaining = sorted(range(len(scores)), key=lambda i: -means[i])
    tiers = [0] * len(scores)
    tier = 0
    while remaining:
        tier += 1
        best, rest = remaining[0], remaining[1:]
        pvalues = holm([sign_flip_test(paired_differences(scores[best], scores[i])) for i in rest])
        same = [i for i, p in zip(rest, pvalues) if np.isnan(p) or p >= alpha]
        for i in [best, *same]:
            tiers[i] = tier
        remaining = [i for i in rest if i not in same]
    return tiers
