"""A guard that data loaders raise in processes running submission code.

Submissions get everything they may use from the harness. In a worker process (see
:mod:`eegbench._worker`) the loaders of datasets, features and backbones refuse to run, so a method
cannot simply load the test data itself. This is a second line of defence: in ``process``
isolation a determined submission could still read files directly; the ``sandbox`` level does not
let it see them at all.
"""

from __future__ import annotations

from eegbench._check import EegbenchError

_IN_SUBMISSION_WORKER = False


class ForbiddenInSubmissionError(EegbenchError):
    """Submission code asked for data it must get from the harness."""


def enter_submission_worker() -> None:
    """Mark this process as one that runs submission code (for its whole life)."""
    global _IN_SUBMISSION_WORKER
    _IN_SUBMISSION_WORKER = True


def refuse_in_submission_worker(what: str) -> None:
    """Raise if called from submission code: a method gets its data from the harness, never by ``what``."""
    if _IN_SUBMISSION_WORKER:
        raise ForbiddenInSubmissionError(
            f"Submissions may not {what}: everything a method may use is passed to fit() in TrainingData.")
