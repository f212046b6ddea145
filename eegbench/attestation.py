"""Trust levels: which result records a maintainer reproduced, and the attestations that say so.

Every board entry is ``self-reported`` (result files attached to a pull request) unless a
maintainer re-ran it with ``eegbench reproduce --attest``. That writes an :class:`AttestationRecord`
(who, where, when, on what hardware, the recorded and reproduced scores, whether they agreed
within the tolerance, and the content hashes of the reproduced record and of the re-run's record),
beside the re-run's own record, into the reserved folder of the results root that no result loader
reads (:data:`eegbench.results.ATTESTATIONS_DIR`)::

    <results_dir>/_attestations/<unit path without .json>/<record hash[:16]>-<UTC time>.attestation.json
    <results_dir>/_attestations/<unit path without .json>/<record hash[:16]>-<UTC time>.reproduction.json

A record is ``reproduced`` only while an attestation that agreed names its exact content hash
(:func:`record_sha256`): editing a record after its attestation (a score, a hyperparameter, a
trial's rank) changes the hash, and the record is self-reported again. Attestations are files in
the repository like results: they are trusted because maintainers commit them, and the pull-request
check flags any that a pull request adds (:mod:`eegbench.pr`).
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from eegbench._check import DataError, InvalidInputError
from eegbench._io import atomic_write_json, explain_os_errors, hash_json
from eegbench._progress import logger
from eegbench.records import MetricName, ResultRecord, Scores, Sha256, read_record, upgrade
from eegbench.results import ATTESTATIONS_DIR

__all__ = ["TRUST_LEVELS", "Attestations", "AttestationRecord", "Hardware", "attester", "load_attestations",
           "record_sha256", "results_root", "scores_agree", "write_attestation"]

ATTESTATION_SCHEMA_VERSION = 1
#: the trust levels of a record or a board entry, lowest first
TRUST_LEVELS = ("self-reported", "reproduced")
Trust = Literal["self-reported", "reproduced"]
#: a person's name as written in an attestation: printable text on one line
_PERSON_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]{1,200}$"
_ATTESTATION_SUFFIX = ".attestation.json"
_REPRODUCTION_SUFFIX = ".reproduction.json"


def record_sha256(record: ResultRecord) -> str:
    """The content hash of a result record: sha256 of the canonical JSON of every field, as validated.

    Formatting and key order of the file do not count; any value does."""
    return hash_json(record.model_dump(mode="json"))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hardware(_Model):
    """Where the re-run computed, from its record's environment."""

    platform: str
    machine: str
    cpu_count: int | None
    torch_threads: int
    device: str
    device_name: str | None


