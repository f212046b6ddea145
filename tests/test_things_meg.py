"""THINGS-MEG loader on small ``preprocessed_P<n>-epo.fif`` files written with MNE (see ``things_files``)."""

from __future__ import annotations

import numpy as np
import pytest
from things_files import MEG_CHANNELS, meg_image_path, write_meg_epochs, write_things_images

from eegbench._check import DataError, MissingDataError, UnknownNameError
from eegbench.data import load_dataset

TRAIN_CONCEPTS = ("acorn", "anchor", "apple", "axe")
TEST_CONCEPTS = ("altar", "ant", "arrow")
TEST_REPS = 3


def _trials(test_reps: dict[str, int] | None = None) -> list[tuple[str, str]]:
    """A recording order mixing training images, repeated test images, catch trials and test-concept images."""
    test_reps = {c: TEST_REPS for c in TEST_CONCEPTS} | (test_reps or {})
    training = [("exp", meg_image_path("exp", c, i)) for c in reversed(TRAIN_CONCEPTS) for i in (2, 1)]
    trials = [("catch", meg_image_path("catch", "boat", 1))]
    for rep in range(max(test_reps.values())):
        trials += [("test", meg_image_path("test", c, 4)) for c in TEST_CONCEPTS if rep < test_reps[c]]
        trials.append(training.pop())
    # Other images of the test concepts are excluded from training (zero-shot).
    return trials + training + [("exp", meg_image_path("exp", "ant", 1)), ("catch", meg_image_path("catch", "cup", 2)),
                                ("exp", meg_image_path("exp", "altar", 7))]


def _write_subject(root, number, trials, seed=None, split_size="2GB"):
    rng = np.random.default_rng(number if seed is None else seed)
    data = rng.normal(size=(len(trials), len(MEG_CHANNELS), 281)).astype(np.float32)
    write_meg_epochs(_epochs_file(root, number), trials, data, split_size=split_size)
    return data


def _epochs_file(root, number, part=0):
    return root / "derivatives" / "preprocessed" / f"preprocessed_P{number}-epo{f'-{part}' if part else ''}.fif"


def _image_files(trials):
    """``<concept>/<file>`` of every image shown (the THINGS database layout)."""
    names = {p.rsplit("/", 1)[1] for kind, p in trials if kind != "catch"}
    return sorted(f"{name.rsplit('_', 1)[0]}/{name}" for name in names)


@pytest.fixture(scope="module")
def meg(tmp_path_factory):
    root = tmp_path_factory.mktemp("things-meg")
    trials = _trials()
    data = {n: _write_subject(root, n, trials) for n in (1, 2)}
    write_things_images(root, _image_files(trials))
    return root, trials, data


def _rows(trials, kind, file):
    return [i for i, (k, p) in enumerate(trials) if k == kind and p.endswith("/" + file)]


def test_zero_shot_split_exact_arrays_channels_and_time_axis(meg):
    root, trials, data = meg
    dataset = load_dataset("things-meg", data_root=root)
    assert dataset.variant == "official-271ch-200hz" and dataset.subjects == ("sub-01", "sub-02")
    assert dataset.info.modality == "meg" and dataset.info.ch_names == MEG_CHANNELS and dataset.info.sfreq == 200.0
    np.testing.assert_allclose(dataset.info.times, np.arange(200) / 200)  # cropped to [0, 1) s

    # Training: every image of a non-test concept, once, sorted by (concept, file); test: the repeated images.
    assert dataset.train_images.files == tuple(f"{c}/{c}_{i:02d}{'b' if i == 1 else 's'}.jpg"
                                               for c in TRAIN_CONCEPTS for i in (1, 2))
    assert dataset.test_images.files == tuple(f"{c}/{c}_04s.jpg" for c in TEST_CONCEPTS)
    assert set(dataset.train_images.concepts).isdisjoint(dataset.test_images.concepts)

    for number in (1, 2):
        subject = dataset.load_subject(number)
        assert subject.train.shape == (8, 1, 271, 200) and subject.test.shape == (3, TEST_REPS, 271, 200)
        for k, file in enumerate(dataset.train_images.files):
            (row,) = _rows(trials, "exp", file.split("/")[1])
            np.testing.assert_array_equal(subject.train[k, 0], data[number][row, :, 20:220])
        for k, file in enumerate(dataset.test_images.files):
            rows = _rows(trials, "test", file.split("/")[1])
            np.testing.assert_array_equal(subject.test[k], data[number][rows][:, :, 20:220])
    report = dataset.metadata["source"]["subjects"]["sub-01"]
    assert report == {"catch_trials_dropped": 2, "test_concept_trials_excluded": 2}


