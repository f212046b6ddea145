"""Alljoined-1.6M: files in the Hugging Face repository's layout load end to end; bad files, the licence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from alljoined_files import FILE_CHANNELS, Trial, design, write_flat, write_root, write_subject
from typer.testing import CliRunner

from eegbench.cli import app
from eegbench.data import get_dataset_spec, load_dataset
from eegbench.data.alljoined import CHANNELS, LICENSE, NAME
from eegbench.errors import DataError, MissingDataError
from eegbench.records import ResultRecord
from eegbench.submissions import list_submissions
from eegbench.sweep import load_sweep, plan_sweep
from eegbench.tasks import Task, load_task

REPO = Path(__file__).resolve().parents[1]
SMALL = {"train_repetitions": 2, "test_repetitions": 3}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Two subjects, 3 training concepts x 2 images seen twice, 4 test images seen 3 times."""
    folder = tmp_path_factory.mktemp("alljoined")
    return folder, write_root(folder)


def _picks() -> list[int]:
    return [FILE_CHANNELS.index(c) for c in CHANNELS]


def test_trials_are_grouped_by_image_in_recording_order_with_the_variants_channels(root):
    folder, arrays = root
    dataset = load_dataset(NAME, data_root=folder, options=SMALL)
    assert dataset.subjects == ("sub-01", "sub-02") and dataset.info.ch_names == CHANNELS
    assert dataset.train_images.image_ids == ("00001", "00002", "00003", "00004", "00005", "00006")
    assert dataset.train_images.concepts[::2] == ("aardvark", "abacus", "accordion")
    assert dataset.test_images.image_ids == ("16541", "16542", "16543", "16544")
    assert dataset.image_paths("test")[0] == folder.resolve() / "images" / "16541.jpg"
    subject = dataset.load_subject(2)
    # design(): the 6 training images in turn, twice; then the 4 test images in turn, three times
    expected_train = arrays[2]["training"].reshape(2, 6, 32, 250).transpose(1, 0, 2, 3)[:, :, _picks()]
    expected_test = arrays[2]["test"].reshape(3, 4, 32, 250).transpose(1, 0, 2, 3)[:, :, _picks()]
    np.testing.assert_allclose(subject.train, expected_train, rtol=1e-6)
    np.testing.assert_allclose(subject.test, expected_test, rtol=1e-6)
    np.testing.assert_allclose(dataset.info.times, np.arange(250) / 250, atol=1e-9)


def test_dropped_trials_are_skipped_and_missing_repetitions_keep_the_images_mean(tmp_path):
    trials = design()
    first_test = next(i for i, t in enumerate(trials) if t.partition == "stim_test")
    trials[0] = Trial("stim_train", 1, "aardvark", dropped=True)  # image 1 keeps one of its two trials
    trials[first_test] = Trial("stim_test", 16541, "acorn", dropped=True)
    arrays = write_root(tmp_path, subjects=(1,), trials=trials)[1]
    dataset = load_dataset(NAME, data_root=tmp_path, options=SMALL)
    subject = dataset.load_subject(1)
    train = arrays["training"][:, _picks()]  # 11 kept rows: image 1's second trial is row 5
    np.testing.assert_allclose(subject.train[0], [train[5], train[5]], rtol=1e-6)
    test = arrays["test"][:, _picks()]  # image 16541's kept trials are rows 3 and 7
    np.testing.assert_allclose(subject.test[0], [test[3], test[7], (test[3] + test[7]) / 2], rtol=1e-5)
    report = dataset.metadata["source"]["subjects"]["sub-01"]
    assert report["train"]["repetitions_filled"] == 1 and report["test"]["repetitions_filled"] == 1
    assert report["train"]["trials_per_image"] == {"1": 1, "2": 5} and report["test"]["trials_ignored"] == 0
    assert dataset.metadata["source"]["license"] == LICENSE


