"""The harness's scoring: embedding in secret orders, the inductive check, retrieval and metrics.

A fitted aligner lives in worker processes (:mod:`eegbench.isolation`). The harness hands the
brain worker the test responses and the images worker the gallery, each in its own order drawn
from the operating system's randomness (:mod:`secrets`): nothing a method sees determines it.
Only the harness, in its own process, restores the true order, computes similarities and ranks;
every embedding it gets from a worker is checked first (the session checks it against the
contract of :func:`eegbench.metrics.check_embeddings`, whatever the worker claims).

Embeddings must be **inductive**: a row's embedding may depend only on that row. The harness
embeds the rows again in a fresh worker, split into random parts, and refuses a method whose
embeddings change (transductive inference belongs to its own track).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from eegbench.isolation import FittedAligner, SubmissionSession, count_rows
from eegbench.metrics import RANK_METRICS, RetrievalResult, metric, retrieve
from eegbench.errors import InvalidInputError, TransductiveMethodError

#: largest accepted distance between the unit-normalised embeddings of a row embedded in two
#: different batches (retrieval compares directions; float32 batched arithmetic differs by ~1e-6)
INDUCTIVE_TOLERANCE = 1e-3

Rows = np.ndarray | Mapping[str, np.ndarray]


def secret_permutation(n: int) -> np.ndarray:
    """A permutation of ``range(n)`` from the operating system's randomness, never from a seed."""
    return np.random.default_rng(secrets.randbits(128)).permutation(n)


def _take(rows: Rows, index: np.ndarray) -> Rows:
    if isinstance(rows, Mapping):
        return {key: np.ascontiguousarray(array[index]) for key, array in rows.items()}
    return np.ascontiguousarray(rows[index])


@dataclass
class HiddenScorer:
    """Scores fitted aligners of one session on test responses and a gallery it keeps to itself.

    Parameters
    ----------
    session : SubmissionSession
        The workers of the submission.
    check_inductive : bool
        Embed every set of rows a second time, in random parts in a fresh worker, and refuse
        transductive methods.
    """

    session: SubmissionSession
    check_inductive: bool = True

    @property
    def method(self) -> str:
        return self.session.submission.id

    def embed(self, side: str, aligner: FittedAligner, variant: str | None, rows: Rows,
              subject: str | None = None) -> np.ndarray:
        """Embeddings of ``rows`` (of ``subject``, for brain responses) in their true order, computed in a
        secret order (checked by the session)."""
        order = secret_permutation(count_rows(rows))
        (embedded,) = self.session.embed(side, aligner, variant, [_take(rows, order)], subject)
        restored = np.empty_like(embedded)
        restored[order] = embedded
        if self.check_inductive and variant is None:
            self._check_inductive(side, aligner, rows, restored, subject)
        return restored

    def _check_inductive(self, side: str, aligner: FittedAligner, rows: Rows, full: np.ndarray,
                         subject: str | None) -> None:
        """Embed the rows again in two random parts, in another worker, and compare directions."""
        n = count_rows(rows)
        if n < 2:
            return
        order = secret_permutation(n)
        cut = 1 + secrets.randbelow(n - 1)
        parts = [order[:cut], order[cut:]]
        outputs = self.session.embed(f"{side}-check", aligner, None, [_take(rows, part) for part in parts], subject)
        again = np.empty_like(full)
        for part, embedded in zip(parts, outputs):
            if embedded.shape[1] != full.shape[1]:
                raise TransductiveMethodError(self._refusal(side, "their width changes with the batch"))
            again[part] = embedded
        distance = np.linalg.norm(_directions(full) - _directions(again), axis=1).max()
        if distance > INDUCTIVE_TOLERANCE:
            raise TransductiveMethodError(self._refusal(
                side, f"a row's embedding moved by {distance:.3g} (tolerance {INDUCTIVE_TOLERANCE:g}) when embedded "
                      "with other rows"))

    def _refusal(self, side: str, why: str) -> str:
        return (f"Method {self.method!r} is transductive: embed_{side} must embed each row on its own, but {why}. "
                "The main board scores inductive methods only; transductive inference belongs to its own track.")

    def score(self, aligner: FittedAligner, variant: str | None, responses: np.ndarray,
              gallery: Mapping[str, np.ndarray], images: np.ndarray | None = None, *,
              subject: str, targets: np.ndarray | None = None) -> tuple[RetrievalResult, np.ndarray]:
        """Retrieval of the gallery from ``subject``'s responses (the gallery embedding can be passed in to reuse it).

        ``targets`` gives the gallery index of each response (single trials); without, response ``i``
        saw gallery image ``i``.
        """
        if images is None:
            images = self.embed("images", aligner, variant, gallery)
        brain = self.embed("brain", aligner, variant, responses, subject)
        if brain.shape[1] != images.shape[1]:
            raise InvalidInputError(f"Method {self.method!r}: brain and image embeddings differ in width "
                                    f"({brain.shape[1]} vs {images.shape[1]}).")
        return retrieve(brain, images, targets), images


def _directions(embedded: np.ndarray) -> np.ndarray:
    return embedded / np.maximum(np.linalg.norm(embedded, axis=1, keepdims=True), 1e-12)


def metric_scores(result: RetrievalResult, metrics: Sequence[str]) -> dict[str, float]:
    """The task's metrics (``top1``, ``top5``...) and the mean rank of one retrieval."""
    scores = {m: round(metric(m).score(result), 6) for m in metrics if m not in RANK_METRICS}
    scores |= {m: round(metric(m).score(result), 4) for m in ("mean_rank", *metrics) if m in RANK_METRICS}
    return scores
