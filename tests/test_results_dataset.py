"""Results as a dataset: export to Parquet, load back losslessly, push to the Hub, and `eegbench results ls`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from eegbench.analyses import backbone_scaling
from eegbench.attestation import AttestationRecord, Attestations, load_attestations, write_attestation
from eegbench.cli import app
from eegbench.errors import DataError, InvalidInputError
from eegbench.leaderboard import build_leaderboard
from eegbench.pitfalls import load_pitfalls
from eegbench.results import load_results
from eegbench.results_dataset import (CONFIGS, MANIFEST, PARQUET_FILE, export_results, load_results_dataset, push_results,
                                      results_entries)

COMMITTED = Path(__file__).resolve().parents[1] / "leaderboard" / "results"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A copy of the committed results (which hold a pitfall record) with an analysis record and an
    attestation of the shallow records of synthetic-intra, so that every config is filled."""
    root = tmp_path_factory.mktemp("results")
    shutil.copytree(COMMITTED, root, dirs_exist_ok=True)
    backbone_scaling(root, "synthetic-intra")
    assert load_pitfalls(root)
    for record in load_results(root):
        if (record.task.id, record.method.id) == ("synthetic-intra", "shallow"):
            # a re-run that gave the same record: what `eegbench reproduce --attest` files when nothing moved
            attestation = AttestationRecord.of(record, record, tolerance=0.01, by="test", identical_trials=True)
            write_attestation(root, attestation, record)
    assert Attestations.load(root).reproduced
    return root


@pytest.fixture(scope="module")
def exported(results, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    export_results(results, folder)
    return folder


def test_pages_built_from_an_export_are_byte_identical(results, exported, tmp_path):
    direct = build_leaderboard(results, tmp_path / "direct")
    cli = CliRunner().invoke(app, ["leaderboard", "--from-dataset", str(exported), "--out", str(tmp_path / "loaded")])
    assert cli.exit_code == 0, cli.output
    files = sorted(p.name for p in (tmp_path / "direct").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "loaded").iterdir())
    for name in files:
        assert (tmp_path / "direct" / name).read_bytes() == (tmp_path / "loaded" / name).read_bytes(), name
    page = direct["synthetic-intra-v1"].read_text()
    assert "## Backbone scaling" in page and "What protocol choices do to scores" in page  # both configs rendered
    assert "| shallow " in cli.output  # the main tables are printed too
    assert "| reproduced" in page  # trust levels travel with the export


def test_an_export_is_deterministic_and_loads_with_datasets(results, exported, tmp_path):
    again = tmp_path / "again"
    export_results(results, again)
    for path in sorted(p for p in exported.rglob("*") if p.is_file()):
        assert path.read_bytes() == (again / path.relative_to(exported)).read_bytes(), path
    import datasets

    table = datasets.load_dataset(str(exported), "records", split="train", cache_dir=str(tmp_path / "cache"))
    records = load_results(results)
    assert table.num_rows == len(records) > 0
    assert table.features["seed"].dtype == "int64" and table.features["main_score"].dtype == "float64"
    first = table[0]
    assert (first["task"], first["method"], first["subject"]) == (records[0].task.id, records[0].method.id,
                                                                  records[0].subject)
    assert first["main_score"] == records[0].main_score and first["path"] == records[0].key.relative_path().as_posix()
    assert first["n_better"] == records[0].per_trial.n_better and first["n_tied"] == records[0].per_trial.n_tied
    pitfalls = datasets.load_dataset(str(exported), "pitfalls", split="train", cache_dir=str(tmp_path / "cache"))
    assert pitfalls["method"] == [p.method for p in load_pitfalls(results)] == ["shallow"]
    applied = [p.name for p in load_pitfalls(results)[0].pitfalls if p.status == "applied"]
    assert pitfalls["pitfalls"][0].split(",") == applied and "test-checkpoint" in applied


