"""The command line: the JSON contract, listings and exit code 2 with clear messages on bad input; options and
defaults declared once and equal to the Python API's; one ``--hp`` grammar; errors mapped once."""

import functools
import importlib
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

import eegbench
from eegbench._paths import DEFAULT_RESULTS_DIR
from eegbench.cli import ApiDefaults, app, parse_hp
from eegbench.errors import InvalidInputError
from eegbench.tasks import list_tasks
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
    # where the records went, and how to put them on a board
    folder = tmp_path / "res" / "synthetic-intra" / "v1" / "shallow" / "efficientnet_lite0"
    assert f"Records: 1 result file in {folder}/" in result.stdout
    assert f"Leaderboard: eegbench leaderboard --results-dir {tmp_path / 'res'}" in result.stdout
    board = _invoke("leaderboard", "--results-dir", tmp_path / "res", "--out", tmp_path / "board")
    assert board.exit_code == 0, board.output
    assert "synthetic-intra (v1) | chance: top1 2 %, top5 10 %" in board.stdout
    assert (tmp_path / "board" / "README.md").is_file() and (tmp_path / "board" / "synthetic-intra-v1.md").is_file()


@pytest.mark.parametrize("args, message", [
    (["run", "--task", "nope"], "Unknown task 'nope'. Valid tasks: " + ", ".join(list_tasks()[:4])),
    (["run", "--method", "shalow"], "Unknown method 'shalow'. Did you mean 'shallow'? Valid methods: atm, final"),
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


# --- options and defaults are declared once and agree with the Python API ---------------------------

def _commands(command=None, path=()):
    """Every leaf command of the CLI with its path, e.g. (("sweep", "run"), <command>)."""
    command = command or typer.main.get_command(app)
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


def _cli_defaults(command) -> dict:
    """The value each parameter of a command takes when left out."""
    ctx = command.make_context(command.name, [], resilient_parsing=True)
    return {param.name: param.get_default(ctx) for param in command.params}


def _api_defaults(function) -> dict:
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty}


def test_run_defaults_are_the_apis():
    command = dict(_commands())[("run",)]
    cli, api = _cli_defaults(command), _api_defaults(eegbench.run)
    shared = set(cli) & set(api)
    assert {"task", "method", "backbone", "layer", "subjects", "seeds", "epochs", "device", "results_dir",
            "overwrite", "data_root", "weights", "batch_units", "isolation", "timeout"} <= shared
    assert {name: cli[name] for name in shared} == {name: api[name] for name in shared}
    assert api["results_dir"] == DEFAULT_RESULTS_DIR and api["task"] == "synthetic-intra"


def test_run_without_options_calls_the_api_with_its_defaults(monkeypatch):
    real = eegbench.run
    calls = []

    @functools.wraps(real)
    def fake(*args, **kwargs):
        calls.append(inspect.signature(real).bind(*args, **kwargs).arguments)
        return SimpleNamespace(summary=lambda: {"fake": True})

    monkeypatch.setattr(eegbench, "run", fake)
    result = _invoke("run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"fake": True}
    api = _api_defaults(real)
    assert {"task", "method", "backbone", "layer", "hyperparameters", "epochs", "results_dir"} <= set(calls[0])
    assert calls[0] == {name: api[name] for name in calls[0]}


def test_every_command_over_the_api_takes_its_defaults(tmp_path):
    importlib.import_module("eegbench.reproduction")  # importing the module leaves eegbench.reproduce the function
    assert callable(eegbench.reproduce)
    missing = _invoke("reproduce", tmp_path / "none.json")
    assert missing.exit_code == 2 and "Result file" in missing.output, missing.output
    checked = set()
    for path, command in _commands():
        default_map = (command.context_settings or {}).get("default_map")
        if not isinstance(default_map, ApiDefaults):
            continue
        expected: dict = {}
        for get in default_map.sources:
            source = get()
            for name, value in (source if isinstance(source, Mapping) else _api_defaults(source)).items():
                expected.setdefault(name, value)
        cli = _cli_defaults(command)
        for param in command.params:
            if param.name in expected:
                assert cli[param.name] == expected[param.name], (path, param.name)
                # a default written in the command (flags, for --help) must be the API's too
                assert param.default in (None, expected[param.name]), (path, param.name)
                checked.add(path)
    assert {("run",), ("check",), ("reproduce",), ("rsa",), ("scaling", "data"), ("scaling", "backbones"),
            ("features", "extract"), ("data", "download"), ("data", "verify")} <= checked


def test_a_shared_option_has_one_declaration_and_help_text():
    # Keyed by the longest name and whether it is an on/off flag pair: `data --images/--no-images` (include the
    # image set) and `features extract --images DIR` are different options.
    seen: dict[tuple[str, bool], dict[tuple, list[str]]] = {}
    for path, command in _commands():
        for param in command.params:
            if param.param_type_name != "option" or param.name == "help":
                continue
            key = (max(param.opts, key=len), bool(param.secondary_opts))
            declaration = (tuple(sorted(param.opts + param.secondary_opts)), param.help)
            seen.setdefault(key, {}).setdefault(declaration, []).append(" ".join(path))
    drifted = {key: declarations for key, declarations in seen.items() if len(declarations) > 1}
    assert not drifted
    assert len(next(iter(seen[("--subjects", False)].values()))) >= 5  # the walk did see the shared options


def test_help_does_not_import_torch():
    code = ("import sys; from typer.testing import CliRunner; from eegbench.cli import app; "
            "assert CliRunner().invoke(app, ['--help']).exit_code == 0; "
            "assert CliRunner().invoke(app, ['data', '--help']).exit_code == 0; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True)
    assert done.stdout.strip() == "False"


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
    ("lr=[1", "the value is not valid YAML (expected ',' or ']', but got '<stream end>')"),
    ("lr={a", "the value is not valid YAML ("),
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

    monkeypatch.setattr(eegbench, "load_results", interrupted)
    assert _invoke("leaderboard", "--results-dir", tmp_path).exit_code == 130


def test_non_standalone_callers_get_the_exit_code(tmp_path, capsys):
    command = typer.main.get_command(app)
    assert command.main(["leaderboard", "--results-dir", str(tmp_path / "none")], standalone_mode=False) == 2
    assert "Results folder" in capsys.readouterr().err