def _task_file(folder: Path, name: str) -> str:
    data = load_task(name).model_dump(mode="json")
    data["dataset"]["options"] = SMALL
    data["seeds"] = [33]
    data["chance"] = {"top1": 1 / 4, "top5": 1.0}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(Task.model_validate(data).model_dump(mode="json")))
    return str(path)


def _run(args: list[str]):
    return CliRunner().invoke(app, ["run", "--backbone", "efficientnet_lite0", "--method", "final", "--epochs", "2",
                                    "--json", *args])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["alljoined-intra", "alljoined-joint"])
def test_the_tasks_run_end_to_end_on_the_embedded_backbone(root, tmp_path, name):
    folder, _ = root
    outcome = _run(["--task", _task_file(tmp_path, name), "--data-root", str(folder), "--results-dir",
                    str(tmp_path / "results")])
    assert outcome.exit_code == 0, outcome.output
    (path, *_) = sorted((tmp_path / "results").rglob("sub-01_seed-33.json"))
    record = ResultRecord.from_disk(json.loads(path.read_text()))
    assert record.dataset.name == NAME and record.dataset.variant == "official-32ch-250hz"
    assert len(record.dataset.channels) == 32 and record.dataset.n_times == 250 and record.n_gallery == 4
    assert record.task.protocol == name.split("-")[1]


def test_the_tasks_record_the_licence_and_match_the_declared_layout():
    spec = get_dataset_spec(NAME)
    for name in ("alljoined-intra", "alljoined-joint"):
        task = load_task(name)
        assert LICENSE in task.description and task.dataset.name == NAME
        spec.check_task(task)
    declared = spec.declared_dataset()
    assert len(declared.subjects) == 20 and declared.info.n_channels == 32
    assert (len(declared.train_images.image_ids), len(declared.test_images.image_ids)) == (16540, 200)


def test_data_info_prints_subjects_shapes_channels_and_window(root):
    folder, _ = root
    outcome = CliRunner().invoke(app, ["data", "info", NAME, "--root", str(folder), "--json"])
    assert outcome.exit_code == 0, outcome.output
    info = json.loads(outcome.stdout)  # the default options: 4 training and 80 test repetitions
    assert info["subjects"] == ["sub-01", "sub-02"] and info["channels"] == list(CHANNELS)
    assert info["train_shape"] == [6, 4, 32, 250] and info["test_shape"] == [4, 80, 32, 250]
    assert info["sfreq"] == 250.0 and info["time_window"] == [0.0, 0.996] and LICENSE in info["description"]
    table = CliRunner().invoke(app, ["data", "info", NAME, "--root", str(folder)])
    assert table.exit_code == 0 and "Cz, Fp1, F7" in table.stdout


def _broken_root(tmp_path: Path, damage) -> Path:
    write_root(tmp_path, subjects=(1,))
    damage(tmp_path / "preprocessed_eeg" / "sub-01")
    return tmp_path


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _nan(folder: Path) -> None:
    rows = sum(not t.dropped and t.partition == "stim_test" for t in design())
    data = np.zeros((rows, 32, 250))
    data[2, 5, 7] = np.nan
    write_flat(folder / "preprocessed_eeg_test_flat.npy", data)


@pytest.mark.parametrize("damage, message", [
    (lambda f: _truncate(f / "preprocessed_eeg_training_flat.npy"), "preprocessed_eeg_training_flat.npy is truncated "
                                                                     "or corrupt"),
    (lambda f: _truncate(f / "experiment_metadata_categories.parquet"), "not a readable parquet file"),
    (_nan, f"holds NaN/Inf values (first at trial 2, channel {FILE_CHANNELS[5]}, sample 7)"),
    (lambda f: (f / "preprocessed_eeg_test_flat.npy").unlink(), "sub-01 of alljoined lacks"),
    (lambda f: write_flat(f / "preprocessed_eeg_test_flat.npy", np.zeros((3, 32, 250))),
     "holds 3 trials, but the trial table lists 12 kept stim_test trials"),
])
def test_bad_files_fail_with_what_is_wrong_and_how_to_fix_it(tmp_path, damage, message):
    folder = _broken_root(tmp_path, damage)
    outcome = CliRunner().invoke(app, ["data", "info", NAME, "--root", str(folder)])
    assert outcome.exit_code == 2
    output = " ".join(outcome.output.split())
    assert message in output and f"eegbench data download {NAME} --root" in output


