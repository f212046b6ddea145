"""Cross-dataset tasks: trained on THINGS-EEG2, tested on Alljoined-1.6M, both from files in their published formats."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from alljoined_files import write_root
from things_files import write_image_set, write_nice_250hz
from typer.testing import CliRunner

from eegbench.cli import app
from eegbench.data import POSTERIOR_17, RecordingInfo, load_dataset
from eegbench.data.cross import CrossDataset, concept_key, cross_dataset
from eegbench.errors import InvalidInputError
from eegbench.plan import check_task_datasets, load_task_dataset
from eegbench.protocols import plan_units
from eegbench.records import ResultRecord
from eegbench.tasks import Task, load_task

TASK = "things-eeg2-to-alljoined"
SMALL = {"train_repetitions": 2, "test_repetitions": 3}
#: THINGS-EEG2 mini files: 3 training concepts x 2 images (aardvark, abacus, accordion), 4 test images
N_CONCEPTS, PER_CONCEPT, N_TEST = 3, 2, 4


def _write_things_eeg2(root: Path, subjects=(1, 2)) -> None:
    write_image_set(root, N_CONCEPTS, PER_CONCEPT, N_TEST)
    for subject in subjects:
        rng = np.random.default_rng(subject)
        write_nice_250hz(root, subject, rng.normal(size=(N_CONCEPTS * PER_CONCEPT, 4, 63, 300)),
                         rng.normal(size=(N_TEST, 6, 63, 300)))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """One data root holding both datasets: Alljoined's test concepts (acorn, aircraft, airplane, alligator) are
    not among THINGS-EEG2's training concepts."""
    folder = tmp_path_factory.mktemp("cross")
    _write_things_eeg2(folder)
    write_root(folder, subjects=(1, 2, 3))
    return folder


def _task(**changes) -> Task:
    data = load_task(TASK).model_dump(mode="json")
    data["test_dataset"]["options"] = SMALL
    data.update({"seeds": [33], "chance": {"top1": 1 / 4, "top5": 1.0}, **changes})
    return Task.model_validate(data)


def test_the_composition_trains_on_one_dataset_and_tests_on_the_other(root):
    train = load_dataset("things-eeg2", variant="17ch-250hz", data_root=root)
    test = load_dataset("alljoined", options=SMALL, data_root=root)
    dataset = load_task_dataset(_task(), root)
    assert isinstance(dataset, CrossDataset) and dataset.name == "things-eeg2-to-alljoined"
    assert dataset.subjects == ("sub-01", "sub-02", "sub-03")
    assert dataset.training_subjects == ("sub-train01", "sub-train02")
    assert dataset.info.ch_names == POSTERIOR_17 and dataset.info.n_times == 250 and dataset.info.sfreq == 250
    assert dataset.train_images.image_ids == train.train_images.image_ids
    assert dataset.test_images.image_ids == test.test_images.image_ids
    assert dataset.image_paths("train") == train.image_paths("train")
    assert dataset.image_paths("test") == test.image_paths("test")

    trained = dataset.load_subject("sub-train02")
    shared = train.info.time_indices(0.0, 1.0)  # THINGS-EEG2 starts at -0.2 s, Alljoined at 0 s
    assert len(shared) == 250 and len(train.info.times) > 250
    np.testing.assert_array_equal(np.asarray(trained.train), train.load_subject(2).train[..., shared])
    assert trained.test.shape[0] == 0  # a training subject serves no test responses
    tested = dataset.load_subject(3)
    assert tested.train.shape[0] == 0  # nothing of the tested dataset's training recordings can reach a fit
    picks = test.info.channel_indices(POSTERIOR_17)
    np.testing.assert_array_equal(tested.test[1:3, :2], test.load_subject(3).test[1:3, :2][:, :, picks])
    assert tested.test.shape == (4, 3, 17, 250)


def test_each_tested_subject_is_a_unit_of_one_fit_per_seed_on_every_training_subject(root):
    task = _task(seeds=[0, 1])
    units = plan_units(task, load_task_dataset(task, root))
    assert [(u.subject, u.seed) for u in units] == [(s, seed) for s in ("sub-01", "sub-02", "sub-03") for seed in (0, 1)]
    assert {u.train_subjects for u in units} == {("sub-train01", "sub-train02")}
    assert len({u.fit_key for u in units}) == 2


