"""THINGS-EEG1 (OpenNeuro ds003825 1.2.0) on small BIDS BrainVision files in the published layout: preprocessing,
the zero-shot split, `eegbench data info`, `eegbench run`, and clear errors for damaged or missing files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from things_files import EEG1Design, write_things_eeg1, write_things_eeg1_subject
from typer.testing import CliRunner

from eegbench.cli import app
from eegbench.data import load_dataset
from eegbench.data.montages import POSTERIOR_17
from eegbench.data.things_eeg1 import CHANNELS_63, EXCLUDED_SUBJECTS, subject_files
from eegbench.errors import DataError
from eegbench.tasks import Task, load_task

pytest.importorskip("sklearn")  # multivariate noise normalisation
DESIGN = EEG1Design()


@pytest.fixture(scope="module")
def eeg1_root(tmp_path_factory) -> Path:
    """Subjects 2 and 3: 9 concepts x 2 images shown once, then 3 validation images shown 3 times each."""
    root = tmp_path_factory.mktemp("things-eeg1")
    write_things_eeg1(root, subjects=(2, 3), design=DESIGN)
    return root


def _dominant_hz(epoch: np.ndarray, sfreq: float = 250.0) -> float:
    freqs = np.fft.rfftfreq(epoch.shape[-1], 1 / sfreq)
    power = np.abs(np.fft.rfft(epoch, axis=-1)).sum(0)
    power[freqs < 2] = 0  # the offset an epoch keeps after its baseline
    return float(freqs[power.argmax()])


def test_zero_shot_split_removes_every_training_image_of_the_test_concepts(eeg1_root):
    dataset = load_dataset("things-eeg1", data_root=eeg1_root)
    assert not set(dataset.train_images.concept_names) & set(dataset.test_images.concept_names)
    # 9 concepts x 2 images; the 3 test concepts' 6 training images are removed, their validation images tested
    assert len(dataset.train_images) == 12 and len(dataset.train_images.concept_names) == 6
    assert dataset.test_images.files == ("alligator/alligator_13n.jpg", "almond/almond_13n.jpg", "altar/altar_13n.jpg")
    report = dataset.metadata["source"]["subjects"]["sub-02"]
    assert report["test_concept_trials_excluded"] == 6


def test_epochs_are_matched_to_their_images_and_whitened(eeg1_root):
    dataset = load_dataset("things-eeg1", data_root=eeg1_root, variant="raw-63ch-250hz")
    subject = dataset.load_subject(3)
    assert subject.train.shape == (12, 1, 63, 250) and subject.test.shape == (3, 3, 63, 250)
    assert dataset.info.ch_names == CHANNELS_63 and dataset.info.unit == "whitened"
    # every image's response oscillates at its own frequency: epoch i must be image i of the table
    expected = [DESIGN.hz(Path(f).name) for f in dataset.train_images.files]
    assert [_dominant_hz(epoch[0]) for epoch in subject.train] == expected
    for image, epochs in zip(dataset.test_images.files, subject.test):
        assert [_dominant_hz(e) for e in epochs] == [DESIGN.hz(Path(image).name)] * 3
    # whitened by the training epochs' noise covariance: channels of about unit variance (the recording is in
    # volts, of variance ~1e-12)
    covariance = np.mean([np.cov(epoch) for epoch in np.asarray(subject.train[:, 0], dtype=np.float64)], axis=0)
    assert 0.25 < np.diag(covariance).min() and np.diag(covariance).max() < 2


def test_data_info_prints_subjects_shapes_channels_and_window(eeg1_root):
    result = CliRunner().invoke(app, ["data", "info", "things-eeg1", "--root", str(eeg1_root)])
    assert result.exit_code == 0, result.output
    for expected in ("raw-17ch-250hz", "sub-02, sub-03", "12, 1, 17, 250", "3, 3, 17, 250", ", ".join(POSTERIOR_17),
                     "0.0, 0.996", "250.0"):
        assert expected in result.stdout, expected


def test_the_tasks_leave_out_the_subjects_the_authors_exclude():
    for name in ("things-eeg1-intra", "things-eeg1-inter", "things-eeg1-joint"):
        task = load_task(name)
        assert len(task.subjects) == 46 and not set(task.subjects) & set(EXCLUDED_SUBJECTS)
        assert task.dataset.name == "things-eeg1" and "19,848 training images" in task.description


def _task_file(folder: Path, name: str, subjects: list[int]) -> str:
    data = load_task(name).model_dump(mode="json") | {
        "subjects": subjects, "seeds": [0], "chance": {"top1": 1 / 3, "top5": 1.0}}  # a 3-image gallery
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(Task.model_validate(data).model_dump(mode="json")))
    return str(path)


@pytest.mark.parametrize("name", ["things-eeg1-intra", "things-eeg1-inter"])
def test_eegbench_run_end_to_end(eeg1_root, tmp_path, name):
    result = CliRunner().invoke(app, [
        "run", "--task", _task_file(tmp_path, name, [2, 3]), "--data-root", str(eeg1_root), "--backbone",
        "efficientnet_lite0", "--method", "final", "--epochs", "2", "--subjects", "2", "--json",
        "--results-dir", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "results").rglob("sub-02_seed-0.json")
    record = json.loads(path.read_text())
    assert record["dataset"]["name"] == "things-eeg1" and record["dataset"]["variant"] == "raw-17ch-250hz"
    assert record["n_gallery"] == 3 and record["n_test_trials"] == 3
    assert record["train_subjects"] == (["sub-02"] if name.endswith("intra") else ["sub-03"])


# --- damaged and missing files ---------------------------------------------------------------------------


def _cut(files, nbytes):
    path = files["eeg"]
    path.write_bytes(path.read_bytes()[:-nbytes])


def _nan(files):
    data = np.fromfile(files["eeg"], dtype="<f4")
    data[63 * 5000 + CHANNELS_63.index("O1")] = np.nan  # O1, one of the 17 channels kept, at 5 s
    data.tofile(files["eeg"])


def _no_test_part(files):  # as sub-01: no validation trials, no isteststim column
    events = pd.read_csv(files["events"], sep="\t")
    events[events.isteststim == 0].drop(columns=["isteststim", "teststimnumber"]).to_csv(
        files["events"], sep="\t", index=False)


def _onsets_in_ms(files):  # as snapshots before 1.2.0
    events = pd.read_csv(files["events"], sep="\t")
    events["onset"] = events["sample"]
    events.to_csv(files["events"], sep="\t", index=False)


def _fewer_images(files):  # as sub-06, who did not complete the experiment
    events = pd.read_csv(files["events"], sep="\t")
    events[events.stimname != "aardvark_01b.jpg"].to_csv(files["events"], sep="\t", index=False)


@pytest.mark.parametrize("damage, message", [
    (lambda f: _cut(f, 10), r"sub-03_task-rsvp_eeg.eeg is truncated: .* and a partial sample"),
    (lambda f: _cut(f, 63 * 4 * 2000), r"sub-03_task-rsvp_eeg.eeg is truncated: its \d+ bytes hold 32.200 s of 63 "
                                       r"channels, but the last image's epoch ends at 33.200 s"),
    (_nan, r"sub-03_task-rsvp_eeg.eeg: the EEG holds NaN/Inf values \(first at channel O1, 5.000 s\)"),
    (lambda f: f["vmrk"].unlink(), r"sub-03_task-rsvp_eeg.vmrk is missing"),
    (lambda f: f["vhdr"].unlink(), r"sub-03_task-rsvp_eeg.vhdr is missing"),
    (lambda f: f["events"].unlink(), r"sub-03_task-rsvp_events.tsv is missing"),
    (_no_test_part, r"there is no isteststim column, so this subject has no validation-image trials"),
    (_onsets_in_ms, r"onsets are not in seconds .* as in snapshots before 1.2.0"),
    (_fewer_images, r"sub-03 has 11 train images and sub-02 has 12; .* All subjects must share the same images"),
], ids=["cut-mid-sample", "cut-short", "nan", "no-vmrk", "no-vhdr", "no-events", "no-test-part", "onsets-in-ms",
        "fewer-images"])
def test_a_damaged_subject_fails_clearly_and_alone(eeg1_root, tmp_path, damage, message):
    root = tmp_path / "data"
    shutil.copytree(eeg1_root, root)
    damage(subject_files(root, "sub-03"))
    result = CliRunner().invoke(app, ["run", "--task", _task_file(tmp_path, "things-eeg1-intra", [2, 3]),
                                      "--data-root", str(root), "--subjects", "3", "--results-dir",
                                      str(tmp_path / "results")])
    assert result.exit_code == 2, result.output
    assert re.search(message, " ".join(result.output.split())), result.output
    dataset = load_dataset("things-eeg1", data_root=root)  # the other subject still loads
    assert dataset.load_subject(2).train.shape == (12, 1, 17, 250)
    with pytest.raises(DataError):
        dataset.load_subject(3)


def test_missing_images_and_data_name_what_to_fetch(eeg1_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(eeg1_root, root)
    (root / "object_images" / "altar" / "altar_13n.jpg").unlink()
    result = CliRunner().invoke(app, ["data", "info", "things-eeg1", "--root", str(root)])
    assert result.exit_code == 2
    assert "1 images of the THINGS-EEG1 presentations are missing" in result.output
    assert "eegbench data download things-eeg1" in " ".join(result.output.split())
    result = CliRunner().invoke(app, ["data", "info", "things-eeg1", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "No subject folders (sub-01 ... sub-50)" in result.output


def test_a_recording_with_unconnected_extra_channels_keeps_the_named_ones(tmp_path):
    # sub-49 and sub-50 were recorded with a 128-channel set-up: the variant picks its 63 channels by name
    extra = (*reversed(CHANNELS_63), *(f"X{i}" for i in range(64)))
    write_things_eeg1(tmp_path, subjects=(2,))
    write_things_eeg1_subject(tmp_path, 49, ch_names=extra)
    dataset = load_dataset("things-eeg1", data_root=tmp_path, variant="raw-63ch-250hz")
    assert dataset.subjects == ("sub-02", "sub-49") and dataset.info.ch_names == CHANNELS_63
    assert dataset.load_subject(49).train.shape == (12, 1, 63, 250)
