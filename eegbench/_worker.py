"""The child side of isolation: the only place where a submission's code runs.

A worker is a separate process (forked from a clean preloaded server, or started inside a
``bubblewrap`` sandbox) that serves requests of the harness (:mod:`eegbench.isolation`) over one
pipe. Messages are JSON in both directions and arrays travel as ``.npy`` files in the worker's
scratch folders, opened read-only and memory-mapped, so the harness never unpickles anything a
submission produced, and a submission can never make a shared array writable again.

Requests (``op``):

* ``describe``: validate the method's class and hyperparameters, resolve its layers against the
  backbone's layer list, and say how its results are labelled;
* ``fit``: fit units from training data only, save the fitted aligners as one opaque state file,
  return their reports;
* ``embed``: load fitted aligners from a state file and embed batches of one side only (brain
  responses or image features), each in the order the harness chose.

Every reply carries the request's random id, so a submission that writes to the pipe itself
cannot answer a request it has not seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import traceback
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ValidationError

import eegbench.backbones  # noqa: F401  (what submissions import: preloaded in the fork server)
import eegbench.training  # noqa: F401
from eegbench import _guard
from eegbench._check import EegbenchError, InvalidInputError, describe_validation_error
from eegbench.backbones.base import BackboneLayers, LayerRef
from eegbench.data.base import RecordingInfo
from eegbench.reports import AlignerReport
from eegbench.submissions import Aligner, Method, Split, Submission, TrainingData, import_method


class Worker:
    """Serves the requests of one harness over a connection, for one submission."""

    def __init__(self, submission: Submission) -> None:
        self.submission = submission
        self.method_class = import_method(submission)
        self._loaded: tuple[str, list[Aligner]] | None = None

    # --- describe -------------------------------------------------------------------------------

    def describe(self, request: Mapping[str, Any]) -> dict[str, Any]:
        cls = self.method_class
        problems = []
        if not (isinstance(cls.Hyperparameters, type) and issubclass(cls.Hyperparameters, BaseModel)):
            problems.append("Hyperparameters must be a pydantic BaseModel subclass")
        if getattr(getattr(cls, "feature_layers", None), "__isabstractmethod__", False):
            problems.append(f"{cls.__name__} does not implement feature_layers()")
        if not cls.implements_fitting():
            problems.append(f"{cls.__name__} implements neither fit() nor fit_many()")
        if problems:
            raise InvalidInputError(f"Submission {self.submission.id!r} ({self.submission.folder}): "
                                    + "; ".join(problems) + ".")
        method = self._make(request)
        layout = BackboneLayers.from_dict(request["backbone"])
        refs = list(method.feature_layers(layout))
        if not refs or not all(isinstance(ref, LayerRef) for ref in refs):
            raise InvalidInputError(f"Method {self.submission.id!r}: feature_layers() must return a non-empty "
                                    f"list of LayerRef (from backbone.resolve), got {refs!r}.")
        setting = method.layer_setting(refs)
        if not isinstance(setting, str):
            raise InvalidInputError(f"Method {self.submission.id!r}: layer_setting() must return a string.")
        return {"hyperparameters": method.hp.model_dump(mode="json"), "layers": [ref.to_dict() for ref in refs],
                "layer_setting": setting, "accepts_layer": bool(cls.accepts_layer)}

    def _make(self, request: Mapping[str, Any]) -> Method:
        """The method with hyperparameters: defaults < task file's ``training`` < overrides."""
        cls = self.method_class
        fields = cls.Hyperparameters.model_fields
        overrides = dict(request.get("overrides") or {})
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise InvalidInputError(f"Method {self.submission.id!r} has no hyperparameter "
                                    f"{', '.join(map(repr, unknown))}. Its hyperparameters: "
                                    f"{', '.join(fields) or '(none)'}.")
        layer = request.get("layer")
        if layer is not None and not cls.accepts_layer:
            raise InvalidInputError(f"Method {self.submission.id!r} chooses its own layers and takes no --layer.")
        values = {k: v for k, v in (request.get("training") or {}).items() if k in fields} | overrides
        try:
            hp = cls.Hyperparameters.model_validate(values)
        except ValidationError as err:
            raise InvalidInputError(describe_validation_error(err, f"Hyperparameters of {self.submission.id!r}")
                                    ) from None
        return cls(hp, layer)

    # --- fit ------------------------------------------------------------------------------------

    def fit(self, request: Mapping[str, Any]) -> dict[str, Any]:
        method = self._make(request)
        units = [_training_data(unit) for unit in request["units"]]
        aligners = list(method.fit_many(units))
        if len(aligners) != len(units) or not all(isinstance(a, Aligner) for a in aligners):
            raise InvalidInputError(f"Method {self.submission.id!r}: fit_many returned {len(aligners)} objects for "
                                    f"{len(units)} units; it must return one Aligner per unit.")
        described = []
        for aligner in aligners:
            alternatives = aligner.alternatives()
            if not all(isinstance(a, Aligner) for a in alternatives.values()):
                raise InvalidInputError(f"Method {self.submission.id!r}: alternatives() must map names to Aligners.")
            described.append({"report": self._report(aligner), "alternatives": sorted(map(str, alternatives))})
        state = Path(request["state"])
        torch.save(aligners, state)  # one file: models fitted together share their tensors once
        return {"aligners": described}

    def _report(self, aligner: Aligner) -> dict[str, Any]:
        """The aligner's :class:`AlignerReport` as finite JSON."""
        report = aligner.report()
        where = f"Method {self.submission.id!r}: report()"
        try:
            if not isinstance(report, AlignerReport):
                report = AlignerReport.model_validate(report)
            return json.loads(json.dumps(report.model_dump(mode="json"), allow_nan=False))
        except ValidationError as err:
            raise InvalidInputError(describe_validation_error(err, f"{where} (an AlignerReport)")) from None
        except (TypeError, ValueError) as err:
            raise InvalidInputError(f"{where} must hold JSON-serialisable, finite values ({err}).") from None

    # --- embed ----------------------------------------------------------------------------------

    def embed(self, request: Mapping[str, Any]) -> dict[str, Any]:
        aligner = self._aligner(request["state"], int(request["index"]), request.get("variant"))
        side = request["side"]
        for batch, out in zip(request["inputs"], request["outputs"]):
            if side == "brain":
                embedded = aligner.embed_brain(_open(batch))
            else:
                embedded = aligner.embed_images({key: _open(path) for key, path in batch.items()})
            if isinstance(embedded, torch.Tensor):
                embedded = embedded.detach().cpu().numpy()
            np.save(out, np.asarray(embedded, dtype=np.float64), allow_pickle=False)
        return {}

    def _aligner(self, state: str, index: int, variant: str | None) -> Aligner:
        if self._loaded is None or self._loaded[0] != state:
            self._loaded = (state, torch.load(state, map_location="cpu" if not torch.cuda.is_available() else None,
                                              weights_only=False))
        aligner = self._loaded[1][index]
        if variant is not None:
            aligner = aligner.alternatives()[variant]
        return aligner


