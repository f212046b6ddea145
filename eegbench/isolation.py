"""Running submission code in isolated worker processes, with one-way data flow.

The harness process never imports or runs a submission's code. A :class:`SubmissionSession`
starts worker processes (:mod:`eegbench._worker`) for one submission and talks to them over pipes:

* the **fit** worker describes the method (hyperparameters, layers) and fits units from training
  data only; it returns the fitted aligners as one opaque state file and their JSON reports;
* the **brain** worker loads that state and embeds test responses, and nothing else;
* the **images** worker loads that state and embeds gallery features, and nothing else;
* ``brain-check`` and ``images-check`` embed random parts of the same rows again, for the check
  that embeddings are inductive (:mod:`eegbench.scoring`);
* the **batch** worker (transductive tasks only) loads that state and embeds the whole test batch,
  responses and gallery, in one call.

On inductive tasks no state passes between the two sides; on every task each set of rows comes
in an order only the harness knows. Arrays travel as ``.npy`` files in per-worker folders and are opened read-only and
memory-mapped in the worker; replies are JSON and ``.npy`` files read with ``allow_pickle=False``,
so nothing a submission produces is ever unpickled by the harness.

Isolation levels
----------------
``process`` (default)
    Workers are forked from a clean server process that has preloaded PyTorch and eegbench (not
    from the harness, so they hold none of its state). A method cannot reach test data, the
    harness's memory or its scoring code; faults, exits and time-outs end as failure records.
    It can still read and write files the user can.
``sandbox``
    Each worker runs under ``bubblewrap`` with no network and a private file system that holds
    only the Python environment (read-only), the submission folder (read-only), its own input
    folder (read-only) and its own scratch folder. For scoring untrusted pull requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from eegbench._check import InvalidInputError, SubmissionError, check_option
from eegbench.backbones.base import BackboneLayers, LayerRef
from eegbench.identifiers import LAYER_SETTING_PATTERN
from eegbench.metrics import check_embeddings
from eegbench.reports import AlignerReport
from eegbench.submissions import Split, Submission, TrainingData
from eegbench.views import ImageView, check_views

ISOLATION_LEVELS = ("process", "sandbox")
#: what a method's layer setting (part of result paths) and its alternatives' names may look like
LAYER_SETTING = re.compile(LAYER_SETTING_PATTERN)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: what a worker may name as the call into the method's code that raised (``fit()``, ``torch.save()``...)
CALL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}\(\)$")
#: largest ``report()`` of one aligner (it is stored in every result record)
MAX_REPORT_BYTES = 1_000_000
#: how long a worker may take to start and import the submission
_START_TIMEOUT = 300.0
_ENVIRONMENT_PASSED = ("PATH", "LANG", "LC_ALL", "TZ", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                       "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "EEGBENCH_COMPILE",
                       "EEGBENCH_PROGRESS", "EEGBENCH_DEBUG", "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG",
                       "TORCHINDUCTOR_CACHE_DIR")


def sandbox_available() -> str | None:
    """Why the ``sandbox`` level cannot run here (``None`` when it can)."""
    if not sys.platform.startswith("linux"):
        return "the sandbox needs Linux namespaces"
    if shutil.which("bwrap") is None:
        return "bubblewrap (`bwrap`) is not installed (e.g. `apt-get install bubblewrap`)"
    probe = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"bubblewrap cannot create namespaces here ({probe.stderr.strip() or probe.returncode})"
    return None


def resolve_isolation(level: str) -> str:
    """Validate an isolation level (``"strongest"`` picks ``sandbox`` where it works, else ``process``)."""
    if level == "strongest":
        return "sandbox" if sandbox_available() is None else "process"
    check_option("isolation", level, ISOLATION_LEVELS)
    if level == "sandbox" and (reason := sandbox_available()):
        raise InvalidInputError(f"--isolation sandbox cannot run here: {reason}. Use --isolation process, or "
                                "install bubblewrap on Linux.")
    return level


@dataclass(frozen=True)
class MethodPlan:
    """What a method will do with a configuration, as its worker described it."""

    hyperparameters: dict[str, Any]
    layers: list[LayerRef]
    layer_setting: str
    accepts_layer: bool
    #: views of the training images the method trains against besides the images (see :mod:`eegbench.views`)
    views: tuple[ImageView, ...] = ()


@dataclass(frozen=True)
class FittedAligner:
    """A fitted aligner that lives in a worker's state file: the harness holds only its handle."""

    state: Path
    index: int
    report: AlignerReport
    alternatives: tuple[str, ...]


