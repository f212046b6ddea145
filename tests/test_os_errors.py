"""File system and signal trouble: one clear error, found before work starts, nothing finished lost.

We run as root, where permissions do not stop writes: the OS errors a user meets (read-only or full
file systems, no permission) are raised by monkeypatching, the code under test handles the real ones.
"""

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import eegbench
import eegbench._io
from eegbench._check import StorageError
from eegbench._io import FileDigests, check_writable_folder, explain_os_errors, sha256_file
from eegbench._progress import logger
from eegbench.cli import app
from eegbench.records import UnitKey
from eegbench.results import ResultStore, Worker
from eegbench.runner import _RunContext, run
from helpers import tiny_task, write_tiny_task_file

REPO = Path(__file__).resolve().parents[1]
KEY = UnitKey("t", 1, "m", "b", "final", "default", "sub-01", 0)


@pytest.fixture
def warnings_logged():
    """The text of the warnings eegbench logs (on its own logger, which stops propagating once the CLI set up
    logging, so that caplog misses them)."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger.addHandler(handler)
    yield lambda: "\n".join(messages)
    logger.removeHandler(handler)


def _raise(error: BaseException):
    def fail(*args, **kwargs):
        raise error
    return fail


def _fail_writes_in(folder: Path, code: int, monkeypatch) -> None:
    """Make creating a file in ``folder`` fail with ``code``, as on a read-only or full file system."""
    real = eegbench._io.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise OSError(code, os.strerror(code), str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(eegbench._io.tempfile, "mkstemp", mkstemp)


# --- one line per fixable OS error, naming the path and what to do ---------------------------------

@pytest.mark.parametrize("code, message", [
    (errno.EROFS, "Cannot write /x/y.json: read-only file system. Pass another --results-dir."),
    (errno.ENOSPC, "Cannot write /x/y.json: no space left on device. Free some space, or pass another --results-dir."),
    (errno.EACCES, "Cannot write /x/y.json: permission denied. Check its permissions, or pass another --results-dir."),
    (errno.ENOTDIR, "Cannot write /x/y.json: a part of the path is a file, not a folder. Pass another --results-dir."),
])
def test_fixable_os_errors_become_one_line_naming_the_path_and_the_fix(code, message):
    with pytest.raises(StorageError) as caught, explain_os_errors(Path("/x/y.json"), instead="pass another --results-dir"):
        raise OSError(code, os.strerror(code), "/x/.y.json.tmp")
    assert str(caught.value) == message


def test_other_os_errors_are_left_alone():
    with pytest.raises(OSError) as caught, explain_os_errors(Path("/x"), instead="pass another --results-dir"):
        raise OSError(errno.EIO, "Input/output error")
    assert not isinstance(caught.value, StorageError)


@pytest.mark.parametrize("error, line", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/x.npy"),
     "Error: Cannot access /data/x.npy: permission denied. Check its permissions. (Set EEGBENCH_DEBUG=1 for the "
     "traceback.)"),
    (OSError(errno.ENOSPC, "No space left on device"),
     "Error: No space left on device. Free some space. (Set EEGBENCH_DEBUG=1 for the traceback.)"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/data"),
     "Error: Cannot access /data: it is a folder, not a file. (Set EEGBENCH_DEBUG=1 for the traceback.)"),
    (EOFError("Ran out of input"), "Error: A file ended early or is not in the format expected (EOFError: Ran out "
                                   "of input); set EEGBENCH_DEBUG=1 for the traceback, which shows the file, and "
                                   "replace or delete it."),
])
def test_the_cli_root_maps_unexplained_os_and_pickle_errors_to_one_line(error, line, monkeypatch, tmp_path):
    monkeypatch.setattr(eegbench, "load_results", _raise(error))
    result = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(tmp_path)])
    assert result.exit_code == 2 and result.output.strip() == line, result.output
    assert "Traceback" not in result.output and "Aborted" not in result.output

    monkeypatch.setenv("EEGBENCH_DEBUG", "1")
    debug = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(tmp_path)])
    assert debug.exception is not None and debug.exception.__cause__ is error  # the traceback, on request


def test_the_cli_root_leaves_errors_nobody_can_fix_as_tracebacks(monkeypatch, tmp_path):
    monkeypatch.setattr(eegbench, "load_results", _raise(OSError(errno.EIO, "Input/output error")))
    result = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(tmp_path)])
    assert isinstance(result.exception, OSError) and result.exception.errno == errno.EIO


# --- folders that cannot be written are found before any work ------------------------------------

def test_a_results_dir_that_is_a_file_fails_before_any_work(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("notes")
    monkeypatch.setattr("eegbench.runner.resolve_run", _raise(AssertionError("work started")))
    with pytest.raises(StorageError, match=rf"Cannot use {afile} as a folder: it is a file\. Pass another "
                                           r"--results-dir\."):
        run(tiny_task(), "ridge", results_dir=afile, device="cpu")
    with pytest.raises(StorageError, match=rf"Cannot use {afile}/sub as a folder: {afile} is a file\."):
        run(tiny_task(), "ridge", results_dir=afile / "sub", device="cpu")

    result = CliRunner().invoke(app, ["run", "--results-dir", str(afile), "--device", "cpu"])
    assert result.exit_code == 2 and result.output.strip() == (
        f"Error: Cannot use {afile} as a folder: it is a file. Pass another --results-dir."), result.output


def test_a_leaderboard_out_that_is_a_file_or_read_only_fails_before_writing(tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("notes")
    result = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(results), "--out", str(afile)])
    assert result.exit_code == 2 and result.output.strip() == (
        f"Error: Cannot use {afile} as a folder: it is a file. Pass another --out."), result.output

    read_only = tmp_path / "board"
    _fail_writes_in(read_only, errno.EROFS, monkeypatch)
    with pytest.raises(StorageError, match=rf"^Cannot write to {read_only}: read-only file system\. Pass another "
                                           r"--out\.$"):
        eegbench.build_leaderboard(results, read_only)
    assert list(read_only.iterdir()) == []


def test_the_write_probe_leaves_nothing_behind(tmp_path):
    assert check_writable_folder(tmp_path / "new" / "folder", "pass another --out") == tmp_path / "new" / "folder"
    assert list((tmp_path / "new" / "folder").iterdir()) == []


@pytest.fixture(scope="module")
def two_units(tmp_path_factory):
    """Two finished ridge units (closed form: fast) on the tiny task."""
    root = tmp_path_factory.mktemp("two-units")
    result = run(tiny_task(), "ridge", subjects=[1, 2], seeds=[0], results_dir=root, device="cpu")
    return root, [record.key for record in result.records]


def _copy(folder: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(folder, to)
    return to


def test_a_read_only_results_folder_fails_before_computing_but_serves_finished_units(two_units, tmp_path,
                                                                                    monkeypatch):
    root = _copy(two_units[0], tmp_path / "results")
    _fail_writes_in(root, errno.EROFS, monkeypatch)
    done = run(tiny_task(), "ridge", subjects=[1, 2], seeds=[0], results_dir=root, device="cpu")
    assert (done.computed, done.skipped) == (0, 2)  # nothing to write: reading is enough

    monkeypatch.setattr(_RunContext, "compute", _raise(AssertionError("a unit was computed")))
    with pytest.raises(StorageError, match=rf"^Cannot write to {root}: read-only file system\. Pass another "
                                           r"--results-dir\.$"):
        run(tiny_task(), "ridge", subjects=[1, 2], seeds=[1], results_dir=root, device="cpu")


def test_a_full_disk_stops_the_run_and_keeps_finished_results(two_units, tmp_path, monkeypatch):
    """The second unit's result cannot be written: one clear error, no partial file, no failure record
    (the method did not fail), the claim released, and the first unit's result intact."""
    root = tmp_path / "results"
    real_fsync = os.fsync

    def fsync(fd):
        if "sub-02_seed-0.json" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    store = ResultStore(root)
    with pytest.raises(StorageError) as caught:
        run(tiny_task(), "ridge", subjects=[1, 2], seeds=[0], results_dir=root, device="cpu", on_error="record")
    first, second = two_units[1]
    assert str(caught.value) == (f"Cannot write {store.path(second)}: no space left on device. Free some space, or "
                                 "pass another --results-dir.")
    assert store.exists(first) and store.read(store.path(first)).scores
    assert [p.name for p in store.path(second).parent.iterdir()] == ["sub-01_seed-0.json"]  # no tmp, lock or failure