def test_test_concepts_seen_in_training_are_refused(tmp_path):
    write_image_set(tmp_path, 6, 2, 4)  # training concepts aardvark ... airplane: acorn and airplane are tested
    write_nice_250hz(tmp_path, 1, np.zeros((12, 4, 63, 300)), np.zeros((4, 6, 63, 300)))
    write_root(tmp_path, subjects=(1,))
    with pytest.raises(InvalidInputError, match="2 test concepts of alljoined .* are training concepts"):
        load_task_dataset(_task(), tmp_path)
    assert concept_key("00004_acorn") == concept_key("acorn") == "acorn"


def test_recordings_that_do_not_line_up_are_refused(root):
    train = load_dataset("things-eeg2", variant="17ch-250hz", data_root=root)
    test = load_dataset("alljoined", options=SMALL, data_root=root)
    with pytest.raises(InvalidInputError, match=r"Channels \['Fz'\] are not in things-eeg2"):
        cross_dataset(train, test, channels=["Oz", "Fz"])
    slower = RecordingInfo("eeg", test.info.ch_names, 100.0, np.arange(100) / 100.0, test.info.unit)
    shifted = RecordingInfo("eeg", test.info.ch_names, 250.0, test.info.times + 0.002, test.info.unit)
    with pytest.raises(InvalidInputError, match="at 250 Hz and alljoined .* at 100 Hz"):
        cross_dataset(train, replace(test, info=slower))
    with pytest.raises(InvalidInputError, match="share no common samples"):
        cross_dataset(train, replace(test, info=shifted))
    assert cross_dataset(train, test).info.ch_names == POSTERIOR_17  # "all": every channel both have


def test_the_task_declares_both_datasets_and_cross_needs_a_test_dataset():
    task = load_task(TASK)
    check_task_datasets(task)
    assert [d.name for d in task.datasets] == ["things-eeg2", "alljoined"] and "CC-BY-NC-ND-4.0" in task.description
    data = task.model_dump(mode="json")
    with pytest.raises(ValueError, match="protocol: cross needs test_dataset"):
        Task.model_validate({**data, "test_dataset": None})
    with pytest.raises(ValueError, match="only it takes one"):
        Task.model_validate({**data, "protocol": "inter"})
    assert "test_dataset" not in load_task("things-eeg-inter").model_dump(exclude_defaults=True)


def test_recordings_that_cannot_line_up_are_refused_before_any_file_is_read(tmp_path):
    official = _task(dataset={"name": "things-eeg2", "variant": "official-17ch-100hz"}, time_window=[0.0, 0.5])
    with pytest.raises(InvalidInputError, match="things-eeg2 .* is sampled at 100 Hz and alljoined .* at 250 Hz"):
        check_task_datasets(official)
    outcome = CliRunner().invoke(app, ["run", "--task", _task_file(tmp_path, official), "--method", "final",
                                       "--data-root", str(tmp_path / "nothing-here")])
    assert outcome.exit_code == 2 and "at 250 Hz" in outcome.output and "Traceback" not in outcome.output


def _task_file(folder: Path, task: Task) -> str:
    path = folder / f"{task.id}.yaml"
    path.write_text(yaml.safe_dump(task.model_dump(mode="json")))
    return str(path)


@pytest.mark.slow
def test_the_task_runs_end_to_end_on_the_embedded_backbone(root, tmp_path):
    outcome = CliRunner().invoke(app, ["run", "--task", _task_file(tmp_path, _task()), "--backbone", "efficientnet_lite0", "--method",
                                       "final", "--epochs", "2", "--json", "--data-root", str(root),
                                       "--results-dir", str(tmp_path / "results")])
    assert outcome.exit_code == 0, outcome.output
    records = [ResultRecord.from_disk(json.loads(p.read_text())) for p in sorted((tmp_path / "results").rglob("*.json"))
               if p.name.startswith("sub-")]
    assert sorted(r.subject for r in records) == ["sub-01", "sub-02", "sub-03"]
    for record in records:
        assert record.task.protocol == "cross" and record.dataset.name == "things-eeg2-to-alljoined"
        assert record.dataset.variant == "17ch-250hz+official-32ch-250hz" and record.n_gallery == 4
        assert record.train_subjects == ["sub-train01", "sub-train02"]