def test_paths_of_the_things_images(meg):
    root, _, _ = meg
    dataset = load_dataset("things-meg", data_root=root)
    assert dataset.image_root == (root / "object_images").resolve()
    assert all(p.is_file() for split in ("train", "test") for p in dataset.image_paths(split))


def test_unequal_test_repetitions_are_refused(tmp_path):
    trials = _trials({"ant": 2})
    _write_subject(tmp_path, 1, trials)
    write_things_images(tmp_path, _image_files(trials))
    with pytest.raises(DataError, match=r"preprocessed_P1-epo.fif: test images must all have the same number of "
                                        r"repetitions; most have 3, but 1 differ, e.g. \[\('ant/ant_04s.jpg', 2\)\]"):
        load_dataset("things-meg", data_root=tmp_path)


def test_a_subject_with_different_images_is_refused_without_keeping_the_others_from_loading(tmp_path):
    trials = _trials()
    _write_subject(tmp_path, 1, trials)
    _write_subject(tmp_path, 2, [t for t in trials if "axe_01b" not in t[1]])
    write_things_images(tmp_path, _image_files(trials))
    dataset = load_dataset("things-meg", data_root=tmp_path)
    assert dataset.subjects == ("sub-01", "sub-02") and dataset.load_subject(1).train.shape == (8, 1, 271, 200)
    with pytest.raises(DataError, match=r"sub-02 has 7 train images and sub-01 has 8; they differ in e.g. "
                                        r"\['axe/axe_01b.jpg'\]"):
        dataset.load_subject(2)


def test_bad_epochs_files_and_missing_pieces(tmp_path):
    with pytest.raises(MissingDataError, match=r"No THINGS-MEG epochs files \(preprocessed_P1-epo.fif ... P4\)"):
        load_dataset("things-meg", data_root=tmp_path)
    trials = _trials()
    data = _write_subject(tmp_path, 1, trials)
    with pytest.raises(MissingDataError, match=r"Image folder .*object_images is missing.*password"):
        load_dataset("things-meg", data_root=tmp_path)
    files = _image_files(trials)
    write_things_images(tmp_path, files[1:])
    with pytest.raises(MissingDataError, match=f"1 images of the THINGS-MEG trials are missing under .*e.g. "
                                               f"{files[0]}"):
        load_dataset("things-meg", data_root=tmp_path)
    write_things_images(tmp_path, files)

    path = tmp_path / "derivatives" / "preprocessed" / "preprocessed_P1-epo.fif"
    data[5, 7, 30] = np.nan
    write_meg_epochs(path, trials, data)
    sensor = MEG_CHANNELS[7]
    with pytest.raises(DataError, match=f"epochs data holds NaN/Inf values \\(first at epoch 5, sensor {sensor}\\)"):
        load_dataset("things-meg", data_root=tmp_path)

    import mne

    epochs = mne.read_epochs(path, verbose=False)
    epochs.metadata = None
    epochs.save(path, overwrite=True, verbose=False)
    with pytest.raises(DataError, match="the epochs carry no trial metadata"):
        load_dataset("things-meg", data_root=tmp_path)

    path.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(DataError, match=r"preprocessed_P1-epo.fif is truncated or corrupt"):
        load_dataset("things-meg", data_root=tmp_path)