class _Inbox:
    """A worker's input folder: each array is written once (by identity) and then shared by name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._written: dict[int, tuple[np.ndarray, str]] = {}  # holds the arrays, so ids stay unique

    def put(self, array: np.ndarray) -> str:
        known = self._written.get(id(array))
        if known is not None:
            return known[1]
        path = self.folder / f"{secrets.token_hex(8)}.npy"
        np.save(path, np.ascontiguousarray(array), allow_pickle=False)
        self._written[id(array)] = (array, str(path))
        return str(path)

    def retain(self, arrays: Sequence[np.ndarray]) -> None:
        """Delete the files of every array not in ``arrays`` (memory in /dev/shm stays bounded)."""
        keep = {id(array) for array in arrays}
        for key in [k for k in self._written if k not in keep]:
            Path(self._written.pop(key)[1]).unlink(missing_ok=True)


class _WorkerProcess:
    """One worker: a process, its pipe and its folders (``in`` for the harness, ``out`` for it)."""

    def __init__(self, role: str, submission: Submission, root: Path, isolation: str, threads: int | None) -> None:
        self.role = role
        self.submission = submission
        self.root = root
        self.inbox = _Inbox(root / "in")
        self.outbox = root / "out"
        self.home = root / "home"
        for folder in (self.outbox, self.home):
            folder.mkdir(parents=True, exist_ok=True)
        self.environment = self._environment()
        config = {"submission": submission.to_dict(), "home": str(self.home), "hello": secrets.token_hex(16),
                  "threads": threads, "environment": self.environment}
        self.process, self.connection = (_start_sandboxed if isolation == "sandbox" else _start_forked)(self)
        try:
            self.connection.send_bytes(json.dumps(config).encode())
            self._expect(config["hello"], _START_TIMEOUT, "starting")
        except BaseException:
            self.kill()
            raise

    def _environment(self) -> dict[str, str]:
        passed = {k: v for k, v in os.environ.items() if k in _ENVIRONMENT_PASSED}
        return passed | {"HOME": str(self.home), "EEGBENCH_HOME": str(self.home / "eegbench"),
                         "TMPDIR": str(self.home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                         "PYTHONDONTWRITEBYTECODE": "1"}

    def request(self, op: str, payload: Mapping[str, Any], timeout: float, doing: str) -> Any:
        nonce = secrets.token_hex(16)
        try:
            self.connection.send_bytes(json.dumps({"id": nonce, "op": op, **payload}).encode())
        except OSError:
            raise self._died(doing) from None
        return self._expect(nonce, timeout, doing)

    def _expect(self, nonce: str, timeout: float, doing: str) -> Any:
        """The reply to request ``nonce``; replies to anything else (written by the method itself) are ignored."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                ready = remaining > 0 and self.connection.poll(remaining)
                if not ready:
                    self.kill()
                    raise self._error(f"time limit of {timeout:g} s exceeded (raise it with --timeout if the "
                                      "method needs longer)", doing)
                raw = self.connection.recv_bytes()
            except (EOFError, OSError):
                raise self._died(doing) from None
            try:
                reply = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                continue
            if not isinstance(reply, dict) or reply.get("id") != nonce:
                continue
            if reply.get("ok") is True:
                return reply.get("result")
            message = str(reply.get("error", "unknown error")).strip()
            call = reply.get("call")
            call = call if isinstance(call, str) and CALL.fullmatch(call) else None
            if reply.get("input_error"):  # the worker's checks say which method; an error the method raised gets it
                raise InvalidInputError(message if call is None else f"{message} {self._where(doing, call)}")
            raise self._error(message, doing, str(reply.get("traceback", "")), call)

    def _error(self, what: str, doing: str, details: str = "", call: str | None = None) -> SubmissionError:
        """The method's own message first (it is what a failure table shows), then where it happened."""
        return SubmissionError(f"{what} {self._where(doing, call)}", details)

    def _where(self, doing: str, call: str | None) -> str:
        """``[method 'x', in fit() while fitting 2 unit(s)]``: the method, the call of its code that failed
        (when the worker knows it), and what the harness was doing."""
        return f"[method {self.submission.id!r}, {f'in {call} while ' if call else ''}{doing}]"

    def _died(self, doing: str) -> SubmissionError:
        code = self.wait()
        if code is not None and code < 0:
            how = f"was killed by signal {signal.Signals(-code).name}"
            how += " (out of memory?)" if -code == signal.SIGKILL else ""
        else:
            how = f"ended with exit code {code}"
        return self._error(f"the method's process {how}", doing)

    def wait(self, timeout: float = 10.0) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        _kill_group(self.process.pid)  # and whatever the method started
        self.wait()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.close()  # the worker's loop ends at the end of its pipe
        if self.wait(5.0) is None:
            self.kill()