class AttestationRecord(_Model):
    """A maintainer's signed-off statement that a re-run of one result record gave the same scores.

    ``agreed`` must be what ``recorded`` and ``reproduced`` say: every metric of ``metrics`` moved
    by at most ``tolerance`` (a fraction: 0.01 = 1 point), as :meth:`Reproduction.within
    <eegbench.reproduction.Reproduction.within>` decides; a file that claims otherwise is invalid.
    """

    schema_version: Literal[1] = ATTESTATION_SCHEMA_VERSION
    #: UTC time of the attestation, ``YYYY-MM-DDTHH:MM:SSZ``
    created: Annotated[str, Field(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")]
    #: who signed it off (``--by``, else git's user.name and user.email, else the login name)
    by: Annotated[str, Field(pattern=_PERSON_PATTERN)]
    #: the machine the re-run ran on
    host: Annotated[str, Field(pattern=_PERSON_PATTERN)]
    hardware: Hardware
    eegbench: str
    #: the unit's path under the results root (its :class:`~eegbench.records.UnitKey`)
    unit: Annotated[str, Field(pattern=r"^([A-Za-z0-9][A-Za-z0-9_.+=-]*/)*[A-Za-z0-9][A-Za-z0-9_.+=-]*\.json$")]
    #: content hash of the reproduced record (:func:`record_sha256`)
    record_sha256: Sha256
    #: content hash of the re-run's record, filed beside the attestation
    reproduction_sha256: Sha256
    #: the task's metrics, which must agree
    metrics: list[MetricName]
    recorded: Scores
    reproduced: Scores
    tolerance: Annotated[float, Field(ge=0)]
    agreed: bool
    #: whether every test trial got the same rank as recorded
    identical_trials: bool
    #: provenance warnings of the re-run (changed submission code, dataset fingerprint, weights)
    warnings: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _agreement_is_what_the_scores_say(self) -> AttestationRecord:
        missing = [m for m in self.metrics if m not in self.recorded or m not in self.reproduced]
        if missing:
            raise ValueError(f"metrics {missing} lack a recorded or reproduced score")
        agree = scores_agree(self.recorded, self.reproduced, self.metrics, self.tolerance)
        if self.agreed != agree:
            raise ValueError(f"agreed is {self.agreed}, but the scores {'do' if agree else 'do not'} agree within "
                             f"{self.tolerance}")
        return self

    @classmethod
    def from_disk(cls, data: Mapping[str, Any]) -> AttestationRecord:
        """Validate an attestation read from a file."""
        return cls.model_validate(upgrade(data, ATTESTATION_SCHEMA_VERSION, {}, "attestation"))

    @classmethod
    def of(cls, original: ResultRecord, reproduced: ResultRecord, *, tolerance: float, by: str,
           identical_trials: bool, warnings: Iterable[str] = ()) -> AttestationRecord:
        """The attestation of a re-run of ``original``, signed off by ``by``, made here and now."""
        metrics = list(original.task.metrics)
        environment = reproduced.environment
        return cls.model_validate(dict(
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), by=by, host=socket.gethostname(),
            hardware=Hardware(**{name: getattr(environment, name) for name in Hardware.model_fields}),
            eegbench=environment.eegbench, unit=original.key.relative_path().as_posix(),
            record_sha256=record_sha256(original), reproduction_sha256=record_sha256(reproduced), metrics=metrics,
            recorded=original.scores, reproduced=reproduced.scores, tolerance=tolerance,
            agreed=scores_agree(original.scores, reproduced.scores, metrics, tolerance),
            identical_trials=identical_trials, warnings=list(warnings)))


def scores_agree(recorded: Mapping[str, float], reproduced: Mapping[str, float], metrics: Iterable[str],
                 tolerance: float) -> bool:
    """Whether every metric of ``metrics`` moved by at most ``tolerance`` (a fraction: 0.01 = 1 point): the one
    rule of agreement, of :meth:`Reproduction.within <eegbench.reproduction.Reproduction.within>` and of
    attestations."""
    return all(abs(reproduced[m] - recorded[m]) <= tolerance for m in metrics)


def attester(by: str | None = None) -> str:
    """Who signs an attestation off: ``by``, else git's ``user.name <user.email>``, else the login name."""
    if by is None:
        by = _git_user() or os.environ.get("USER") or _login_name()
    if not by or not by.strip() or len(by) > 200 or not by.isprintable():
        raise InvalidInputError(f"An attestation names who signed it off (printable text, at most 200 characters), "
                                f"got {by!r}: pass --by 'Name <email>'.")
    return by.strip()


def _git_user() -> str | None:
    """``user.name <user.email>`` of git's configuration, or None where git or the name is missing."""
    def config(key: str) -> str:
        try:
            return subprocess.run(["git", "config", key], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    name = config("user.name")
    email = config("user.email")
    return (f"{name} <{email}>" if email else name) or None


def _login_name() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in the environment nor the password database
        return None


def results_root(result: str | Path) -> Path:
    """The results folder a result file is filed in: the file must sit at its unit's path under it
    (else InvalidInputError, before anything is re-run), so its attestation is filed beside it."""
    path = Path(result).absolute()
    relative = read_record(path, ResultRecord, "Result file").key.relative_path()
    if path.parts[-len(relative.parts):] != relative.parts:
        raise InvalidInputError(f"--attest needs a result file filed in a results folder, at <results-dir>/"
                                f"{relative.as_posix()}; {result} is not. Attest the file where the board reads it.")
    return Path(*path.parts[:-len(relative.parts)])


def write_attestation(results_dir: str | Path, attestation: AttestationRecord, reproduced: ResultRecord) -> Path:
    """File an attestation and the re-run's record under ``results_dir``; returns the attestation's path."""
    if attestation.reproduction_sha256 != record_sha256(reproduced):
        raise DataError("The re-run record given is not the one the attestation names.")
    folder = Path(results_dir) / ATTESTATIONS_DIR / Path(attestation.unit).with_suffix("")
    stem = f"{attestation.record_sha256[:16]}-{attestation.created.replace('-', '').replace(':', '')}"
    path = folder / f"{stem}{_ATTESTATION_SUFFIX}"
    with explain_os_errors(path, instead="pass a result file in a results folder you can write"):
        atomic_write_json(folder / f"{stem}{_REPRODUCTION_SUFFIX}", reproduced.model_dump(mode="json"))
        atomic_write_json(path, attestation.model_dump(mode="json"))
    return path


def load_attestations(results_dir: str | Path) -> list[AttestationRecord]:
    """Every valid attestation of a results folder, in path order; invalid files are skipped with one warning
    (a record they would vouch for stays self-reported)."""
    attestations, skipped = [], []
    for path in sorted((Path(results_dir) / ATTESTATIONS_DIR).rglob(f"*{_ATTESTATION_SUFFIX}")):
        try:
            attestations.append(read_record(path, AttestationRecord, "Attestation file"))
        except DataError as err:
            skipped.append(" ".join(str(err).split()))
    if skipped:
        logger.warning("Skipped %d invalid attestation files:\n%s", len(skipped),
                       "\n".join(f"- {problem}" for problem in skipped))
    return attestations


@dataclass(frozen=True)
class Attestations:
    """What the attestations of a results folder vouch for: the content hashes of the records that a
    re-run reproduced within its tolerance."""

    reproduced: frozenset[str] = frozenset()

    @classmethod
    def load(cls, results_dir: str | Path) -> Attestations:
        return cls.of(load_attestations(results_dir))

    @classmethod
    def of(cls, attestations: Iterable[AttestationRecord]) -> Attestations:
        return cls(frozenset(a.record_sha256 for a in attestations if a.agreed))

    def trust(self, record: ResultRecord) -> Trust:
        """``reproduced`` if an agreeing attestation names the record's exact content hash."""
        if not self.reproduced:  # no attestation: spare hashing every record of the board
            return "self-reported"
        return "reproduced" if record_sha256(record) in self.reproduced else "self-reported"

    def entry_trust(self, records: Iterable[ResultRecord]) -> Trust:
        """A board entry is ``reproduced`` when every one of its records is."""
        return "reproduced" if all(self.trust(r) == "reproduced" for r in records) else "self-reported"
