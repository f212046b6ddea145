"""Aggregation and statistics of per-unit scores."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from eegbench.results import ResultRecord


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
