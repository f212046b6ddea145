"""Trust levels: `eegbench reproduce --attest` files an attestation, and the board shows who was reproduced."""

import dataclasses
import json
import shutil

import pytest
from typer.testing import CliRunner

from eegbench._check import InvalidInputError
from eegbench.attestation import AttestationRecord, Attestations, attester, load_attestations, record_sha256
from eegbench.cli import app
from eegbench.leaderboard import build_leaderboard, build_rows
from eegbench.records import ResultRecord
from eegbench.reproduction import reproduce
from eegbench.results import ATTESTATIONS_DIR, ResultStore
from eegbench.runner import run
from helpers import tiny_task, write_tiny_task_file

FAST = {"epochs": 2}


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """A results folder with two entries (final, ridge) on one subject and seed, and a task file of its task."""
    root = tmp_path_factory.mktemp("results")
    task = tiny_task()
    run(task, "final", subjects=[1], seeds=[0], hyperparameters=FAST, results_dir=root)
    run(task, "ridge", subjects=[1], seeds=[0], results_dir=root)
    return root, write_tiny_task_file(tmp_path_factory.mktemp("tasks"))


@pytest.fixture(scope="module")
def reproduction(board):
    """The re-run of the board's `final` record (reproductions of copies of it attest the same record)."""
    final = next(r for r in ResultStore(board[0]).records() if r.method.id == "final")
    return reproduce(board[0] / final.key.relative_path(), task=tiny_task())


def _copy(board, tmp_path):
    """A private copy of the board's results folder and the path of its `final` record."""
    results = tmp_path / "results"
    shutil.copytree(board[0], results)
    final = next(r for r in ResultStore(results).records() if r.method.id == "final")
    return results, results / final.key.relative_path()


def _trust(results):
    return {row.entry.method: row.trust for row in build_rows(list(ResultStore(results).records()),
                                                              Attestations.load(results))}


def _attest(path, task_file, *extra):
    return CliRunner().invoke(app, ["reproduce", str(path), "--task", str(task_file), "--device", "cpu", "--attest",
                                    *extra])


def test_an_attested_record_is_reproduced_until_it_is_edited(board, tmp_path):
    results, path = _copy(board, tmp_path)
    assert _trust(results) == {"final": "self-reported", "ridge": "self-reported"}

    outcome = _attest(path, board[1], "--by", "Ada Lovelace <ada@example.org>")
    assert outcome.exit_code == 0, outcome.output
    assert "Attestation by Ada Lovelace <ada@example.org> (agreed) written to" in outcome.output
    [attestation] = load_attestations(results)
    original = ResultStore(results).read(path)
    assert attestation.record_sha256 == record_sha256(original) and attestation.agreed
    assert attestation.unit == original.key.relative_path().as_posix()
    assert attestation.recorded == original.scores and attestation.metrics == ["top1", "top5"]
    assert attestation.hardware.device == "cpu" and attestation.by == "Ada Lovelace <ada@example.org>"
    [rerun] = (results / ATTESTATIONS_DIR).rglob("*.reproduction.json")
    rerun_record = ResultRecord.from_disk(json.loads(rerun.read_text()))
    assert record_sha256(rerun_record) == attestation.reproduction_sha256
    assert attestation.reproduced == rerun_record.scores
    # the attestation folder is no results folder: the board reads the two records it read before
    assert len(list(ResultStore(results).records())) == 2
    assert _trust(results) == {"final": "reproduced", "ridge": "self-reported"}

    edited = json.loads(path.read_text())
    edited["scores"]["top1"] += 0.001  # a small edit after the attestation
    path.write_text(json.dumps(edited))
    assert _trust(results) == {"final": "self-reported", "ridge": "self-reported"}


def test_the_board_shows_trust_and_filters_to_reproduced_entries(board, reproduction, tmp_path):
    results, _ = _copy(board, tmp_path)
    reproduction.attest(results, tolerance=0.01, by="maintainer")

    page = build_leaderboard(results, tmp_path / "all")["synthetic-intra-v1"].read_text()
    table = page.split("## Main table")[1].split("\n\n")[1].splitlines()
    headers = [cell.strip() for cell in table[0].split("|")[1:-1]]
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.split("|")[1:-1]] for line in table[2:])}
    assert "Trust" in headers and len(rows) == 2
    trust = {label.split()[0]: cells[headers.index("Trust")] for label, cells in rows.items()}
    assert trust == {"final": "reproduced", "ridge": "self-reported"}
    assert "*Trust*: `reproduced` when a maintainer re-ran every result file" in page

    only = build_leaderboard(results, tmp_path / "only", reproduced_only=True)
    page = only["synthetic-intra-v1"].read_text()
    assert "| final" in page and "| ridge" not in page and "Only reproduced entries are shown" in page
    assert "Only reproduced entries are shown" in only["index"].read_text()

    printed = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(results), "--out", str(tmp_path / "cli"),
                                       "--reproduced-only"])
    assert printed.exit_code == 0, printed.output
    assert "| final" in printed.output and "| ridge" not in printed.output and "reproduced" in printed.output


def test_a_disagreeing_reproduction_is_attested_but_not_trusted(board, reproduction, tmp_path):
    results, _ = _copy(board, tmp_path)
    claimed = reproduction.original.model_copy(deep=True)
    claimed.scores["top1"] += 0.05  # as if 5 points more had been claimed
    disagreeing = dataclasses.replace(reproduction, original=claimed)
    attestation, _ = disagreeing.attest(results, tolerance=0.01, by="maintainer")
    assert not attestation.agreed and not disagreeing.within(0.01) and reproduction.within(0.01)
    assert _trust(results)["final"] == "self-reported"  # it names another hash, and did not agree


def test_an_attestation_that_misstates_agreement_is_invalid_and_skipped(board, reproduction, tmp_path, caplog):
    results, _ = _copy(board, tmp_path)
    attestation, written = reproduction.attest(results, tolerance=0.01, by="maintainer")
    assert _trust(results)["final"] == "reproduced"
    forged = attestation.model_dump(mode="json")
    forged["reproduced"]["top1"] = forged["recorded"]["top1"] + 0.2  # scores that disagree, still "agreed"
    with pytest.raises(ValueError, match="agreed is True, but the scores do not agree"):
        AttestationRecord.model_validate(forged)
    written.write_text(json.dumps(forged))
    assert load_attestations(results) == [] and "Skipped 1 invalid attestation files" in caplog.text
    assert _trust(results)["final"] == "self-reported"


def test_attest_refuses_a_file_outside_its_results_folder_before_running(board, tmp_path):
    results, path = _copy(board, tmp_path)
    loose = tmp_path / "given.json"
    shutil.copy(path, loose)
    outcome = _attest(loose, board[1])
    assert outcome.exit_code == 2 and isinstance(outcome.exception, SystemExit)
    assert "--attest needs a result file filed in a results folder" in outcome.output
    assert not (tmp_path / ATTESTATIONS_DIR).exists() and not (results / ATTESTATIONS_DIR).exists()
    unsigned = CliRunner().invoke(app, ["reproduce", str(path), "--by", "someone"])
    assert unsigned.exit_code == 2 and "pass it with --attest" in unsigned.output


def test_who_signs_off(monkeypatch):
    assert attester("  Grace Hopper ") == "Grace Hopper"
    with pytest.raises(InvalidInputError, match="pass --by"):
        attester("two\nlines")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("USER", "someone")
    assert attester() == "someone"  # no git identity: the login name
