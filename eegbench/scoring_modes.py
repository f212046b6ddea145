"""Scoring modes of a table besides its headline, as NeuralBench reports them.

* **Per subject** (the headline, NeuralBench's ``subject-ind``): each subject's test responses,
  repetitions averaged (or single trials where the task's ``repetitions.test`` is ``single``),
  retrieved by that subject's model; the mean over seeds, then over subjects.
* **Single trial** (``scoring: [single_trial]``): every test trial retrieved on its own, from the
  per-trial ranks each record keeps (``ResultRecord.modes``).
* **Subject-aggregated** (``scoring: [subject_aggregated]``): for each seed, the similarities of each
  test image's averaged responses to the gallery are averaged over the subjects, then ranked: what a
  decoder reading every subject at once would retrieve. Each record keeps its similarity matrix
  (``ResultRecord.similarity``), so the aggregation is recomputed from result files alone.

Everything here is computed from result records, so any table can be rescored without re-running.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from eegbench.metrics import RetrievalResult, metric, rank_similarities
from eegbench.records import PerTrial, ResultRecord
from eegbench.stats import mean_sd

#: column titles of the modes, in table order
MODE_TITLES = {"per_subject": "per subject", "single_trial": "single trial", "subject_aggregated": "subject-aggregated"}


def retrieval_of(per_trial: PerTrial, n_gallery: int) -> RetrievalResult:
    """The retrieval outcome a record kept as per-trial ranks."""
    return RetrievalResult(np.asarray(per_trial.n_better, dtype=np.int64), np.asarray(per_trial.n_tied, dtype=np.int64),
                           n_gallery)


def single_trial_scores(records: Sequence[ResultRecord], name: str) -> list[float]:
    """Per subject, single-trial ``name`` (seeds averaged); empty when the records hold no single-trial mode."""
    by_subject: dict[str, list[float]] = defaultdict(list)
    for record in records:
        mode = record.modes.get("single_trial")
        if mode is not None:
            by_subject[record.subject].append(metric(name).score(retrieval_of(mode.per_trial, record.n_gallery)))
    return [float(np.mean(values)) for _, values in sorted(by_subject.items())]


def subject_aggregated_scores(records: Sequence[ResultRecord], name: str) -> list[float]:
    """Per seed, ``name`` of the subjects' averaged similarity matrices (seeds whose records all keep one)."""
    by_seed: dict[int, list[ResultRecord]] = defaultdict(list)
    for record in records:
        by_seed[record.seed].append(record)
    scores = []
    for _, mine in sorted(by_seed.items()):
        if any(r.similarity is None for r in mine) or len({r.similarity.shape for r in mine}) != 1:
            continue
        averaged = np.mean([r.similarity.array() for r in mine], axis=0)
        scores.append(metric(name).score(rank_similarities(averaged)))
    return scores


def mode_scores(records: Sequence[ResultRecord], name: str) -> dict[str, tuple[float, float, int] | None]:
    """Per mode, the mean and SD of ``name`` and how many values they summarise (subjects, or seeds for the
    aggregated mode); None where the records do not hold the mode."""
    per_subject: dict[str, list[float]] = defaultdict(list)
    for record in records:
        per_subject[record.subject].append(record.scores[name])
    values = {"per_subject": [float(np.mean(v)) for _, v in sorted(per_subject.items())],
              "single_trial": single_trial_scores(records, name),
              "subject_aggregated": subject_aggregated_scores(records, name)}
    return {mode: (*mean_sd(v), len(v)) if v else None for mode, v in values.items()}


def _cell(summary: tuple[float, float, int] | None, name: str) -> str:
    if summary is None:
        return "-"
    mean, sd, _ = summary
    scale = 100.0 if metric(name).k is not None else 1.0
    return f"{scale * mean:.1f} ± {scale * sd:.1f}"


def modes_rows(entries: Sequence[tuple[Sequence[str], Sequence[ResultRecord]]], metrics: Sequence[str]
               ) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the scoring-modes table: each entry's leading cells, then every (mode, metric)."""
    headers = [f"{metric_name} {MODE_TITLES[mode]}" for mode in MODE_TITLES for metric_name in metrics]
    rows = []
    for cells, records in entries:
        summaries = {name: mode_scores(records, name) for name in metrics}
        rows.append([*cells, *[_cell(summaries[name][mode], name) for mode in MODE_TITLES for name in metrics]])
    return headers, rows
