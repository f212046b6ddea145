"""The result store: where result records live, and how concurrent processes share it.

The records themselves (their schema and versions) are :mod:`eegbench.records`.

A unit is (task and version, method, backbone, layer setting, hyperparameter tag, subject, seed).
Files live at::

    <results_dir>/<task>/v<version>/<method>/<backbone>/<layer setting>/<hp tag>/<subject>_seed-<seed>.json

and are written atomically as each unit finishes, so an interrupted run loses at most the units
in flight and a rerun skips the finished ones. Leaderboards are built from these files alone.

Many processes (local runs, Slurm jobs on a shared filesystem) may work on one store at once. A
process computes a unit only while it holds the unit's **claim**: a hidden lock file beside the
result (``.<subject>_seed-<seed>.lock``) created atomically and kept fresh by a heartbeat. A claim
whose heartbeat stopped (or whose process is gone, on the same host) is stale and is taken over,
so a killed job's units are re-run while a live job's are not. A lock file that holds no valid claim
(left empty or garbled by a crash) is never refreshed by anyone: it is stale once it is older than one
heartbeat. SIGTERM (what Slurm sends on cancel or timeout) ends a process holding claims as an
interrupt does, so its claims are released. A unit that raises leaves a hidden
**failure record** (``.<subject>_seed-<seed>.failed.json``) with the traceback and the number of
attempts; a result file supersedes it.

Analyses (data and backbone scaling, representational similarity) write :class:`AnalysisRecord`
files beside them, in a folder that no task id can take::

    <results_dir>/_analyses/<task>/v<version>/<kind>/<name>.json

The unit results an analysis trains for itself (on subsets of the data) live below
``<results_dir>/_analyses/<task>/v<version>/<kind>/runs/``, so they never enter the main tables.
Protocol-pitfall records (``_pitfalls/``) and attestations of reproduced records (``_attestations/``)
have reserved folders of their own too (:data:`RESERVED_DIRS`).

Result files are untrusted input (anyone can drop one into a results folder, or hand one to
``eegbench reproduce``): every identifier a record carries must match a strict pattern, so none can
put a path separator, ``..`` or a control character into a path or a table; the store reads only
files that sit where their own key says; and a file that is no valid record of its unit does not
count as done.

The store checks its folder when it is opened (a file where the folder belongs is an error at once)
and, before a run computes anything, that it can write there (:meth:`ResultStore.check_writable`). A
write that fails for a reason the user can fix (a full disk, a read-only folder) is a
:class:`~eegbench._check.StorageError` naming the file; the atomic writes leave no partial file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from eegbench._check import DataError, InvalidInputError
from eegbench._io import atomic_write_json, check_folder_path, check_writable_folder, explain_os_errors
from eegbench._progress import logger
from eegbench.provenance import now
from eegbench.records import ANALYSES_DIR, AnalysisRecord, ResultRecord, UnitKey, read_record

#: where protocol-pitfall records (:mod:`eegbench.pitfalls`) are filed: no result loader reads this folder
PITFALLS_DIR = "_pitfalls"
#: where attestations of reproduced records (:mod:`eegbench.attestation`) are filed: no result loader reads it
ATTESTATIONS_DIR = "_attestations"
#: folders of a results root that hold records of other types than results (no task id starts with "_")
RESERVED_DIRS = (ANALYSES_DIR, PITFALLS_DIR, ATTESTATIONS_DIR)

OVERWRITE_MODES = ("missing", "always", "never")
#: seconds between two refreshes of a held claim
HEARTBEAT_SECONDS = 30.0
#: a claim not refreshed for this long belongs to a dead process (10 missed heartbeats)
STALE_SECONDS = 300.0
#: what to do when the results folder cannot be written (the rest of the message says why)
_INSTEAD = "pass another --results-dir"


class ResultStore:
    """The folder of result files of a benchmark, safe to share between concurrent processes.

    Parameters
    ----------
    root : path-like
        Root folder of the result files.
    heartbeat_seconds : float
        How often a process refreshes the claims it holds.
    stale_seconds : float
        A claim not refreshed for this long is stale: its process is presumed dead and the unit
        may be taken over. The hosts sharing a store need clocks synchronised well within it.
    """

    def __init__(self, root: str | Path, *, heartbeat_seconds: float = HEARTBEAT_SECONDS,
                 stale_seconds: float = STALE_SECONDS) -> None:
        if not 0 < heartbeat_seconds < stale_seconds:
            raise InvalidInputError(f"Claims need 0 < heartbeat_seconds < stale_seconds, got {heartbeat_seconds} "
                                    f"and {stale_seconds}.")
        self.root = check_folder_path(Path(root), _INSTEAD)
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_seconds = stale_seconds

    def path(self, key: UnitKey) -> Path:
        return self.root / key.relative_path()

    def check_writable(self) -> None:
        """Fail at once (:class:`StorageError`) if result files cannot be written: call before computing."""
        check_writable_folder(self.root, _INSTEAD)

    def exists(self, key: UnitKey) -> bool:
        """Whether the unit is done: its file holds a valid record of this very key.

        Anything else at the unit's path (a truncated or unreadable file, an invalid record, the
        record of another unit) is moved aside as ``<name>.corrupt``, replacing an older one, with
        a warning; the unit then counts as not done, so runs and sweeps compute it again.
        """
        path = self.path(key)
        if not path.is_file():
            return False
        try:
            if self._placed_record(path).key == key:
                return True
            problem = f"Result file {path} holds the record of another unit"
        except DataError as err:
            problem = str(err)
        self._set_aside(key, problem)
        return False

    def corrupt_path(self, key: UnitKey) -> Path:
        """Where :meth:`exists` moved the unit's last corrupt result file."""
        path = self.path(key)
        return path.with_name(path.name + ".corrupt")

    def _set_aside(self, key: UnitKey, problem: str) -> None:
        corrupt = self.corrupt_path(key)
        try:
            os.replace(self.path(key), corrupt)
        except FileNotFoundError:  # another process set it aside first
            return
        logger.warning("%s; moved it aside to %s, and the unit will be computed again.", _one_line(problem),
                       corrupt)

    def write(self, record: ResultRecord) -> Path:
        """Write a record atomically; it supersedes the unit's failure record, if any."""
        path = self.path(record.key)
        with explain_os_errors(path, instead=_INSTEAD):
            atomic_write_json(path, record.model_dump(mode="json"))
        self.failure_path(record.key).unlink(missing_ok=True)
        return path

    def read(self, path: str | Path) -> ResultRecord:
        return read_record(Path(path), ResultRecord, "Result file")

    def records(self) -> Iterator[ResultRecord]:
        """Every record of the store, in path order: each file that holds a valid record and sits
        at the store path of that record's key.

        Any other JSON file (a record copied or moved elsewhere, an invalid or unreadable file) is
        skipped, and one warning names them all once every file was read. As a key has a single
        path, no key is read twice. Hidden files and folders (claims, failure records, sweep
        folders) and the reserved folders (:data:`RESERVED_DIRS`: analyses, pitfalls, attestations) are not
        looked at.
        """
        skipped = []
        for path in sorted(self.root.rglob("*.json")):
            parts = path.relative_to(self.root).parts
            if any(part.startswith(".") for part in parts) or parts[0] in RESERVED_DIRS:
                continue
            try:
                record = self._placed_record(path)
            except DataError as err:
                skipped.append(_one_line(str(err)))
                continue
            yield record
        if skipped:
            logger.warning("Skipped %d files of %s that are no records of this store:\n%s", len(skipped), self.root,
                           "\n".join(f"- {problem}" for problem in skipped))

    def _placed_record(self, path: Path) -> ResultRecord:
        """The record in ``path``, which must be the store path of the record's key (else DataError)."""
        record = self.read(path)
        if self.path(record.key) != path:
            raise DataError(f"Result file {path} is not where its unit is filed ({self.path(record.key)})")
        return record

    def write_analysis(self, record: AnalysisRecord) -> Path:
        path = self.root / record.relative_path()
        with explain_os_errors(path, instead=_INSTEAD):
            atomic_write_json(path, record.model_dump(mode="json"))
        return path

    def read_analysis(self, path: str | Path) -> AnalysisRecord:
        return read_record(Path(path), AnalysisRecord, "Analysis file")

    def analyses(self) -> Iterator[AnalysisRecord]:
        """Every analysis record under the root, in path order (not the runs analyses trained)."""
        for path in sorted((self.root / ANALYSES_DIR).glob("*/v*/*/*.json")):
            if not path.name.startswith("."):
                yield self.read_analysis(path)

    # --- claims ------------------------------------------------------------------------------

    def lock_path(self, key: UnitKey) -> Path:
        path = self.path(key)
        return path.with_name(f".{path.stem}.lock")

    def holder(self, key: UnitKey) -> Claim | None:
        """The claim on a unit, or None if nobody holds it."""
        return _read_claim(self.lock_path(key))

    def is_live(self, claim: Claim) -> bool:
        """Whether a claim's process is (presumably) still computing its unit.

        A lock file that holds no valid claim is live for one heartbeat only: a claim is written
        whole as its file is created, and nobody refreshes a garbled one.
        """
        age = time.time() - claim.heartbeat
        if claim.token is None:
            return age <= self.heartbeat_seconds
        if age > self.stale_seconds:
            return False
        if claim.worker is not None and claim.worker.host == socket.gethostname():
            return _pid_alive(claim.worker.pid)
        return True

    def describe_claims(self, keys: list[UnitKey], shown: int = 3) -> str:
        """Who holds the claims on ``keys`` (their lock files, holders and heartbeats), and how to free them."""
        claims = [claim for key in keys if (claim := self.holder(key)) is not None]
        lines = [claim.describe() for claim in claims[:shown]]
        if len(claims) > shown:
            lines.append(f"and {len(claims) - shown} more")
        return (f"{'; '.join(lines) or 'claims released meanwhile'}. A claim whose process died is taken over "
                f"once its heartbeat is {self.stale_seconds:g} s old; if you know its process is dead, delete its "
                "lock file to take it over at once.")

    def try_claim(self, key: UnitKey, worker: Worker) -> str | None:
        """Claim a unit for ``worker``; returns the claim's token, or None if a live process holds it.

        A stale claim is broken first (under a short-lived mutex, so that two processes cannot
        both break it and then both believe they hold the unit).
        """
        lock = self.lock_path(key)
        token = uuid.uuid4().hex
        content = json.dumps({"token": token, "claimed": now(), **asdict(worker)})
        for _ in range(3):
            if _create_exclusive(lock, content):
                return token
            claim = _read_claim(lock)
            if claim is None:  # released in between: try again
                continue
            if self.is_live(claim):
                return None
            self._break(lock, claim)
        return None

    def _break(self, lock: Path, stale: Claim) -> None:
        mutex = lock.with_name(lock.name + ".break")
        if not _create_exclusive(mutex, str(os.getpid())):
            with contextlib.suppress(FileNotFoundError):  # a breaker that died long ago
                if time.time() - mutex.stat().st_mtime > self.stale_seconds:
                    mutex.unlink()
            return
        try:
            current = _read_claim(lock)
            if current is not None and current.token == stale.token and not self.is_live(current):
                who = current.worker.describe() if current.worker else "an unknown process"
                logger.info("Taking over the stale claim %s of %s.", lock, who)
                lock.unlink(missing_ok=True)
        finally:
            mutex.unlink(missing_ok=True)

    def refresh(self, key: UnitKey, token: str) -> bool:
        """Renew the heartbeat of our claim; False if the claim is no longer ours."""
        claim = self.holder(key)
        if claim is None or claim.token != token:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.lock_path(key))
            return True
        return False

    def release(self, key: UnitKey, token: str) -> None:
        """Give up our claim on a unit (a claim taken over by another process is left alone)."""
        claim = self.holder(key)
        if claim is not None and claim.token == token:
            self.lock_path(key).unlink(missing_ok=True)

    # --- failures ------------------------------------------------------------------------------

    def failure_path(self, key: UnitKey) -> Path:
        path = self.path(key)
        return path.with_name(f".{path.stem}.failed.json")

    def failure(self, key: UnitKey) -> FailureRecord | None:
        """The unit's failure record, or None if it never failed (or has since succeeded)."""
        path = self.failure_path(key)
        try:
            return FailureRecord.model_validate_json(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as err:
            raise DataError(f"Failure record {path} is unreadable: {err}; delete it to retry the unit.") from None

    def record_failure(self, key: UnitKey, error: BaseException, worker: Worker) -> FailureRecord:
        """Add an attempt that raised ``error`` to the unit's failure record (kept atomically)."""
        previous = self.failure(key)
        details = getattr(error, "details", "")  # the worker's traceback of a method that failed
        entry = {"time": now(), "error": f"{type(error).__name__}: {error}",
                 "traceback": details or "".join(traceback.format_exception(error)), **asdict(worker)}
        record = FailureRecord(key=asdict(key), attempts=(previous.attempts if previous else 0) + 1,
                               errors=[*(previous.errors[-(_KEPT_ERRORS - 1):] if previous else []), entry])
        with explain_os_errors(self.failure_path(key), instead=_INSTEAD):
            atomic_write_json(self.failure_path(key), record.model_dump(mode="json"))
        return record

    def clear_failure(self, key: UnitKey) -> None:
        """Forget a unit's failures, so that it is attempted again from scratch."""
        self.failure_path(key).unlink(missing_ok=True)

    def status(self, key: UnitKey) -> UnitStatus:
        """Whether a unit is done, being computed, failed, or still to do."""
        if self.exists(key):
            return UnitStatus("done")
        corrupt = self.corrupt_path(key) if self.corrupt_path(key).is_file() else None
        claim = self.holder(key)
        if claim is not None and self.is_live(claim):
            return UnitStatus("running", claim=claim, corrupt=corrupt)
        failure = self.failure(key)
        return UnitStatus("failed" if failure else "todo", failure=failure, corrupt=corrupt)


_KEPT_ERRORS = 5


@dataclass(frozen=True)
class Worker:
    """A process that computes units, as recorded in claims and failure records.

    Attributes
    ----------
    host, pid : str, int
        Where the process runs.
    job : str or None
        Scheduler job id (Slurm's ``<array job>_<task>`` for job arrays).
    log : str or None
        Where the process writes its log.
    """

    host: str
    pid: int
    job: str | None = None
    log: str | None = None

    @classmethod
    def here(cls, *, job: str | None = None, log: str | None = None) -> Worker:
        """This process (the Slurm job id is read from the environment when not given)."""
        if job is None and os.environ.get("SLURM_JOB_ID"):
            array = os.environ.get("SLURM_ARRAY_JOB_ID")
            job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
        return cls(socket.gethostname(), os.getpid(), job, log)

    def describe(self) -> str:
        where = f"{self.host}:{self.pid}"
        return f"job {self.job} ({where})" if self.job else where


@dataclass(frozen=True)
class Claim:
    """A unit's lock file: the claiming worker, when it claimed, and its last heartbeat (mtime).

    ``token`` and ``worker`` are None when the file holds no valid claim.
    """

    token: str | None
    worker: Worker | None
    claimed: str | None
    heartbeat: float
    lock: Path

    def describe(self) -> str:
        """The lock file, its holder and the age of its heartbeat, for messages."""
        age = f"{time.time() - self.heartbeat:.0f} s ago"
        if self.worker is None:
            return f"lock file {self.lock} holds no valid claim (written {age})"
        return f"lock file {self.lock} held by {self.worker.describe()} (last heartbeat {age})"


class FailureRecord(BaseModel):
    """A unit's failed attempts (the last few errors, with tracebacks and where they ran)."""

    model_config = ConfigDict(extra="forbid")

    key: dict[str, Any]
    attempts: int
    errors: list[dict[str, Any]]

    @property
    def last(self) -> dict[str, Any]:
        return self.errors[-1]


@dataclass(frozen=True)
class UnitStatus:
    """``state`` is ``"done"``, ``"running"`` (live claim), ``"failed"`` or ``"todo"``; ``corrupt``
    is the corrupt result file set aside of a unit not done (to be computed again)."""

    state: str
    claim: Claim | None = None
    failure: FailureRecord | None = None
    corrupt: Path | None = None


class UnitClaims:
    """The units one process is computing: their claims, kept fresh by a heartbeat thread.

    Use as a context manager; claims still held on exit (also on errors and interrupts) are
    released, so only a killed process leaves claims behind, and those go stale. Inside it, SIGTERM
    raises :class:`Terminated` in the main thread (unless a handler of SIGTERM is installed already),
    so that a cancelled job releases its claims too.
    """

    def __init__(self, store: ResultStore, worker: Worker | None = None) -> None:
        self.store = store
        self.worker = worker or Worker.here()
        self._held: dict[UnitKey, str] = {}
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handles_sigterm = False

    def __enter__(self) -> UnitClaims:
        self._handles_sigterm = (threading.current_thread() is threading.main_thread()
                                 and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        if self._handles_sigterm:
            signal.signal(signal.SIGTERM, _terminate)
        self._thread = threading.Thread(target=self._heartbeat, name="eegbench-claims", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for key in list(self._held):
            self.release(key)
        if self._handles_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if exc_type is Terminated:
            logger.warning("Terminated by SIGTERM; released the claims of this process.")

    def acquire(self, key: UnitKey) -> bool:
        """Claim a unit; False if another live process holds it."""
        token = self.store.try_claim(key, self.worker)
        if token is not None:
            with self._mutex:
                self._held[key] = token
        return token is not None

    def release(self, key: UnitKey) -> None:
        with self._mutex:
            token = self._held.pop(key, None)
        if token is not None:
            self.store.release(key, token)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.store.heartbeat_seconds):
            with self._mutex:
                held = list(self._held.items())
            for key, token in held:
                if not self.store.refresh(key, token):
                    logger.warning("Lost the claim on %s to another process (a heartbeat came too late); "
                                   "the unit may be computed twice.", self.store.path(key))
                    with self._mutex:
                        self._held.pop(key, None)


class Terminated(SystemExit):
    """SIGTERM received while claims were held (exit status 128 + 15, as the signal's default)."""


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the release short
    raise Terminated(128 + signum)


def _create_exclusive(path: Path, content: str) -> bool:
    """Create ``path`` holding ``content`` unless it exists (O_EXCL: atomic, NFSv3+ included)."""
    with explain_os_errors(path, action="create", instead=_INSTEAD):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(path, "x", encoding="utf-8") as handle:
                handle.write(content)
        except FileExistsError:
            return False
    return True


def _read_claim(lock: Path) -> Claim | None:
    try:
        heartbeat = lock.stat().st_mtime
        raw = lock.read_bytes()
    except FileNotFoundError:
        return None
    try:  # a claim being written, or left empty or garbled by a crash, holds no valid claim (see is_live)
        data = json.loads(raw)
        worker = Worker(data["host"], data["pid"], data.get("job"), data.get("log"))
        if isinstance(data["token"], str) and isinstance(worker.host, str) and type(worker.pid) is int:
            return Claim(data["token"], worker, data.get("claimed"), heartbeat, lock)
    except (ValueError, KeyError, TypeError):  # ValueError: not JSON, or not UTF-8
        pass
    return Claim(None, None, None, heartbeat, lock)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    with contextlib.suppress(OSError):  # a zombie is dead, only not yet reaped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _one_line(message: str) -> str:
    """A (multi-line) error message on one line."""
    return " ".join(message.split())


def load_results(results_dir: str | Path) -> list[ResultRecord]:
    """Every result record of a results folder, in path order.

    Only files that sit at the store path of their own key are read; misplaced, invalid or
    unreadable files are skipped with one warning naming them (see :meth:`ResultStore.records`).
    """
    root = Path(results_dir)
    if not root.is_dir():
        problem = "is a file, not a folder" if root.exists() else "does not exist"
        raise InvalidInputError(f"Results folder {root} {problem}; run `eegbench run` first or pass the folder "
                                "that holds the result files.")
    return list(ResultStore(root).records())


def check_overwrite(mode: str) -> str:
    if mode not in OVERWRITE_MODES:
        raise InvalidInputError(f"--overwrite must be one of {', '.join(OVERWRITE_MODES)}, got {mode!r}.")
    return mode


