"""Reproducing recorded results, and resuming an interrupted run."""

import os
import signal
import subprocess
import sys
import time

import pytest

from eegbench._check import InvalidInputError
from eegbench.leaderboard import build_leaderboard
from eegbench.reproduction import reproduce
from eegbench.runner import run
from helpers import tiny_task, write_tiny_task_file


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    task = tiny_task()
    result = run(task, "shallow", layer="0.5", subjects=[2], seeds=[3], hyperparameters={"epochs": 3},
                 results_dir=tmp_path_factory.mktemp("results"))
    return task, result.records[0]


def _path(result_dir, record):
    return result_dir / record.key.relative_path()


def test_reproduce_reruns_the_recorded_configuration(recorded, tmp_path):
    task, record = recorded
    clean = record.model_copy(deep=True)
    clean.environment.git.dirty = False  # as if written from a committed checkout
    source = tmp_path / "given.json"
    source.write_text(clean.model_dump_json())
    reproduction = reproduce(source, task=task, work_dir=tmp_path / "rerun")
    again = reproduction.reproduced
    assert (again.subject, again.seed, again.backbone.layer_setting) == ("sub-02", 3, "blocks.3")
    assert again.method.hyperparameters == record.method.hyperparameters
    assert reproduction.identical_trials and reproduction.within(0.0)
    assert set(reproduction.differences) == set(record.scores) and not reproduction.warnings
    assert "| top1" in reproduction.table()


def test_reproduce_reruns_a_data_scaling_record_on_its_fraction_and_repetitions(tmp_path):
    """A record trained on a fraction of the images and scored on fewer repetitions re-runs as such."""
    task = tiny_task()
    record = run(task, "ridge", subjects=[1], seeds=[0], results_dir=tmp_path / "results", train_fraction=0.5,
                 test_repetitions=[1, 4]).records[0]
    reproduction = reproduce(_path(tmp_path / "results", record), task=task, work_dir=tmp_path / "rerun")
    again = reproduction.reproduced
    assert again.task.train_fraction == 0.5 and again.task.n_train_images == record.task.n_train_images
    assert again.test_repetitions == record.test_repetitions and set(again.test_repetitions) == {1, 4}
    assert reproduction.identical_trials


def test_reproduce_refuses_a_changed_task(recorded, tmp_path):
    task, record = recorded
    source = tmp_path / "given.json"
    source.write_text(record.model_dump_json())
    with pytest.raises(InvalidInputError, match="version 1 .*Pass the task file of that version"):
        reproduce(source)  # the registered synthetic-intra differs from the tiny variant


def test_reproduce_warns_when_the_submission_code_changed(recorded, tmp_path):
    task, record = recorded
    changed = record.model_copy(deep=True)
    changed.method.code_sha256 = "0" * 64
    source = tmp_path / "given.json"
    source.write_text(changed.model_dump_json())
    reproduction = reproduce(source, task=task)
    assert any("code of submission 'shallow' changed" in w for w in reproduction.warnings)


def _cli_run(task_file, results_dir):
    return [sys.executable, "-m", "eegbench.cli", "run", "--task", str(task_file), "--method", "final",
            "--epochs", "4", "--device", "cpu", "--results-dir", str(results_dir)]


@pytest.mark.slow
def test_an_interrupted_run_resumes_to_the_same_table(tmp_path):
    task_file = write_tiny_task_file(tmp_path, n_subjects=4)
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(_cli_run(task_file, interrupted), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=os.environ | {"EEGBENCH_PROGRESS": "0"})
    deadline = time.monotonic() + 300
    while not list(interrupted.rglob("sub-*.json")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished_before_kill = len(list(interrupted.rglob("sub-*.json")))
    assert 1 <= finished_before_kill < 4, "the run must be killed after its first unit and before its last"

    resumed = subprocess.run(_cli_run(task_file, interrupted) + ["--json"], capture_output=True, text=True,
                             check=True)
    assert f'"skipped": {finished_before_kill}' in resumed.stdout
    subprocess.run(_cli_run(task_file, tmp_path / "uninterrupted"), capture_output=True, check=True)

    pages = {name: build_leaderboard(tmp_path / name, tmp_path / f"board-{name}")
             for name in ("interrupted", "uninterrupted")}
    page = "synthetic-intra-v1"
    assert pages["interrupted"][page].read_text() == pages["uninterrupted"][page].read_text()