class _ForkServer:
    """The clean process workers are forked from (see :func:`eegbench._worker.fork_server`).

    Started once per harness process, from a fresh interpreter (never forked from the harness),
    it imports PyTorch and eegbench once, so that a worker starts in a fraction of a second.
    """

    _current: _ForkServer | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eegbench._worker", "--fork-server", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=_stderr(),
            env=os.environ | _this_package())
        theirs.close()
        self.control = ours

    @classmethod
    def get(cls) -> _ForkServer:
        if cls._current is None or cls._current.process.poll() is not None:
            cls._current = cls()
        return cls._current

    @classmethod
    def spawn(cls, status_file: Path) -> tuple[_ForkedProcess, Connection]:
        with cls._lock:
            server = cls.get()
            ours, theirs = socket.socketpair()
            socket.send_fds(server.control, [json.dumps({"status_file": str(status_file)}).encode()],
                            [theirs.fileno()])
            theirs.close()
            server.control.settimeout(_START_TIMEOUT)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = server.control.recv(4096)
                if not chunk:
                    raise SubmissionError("eegbench's worker server ended unexpectedly; see the messages above.")
                reply += chunk
        return _ForkedProcess(int(json.loads(reply)["pid"]), status_file), Connection(ours.detach())


class _ForkedProcess:
    """A worker forked by the fork server: the same ``poll``/``wait``/``kill`` as a ``Popen``."""

    def __init__(self, pid: int, status_file: Path) -> None:
        self.pid = pid
        self.status_file = status_file

    def poll(self) -> int | None:
        try:
            return int(self.status_file.read_text())
        except (OSError, ValueError):
            return None

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return code

    def kill(self) -> None:
        _kill_group(self.pid)


def _this_package() -> dict[str, str]:
    """``PYTHONPATH`` that makes a new interpreter import this very eegbench (not another copy found
    from its working folder or an install elsewhere)."""
    here = str(Path(__file__).resolve().parent.parent)
    return {"PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)}


def _kill_group(pid: int) -> None:
    """SIGKILL a worker's process group (each worker leads its own)."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def _stderr() -> int | None:
    """Where workers print: the harness's standard error (their prints never reach its stdout)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def _start_forked(worker: _WorkerProcess) -> tuple[Any, Connection]:
    return _ForkServer.spawn(worker.root / "exit-status")


def _sandbox_binds(worker: _WorkerProcess) -> list[str]:
    """bubblewrap arguments: the Python environment and system libraries read-only, the submission
    read-only, this worker's inbox read-only and its own scratch folders writable; nothing else."""
    readonly = {Path(p) for p in ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc/alternatives",
                                  "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/sys")}
    readonly |= {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix), Path(sys.base_exec_prefix)}
    readonly |= {Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    # the eegbench package alone: an editable install lives in a checkout, whose other folders
    # (results, caches) the worker must not see
    readonly.add(Path(__file__).resolve().parent)
    readonly.add(worker.submission.folder)
    args: list[str] = []
    for path in sorted(p for p in readonly if p.exists()):
        args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind", str(worker.inbox.folder), str(worker.inbox.folder)]
    for path in (worker.outbox, worker.home):
        args += ["--bind", str(path), str(path)]
    for device in sorted(Path("/dev").glob("nvidia*")) + [Path("/dev/dri")]:
        if device.exists():
            args += ["--dev-bind", str(device), str(device)]
    return args


def _start_sandboxed(worker: _WorkerProcess) -> tuple[Any, Connection]:
    ours, theirs = socket.socketpair()
    command = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev",
               "--tmpfs", "/tmp", *_sandbox_binds(worker), "--chdir", str(worker.home),
               sys.executable, "-m", "eegbench._worker", str(theirs.fileno())]
    process = subprocess.Popen(command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=_stderr(),
                               env=worker.environment | _this_package(), start_new_session=True)
    theirs.close()
    return process, Connection(ours.detach())


