"""The result record as a contract: typed sections, schema versions and upgrades of old files.

``tests/data/records-v1`` is a frozen copy of result files written by eegbench 0.1 (schema
version 1) and ``tests/data/records-v1-pages`` the pages eegbench 0.1 generated from them; they
are never regenerated, so any change in how old records are read shows up here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import eegbench.leaderboard as leaderboard
from eegbench.errors import DataError
from eegbench.records import RESULT_UPGRADES, SCHEMA_VERSION, ResultRecord, upgrade
from eegbench.reports import AlignerReport
from eegbench.reproduction import _analysis_options
from eegbench.results import ResultStore

DATA = Path(__file__).parent / "data"
V1 = DATA / "records-v1"
V1_PAGES = DATA / "records-v1-pages"


def _first(pattern: str) -> dict:
    return json.loads(next(iter(sorted(V1.glob(pattern)))).read_text())


def test_every_historic_record_is_read_and_upgraded():
    files = sorted(V1.rglob("*.json"))
    assert len(files) == 40
    records = list(ResultStore(V1).records())  # skips (with a warning) anything it cannot read
    assert len(records) == len(files)
    assert {r.schema_version for r in records} == {SCHEMA_VERSION}
    assert {r.layer_kind for r in records} == {"final", "fixed", "selected", "combined"}


def test_version_1_reports_become_aligner_reports():
    multi = ResultRecord.from_disk(_first("synthetic-intra/v1/multi/**/*.json"))
    assert multi.layer_choice == "combined" and len(multi.report.layers) == 4
    assert all(use.weight is not None for use in multi.report.layers)
    assert multi.report.layers[-1].layer.is_final and multi.report.n_parameters == 726660
    assert multi.report.details == {"final_train_loss": 0.088202, "train_seconds": 8.531}

    ridge = ResultRecord.from_disk(_first("synthetic-intra/v1/ridge/**/*.json"))
    raw = _first("synthetic-intra/v1/ridge/**/*.json")["report"]
    assert ridge.report.selected == {"alpha": raw["alpha"]} and ridge.report.n_parameters == raw["n_parameters"]
    assert [p.params for p in ridge.report.validation_curve][:1] == [{"alpha": 1.0, "layer": "final"}]
    assert ridge.layer_kind == "final" and ridge.report.details == {}

    shallow = ResultRecord.from_disk(_first("synthetic-inter/v1/shallow/**/*.json"))
    assert shallow.layer_choice == "selected" and shallow.report.validation_metric == "top5"
    assert shallow.report.selected == {"layer": shallow.report.layers[0].layer.name}
    best = shallow.report.best_score_by_layer()
    assert best[shallow.report.selected["layer"]] == max(best.values())


def test_version_1_analysis_fields_move_out_of_the_report():
    """Alternatives and test-repetition scores were harness numbers kept in the method's report."""
    data = _first("synthetic-intra/v1/final/**/*.json")
    data["report"] |= {"alternatives": {"last_epoch": {"top1": 0.1, "top5": 0.2}},
                       "test_repetitions": {"1": {"top1": 0.05, "top5": 0.1}, "4": {"top1": 0.3, "top5": 0.6}}}
    data["task"] |= {"train_fraction": 0.25, "n_train_images": 500}
    record = ResultRecord.from_disk(data)
    assert record.alternatives == {"last_epoch": {"top1": 0.1, "top5": 0.2}}
    assert record.test_repetitions == {1: {"top1": 0.05, "top5": 0.1}, 4: {"top1": 0.3, "top5": 0.6}}
    assert "alternatives" not in record.report.details and "test_repetitions" not in record.report.details
    assert _analysis_options(record) == {"train_fraction": 0.25, "test_repetitions": [1, 4]}


def _table_cells(page: str, heading: str, columns: int) -> list[list[str]]:
    """The first ``columns`` cells of each row of the table under ``heading`` of a markdown page."""
    lines = page.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[cell.strip() for cell in row.strip("|").split("|")][:columns] for row in lines[start:end]
            if not row.startswith("|-")]


def test_historic_records_give_the_numbers_eegbench_0_1_published(tmp_path, monkeypatch):
    """Pages from the frozen version-1 files hold the numbers eegbench 0.1 published from them (entries,
    layers, scores with SD and CI, per-subject scores), and are byte-identical after the files are
    rewritten in the current schema. (The pages' wording and their significance tests grew since; the
    submissions' code changed too, which the board flags: the flags are held at the recorded code here.)"""
    recorded = {r.method.id: r.method.code_sha256 for r in ResultStore(V1).records()}
    monkeypatch.setattr(leaderboard, "_registered_code_hashes", lambda methods: {m: recorded[m] for m in methods})
    leaderboard.build_leaderboard(V1, tmp_path / "v1")
    upgraded = tmp_path / "v2-results"
    for record in ResultStore(V1).records():
        ResultStore(upgraded).write(ResultRecord.model_validate_json(record.model_dump_json()))
    leaderboard.build_leaderboard(upgraded, tmp_path / "v2")
    for expected in sorted(V1_PAGES.glob("synthetic-*.md")):
        page = (tmp_path / "v1" / expected.name).read_text()
        assert (tmp_path / "v2" / expected.name).read_text() == page, expected.name
        published = expected.read_text()
        for heading, columns in (("## Main table", 5), ("## Per subject", 7)):
            assert _table_cells(page, heading, columns) == _table_cells(published, heading, columns), expected.name


@pytest.mark.parametrize(("version", "message"), [
    (SCHEMA_VERSION + 1, "upgrade eegbench"), (0, "reads versions"), ("2", "reads versions"),
    (True, "reads versions"), (None, "reads versions")])
def test_unknown_schema_versions_are_refused_clearly(version, message):
    data = _first("synthetic-intra/v1/final/**/*.json") | {"schema_version": version}
    with pytest.raises(DataError, match=message):
        ResultRecord.from_disk(data)


def test_a_mangled_version_1_record_is_a_data_error():
    data = _first("synthetic-intra/v1/ridge/**/*.json")
    data["report"]["validation_curve"] = [{"layer": "final"}]  # a point without its score
    with pytest.raises(DataError, match="cannot be upgraded"):
        upgrade(data, SCHEMA_VERSION, RESULT_UPGRADES, "result record")


def test_a_report_is_typed():
    with pytest.raises(ValueError, match="layer_weights"):
        AlignerReport.model_validate({"layer_weights": [0.5, 0.5]})  # a version-1 key is no field
    report = AlignerReport.model_validate({"validation_curve": [{"params": {"layer": "a", "alpha": 1.0}, "score": 0.2},
                                                                {"params": {"layer": "a", "alpha": 9.0}, "score": 0.4},
                                                                {"params": {"layer": "b"}, "score": 0.3}]})
    assert report.best_score_by_layer() == {"a": 0.4, "b": 0.3}


def test_written_records_carry_the_current_schema(tmp_path):
    record = ResultRecord.from_disk(_first("synthetic-intra/v1/final/**/*.json"))
    path = ResultStore(tmp_path).write(record)
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and "layers" in data["report"]
    assert set(data) >= {"task", "dataset", "method", "backbone", "report", "scores", "alternatives",
                         "test_repetitions", "per_trial", "timing", "environment"}