def test_a_corrupt_digest_memo_is_forgotten(tmp_path):
    memo, file = tmp_path / "file-digests.json", tmp_path / "data.bin"
    file.write_bytes(b"data")
    for garbage in ("[]", '{"%s": [1, 2]}' % file.resolve(), '{"%s": "x"}' % file.resolve()):
        memo.write_text(garbage)
        assert FileDigests(memo).digest(file) == sha256_file(file)


def test_a_memo_that_cannot_be_written_costs_a_warning(tmp_path, monkeypatch, warnings_logged):
    _fail_writes_in(tmp_path, errno.ENOSPC, monkeypatch)
    file = tmp_path / "data.bin"
    file.write_bytes(b"data")
    digests = FileDigests(tmp_path / "file-digests.json")
    digests.digest(file)
    digests.save()
    assert f"Cannot write {tmp_path / 'file-digests.json'}: no space left on device" in warnings_logged()


# --- claims: unreadable lock files, the wait message, SIGTERM ------------------------------------

@pytest.mark.parametrize("content", [b"", b"\xff\xfegarbage", b"[1, 2]", b'{"token": 1, "host": "h", "pid": "x"}'])
def test_a_lock_file_with_no_valid_claim_is_stale_after_one_heartbeat(tmp_path, content):
    store = ResultStore(tmp_path, heartbeat_seconds=30, stale_seconds=300)
    lock = store.lock_path(KEY)
    lock.parent.mkdir(parents=True)
    lock.write_bytes(content)
    assert store.try_claim(KEY, Worker.here()) is None  # perhaps a claim being written: wait
    assert "holds no valid claim (written 0 s ago)" in store.describe_claims([KEY])
    old = time.time() - 31
    os.utime(lock, (old, old))
    assert store.try_claim(KEY, Worker.here()) is not None  # nobody refreshes it: taken over