class SubmissionSession:
    """The worker processes of one submission for one run, and the requests the harness makes of them.

    Workers start on first use and are reused by the units of the run (PyTorch and CUDA start-up
    are paid once); a worker that failed is replaced by a fresh one for the next request.

    Parameters
    ----------
    submission : Submission
        The submission (metadata, folder, code hash).
    timeout : float
        Seconds one unit may take to fit (a batch of ``n`` units gets ``n`` times as long), and
        one embedding call may take (a task's ``limits.unit_seconds``).
    isolation : {"process", "sandbox"}
        See the module docstring.
    device : str
        Where workers fit and embed (``"cpu"``, ``"cuda"``...).
    threads : int, optional
        PyTorch threads per worker (default: PyTorch's).
    """

    def __init__(self, submission: Submission, *, timeout: float, isolation: str = "process", device: str = "cpu",
                 threads: int | None = None) -> None:
        self.submission = submission
        self.isolation = resolve_isolation(isolation)
        if not timeout > 0:
            raise InvalidInputError(f"The time limit must be positive, got {timeout!r} seconds.")
        self.timeout = float(timeout)
        self.device = device
        self.threads = threads
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # arrays in memory, not on disk
        self.root = Path(tempfile.mkdtemp(prefix="eegbench-run-", dir=base))
        self._workers: dict[str, _WorkerProcess] = {}

    def __enter__(self) -> SubmissionSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for worker in self._workers.values():
            worker.close()
        self._workers.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def worker(self, role: str) -> _WorkerProcess:
        current = self._workers.get(role)
        if current is None or not current.alive():
            if current is not None:
                current.close()
            current = _WorkerProcess(role, self.submission, self.root / role, self.isolation, self.threads)
            self._workers[role] = current
        return current

    def _request(self, role: str, op: str, payload: Mapping[str, Any], timeout: float, doing: str) -> Any:
        worker = self.worker(role)
        try:
            return worker.request(op, payload, timeout, doing)
        except SubmissionError:
            worker.kill()  # a failed worker may hold half-changed state: the next request gets a fresh one
            raise

    # --- requests ---------------------------------------------------------------------------------

    def describe(self, training: Mapping[str, Any], overrides: Mapping[str, Any], layer: str | None,
                 layout: BackboneLayers) -> MethodPlan:
        """Validate the method and its hyperparameters and resolve its layers (in the fit worker)."""
        reply = self._request("fit", "describe", {"training": dict(training), "overrides": dict(overrides),
                                                  "layer": layer, "backbone": layout.to_dict()},
                              _START_TIMEOUT, "describing itself")
        with self._malformed("describing itself"):
            refs = [LayerRef(**ref) for ref in reply["layers"]]
            views = reply["views"]
            if not isinstance(views, list):
                raise TypeError("views is not a list")
        plan = MethodPlan(dict(reply["hyperparameters"]), refs, str(reply["layer_setting"]),
                          bool(reply["accepts_layer"]), tuple(check_views(views, self.submission.id)))
        if not refs:
            raise InvalidInputError(f"Method {self.submission.id!r} requested no backbone layers.")
        if len(plan.layer_setting) > 200 or not LAYER_SETTING.fullmatch(plan.layer_setting):
            raise InvalidInputError(f"Method {self.submission.id!r}: layer_setting() returned "
                                    f"{plan.layer_setting[:80]!r}; it must match {LAYER_SETTING.pattern} (it names "
                                    "a results folder).")
        for ref in refs:  # the worker's answer is checked against the harness's own resolution
            expected = layout.resolve(ref.name, None if ref.default_pooling or ref.is_final else ref.pooling)
            if expected != ref:
                raise InvalidInputError(f"Method {self.submission.id!r} returned layer {ref!r}, which is not a "
                                        f"layer of {layout.name!r}.")
        return plan

    @contextlib.contextmanager
    def _malformed(self, doing: str) -> Iterator[None]:
        """A reply that is not what the worker protocol says (only a hostile method writes those)."""
        try:
            yield
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise SubmissionError(f"Method {self.submission.id!r} sent a malformed reply while {doing} "
                                  f"({type(err).__name__}: {err}).") from None

    def fit(self, training: Mapping[str, Any], overrides: Mapping[str, Any], layer: str | None,
            units: Sequence[TrainingData]) -> list[FittedAligner]:
        """Fit units together in the fit worker; returns handles to the fitted aligners.

        ``units`` are built by the harness (:func:`eegbench.protocols.training_data`); their arrays
        are written to the fit worker's inbox once and shared by the units that hold the same ones.
        """
        worker = self.worker("fit")
        worker.inbox.retain([array for unit in units for array in _arrays(unit)])
        described = [self._describe_unit(worker, unit) for unit in units]
        state = worker.outbox / f"aligners-{secrets.token_hex(8)}.pt"
        reply = self._request("fit", "fit", {"training": dict(training), "overrides": dict(overrides),
                                             "layer": layer, "units": described, "state": str(state)},
                              self.timeout * len(units), f"fitting {len(units)} unit(s)")
        with self._malformed("fitting"):
            if any(len(json.dumps(a["report"])) > MAX_REPORT_BYTES for a in reply["aligners"]):
                raise InvalidInputError(f"Method {self.submission.id!r}: report() must stay under "
                                        f"{MAX_REPORT_BYTES // 1000} kB.")
            aligners = [FittedAligner(state, i, AlignerReport.model_validate(a["report"]),
                                      tuple(map(str, a["alternatives"]))) for i, a in enumerate(reply["aligners"])]
        for aligner in aligners:
            if not all(
                    NAME.fullmatch(name) for name in aligner.alternatives):
                raise InvalidInputError(f"Method {self.submission.id!r}: alternatives() names must match "
                                        f"{NAME.pattern}.")
        if len(aligners) != len(units) or not state.is_file():
            raise SubmissionError(f"Method {self.submission.id!r}: the fit worker did not return one aligner per unit.")
        return aligners

    def _describe_unit(self, worker: _WorkerProcess, unit: TrainingData) -> dict[str, Any]:
        put = worker.inbox.put

        def split(part: Split) -> dict[str, str]:
            return {"responses": put(part.responses), "image_index": put(part.image_index),
                    "subjects": put(part.subjects)}

        return {"train": split(unit.train), "val": split(unit.val),
                "features": {key: put(array) for key, array in unit.features.items()},
                "image_concepts": put(unit.image_concepts), "layers": [ref.to_dict() for ref in unit.layers],
                "info": unit.info.to_dict(), "validation_metric": unit.validation_metric, "seed": unit.seed,
                "device": self.device, "unit": unit.unit,
                "views": {view: {key: put(array) for key, array in layers.items()} for view, layers in unit.views.items()}}

    def discard(self, aligners: Sequence[FittedAligner]) -> None:
        """Delete the state files of fitted aligners that are scored (and every worker's link to them)."""
        for name in {aligner.state.name for aligner in aligners}:
            for path in self.root.glob(f"*/*/{name}"):
                path.unlink(missing_ok=True)

    def embed(self, role: str, aligner: FittedAligner, variant: str | None,
              batches: Sequence[np.ndarray | Mapping[str, np.ndarray]], subject: str | None = None) -> list[np.ndarray]:
        """Embed each batch in worker ``role`` (``"brain"``, ``"images"`` or their ``-check`` twins).

        Brain batches are response arrays of ``subject``, image batches mappings of layer key to features. The
        aligner's state file is linked into the worker's own inbox: workers see nothing else.
        Returns one float64 ``(n_rows, dim)`` array per batch, checked here with
        :func:`eegbench.metrics.check_embeddings` (the worker checks them too, but is not trusted).
        """
        worker = self.worker(role)
        state = _linked_state(worker, aligner)
        token = secrets.token_hex(8)
        inputs = [_save_batch(worker.inbox.folder / f"{token}-{i}", batch) for i, batch in enumerate(batches)]
        outputs = [str(worker.outbox / f"{token}-{i}.npy") for i in range(len(batches))]
        side = "brain" if role.startswith("brain") else "images"
        label = f"Method {self.submission.id!r}: the output of embed_{side}()"
        try:
            self._request(role, "embed", {"side": side, "state": str(state), "index": aligner.index,
                                          "variant": variant, "inputs": inputs, "outputs": outputs, "label": label,
                                          "subject": subject},
                          self.timeout, f"embedding {'test responses' if side == 'brain' else 'the gallery'}")
            return [check_embeddings(_read_output(Path(path), self.submission.id, side), label, count_rows(batch))
                    for path, batch in zip(outputs, batches)]
        finally:
            for path in [*outputs, *_paths(inputs)]:
                Path(path).unlink(missing_ok=True)

    def embed_batch(self, aligner: FittedAligner, variant: str | None, responses: np.ndarray,
                    features: Mapping[str, np.ndarray], subject: str) -> tuple[np.ndarray, np.ndarray]:
        """Embed a whole test batch in one call of ``embed_test_batch`` (worker ``batch``; transductive tasks).

        ``responses`` are ``subject``'s test responses and ``features`` the gallery, each already in
        the order the harness chose. Returns float64 ``(brain, images)`` embeddings, each checked
        here with :func:`eegbench.metrics.check_embeddings` against its own row count.
        """
        worker = self.worker("batch")
        state = _linked_state(worker, aligner)
        token = secrets.token_hex(8)
        batches = {"brain": responses, "images": features}
        inputs = {side: _save_batch(worker.inbox.folder / f"{token}-{side}", batch) for side, batch in batches.items()}
        outputs = {side: str(worker.outbox / f"{token}-{side}.npy") for side in batches}
        labels = {side: f"Method {self.submission.id!r}: the {side} embeddings of embed_test_batch()"
                  for side in batches}
        try:
            self._request("batch", "embed_batch", {"state": str(state), "index": aligner.index, "variant": variant,
                                                   "inputs": inputs, "outputs": outputs, "labels": labels,
                                                   "subject": subject},
                          self.timeout, "embedding the test batch")
            brain, images = (check_embeddings(_read_output(Path(outputs[side]), self.submission.id, side),
                                              labels[side], count_rows(batches[side])) for side in batches)
            return brain, images
        finally:
            for path in [*outputs.values(), *_paths(list(inputs.values()))]:
                Path(path).unlink(missing_ok=True)


