"""The public Python API (``import eegbench as eb``) and the defaults it shares with the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import eegbench as eb
from eegbench.cli import app
from helpers import tiny_task, write_tiny_task_file

REPO = Path(__file__).resolve().parents[1]


def test_every_public_name_resolves():
    for name in eb.__all__:
        assert getattr(eb, name) is not None, name
    assert issubclass(eb.errors.SubmissionError, eb.errors.EegbenchError)
    assert issubclass(eb.errors.TransductiveMethodError, eb.errors.InvalidInputError)
    assert {"final", "shallow"} <= set(eb.list_methods()) and "synthetic-intra" in eb.list_tasks()
    assert "efficientnet_lite0" in eb.list_backbones()
    with pytest.raises(AttributeError, match="no attribute 'runn'"):
        eb.runn  # noqa: B018


def test_run_from_python_and_load_its_results(tmp_path):
    result = eb.run(task=tiny_task(), method="final", subjects=[1], seeds=[0], epochs=1, results_dir=tmp_path / "r")
    assert result.hyperparameters["epochs"] == 1 and result.computed == 1
    (record,) = eb.load_results(tmp_path / "r")
    assert record.scores == result.records[0].scores and record.method.hyperparameters["epochs"] == 1
    with pytest.raises(eb.errors.InvalidInputError, match="does not exist"):
        eb.load_results(tmp_path / "nowhere")


def test_cli_run_defaults_to_results_in_the_working_folder(tmp_path, monkeypatch):
    """A user's first `eegbench run` never writes into the committed board."""
    board = REPO / "leaderboard" / "results"
    before = sorted(board.rglob("*"))
    task_file = write_tiny_task_file(tmp_path)
    monkeypatch.chdir(tmp_path)
    outcome = CliRunner().invoke(app, ["run", "--task", str(task_file), "--method", "final", "--epochs", "1",
                                       "--subjects", "1", "--seeds", "0"])
    assert outcome.exit_code == 0, outcome.output
    assert len(list((tmp_path / "results").rglob("sub-01_seed-0.json"))) == 1
    assert sorted(board.rglob("*")) == before
    pages = CliRunner().invoke(app, ["leaderboard"])
    assert pages.exit_code == 0, pages.output
    assert (tmp_path / "results" / "leaderboard" / "synthetic-intra-v1.md").is_file()