def _open(path: str) -> np.ndarray:
    """A harness array, memory-mapped read-only: numpy refuses to make it writable again."""
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _split(paths: Mapping[str, str]) -> Split:
    return Split(_open(paths["responses"]), _open(paths["image_index"]), _open(paths["subjects"]))


def _training_data(unit: Mapping[str, Any]) -> TrainingData:
    return TrainingData(
        train=_split(unit["train"]), val=_split(unit["val"]),
        features={key: _open(path) for key, path in unit["features"].items()},
        image_concepts=_open(unit["image_concepts"]),
        layers=[LayerRef(**ref) for ref in unit["layers"]],
        info=RecordingInfo.from_dict(unit["info"]),
        validation_metric=unit["validation_metric"], seed=int(unit["seed"]),
        device=torch.device(unit["device"]), unit=dict(unit["unit"]),
    )


def _failure(error: BaseException) -> dict[str, Any]:
    name = type(error).__name__
    message = str(error) if isinstance(error, EegbenchError) else f"{name}: {error}"
    if isinstance(error, SystemExit):
        message = f"the method called sys.exit({error.code!r})"
    return {"ok": False, "error": message, "input_error": isinstance(error, EegbenchError),
            "traceback": "".join(traceback.format_exception(error))}


def serve(connection) -> None:
    """Worker main loop: read the set-up message, then answer requests until the harness closes the pipe."""
    config = json.loads(connection.recv_bytes())
    _isolate_process(config)
    try:
        worker = Worker(Submission.from_dict(config["submission"]))
    except BaseException as error:  # noqa: BLE001  (an import that fails or exits is the method's fault)
        connection.send_bytes(json.dumps({"id": config["hello"], **_failure(error)}).encode())
        return
    connection.send_bytes(json.dumps({"id": config["hello"], "ok": True}).encode())
    handlers = {"describe": worker.describe, "fit": worker.fit, "embed": worker.embed}
    while True:
        try:
            request = json.loads(connection.recv_bytes())
        except EOFError:
            return
        try:
            reply = {"id": request["id"], "ok": True, "result": handlers[request["op"]](request)}
        except BaseException as error:  # noqa: BLE001  (SystemExit and KeyboardInterrupt included)
            reply = {"id": request["id"], **_failure(error)}
        connection.send_bytes(json.dumps(reply).encode())


def _isolate_process(config: Mapping[str, Any]) -> None:
    """Environment, working folder, threads and the guard of a fresh worker process."""
    os.dup2(2, 1)  # a method's prints go to stderr, never into the harness's stdout (e.g. `--json`)
    os.environ.clear()
    os.environ.update(config["environment"])
    os.chdir(config["home"])
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    _guard.enter_submission_worker()


def fork_server(control_fd: int) -> None:
    """Start workers by forking this clean process, which has PyTorch and eegbench imported already.

    The harness sends one JSON request per worker on the control socket, with the worker's end of
    its pipe attached; the server forks, answers the child's pid, and writes the child's exit
    status to the request's ``status_file`` once it ends. When the harness goes away, the server
    kills the workers it started and exits.
    """
    control = socket.socket(fileno=control_fd)
    children: dict[int, str] = {}
    try:
        while True:
            _reap(children)
            if not select.select([control], [], [], 0.2)[0]:
                continue
            message, fds, _, _ = socket.recv_fds(control, 65536, 1)
            if not message or not fds:
                return
            pid = os.fork()
            if pid == 0:
                control.close()
                code = 0
                try:
                    os.setsid()  # its own process group: killing it kills whatever the method started too
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    serve(Connection(fds[0]))
                except BaseException:  # noqa: BLE001
                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            os.close(fds[0])
            children[pid] = json.loads(message)["status_file"]
            control.sendall(json.dumps({"pid": pid}).encode() + b"\n")
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


def _reap(children: dict[int, str]) -> None:
    """Record the exit status of every worker that ended (negative: killed by that signal)."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        path = children.pop(pid, None)
        if path is not None:
            with contextlib.suppress(OSError):
                Path(path).write_text(str(os.waitstatus_to_exitcode(status)))


def main(argv: list[str] | None = None) -> None:
    """``python -m eegbench._worker --fork-server FD`` or ``python -m eegbench._worker FD`` (one worker)."""
    args = argv if argv is not None else sys.argv[1:]
    if args[0] == "--fork-server":
        fork_server(int(args[1]))
    else:
        serve(Connection(int(args[0])))


if __name__ == "__main__":
    main()