def _linked_state(worker: _WorkerProcess, aligner: FittedAligner) -> Path:
    """The aligner's state file, linked into the worker's own inbox: workers see nothing else."""
    state = worker.inbox.folder / aligner.state.name
    if not state.exists():
        _link_or_copy(aligner.state, state)
    return state


def _save_batch(stem: Path, batch: np.ndarray | Mapping[str, np.ndarray]) -> str | dict[str, str]:
    """Write a batch to embed: one file for responses, one per layer key for features."""
    if isinstance(batch, Mapping):
        return {key: _save(stem.with_name(f"{stem.name}-{j}.npy"), array)
                for j, (key, array) in enumerate(batch.items())}
    return _save(stem.with_name(f"{stem.name}.npy"), batch)


def count_rows(batch: np.ndarray | Mapping[str, np.ndarray]) -> int:
    """The number of rows of a batch to embed: responses, or features per layer key."""
    return len(next(iter(batch.values()))) if isinstance(batch, Mapping) else len(batch)


def _arrays(unit: TrainingData) -> list[np.ndarray]:
    parts = [unit.train, unit.val]
    return [a for part in parts for a in (part.responses, part.image_index, part.subjects)] + \
        [*unit.features.values(), unit.image_concepts] + [a for layers in unit.views.values() for a in layers.values()]