def test_missing_data_is_named(tmp_path):
    with pytest.raises(MissingDataError, match="No Alljoined-1.6M subject folders"):
        load_dataset(NAME, data_root=tmp_path)
    write_root(tmp_path, subjects=(1,))
    (tmp_path / "images" / "16543.jpg").unlink()
    with pytest.raises(MissingDataError, match="1 stimulus images are missing .* e.g. 16543.jpg"):
        load_dataset(NAME, data_root=tmp_path)


def test_a_subject_shown_other_images_is_refused_without_keeping_the_other_from_loading(tmp_path):
    write_root(tmp_path, subjects=(1,))
    write_subject(tmp_path, 2, design(train_concepts=("aardvark", "abacus", "anchor")))
    dataset = load_dataset(NAME, data_root=tmp_path, options=SMALL)
    assert dataset.load_subject(1).train.shape == (6, 2, 32, 250)
    with pytest.raises(DataError, match="sub-02 was shown other images than sub-01"):
        dataset.load_subject(2)


def test_the_download_refuses_to_start_until_the_licence_is_accepted(tmp_path):
    outcome = CliRunner().invoke(app, ["data", "download", NAME, "--root", str(tmp_path / "data")])
    assert outcome.exit_code == 2
    output = " ".join(outcome.output.split())
    assert "distributed under CC-BY-NC-ND-4.0 (https://creativecommons.org/licenses/by-nc-nd/4.0/)" in output
    assert "--accept-license" in output and not (tmp_path / "data").exists()  # refused before anything is written
    # accepted, it goes on to fetch (and, offline as the tests run, says so)
    outcome = CliRunner().invoke(app, ["data", "download", NAME, "--root", str(tmp_path / "data"), "--subjects", "1",
                                       "--accept-license"])
    assert outcome.exit_code == 2 and "HF_HUB_OFFLINE is set" in outcome.output
    record = json.loads((tmp_path / "data" / ".eegbench" / "downloads.json").read_text())
    assert record["licenses_accepted"] == {LICENSE: "https://creativecommons.org/licenses/by-nc-nd/4.0/"}


@pytest.mark.slow
def test_the_official_sweep_plans_every_method_and_both_protocols_with_no_data_on_disk(tmp_path):
    board, joint, depth, cross = load_sweep(REPO / "sweeps" / "official-alljoined.yaml").grids
    # every reference method of the main (inductive) track; tta runs on the transductive track only
    assert set(board.methods) == set(list_submissions()) - {"tta"} and board.tasks == depth.tasks == ["alljoined-intra"]
    assert joint.tasks == ["alljoined-joint"] and len(depth.layers) == 10 and cross.tasks == ["things-eeg2-to-alljoined"]
    data = yaml.safe_load((REPO / "sweeps" / "official-alljoined.yaml").read_text())
    for grid in data["grids"]:  # one backbone: the full list costs minutes of meta-device passes for no coverage
        grid["backbones"] = ["rn50"]
    small = tmp_path / "official-alljoined.yaml"
    small.write_text(yaml.safe_dump({**data, "results_dir": str(tmp_path / "results")}))
    plan = plan_sweep(load_sweep(small), declared=True)
    assert plan.declared == ("alljoined", "things-eeg2")  # the cross task trains on THINGS-EEG2
    assert len({key.subject for config in plan.configs for key in config.keys}) == 20  # every tested subject is Alljoined's
    assert {key.task for config in plan.configs for key in config.keys} == {"alljoined-intra", "alljoined-joint",
                                                                            "things-eeg2-to-alljoined"}
