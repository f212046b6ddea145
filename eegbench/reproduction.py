"""Re-run the exact configuration of a result file and report how far the new numbers are.

Everything needed is in the record: task id, version and content hash, method and its full
hyperparameters, backbone and layer request, subject and seed. The re-run writes into a private
folder, so the original file and the results store are never touched.

A result file is untrusted: it only *names* the method, and only a registered submission (see
:func:`eegbench.submissions.list_submissions`) is run; no code is ever loaded from a path it gives.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eegbench._check import InvalidInputError, unknown_name
from eegbench._progress import logger
from eegbench.attestation import AttestationRecord, attester, scores_agree, write_attestation
from eegbench.records import ResultRecord
from eegbench.results import ResultStore
from eegbench.runner import run
from eegbench.submissions import list_submissions, load_submission
from eegbench.tasks import Task, load_task


@dataclass
class Reproduction:
    """A recorded result next to its re-run."""

    path: Path
    original: ResultRecord
    reproduced: ResultRecord
    warnings: list[str] = field(default_factory=list)

    @property
    def differences(self) -> dict[str, float]:
        """Re-run minus recorded, per score (fractions, not %)."""
        return {name: self.reproduced.scores[name] - value for name, value in self.original.scores.items()
                if name in self.reproduced.scores}

    @property
    def identical_trials(self) -> bool:
        """Whether every test trial got the same rank as in the recorded run."""
        return self.original.per_trial == self.reproduced.per_trial

    def within(self, tolerance: float) -> bool:
        """Whether every task metric moved by at most ``tolerance`` (a fraction: 0.01 = 1 point)."""
        return scores_agree(self.original.scores, self.reproduced.scores, self.original.task.metrics, tolerance)

    def attest(self, results_dir: str | Path, *, tolerance: float, by: str | None = None) -> tuple[AttestationRecord, Path]:
        """Sign off this re-run: file an :class:`~eegbench.attestation.AttestationRecord` (whether it agreed
        within ``tolerance``, a fraction) and the re-run's record under ``results_dir``, the results folder of
        the recorded file. Returns the attestation and its path."""
        attestation = AttestationRecord.of(self.original, self.reproduced, tolerance=tolerance, by=attester(by),
                                           identical_trials=self.identical_trials, warnings=self.warnings)
        return attestation, write_attestation(results_dir, attestation, self.reproduced)

    def table(self) -> str:
        from tabulate import tabulate

        rows = []
        for name, value in self.original.scores.items():
            scale = 1.0 if name == "mean_rank" else 100.0
            rows.append([name, f"{scale * value:.2f}", f"{scale * self.reproduced.scores[name]:.2f}",
                         f"{scale * self.differences[name]:+.2f}"])
        return tabulate(rows, ["score", "recorded", "reproduced", "difference"], tablefmt="github",
                        disable_numparse=True)


def _task_of(record: ResultRecord, task: str | Task | None) -> Task:
    """The task the record was computed on; a changed task file is an error, never silently used."""
    loaded = task if isinstance(task, Task) else load_task(task or record.task.id)
    recorded = (record.task.id, record.task.version, record.task.hash)
    if (loaded.id, loaded.version, loaded.content_hash) != recorded:
        raise InvalidInputError(
            f"The result was computed on task {recorded[0]!r} version {recorded[1]} (content hash "
            f"{recorded[2][:12]}), but the task file found is {loaded.id!r} version {loaded.version} (content "
            f"hash {loaded.content_hash[:12]}). Pass the task file of that version with --task FILE "
            "(e.g. from the git commit recorded in the result's environment)."
        )
    return loaded


def _registered_method(record: ResultRecord, path: Path) -> str:
    """The record's method id, which must be that of a registered submission (else InvalidInputError)."""
    method = record.method.id
    registered = list_submissions()
    if method not in registered:
        raise unknown_name("method", method, registered, f"{path} names it, but reproduce runs registered "
                           "submissions only (submissions/<id>/ or $EEGBENCH_SUBMISSIONS_PATH).")
    return method


def _analysis_options(record: ResultRecord) -> dict:
    """What a data-scaling record ran besides the configuration: its training fraction and the test
    repetition counts it also scored (so a re-run trains and scores exactly as recorded)."""
    return {"train_fraction": record.task.train_fraction, "test_repetitions": sorted(record.test_repetitions) or None}


def reproduce(result: str | Path, *, task: str | Task | None = None, device: str = "auto",
              data_root: str | Path | None = None, weights: str | Path | None = None,
              work_dir: str | Path | None = None) -> Reproduction:
    """Re-run the configuration recorded in ``result`` and compare the scores.

    Parameters
    ----------
    result : path-like
        A result file written by :func:`eegbench.run`.
    task : str or Task, optional
        The task file to use if the registered one has changed since the result was written; it
        must have the recorded id, version and content hash.
    device, data_root, weights
        As in :func:`eegbench.run`.
    work_dir : path-like, optional
        Where the re-run writes its result (default: a temporary folder, removed afterwards).

    Returns
    -------
    Reproduction
        The recorded and re-run records, their differences and any provenance warnings (changed
        submission code, dataset fingerprint or backbone weights).

    Raises
    ------
    InvalidInputError
        If the record names no registered submission, or was computed on another task version.
    """
    path = Path(result)
    original = ResultStore(path.parent).read(path)
    method = _registered_method(original, path)
    loaded_task = _task_of(original, task)
    warnings = []
    submission = load_submission(method)
    if submission.code_sha256 != original.method.code_sha256:
        warnings.append(f"the code of submission {submission.id!r} changed since the result was written "
                        f"({original.method.code_sha256[:12]} -> {submission.code_sha256[:12]}).")
    if original.environment.git.dirty:
        warnings.append("the result was written from a git checkout with uncommitted changes.")
    with tempfile.TemporaryDirectory(prefix="eegbench-reproduce-") as tmp:
        rerun = run(loaded_task, method, original.backbone.name,
                    original.backbone.layer_request, subjects=[original.subject], seeds=[original.seed],
                    hyperparameters=original.method.hyperparameters, device=device,
                    results_dir=work_dir or tmp, overwrite="always", data_root=data_root, weights=weights,
                    batch_units=1, **_analysis_options(original))
    reproduced = rerun.records[0]
    if reproduced.dataset.fingerprint != original.dataset.fingerprint:
        warnings.append("the dataset fingerprint differs from the recorded one.")
    if reproduced.backbone.identity != original.backbone.identity:
        warnings.append("the backbone identity differs from the recorded one.")
    reproduction = Reproduction(path, original, reproduced, warnings)
    logger.info("Reproduced %s: max |difference| %.4f", path.name,
                float(np.max(np.abs(list(reproduction.differences.values())))))
    return reproduction