# --- damaged and missing files: each names the file and how to get it again -----------------------------------


def _split_root(root, subjects=(1,)):
    """Subjects whose epochs are split into parts as the official ones are (at 2 MB here); returns the part count."""
    trials = _trials()
    for number in subjects:
        _write_subject(root, number, trials, split_size="2MB")
    write_things_images(root, _image_files(trials))
    n_parts = len(list(_epochs_file(root, subjects[0]).parent.glob("preprocessed_P1-epo*.fif")))
    assert n_parts >= 3
    return n_parts


def _cut(path, keep):
    """Keep a fraction of ``path``'s bytes (a float), or its first ``keep`` bytes (an int)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])


def _refetch(root, number):
    # THINGS-MEG has several variants now, so the command names the default one
    return (f"Delete it and download it again. Get it with `eegbench data download things-meg --root {root} "
            f"--variant official-271ch-200hz --subjects {number}`.")


@pytest.mark.parametrize("part, keep", [(2, 0.6), ("last", 0.99)])
def test_a_truncated_split_part_is_named_with_how_to_get_it_again(tmp_path, part, keep):
    n_parts = _split_root(tmp_path)
    path = _epochs_file(tmp_path, 1, n_parts - 1 if part == "last" else part)
    _cut(path, keep)
    with pytest.raises(DataError) as error:  # MNE alone fails with a bare AssertionError
        load_dataset("things-meg", data_root=tmp_path)
    message = str(error.value)
    assert message.startswith(f"{path} is truncated or corrupt: ")
    assert message.endswith(f", as when a download or copy was interrupted. {_refetch(tmp_path, 1)}")


def test_a_first_part_cut_after_its_epochs_is_refused_not_read_as_fewer_epochs(tmp_path):
    import mne

    _split_root(tmp_path)
    first = _epochs_file(tmp_path, 1)
    # Its epochs stay whole; the name of the next part, written after them, is lost.
    _cut(first, first.read_bytes().index(_epochs_file(tmp_path, 1, 1).name.encode()) - 16)  # before its tag
    assert len(mne.read_epochs(first, preload=False, verbose="error")) < len(_trials())  # what MNE alone does
    with pytest.raises(DataError, match=f"{first} is truncated or corrupt: .*{_refetch(tmp_path, 1)}"):
        load_dataset("things-meg", data_root=tmp_path)


def test_a_missing_subject_says_which_file_is_missing_and_how_to_get_it(meg):
    root, _, _ = meg
    dataset = load_dataset("things-meg", data_root=root)
    with pytest.raises(MissingDataError) as error:
        dataset.load_subject(3)
    assert str(error.value) == (
        f"Subject sub-03 of things-meg is not under {root}: its epochs "
        f"{root / 'derivatives/preprocessed/preprocessed_P3-epo.fif'} (with its split parts -epo-1.fif ...) are "
        f"missing. Get it with `eegbench data download things-meg --root {root} --variant official-271ch-200hz --subjects 3`.")
    with pytest.raises(UnknownNameError, match=r"^Unknown things-meg subject 'sub-05'. Did you mean 'sub-02'\? Valid "
                                               r"things-meg subjects: sub-01, sub-02.$"):
        dataset.load_subject("sub-05")


def test_a_damaged_subject_does_not_keep_the_others_from_loading(tmp_path):
    _split_root(tmp_path, subjects=(1, 2))
    damaged = _epochs_file(tmp_path, 2, 1)
    _cut(damaged, 0.5)
    dataset = load_dataset("things-meg", data_root=tmp_path)
    assert dataset.subjects == ("sub-01", "sub-02")  # still listed, so that asking for every subject fails
    assert dataset.load_subject(1).train.shape == (8, 1, 271, 200)
    with pytest.raises(DataError, match=f"{damaged} is truncated or corrupt: .*{_refetch(tmp_path, 2)}"):
        dataset.load_subject(2)