def test_loading_back_is_lossless(results, exported):
    board = load_results_dataset(exported)
    assert board.results == load_results(results)
    assert [a.kind for a in board.analyses] == ["backbone-scaling"]
    assert [p.method for p in board.pitfalls] == ["shallow"]
    assert board.attestations == load_attestations(results)


def test_the_card_states_configs_license_and_tasks(results, exported):
    card = (exported / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta["license"] == "cc-by-4.0"
    assert meta["configs"] == [{"config_name": kind, "data_files": [{"split": "train", "path": f"{kind}/*.parquet"}],
                                **({"default": True} if kind == "records" else {})}
                               for kind in ("records", "analyses", "pitfalls", "attestations")]
    assert "### synthetic-intra (version 1)" in body and "### synthetic-joint (version 1)" in body
    assert "Intra-subject: train and test within each subject" in body  # the task file's description
    assert "chance: top1 0.5 %, top5 2.5 %" in body
    assert f"| `records` | {len(load_results(results))} |" in body


def test_bad_sources_are_one_line_errors(exported, tmp_path):
    with pytest.raises(InvalidInputError, match="not a folder"):
        load_results_dataset(tmp_path / "missing")
    with pytest.raises(InvalidInputError, match="not a results export"):
        load_results_dataset(tmp_path)
    for bad in ("hub:no-slash", "hub:a/b/c", "hub:org/na me", "hub:org/a..b"):
        with pytest.raises(InvalidInputError, match="ORG/NAME"):
            load_results_dataset(bad)
    no_out = CliRunner().invoke(app, ["leaderboard", "--from-dataset", str(exported)])
    assert no_out.exit_code == 2 and "--from-dataset needs --out" in no_out.output
    with pytest.raises(InvalidInputError, match="does not exist"):
        export_results(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(InvalidInputError, match="inside the results folder"):
        export_results(exported.parent, exported.parent / "export")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("mine")
    with pytest.raises(InvalidInputError, match="holds other files"):
        export_results(tmp_path / "missing", tmp_path / "notes")
    truncated = tmp_path / "truncated"
    shutil.copytree(exported, truncated)
    (truncated / "pitfalls" / PARQUET_FILE).unlink()
    with pytest.raises(DataError, match="lacks"):
        load_results_dataset(truncated)
    manifest = json.loads((exported / MANIFEST).read_text())
    (truncated / MANIFEST).write_text(json.dumps(manifest | {"counts": manifest["counts"] | {"pitfalls": 0,
                                                                                           "records": 1}}))
    with pytest.raises(DataError, match=f"{manifest['counts']['records']} records rows, its manifest 1:"):
        load_results_dataset(truncated)


def test_a_tampered_row_is_refused(exported, tmp_path):
    import datasets

    table = datasets.Dataset.from_parquet(str(exported / "analyses" / PARQUET_FILE), cache_dir=str(tmp_path / "c"))
    record = json.loads(table[0]["record"])
    record["kind"] = "made-up"
    tampered = tmp_path / "tampered"
    shutil.copytree(exported, tampered)
    table.map(lambda row: {"record": json.dumps(record)}).to_parquet(str(tampered / "analyses" / PARQUET_FILE))
    with pytest.raises(DataError, match="analyses row 0"):
        load_results_dataset(tampered)


class FakeHfApi:
    """Records the calls of :func:`push_results` instead of reaching the Hub."""

    calls: list[tuple[str, dict]] = []

    def __init__(self, token=None):
        self.calls.append(("init", {"token": token}))

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/datasets/{kwargs['repo_id']}/commit/1"})


def test_push_creates_a_dataset_repo_and_uploads_the_export(exported, monkeypatch):
    import huggingface_hub

    FakeHfApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    url = push_results(exported, "eegbench/results", token="hf_test")
    assert url == "https://huggingface.co/datasets/eegbench/results/commit/1"
    (_, init), (_, create), (_, upload) = FakeHfApi.calls
    assert init == {"token": "hf_test"}
    assert create == {"repo_id": "eegbench/results", "repo_type": "dataset", "private": None, "exist_ok": True}
    assert upload["repo_type"] == "dataset" and upload["folder_path"] == str(exported)
    assert upload["allow_patterns"] == ["README.md", MANIFEST, *(f"{kind}/*.parquet" for kind in CONFIGS)]
    assert upload["delete_patterns"] is None  # every config has rows
    with pytest.raises(InvalidInputError, match="ORG/NAME"):
        push_results(exported, "not a repo")
    with pytest.raises(InvalidInputError, match="not a results export"):
        push_results(exported.parent, "eegbench/results")


def test_a_hub_source_is_a_snapshot_of_a_dataset_repo(exported, monkeypatch):
    import huggingface_hub

    asked = []

    def snapshot_download(repo_id, **kwargs):
        asked.append((repo_id, kwargs))
        return str(exported)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    board = load_results_dataset("hub:eegbench/results")
    assert asked == [("eegbench/results", {"repo_type": "dataset"})]
    assert len(board.results) == json.loads((exported / MANIFEST).read_text())["counts"]["records"] > 0


def test_results_ls_lists_entries(results):
    entries = results_entries(load_results(results), Attestations.load(results))
    shallow = next(e for e in entries if (e.task, e.method) == ("synthetic-intra", "shallow"))
    assert (shallow.records, shallow.subjects, shallow.seeds) == (28, ("sub-01", "sub-02", "sub-03", "sub-04"),
                                                                  (0, 1, 2))
    assert {(e.task, e.method): e.trust for e in entries if e.trust == "reproduced"} == {
        ("synthetic-intra", "shallow"): "reproduced"}  # the fixture attested those records only
    listed = CliRunner().invoke(app, ["results", "ls", "--results-dir", str(results), "--json"])
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.output)) == len(entries) == len({(r.task.id, r.task.version, r.method.id, r.backbone.name)
                                                                  for r in load_results(results)})
    table = CliRunner().invoke(app, ["results", "ls", "--results-dir", str(results)], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "┃ task" in table.output and "synthetic-joint" in table.output and "0,1,2" in table.output
    missing = CliRunner().invoke(app, ["results", "ls", "--results-dir", str(results / "missing")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_a_run_logs_its_pace_between_batches(caplog):
    from eegbench.runner import _log_pace

    with caplog.at_level("INFO", logger="eegbench"):
        _log_pace(1, 4, 30.0)
        _log_pace(3, 4, 540.0)
    assert caplog.messages == ["1 of 4 units handled in 30 s; about 90 s left at this pace.",
                               "3 of 4 units handled in 9.0 min; about 3.0 min left at this pace."]


def test_the_committed_board_and_site_regenerate_byte_identically_from_an_export(tmp_path):
    """`eegbench results export` then `eegbench leaderboard --from-dataset` gives the committed pages, site included."""
    board = COMMITTED.parent
    exported = CliRunner().invoke(app, ["results", "export", str(tmp_path / "export"), "--results-dir", str(COMMITTED)])
    assert exported.exit_code == 0, exported.output
    built = CliRunner().invoke(app, ["leaderboard", "--from-dataset", str(tmp_path / "export"), "--out",
                                     str(tmp_path / "board"), "--site", str(tmp_path / "site")])
    assert built.exit_code == 0, built.output
    pages = sorted(p.name for p in (tmp_path / "board").iterdir())
    assert pages == sorted(p.name for p in board.iterdir() if p.suffix in (".md", ".png"))
    site = sorted(p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("*") if p.is_file())
    assert site == sorted(p.relative_to(board / "site").as_posix() for p in (board / "site").rglob("*") if p.is_file())
    for folder, names in ((board, pages), (board / "site", site)):
        built_folder = tmp_path / ("board" if folder == board else "site")
        for name in names:
            assert (built_folder / name).read_bytes() == (folder / name).read_bytes(), f"{name} differs"
