"""Statistics of leaderboard entries: aggregation, uncertainty and paired comparisons.

* Headline: per subject, the mean over seeds; then the mean over subjects, with the SD across
  subjects.
* 95 % confidence interval by a hierarchical bootstrap: resample subjects, then test images within
  each resampled subject (per-trial outcomes come from the result files).
* SD across seeds: per subject, the SD of the seeds' scores, averaged over subjects.
* Rank metrics (mean rank): the same bootstrap over per-trial ranks (ties counted half).
* Paired comparisons, Holm-corrected across a table, for one of two inference targets:

  - **subjects**: an exact sign-flip permutation test (``scipy.stats.permutation_test``) of the
    per-subject differences. It generalises to new subjects, but with ``n`` subjects it cannot go
    below ``2 / 2**n`` (0.125 with 4).
  - **images**: a stratified sign-flip test of the per-test-image differences within each subject
    (:func:`image_sign_flip_test`). It generalises only to other test images for *these* subjects,
    and separates methods on boards of few subjects.

  Which one a table uses follows its task's ``inference_target`` (:func:`eegbench.tasks.resolve_inference_target`).
* Significance tiers instead of strict ranks: tier 1 holds the best entry and every entry not
  significantly worse than it by the table's paired test; tier 2 does the same among the rest, and
  so on.

Analyses (:mod:`eegbench.analyses`) add: log-linear fits of accuracy against the amount of data or
backbone size with a confidence band, Pearson correlation, and for representational similarity
row-wise Spearman correlation, a split-half noise ceiling and a max-statistic permutation test.

All resampling is seeded, so the same result files always give the same numbers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import numpy as np
from scipy import stats as sps

from eegbench._check import InvalidInputError
from eegbench.records import ResultRecord
from eegbench.tasks import InferenceTarget

ALPHA = 0.05
#: resample budget of :func:`image_sign_flip_test`: sign patterns are enumerated up to this many
IMAGE_TEST_RESAMPLES = 9999
#: what a paired test generalises to: other ``subjects``, or other test ``images`` of these subjects


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
    better = np.asarray(record.per_trial.n_better, dtype=float)
    tied = np.asarray(record.per_trial.n_tied, dtype=float)
    return np.clip((k - better) / (tied + 1.0), 0.0, 1.0)


def trial_ranks(record: ResultRecord) -> np.ndarray:
    """Per-test-trial 1-based rank of the true image, ties counted half (as
    :attr:`eegbench.metrics.RetrievalResult.ranks`)."""
    better = np.asarray(record.per_trial.n_better, dtype=float)
    tied = np.asarray(record.per_trial.n_tied, dtype=float)
    return better + tied / 2.0 + 1.0


def subject_trials(records: Iterable[ResultRecord], k: int | None) -> dict[str, np.ndarray]:
    """Per subject, the seed-averaged per-trial outcomes ``(n_trials,)``: top-``k`` hits, or with
    ``k`` None (a rank metric, as :attr:`eegbench.metrics.Metric.k`) ranks."""
    by_subject: dict[str, list[np.ndarray]] = defaultdict(list)
    for record in records:
        by_subject[record.subject].append(trial_hits(record, k) if k is not None else trial_ranks(record))
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


def image_sign_flip_test(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], *,
                         n_resamples: int = IMAGE_TEST_RESAMPLES, seed: int = 0) -> float:
    """Two-sided stratified sign-flip test that two entries do equally well on these subjects' test images.

    ``a`` and ``b`` map subjects to per-trial outcomes (e.g. seed-averaged top-k hits from
    :func:`subject_trials`); only the subjects both have count, and each of them must have the same
    trials in both. The statistic is the mean over subjects of each subject's mean difference
    ``a - b`` (subjects weigh equally, whatever their number of trials). Under the null hypothesis
    each (subject, trial) difference is equally likely to have either sign, so the p-value is the
    share of sign patterns whose statistic is at least as far from 0 as the observed one.

    The test generalises to other test images for *these* subjects, not to other subjects: it
    separates methods on boards of few subjects where the test over subjects cannot
    (:func:`sign_flip_test`). Zero differences cannot change sign, so only the ``m`` nonzero ones
    count. With ``2**m <= n_resamples`` every pattern is enumerated and the p-value is exact (the
    smallest attainable is ``2 / 2**m``); otherwise ``n_resamples`` patterns are drawn with ``seed``
    and ``p = (1 + #{as extreme}) / (1 + n_resamples)``, never below ``1 / (1 + n_resamples)``.
    Identical outcomes everywhere give 1; no common subject gives NaN.

    The patterns are applied as one matrix product per block, which for hundreds of trials is
    several times faster than :func:`scipy.stats.permutation_test`; tiering a board runs many tests.
    """
    subjects = sorted(set(a) & set(b))
    if not subjects:
        return float("nan")
    weighted = []
    for subject in subjects:
        x, y = np.asarray(a[subject], dtype=float), np.asarray(b[subject], dtype=float)
        if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
            raise InvalidInputError(f"Subject {subject!r} has per-trial outcomes of shapes {x.shape} and {y.shape}: "
                                    "a paired test over images needs the same test trials in both entries.")
        weighted.append((x - y) / (len(x) * len(subjects)))
    d = np.concatenate(weighted)
    d = d[d != 0]
    if len(d) == 0:
        return 1.0
    observed = abs(d.sum())
    threshold = observed * (1 - 100 * np.finfo(float).eps)  # sums in another order may differ in the last bits
    if 2 ** len(d) <= n_resamples:
        patterns = np.arange(2 ** len(d))[:, None] >> np.arange(len(d)) & 1
        return float(np.count_nonzero(np.abs((2 * patterns - 1) @ d) >= threshold) / len(patterns))
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, n_resamples, 1024):
        signs = 2 * rng.integers(0, 2, size=(min(1024, n_resamples - start), len(d)), dtype=np.int8) - 1
        extreme += np.count_nonzero(np.abs(signs @ d) >= threshold)
    return (1 + extreme) / (1 + n_resamples)


def subject_sign_flip_test(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """:func:`sign_flip_test` of two entries' per-subject scores, over the subjects both have."""
    return sign_flip_test(paired_differences(a, b))


#: the paired test of each inference target, on per-subject scores (subjects) or per-subject
#: per-trial outcomes (images)
PAIRED_TESTS: dict[InferenceTarget, Callable[[Mapping[str, Any], Mapping[str, Any]], float]] = {
    "subjects": subject_sign_flip_test, "images": image_sign_flip_test}


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


Outcomes = TypeVar("Outcomes", bound=Mapping[str, Any])


def significance_tiers(entries: Sequence[Outcomes], alpha: float = ALPHA, *,
                       test: Callable[[Outcomes, Outcomes], float] = subject_sign_flip_test) -> list[int]:
    """Tier of each entry (1 = best) from its per-subject outcomes and a paired ``test``.

    Each entry maps subjects to a score (for :func:`subject_sign_flip_test`) or to per-trial
    outcomes (for :func:`image_sign_flip_test`); entries are ranked by the mean over subjects of
    each subject's mean outcome. Tier 1 is the best entry plus every entry whose paired test against
    it is not significant after Holm correction; the remaining entries are tiered the same way,
    recursively.
    """
    means = [np.mean([np.mean(v) for v in entry.values()]) for entry in entries]
    remaining = sorted(range(len(entries)), key=lambda i: -means[i])
    tiers = [0] * len(entries)
    tier = 0
    while remaining:
        tier += 1
        best, rest = remaining[0], remaining[1:]
        pvalues = holm([test(entries[best], entries[i]) for i in rest])
        same = [i for i, p in zip(rest, pvalues) if np.isnan(p) or p >= alpha]
        for i in [best, *same]:
            tiers[i] = tier
        remaining = [i for i in rest if i not in same]
    return tiers


# --- analyses: scaling fits, correlation, representational similarity -----------------------------


@dataclass(frozen=True)
class LogLinearFit:
    """Ordinary least squares of ``score = intercept + slope * log2(amount)``.

    ``slope`` is the change in score per doubling of the amount. The confidence band is the
    t-based band of the fitted mean, ``t * s * sqrt(1/n + (x - mean(x))**2 / Sxx)`` with ``n - 2``
    degrees of freedom; it reflects the scatter of the points around the line.
    """

    slope: float
    intercept: float
    slope_ci: tuple[float, float]
    r2: float
    n: int
    level: float
    residual_sd: float
    x_mean: float
    sxx: float

    def predict(self, amounts: Sequence[float] | np.ndarray) -> np.ndarray:
        """Fitted scores at ``amounts``."""
        return self.intercept + self.slope * np.log2(np.asarray(amounts, dtype=float))

    def band(self, amounts: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper confidence limits of the fitted mean at ``amounts``."""
        x = np.log2(np.asarray(amounts, dtype=float))
        t = sps.t.ppf(0.5 + self.level / 2, self.n - 2)
        half = t * self.residual_sd * np.sqrt(1 / self.n + (x - self.x_mean) ** 2 / self.sxx)
        centre = self.intercept + self.slope * x
        return centre - half, centre + half

    def to_dict(self) -> dict[str, Any]:
        return {name: (list(value) if isinstance(value, tuple) else value) for name, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogLinearFit:
        return cls(**{**data, "slope_ci": tuple(data["slope_ci"])})


def loglinear_fit(amounts: Sequence[float], scores: Sequence[float], *, level: float = 0.95) -> LogLinearFit:
    """Fit ``scores`` against ``log2(amounts)`` by least squares, with a confidence band.

    Parameters
    ----------
    amounts : sequence of float
        Positive amounts (training images, repetitions, parameters).
    scores : sequence of float
        One score per amount.
    level : float
        Confidence level of the slope interval and of :meth:`LogLinearFit.band`.

    Raises
    ------
    InvalidInputError
        With fewer than 3 points, fewer than 2 distinct amounts, or non-positive amounts.
    """
    x = np.asarray(amounts, dtype=float)
    y = np.asarray(scores, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise InvalidInputError(f"amounts and scores must be 1-d and equally long, got {x.shape} and {y.shape}.")
    if len(x) < 3 or len(np.unique(x)) < 2:
        raise InvalidInputError(f"A log-linear fit with a confidence band needs at least 3 points at 2 or more "
                                f"distinct amounts, got {len(x)} points at {len(np.unique(x))} amounts.")
    if (x <= 0).any():
        raise InvalidInputError(f"Amounts must be positive for a log fit, got {x.tolist()}.")
    log_x = np.log2(x)
    fit = sps.linregress(log_x, y)
    n = len(x)
    residuals = y - (fit.intercept + fit.slope * log_x)
    residual_sd = float(np.sqrt((residuals**2).sum() / (n - 2)))
    t = sps.t.ppf(0.5 + level / 2, n - 2)
    return LogLinearFit(
        slope=float(fit.slope), intercept=float(fit.intercept),
        slope_ci=(float(fit.slope - t * fit.stderr), float(fit.slope + t * fit.stderr)),
        r2=float(fit.rvalue**2), n=n, level=level, residual_sd=residual_sd, x_mean=float(log_x.mean()),
        sxx=float(((log_x - log_x.mean()) ** 2).sum()),
    )


def pearson(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Pearson r and its two-sided p-value (``scipy.stats.pearsonr``); NaNs below 3 points or for a
    constant input, where neither is defined."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), float("nan")
    result = sps.pearsonr(a, b)
    return float(result.statistic), float(result.pvalue)


def _standardised_ranks(vectors: np.ndarray) -> np.ndarray:
    """Rank each row (ties averaged), centre it and scale it to unit norm: the dot product of two
    such rows is their Spearman correlation."""
    ranks = sps.rankdata(vectors, axis=-1)
    ranks -= ranks.mean(-1, keepdims=True)
    return ranks / np.maximum(np.linalg.norm(ranks, axis=-1, keepdims=True), 1e-300)


def paired_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (arrays ``(n, d)``)."""
    return np.einsum("nd,nd->n", _standardised_ranks(np.atleast_2d(a)), _standardised_ranks(np.atleast_2d(b)))


def split_half_noise_ceiling(half_correlation: float | np.ndarray) -> float | np.ndarray:
    """Highest correlation a noise-free model can reach with data whose split halves correlate
    ``half_correlation``.

    The Spearman-Brown formula ``2r / (1 + r)`` gives the reliability of the full data from the
    correlation of its halves; a perfect model correlates with the data at most ``sqrt`` of that
    reliability. Negative half correlations give a ceiling of 0.
    """
    r = np.clip(np.asarray(half_correlation, dtype=float), 0.0, 1.0)
    ceiling = np.sqrt(2 * r / (1 + r))
    return float(ceiling) if ceiling.ndim == 0 else ceiling


def _condensed_index(n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each entry of a condensed (upper-triangle, row-major) distance vector."""
    return np.triu_indices(n_items, k=1)


def rsa_permutation_test(model_rdms: np.ndarray, data_rdms: np.ndarray, n_items: int, *,
                         n_permutations: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Permutation test of the Spearman correlation between model and data RDMs, corrected for
    every (model, data) cell with the maximum statistic.

    The statistic of a cell is the Spearman correlation of a model RDM with a data RDM, averaged
    over subjects. Under the null hypothesis the item labels are exchangeable, so the model RDMs'
    rows and columns are permuted together; each permutation's largest statistic over all cells
    forms the null distribution, which controls the family-wise error over models and time points.
    When ``n_items!`` is at most ``n_permutations`` every permutation is enumerated and the p-value
    is exact; otherwise it is ``(1 + #{null >= observed}) / (1 + n_permutations)``.

    Parameters
    ----------
    model_rdms : array, shape (n_models, n_pairs)
        Condensed model RDMs (``n_pairs = n_items * (n_items - 1) / 2``).
    data_rdms : array, shape (n_subjects, n_cells, n_pairs) or (n_cells, n_pairs)
        Condensed data RDMs (e.g. one per time point), per subject.
    n_items : int
        Number of items (conditions) of the RDMs.

    Returns
    -------
    observed : array, shape (n_models, n_cells)
        Subject-averaged Spearman correlations.
    pvalues : array, shape (n_models, n_cells)
        One-sided (positive correlation), family-wise corrected p-values.
    """
    import itertools

    n_pairs = n_items * (n_items - 1) // 2
    model = np.atleast_2d(np.asarray(model_rdms, dtype=float))
    data = np.asarray(data_rdms, dtype=float)
    data = data[None] if data.ndim == 2 else data
    if model.shape[-1] != n_pairs or data.shape[-1] != n_pairs:
        raise InvalidInputError(f"RDMs of {n_items} items have {n_pairs} entries; got model RDMs of "
                                f"{model.shape[-1]} and data RDMs of {data.shape[-1]}.")
    model_z = _standardised_ranks(model)
    data_z = _standardised_ranks(data).mean(0)  # mean over subjects of each subject's Spearman
    observed = model_z @ data_z.T
    rows, cols = _condensed_index(n_items)
    position = np.zeros((n_items, n_items), dtype=np.int64)
    position[rows, cols] = position[cols, rows] = np.arange(n_pairs)
    if math.factorial(n_items) <= n_permutations:
        permutations = np.array(list(itertools.permutations(range(n_items))))
        exact = True
    else:
        rng = np.random.default_rng(seed)
        permutations = np.array([rng.permutation(n_items) for _ in range(n_permutations)])
        exact = False
    maxima = np.empty(len(permutations))
    for start in range(0, len(permutations), 64):
        block = permutations[start:start + 64]
        gathered = model_z[:, position[block[:, rows], block[:, cols]]]  # (models, block, pairs)
        maxima[start:start + len(block)] = np.einsum("mbp,cp->bmc", gathered, data_z).reshape(len(block), -1).max(1)
    exceed = (maxima[None, None, :] >= observed[..., None] - 1e-12).sum(-1)
    pvalues = exceed / len(maxima) if exact else (1 + exceed) / (1 + len(maxima))
    return observed, pvalues
