"""The command line: the JSON contract, listings and exit code 2 with clear messages on bad input; one ``--hp``
grammar; errors mapped once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from eegbench.cli import app, parse_hp
from eegbench.errors import InvalidInputError
from helpers import write_tiny_task_file

ROOT = Path(__file__).resolve().parents[1]

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_task_file(tmp_path_factory):
    path = write_tiny_task_file(tmp_path_factory.mktemp("tasks"))
    return path


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_run_json_contract(tiny_task_file, tmp_path):
    result = _invoke("run", "--task", tiny_task_file, "--method", "final", "--subjects", "1,2", "--seeds", "0",
                     "--epochs", "3", "--device", "cpu", "--results-dir", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["task"] == "synthetic-intra" and summary["method"] == "final"
    assert summary["backbone"] == "efficientnet_lite0" and summary["layer"] == "final"
    assert 0 <= summary["metrics"]["top1"]["mean"] <= summary["metrics"]["top5"]["mean"] <= 1
    assert summary["chance"] == {"top1": 0.02, "top5": 0.1}
    assert [s["subject"] for s in summary["per_subject"]] == ["sub-01", "sub-02"]
    assert summary["hyperparameters"]["epochs"] == 3


def test_run_prints_a_table_and_leaderboard_regenerates(tiny_task_file, tmp_path):
    result = _invoke("run", "--task", tiny_task_file, "--method", "shallow", "--layer", "0.5", "--subjects", "1",
                     "--hp", "epochs=2", "--results-dir", tmp_path / "res")
    assert result.exit_code == 0, result.output
    assert "| sub-01" in result.stdout and "mean ± SD" in result.stdout and "blocks.3" in result.stdout
    board = _invoke("leaderboard", "--results-dir", tmp_path / "res", "--out", tmp_path / "board")
    assert board.exit_code == 0, board.output
    assert "synthetic-intra (v1) | chance: top1 2 %, top5 10 %" in board.stdout
    assert (tmp_path / "board" / "README.md").is_file() and (tmp_path / "board" / "synthetic-intra-v1.md").is_file()


@pytest.mark.parametrize("args, message", [
    (["run", "--task", "nope"], "Unknown task 'nope'. Valid tasks: synthetic-inter, synthetic-intra, things-eeg-inter,"),
    (["run", "--method", "shalow"], "Unknown method 'shalow'. Did you mean 'shallow'? Valid methods: final"),
    (["run", "--backbone", "vit_x"], "Unknown backbone 'vit_x'."),
    (["run", "--layer", "30"], "Invalid layer 30 for backbone 'efficientnet_lite0'. Valid layers: an index 1..8"),
    (["run", "--layer", "final"], "Method 'shallow' aligns to an intermediate layer"),
    (["run", "--method", "final", "--layer", "3"], "Method 'final' chooses its own layers and takes no --layer."),
    (["run", "--overwrite", "sometimes"], "--overwrite must be one of missing, always, never"),
    (["run", "--hp", "epochs"], "--hp expects KEY=VALUE"),
    (["run", "--hp", "colour=red"], "Method 'shallow' has no hyperparameter 'colour'"),
    (["run", "--seeds", "a,b"], "Expected a comma-separated list of int"),
    (["run", "--device", "tpu"], "--device must be cpu, cuda, cuda:N or auto"),
    (["leaderboard", "--results-dir", "/nonexistent/x"], "Results folder /nonexistent/x does not exist"),
])
def test_bad_input_exits_2_with_a_clear_message(args, message):
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_malformed_task_file_exits_2(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("id: broken\nversion: one\n")
    result = _invoke("run", "--task", path)
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "broken.yaml is invalid" in text and "version: Input should be a valid integer" in text


@pytest.mark.parametrize("what, expected", [("tasks", "synthetic-intra"), ("methods", "shallow"),
                                            ("backbones", "efficientnet_lite0"), ("encoders", "eegproject")])
def test_list(what, expected):
    result = _invoke("list", what)
    assert result.exit_code == 0 and expected in result.stdout


# --- one --hp grammar ---------------------------------------------------------------------------------

def test_hp_values_are_yaml_and_a_sweep_takes_lists_of_them():
    pairs = ["lr=0.001", "dims=[64,32]", "name=x", " flag =true", "epochs=3", "epochs=4", "off=null"]
    assert parse_hp(pairs) == {"lr": 0.001, "dims": [64, 32], "name": "x", "flag": True, "epochs": 4, "off": None}
    # the sweep form is the list-valued case of the same grammar
    assert parse_hp(pairs, several=True) == {key: [value] for key, value in parse_hp(pairs).items()}
    assert parse_hp(["lr=0.001,0.01", "dims=[64,32],[128]"], several=True) == {
        "lr": [0.001, 0.01], "dims": [[64, 32], [128]]}
    assert parse_hp(None) == {} and parse_hp(["url=a=b"]) == {"url": "a=b"}


HP_COMMANDS = {
    "run": ["run"],
    "check": ["check", "final"],
    "scaling data": ["scaling", "data"],
    "sweep run": ["sweep", "run", "--tasks", "synthetic-intra", "--methods", "final"],
    "sweep status": ["sweep", "status"],
}


@pytest.mark.parametrize("bad, problem", [
    ("lr=[1", "the value is not valid YAML: expected ',' or ']', but got '<stream end>'"),
    ("lr={a", "the value is not valid YAML:"),
    ("lr", "no '='"),
    ("=1", "no key before '='"),
    (" =1", "no key before '='"),
    ("lr=", "no value after '=' (write null for none)"),
])
@pytest.mark.parametrize("command", list(HP_COMMANDS))
def test_malformed_hp_exits_2_with_one_line(command, bad, problem):
    result = _invoke(*HP_COMMANDS[command], "--hp", bad)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --hp expects KEY=")
    assert f"got {bad!r}: {problem}" in lines[0]
    assert result.stdout == ""


# --- errors are mapped once, for every command and for the console script --------------------------------

def _env() -> dict:
    return os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def test_the_console_entry_point_maps_errors_to_exit_2(tmp_path):
    missing = tmp_path / "none"
    done = subprocess.run([sys.executable, "-m", "eegbench.cli", "leaderboard", "--results-dir", str(missing)],
                          capture_output=True, text=True, env=_env())
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"Error: Results folder {missing} does not exist") and done.stderr.count("\n") == 1
    usage = subprocess.run([sys.executable, "-m", "eegbench.cli", "run", "--no-such-option"], capture_output=True,
                           text=True, env=_env())
    assert usage.returncode == 2 and "No such option" in usage.stderr


def test_debug_shows_the_error_and_an_interrupt_exits_130(tmp_path, monkeypatch):
    result = runner.invoke(app, ["leaderboard", "--results-dir", str(tmp_path / "none")],
                           env={"EEGBENCH_DEBUG": "1"})
    assert isinstance(result.exception, InvalidInputError) and result.exit_code == 1

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    import eegbench.leaderboard

    monkeypatch.setattr(eegbench.leaderboard, "build_leaderboard", interrupted)
    assert _invoke("leaderboard", "--results-dir", tmp_path).exit_code == 130


def test_non_standalone_callers_get_the_exit_code(tmp_path, capsys):
    command = typer.main.get_command(app)
    assert command.main(["leaderboard", "--results-dir", str(tmp_path / "none")], standalone_mode=False) == 2
    assert "Results folder" in capsys.readouterr().err
