"""The harness's scoring: embedding in secret orders, the inductive check, retrieval and metrics.

A fitted aligner lives in worker processes (:mod:`eegbench.isolation`). The harness hands the
brain worker the test responses and the images worker the gallery, each in its own order drawn
from the operating system's randomness (:mod:`secrets`): nothing a method sees determines it.
Only the harness, in its own process, restores the true order, computes similarities and ranks;
every embedding it gets from a worker is checked first (the session checks it against the
contract of :func:`eegbench.metrics.check_embeddings`, whatever the worker claims).

On inductive tasks (the main board) embeddings must be **inductive**: a row's embedding may
depend only on that row. The harness embeds the rows again in a fresh worker, split into random
parts, and refuses a method whose embeddings change.

On **transductive** tasks (their own track, ``inference: transductive``) one worker embeds the
whole test batch in one call (:meth:`eegbench.submissions.Aligner.embed_test_batch`): the
responses and the gallery, each in its own secret order, and no pairing. The harness restores
both orders and ranks as above; there is no inductive check.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

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
        transductive methods (inductive tasks only).
    inference : {"inductive", "transductive"}
        The task's track: ``transductive`` embeds each test batch, responses and gallery, in one
        call of ``embed_test_batch``.
    """

    session: SubmissionSession
    check_inductive: bool = True
    inference: Literal["inductive", "transductive"] = "inductive"

    @property
    def method(self) -> str:
        return self.session.submission.id

    def embed(self, side: str, aligner: FittedAligner, variant: str | None, rows: Rows,
              subject: str | None = None) -> np.ndarray:
        """Embeddings of ``rows`` (of ``subject``, for brain responses) in their true order, computed in a
        secret order (checked by the session). Inductive tasks only: a transductive embedding depends
        on its batch, which :meth:`embed_batch` embeds whole."""
        if self.inference == "transductive":
            raise InvalidInputError(f"Method {self.method!r}: a transductive task embeds each test batch whole; "
                                    "score it with HiddenScorer.score (one side alone has no transductive embedding).")
        order = secret_permutation(count_rows(rows))
        (embedded,) = self.session.embed(side, aligner, variant, [_take(rows, order)], subject)
        restored = _restored(embedded, order)
        if self.check_inductive and variant is None:
            self._check_inductive(side, aligner, rows, restored, subject)
        return restored

    def embed_batch(self, aligner: FittedAligner, variant: str | None, responses: np.ndarray,
                    gallery: Mapping[str, np.ndarray], subject: str) -> tuple[np.ndarray, np.ndarray]:
        """Brain and image embeddings of a whole test batch in their true orders, computed in one call
        of ``embed_test_batch`` with each set in its own secret order (checked by the session)."""
        brain_order = secret_permutation(len(responses))
        image_order = secret_permutation(count_rows(gallery))
        brain, images = self.session.embed_batch(aligner, variant, _take(responses, brain_order),
                                                 _take(gallery, image_order), subject)
        return _restored(brain, brain_order), _restored(images, image_order)

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
        saw gallery image ``i``. On a transductive task the responses and the gallery are embedded
        together in one call, whatever ``images`` holds (the gallery's embedding depends on the batch).
        """
        if self.inference == "transductive":
            brain, images = self.embed_batch(aligner, variant, responses, gallery, subject)
        else:
            if images is None:
                images = self.embed("images", aligner, variant, gallery)
            brain = self.embed("brain", aligner, variant, responses, subject)
        if brain.shape[1] != images.shape[1]:
            raise InvalidInputError(f"Method {self.method!r}: brain and image embeddings differ in width "
                                    f"({brain.shape[1]} vs {images.shape[1]}).")
        return retrieve(brain, images, targets), images


def _restored(embedded: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Rows embedded in ``order`` put back in their true order."""
    restored = np.empty_like(embedded)
    restored[order] = embedded
    return restored


def _directions(embedded: np.ndarray) -> np.ndarray:
    return embedded / np.maximum(np.linalg.norm(embedded, axis=1, keepdims=True), 1e-12)


def metric_scores(result: RetrievalResult, metrics: Sequence[str]) -> dict[str, float]:
    """The task's metrics (``top1``, ``top5``...) and the mean rank of one retrieval."""
    scores = {m: round(metric(m).score(result), 6) for m in metrics if m not in RANK_METRICS}
    scores |= {m: round(metric(m).score(result), 4) for m in ("mean_rank", *metrics) if m in RANK_METRICS}
    return scores