def test_the_wait_message_names_the_lock_file_its_holder_and_the_way_out(tmp_path):
    store = ResultStore(tmp_path)
    store.try_claim(KEY, Worker("node-7", 4242, job="99_1"))
    assert store.describe_claims([KEY]) == (
        f"lock file {store.lock_path(KEY)} held by job 99_1 (node-7:4242) (last heartbeat 0 s ago). A claim whose "
        "process died is taken over once its heartbeat is 300 s old; if you know its process is dead, delete its "
        "lock file to take it over at once.")


HANGING_METHOD = '''
"""Fits forever (until the test ends the run)."""

import time

from eegbench.submissions import Method


class Hanging(Method):
    def feature_layers(self, backbone):
        return [backbone.resolve("final")]

    def fit(self, data):
        time.sleep(600)
'''


@pytest.mark.slow
def test_sigterm_releases_the_claims_of_a_run(tmp_path):
    method = tmp_path / "hanging"
    method.mkdir()
    (method / "submission.yaml").write_text(textwrap.dedent("""\
        id: hanging
        name: Hanging
        authors: [eegbench tests]
        description: Never finishes fitting.
        citation: none
        license: MIT
        features: final
        entrypoint: "method:Hanging"
    """))
    (method / "method.py").write_text(HANGING_METHOD)
    results = tmp_path / "results"
    command = [sys.executable, "-m", "eegbench.cli", "run", "--task", str(write_tiny_task_file(tmp_path)),
               "--method", str(method), "--subjects", "1", "--seeds", "0", "--device", "cpu",
               "--results-dir", str(results)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    harness = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while not list(results.rglob(".*.lock")):
            assert harness.poll() is None and time.time() < deadline, harness.communicate()
            time.sleep(0.2)
        time.sleep(1.0)  # into the fit
        harness.send_signal(signal.SIGTERM)
        _, stderr = harness.communicate(timeout=120)
    finally:
        if harness.poll() is None:
            harness.kill()
    assert harness.returncode == 128 + signal.SIGTERM
    assert list(results.rglob(".*.lock")) == [] and list(results.rglob("*.json")) == []
    assert "Traceback" not in stderr and "Terminated by SIGTERM; released the claims of this process." in stderr


def test_stray_json_in_a_results_folder_is_skipped_and_named(two_units, tmp_path, warnings_logged):
    root = _copy(two_units[0], tmp_path / "results")
    stray = root / "notes.json"
    stray.write_text("[]")
    assert len(eegbench.load_results(root)) == 2
    assert f"Result file {stray} holds a JSON list, not a record." in warnings_logged()

    result = CliRunner().invoke(app, ["reproduce", str(stray)])
    assert result.exit_code == 2 and result.output.strip() == (
        f"Error: Result file {stray} holds a JSON list, not a record."), result.output
    json.loads(stray.read_text())  # left as it was