def _paths(inputs: list) -> list[str]:
    return [p for item in inputs for p in (item.values() if isinstance(item, dict) else [item])]


def _save(path: Path, array: np.ndarray) -> str:
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    return str(path)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _read_output(path: Path, method: str, side: str) -> np.ndarray:
    """A worker's embeddings as it wrote them, read without unpickling anything (the caller checks them)."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise SubmissionError(f"Method {method!r}: its {side} embeddings could not be read ({err}).") from None


class MethodPlanner:
    """Describes many configurations of many submissions, one worker per submission (sweep planning).

    ``layer`` is dropped for methods that take none, so that a grid can sweep layers over methods
    that choose their own.
    """

    def __init__(self, isolation: str = "process") -> None:
        self.isolation = isolation
        self._sessions: dict[Path, SubmissionSession] = {}
        self._takes_layer: dict[Path, bool] = {}

    def __enter__(self) -> MethodPlanner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()

    def describe(self, submission: Submission, training: Mapping[str, Any], overrides: Mapping[str, Any],
                 layer: str | None, layout: BackboneLayers) -> MethodPlan:
        session = self._sessions.get(submission.folder)
        if session is None:
            session = self._sessions[submission.folder] = SubmissionSession(
                submission, timeout=_START_TIMEOUT, isolation=self.isolation)
        if layer is not None and submission.folder not in self._takes_layer:
            self._takes_layer[submission.folder] = session.describe(training, overrides, None, layout).accepts_layer
        if layer is not None and not self._takes_layer[submission.folder]:
            layer = None
        return session.describe(training, overrides, layer, layout)
