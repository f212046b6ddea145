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
* ``embed_batch`` (transductive tasks only): load fitted aligners from a state file and embed the
  whole test batch, responses and gallery, in one call of ``embed_test_batch``, each set in the
  order the harness chose.

Every reply carries the request's random id, so a submission that writes to the pipe itself
cannot answer a request it has not seen. A failure names the call into the submission's code that
raised (``fit()``, ``embed_brain()``...) when there was one; what the method returned is checked
here, so that the method learns what was wrong, and checked again by the harness, which trusts no
worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import reprlib
import select
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping
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
from eegbench.isolation import count_rows
from eegbench.metrics import check_embeddings
from eegbench.reports import AlignerReport
from eegbench.submissions import Aligner, Method, Split, Submission, TrainingData, import_method
from eegbench.views import check_views


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
        hyperparameters = cls.Hyperparameters
        if not (isinstance(hyperparameters, type) and issubclass(hyperparameters, BaseModel)):
            found = f"class {hyperparameters.__qualname__}" if isinstance(hyperparameters, type) else \
                _shown(hyperparameters)
            problems.append(f"Hyperparameters must be a subclass of pydantic.BaseModel, not {found}")
        problems += [f"{cls.__name__} does not implement {name}()" for name in sorted(cls.__abstractmethods__)]
        if not cls.implements_fitting():
            problems.append(f"{cls.__name__} implements neither fit() nor fit_many()")
        if problems:
            raise InvalidInputError(f"Submission {self.submission.id!r} ({self.submission.folder}): "
                                    + "; ".join(problems) + ".")
        method = self._make(request)
        layout = BackboneLayers.from_dict(request["backbone"])
        with _calling("feature_layers()"):
            refs = list(method.feature_layers(layout))
        if not refs or not all(isinstance(ref, LayerRef) for ref in refs):
            raise InvalidInputError(f"Method {self.submission.id!r}: feature_layers() must return a non-empty "
                                    f"list of LayerRef (from backbone.resolve), got {refs!r}.")
        with _calling("layer_setting()"):
            setting = method.layer_setting(refs)
        if not isinstance(setting, str):
            raise InvalidInputError(f"Method {self.submission.id!r}: layer_setting() must return a string.")
        with _calling("image_views()"):
            views = method.image_views()
        if not isinstance(views, (list, tuple)):
            raise InvalidInputError(f"Method {self.submission.id!r}: image_views() must return a list of views; "
                                    f"found {_shown(views)}.")
        views = check_views(views, self.submission.id)
        return {"hyperparameters": method.hp.model_dump(mode="json"), "layers": [ref.to_dict() for ref in refs],
                "layer_setting": setting, "accepts_layer": bool(cls.accepts_layer),
                "views": [view.model_dump(mode="json") for view in views]}

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
        with _calling("__init__()"):
            return cls(hp, layer)

    # --- fit ------------------------------------------------------------------------------------

    def fit(self, request: Mapping[str, Any]) -> dict[str, Any]:
        method = self._make(request)
        units = [_training_data(unit) for unit in request["units"]]
        aligners = self._fitted(method, units)
        described = []
        for aligner in aligners:
            with _calling("alternatives()"):
                alternatives = aligner.alternatives()
            if not (isinstance(alternatives, dict) and all(isinstance(a, Aligner) for a in alternatives.values())):
                raise InvalidInputError(f"Method {self.submission.id!r}: alternatives() must return a dict of names "
                                        f"to Aligners; found {_shown(alternatives)}.")
            described.append({"report": self._report(aligner), "alternatives": sorted(map(str, alternatives))})
        with _calling("torch.save()"):  # pickling runs the aligners' own code (__getstate__, __reduce__)
            torch.save(aligners, Path(request["state"]))  # one file: models fitted together share their tensors once
        return {"aligners": described}

    def _fitted(self, method: Method, units: list[TrainingData]) -> list[Aligner]:
        """One :class:`Aligner` per unit, from the method's ``fit_many`` (or ``fit``, which the default calls)."""
        call = "fit()" if type(method).fit_many is Method.fit_many else "fit_many()"
        with _calling(call):
            aligners = method.fit_many(units)
        where = f"Method {self.submission.id!r}: {call}"
        if not (isinstance(aligners, (list, tuple)) and len(aligners) == len(units)):
            raise InvalidInputError(f"{where} must return a list of Aligners, one per unit ({len(units)}); found "
                                    f"{_shown(aligners)}.")
        for number, aligner in enumerate(aligners, 1):
            if not isinstance(aligner, Aligner):
                raise InvalidInputError(f"{where} must return an eegbench.submissions.Aligner for each unit; found "
                                        f"{_shown(aligner)} for unit {number} of {len(units)}.")
        return list(aligners)

    def _report(self, aligner: Aligner) -> dict[str, Any]:
        """The aligner's :class:`AlignerReport` as finite JSON."""
        with _calling("report()"):
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
        """Embed each batch and save it, checked (the harness names the output in ``label`` and checks it again)."""
        aligner = self._aligner(request["state"], int(request["index"]), request.get("variant"))
        side = request["side"]
        for batch, out in zip(request["inputs"], request["outputs"]):
            if side == "brain":
                rows = _open(batch)
                with _calling("embed_brain()"):
                    embedded = aligner.embed_brain_of(rows, request["subject"])
            else:
                rows = {key: _open(path) for key, path in batch.items()}
                with _calling("embed_images()"):
                    embedded = aligner.embed_images(rows)
            np.save(out, check_embeddings(embedded, request["label"], count_rows(rows)), allow_pickle=False)
        return {}

    def embed_batch(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Embed the test batch in one call and save both outputs, each checked against its own row count."""
        aligner = self._aligner(request["state"], int(request["index"]), request.get("variant"))
        inputs = request["inputs"]
        batches = {"brain": _open(inputs["brain"]),
                   "images": {key: _open(path) for key, path in inputs["images"].items()}}
        with _calling("embed_test_batch()"):
            embedded = aligner.embed_test_batch(batches["brain"], batches["images"], request["subject"])
        if not (isinstance(embedded, (tuple, list)) and len(embedded) == 2):
            raise InvalidInputError(f"Method {self.submission.id!r}: embed_test_batch() must return a pair "
                                    f"(brain embeddings, image embeddings); found {_shown(embedded)}.")
        for (side, rows), output in zip(batches.items(), embedded):
            checked = check_embeddings(output, request["labels"][side], count_rows(rows))
            np.save(request["outputs"][side], checked, allow_pickle=False)
        return {}

    def _aligner(self, state: str, index: int, variant: str | None) -> Aligner:
        if self._loaded is None or self._loaded[0] != state:
            with _calling("torch.load()"):  # unpickling runs the aligners' own code
                self._loaded = (state, torch.load(state, weights_only=False,
                                                  map_location="cpu" if not torch.cuda.is_available() else None))
        aligner = self._loaded[1][index]
        if variant is not None:
            with _calling("alternatives()"):
                aligner = aligner.alternatives()[variant]
        return aligner


class _MethodRaised(Exception):
    """An exception that escaped a call into the submission's code, with the name of that call."""

    def __init__(self, call: str, error: BaseException) -> None:
        super().__init__(call)
        self.call = call
        self.error = error


@contextlib.contextmanager
def _calling(call: str) -> Iterator[None]:
    """Run the submission's code: whatever escapes it (an exit too) is reported as raised by ``call``."""
    try:
        yield
    except BaseException as error:  # noqa: BLE001  (SystemExit and KeyboardInterrupt included)
        raise _MethodRaised(call, error) from error


def _shown(value: object) -> str:
    """A short description of something a method returned, e.g. ``42 (int)`` or ``a list of 0 items``."""
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"{_text(value, reprlib.repr)} ({type(value).__name__})"


def _text(value: object, show: Callable[[object], str] = str) -> str:
    """``show(value)``, or a placeholder when the method's ``__str__`` or ``__repr__`` itself raises."""
    try:
        return show(value)
    except Exception:  # noqa: BLE001
        return f"<unprintable {type(value).__name__}>"


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
        views={view: {key: _open(path) for key, path in layers.items()} for view, layers in unit["views"].items()},
    )


def _failure(error: BaseException) -> dict[str, Any]:
    """The reply for a request that raised: the message, the call of the method that raised, the traceback."""
    call = None
    if isinstance(error, _MethodRaised):
        call, error = error.call, error.error
    if isinstance(error, SystemExit):
        message = f"the method called sys.exit({_text(error.code, repr)})"
    elif isinstance(error, EegbenchError):
        message = _text(error)
    else:
        message = f"{type(error).__name__}: {_text(error)}"
    return {"ok": False, "error": message, "call": call, "input_error": isinstance(error, EegbenchError),
            "traceback": _text(error, lambda e: "".join(traceback.format_exception(e)))}


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
    handlers = {"describe": worker.describe, "fit": worker.fit, "embed": worker.embed,
                "embed_batch": worker.embed_batch}
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
