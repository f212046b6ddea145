"""THINGS-EEG2 loader on small files in the published on-disk formats (see ``things_files``)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from things_files import (
    NICE_TIMES,
    OFFICIAL_TIMES,
    TEST_HZ,
    THINGS63,
    TRAIN_HZ,
    write_image_set,
    write_nice_250hz,
    write_official,
    write_raw_subject,
)

from eegbench._check import DataError, MissingDataError, UnknownNameError
from eegbench.data import POSTERIOR_17, load_dataset

N_CONCEPTS, PER_CONCEPT, N_TEST = 5, 2, 3
N_TRAIN = N_CONCEPTS * PER_CONCEPT
# The official files store the 17 channels in this (non-alphabetical) order.
OFFICIAL_ORDER = ("Pz", "P3", "P7", "O1", "Oz", "O2", "P4", "P8", "P1", "P5", "PO7", "PO3", "POz", "PO4", "PO8",
                  "P6", "P2")


def _arrays(seed: int, n_channels: int, n_times: int, reps=(4, 6)):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(N_TRAIN, reps[0], n_channels, n_times)),
            rng.normal(size=(N_TEST, reps[1], n_channels, n_times)))


def _eeg2_root(root, subjects=(1, 2)):
    """A data root with the image set and the 250 Hz and official files of ``subjects``; returns the arrays."""
    write_image_set(root, N_CONCEPTS, PER_CONCEPT, N_TEST)
    sources = {}
    for subject in subjects:
        nice, official = _arrays(subject, 63, 250), _arrays(100 + subject, 17, 100)
        write_nice_250hz(root, subject, *nice)
        write_official(root, subject, *official, ch_names=OFFICIAL_ORDER)
        sources[subject] = {"nice": nice, "official": official}
    return sources


@pytest.fixture(scope="module")
def eeg2(tmp_path_factory):
    root = tmp_path_factory.mktemp("things-eeg2")
    return root, _eeg2_root(root)


def test_17ch_250hz_returns_the_posterior_channels_on_the_0_to_1_s_axis(eeg2):
    root, sources = eeg2
    dataset = load_dataset("things-eeg2", data_root=root)  # the default variant
    assert dataset.variant == "17ch-250hz" and dataset.subjects == ("sub-01", "sub-02")
    assert dataset.info.ch_names == POSTERIOR_17 and dataset.info.sfreq == 250.0
    # The files' `times` has 300 values from -0.2 s; the 250 stored samples are its last 250.
    np.testing.assert_allclose(dataset.info.times, NICE_TIMES[50:])
    assert dataset.info.times[0] == 0.0 and dataset.info.times[-1] == pytest.approx(0.996)
    picks = [THINGS63.index(c) for c in POSTERIOR_17]
    for subject, label in ((1, "sub-01"), (2, "sub-02")):
        data = dataset.load_subject(label)
        train, test = sources[subject]["nice"]
        assert isinstance(data.train, np.memmap) and data.train.dtype == np.float32
        np.testing.assert_array_equal(data.train, train[:, :, picks].astype(np.float32))
        np.testing.assert_array_equal(data.test, test[:, :, picks].astype(np.float32))


def test_image_order_is_the_metadata_order_and_files_exist(eeg2):
    root, _ = eeg2
    metadata = np.load(root / "image_set" / "image_metadata.npy", allow_pickle=True).item()
    dataset = load_dataset("things-eeg2", data_root=root)
    assert dataset.train_images.concepts == tuple(metadata["train_img_concepts"])
    assert dataset.train_images.files[:2] == ("training_images/00001_aardvark/aardvark_01b.jpg",
                                              "training_images/00001_aardvark/aardvark_02s.jpg")
    assert dataset.test_images.image_ids == tuple(f[:-4] for f in metadata["test_img_files"])
    assert all(path.is_file() for split in ("train", "test") for path in dataset.image_paths(split))
    assert dataset.image_root == (root / "image_set").resolve()


def test_63ch_keeps_the_file_channel_order(eeg2):
    root, sources = eeg2
    dataset = load_dataset("things-eeg2", variant="63ch-250hz", data_root=root)
    assert dataset.info.ch_names == THINGS63
    np.testing.assert_array_equal(dataset.load_subject(2).test, sources[2]["nice"][1].astype(np.float32))


def test_official_variant_reads_17_channels_at_100_hz_from_minus_0_2_s(eeg2):
    root, sources = eeg2
    dataset = load_dataset("things-eeg2", variant="official-17ch-100hz", data_root=root,
                           options={"dtype": "float16"})
    assert dataset.info.ch_names == OFFICIAL_ORDER and dataset.info.sfreq == 100.0
    np.testing.assert_allclose(dataset.info.times, OFFICIAL_TIMES)
    data = dataset.load_subject(1)
    assert data.train.dtype == np.float16 and dataset.metadata["dtype"] == "float16"
    np.testing.assert_array_equal(data.train, sources[1]["official"][0].astype(np.float16))


def test_every_variant_is_recorded_in_the_fingerprint(eeg2):
    root, _ = eeg2
    datasets = {v: load_dataset("things-eeg2", variant=v, data_root=root)
                for v in ("17ch-250hz", "63ch-250hz", "official-17ch-100hz")}
    assert len({d.fingerprint for d in datasets.values()}) == 3
    for variant, dataset in datasets.items():
        assert dataset.metadata["variant"] == variant
        assert dataset.metadata["source"]["variant"]["name"] == variant
        assert "image_set/image_metadata.npy" in dataset.metadata["source"]["sources"]


def test_conversion_is_cached_and_a_changed_source_invalidates_it(tmp_path, monkeypatch):
    sources = _eeg2_root(tmp_path, subjects=(1,))
    first = load_dataset("things-eeg2", data_root=tmp_path)
    import eegbench.data.things_eeg2 as module

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although nothing changed")

    monkeypatch.setattr(module, "_convert_preprocessed", no_conversion)
    again = load_dataset("things-eeg2", data_root=tmp_path)
    assert again.root == first.root and again.fingerprint == first.fingerprint
    monkeypatch.undo()

    train, test = sources[1]["nice"]
    write_nice_250hz(tmp_path, 1, train + 1.0, test)
    changed = load_dataset("things-eeg2", data_root=tmp_path)
    assert changed.fingerprint != first.fingerprint and changed.root != first.root
    np.testing.assert_array_equal(changed.load_subject(1).train[:, :, 0], (train + 1.0)[:, :, THINGS63.index("Pz")]
                                  .astype(np.float32))


# --- bad input: each names the file and what was expected ---------------------------------------------------


def _nice_file(root, subject=1, split="training"):
    return root / "Preprocessed_data_250Hz" / f"sub-{subject:02d}" / f"preprocessed_eeg_{split}.npy"


def _rewrite(path, **changes):
    with open(path, "rb") as handle:
        data = pickle.load(handle)
    data.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del data[key]
    with open(path, "wb") as handle:
        pickle.dump(data, handle, protocol=4)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path):
    path.write_bytes(b"\x80\x04 this is not a pickle" * 10)


def _drop_key(path):
    _rewrite(path, ch_names=None)


def _wrong_conditions(path):
    train, _ = _arrays(0, 63, 250)
    _rewrite(path, preprocessed_eeg_data=train[:-1])


def _nan(path):
    train, _ = _arrays(0, 63, 250)
    train[3, 1, THINGS63.index("Oz"), 7] = np.nan
    _rewrite(path, preprocessed_eeg_data=train)


def _inf_outside_selection(path):  # Fp1 is not among the 17 selected channels, so this one must load
    train, _ = _arrays(0, 63, 250)
    train[0, 0, THINGS63.index("Fp1"), 0] = np.inf
    _rewrite(path, preprocessed_eeg_data=train)


def _misaligned_times(path):  # 300 time values whose last 250 do not start at 0 s
    _rewrite(path, times=np.arange(-75, 225) / 250.0)


def _missing_channel(path):
    _rewrite(path, ch_names=[("X1" if c == "POz" else c) for c in THINGS63])


@pytest.mark.parametrize("damage, message", [
    (_truncate, "preprocessed_eeg_training.npy is truncated or corrupt"),
    (_garbage, "preprocessed_eeg_training.npy is truncated or corrupt"),
    (_drop_key, "lacks the key(s) ['ch_names']; expected ['preprocessed_eeg_data', 'ch_names', 'times']"),
    (_wrong_conditions, "preprocessed_eeg_data has 9 image conditions, but image_set/image_metadata.npy lists 10 "
                        "train images"),
    (_nan, "preprocessed_eeg_data holds NaN/Inf values (first at image 3, repetition 1, channel Oz, sample 7)"),
    (_misaligned_times, "the 250 Hz files keep the last 250 samples, which must start at image onset (0 s), but "
                        "they start at -0.1000 s"),
    (_missing_channel, "channels ['POz'] of variant '17ch-250hz' are not in the file"),
])
def test_a_damaged_source_file_gives_a_specific_error(tmp_path, damage, message):
    _eeg2_root(tmp_path, subjects=(1,))
    damage(_nice_file(tmp_path))
    with pytest.raises(DataError) as error:
        load_dataset("things-eeg2", data_root=tmp_path)
    text = str(error.value)
    assert message in text and "eegbench data download things-eeg2" in text
    assert str(_nice_file(tmp_path)) in text or "image_metadata.npy" in text


def test_a_truncated_official_file_is_named(tmp_path):
    _eeg2_root(tmp_path, subjects=(1,))
    path = tmp_path / "preprocessed_data" / "sub-01" / "preprocessed_eeg_test.npy"  # np.save of a dict
    _truncate(path)
    with pytest.raises(DataError, match=rf"^{path} is truncated or corrupt \(UnpicklingError: .*\); expected a "
                                        rf"THINGS-EEG2 official-17ch-100hz dict. Get it with `eegbench data download "
                                        rf"things-eeg2 --root {tmp_path} --variant official-17ch-100hz "
                                        rf"--subjects 1`.$"):
        load_dataset("things-eeg2", variant="official-17ch-100hz", data_root=tmp_path)


def test_a_damaged_subject_does_not_keep_the_others_from_loading(tmp_path):
    import shutil

    sources = _eeg2_root(tmp_path / "a", subjects=(1, 2))
    _truncate(_nice_file(tmp_path / "a", 2))
    message = (r"{root}/Preprocessed_data_250Hz/sub-02/preprocessed_eeg_training.npy is truncated or corrupt .*"
               r"Get it with `eegbench data download things-eeg2 --root {root} --variant 17ch-250hz --subjects 2`.$")
    for root in (tmp_path / "a", tmp_path / "b"):  # converted once; then the same files under another root
        if not root.exists():
            shutil.copytree(tmp_path / "a", root)
        dataset = load_dataset("things-eeg2", data_root=root)
        assert dataset.subjects == ("sub-01", "sub-02")  # listed, so that asking for every subject fails
        np.testing.assert_array_equal(dataset.load_subject(1).test[:, :, 0],
                                      sources[1]["nice"][1][:, :, THINGS63.index("Pz")].astype(np.float32))
        with pytest.raises(DataError, match=message.format(root=root)):
            dataset.load_subject(2)
    assert dataset.root == load_dataset("things-eeg2", data_root=tmp_path / "a").root  # one cache entry
    assert "sub-02" in dataset.describe()["unavailable_subjects"]


def test_nan_in_an_unselected_channel_is_not_an_error_of_the_17_channel_variant(tmp_path):
    _eeg2_root(tmp_path, subjects=(1,))
    _inf_outside_selection(_nice_file(tmp_path))
    assert load_dataset("things-eeg2", data_root=tmp_path).load_subject(1).train.shape == (N_TRAIN, 4, 17, 250)
    with pytest.raises(DataError, match=r"NaN/Inf values \(first at image 0, repetition 0, channel Fp1, sample 0\)"):
        load_dataset("things-eeg2", variant="63ch-250hz", data_root=tmp_path)


def test_missing_pieces_are_named_with_how_to_get_them(tmp_path):
    with pytest.raises(MissingDataError, match="pass --data-root DIR"):
        load_dataset("things-eeg2")
    with pytest.raises(MissingDataError, match=f"Data root {tmp_path / 'nowhere'} does not exist"):
        load_dataset("things-eeg2", data_root=tmp_path / "nowhere")
    with pytest.raises(MissingDataError, match=r"image_metadata.npy is missing"):
        load_dataset("things-eeg2", data_root=tmp_path)

    _eeg2_root(tmp_path, subjects=(1, 2))
    _nice_file(tmp_path, 2, "test").unlink()
    dataset = load_dataset("things-eeg2", data_root=tmp_path)
    assert dataset.subjects == ("sub-01", "sub-02") and dataset.load_subject(1).test.shape == (N_TEST, 6, 17, 250)
    with pytest.raises(MissingDataError, match=r"Subject sub-02 of things-eeg2 is incomplete: .*sub-02/"
                                               r"preprocessed_eeg_test.npy is missing. Get it with `eegbench data "
                                               r"download things-eeg2 --root .* --variant 17ch-250hz --subjects 2`"):
        dataset.load_subject(2)
    with pytest.raises(MissingDataError, match=r"No subject folders \(sub-01 ... sub-10\) found in .*raw_data"):
        load_dataset("things-eeg2", variant="raw-17ch-250hz", data_root=tmp_path)
    with pytest.raises(UnknownNameError, match="Unknown things-eeg2 variant '17ch-100hz'"):
        load_dataset("things-eeg2", variant="17ch-100hz", data_root=tmp_path)

    (tmp_path / "image_set" / "test_images" / "00003_almond" / "almond_03s.jpg").unlink()
    with pytest.raises(MissingDataError, match=r"1 of the 3 images listed in image_set/image_metadata.npy are "
                                               r"missing .*test_images/00003_almond/almond_03s.jpg"):
        load_dataset("things-eeg2", data_root=tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "image_set" / "training_images")
    with pytest.raises(MissingDataError, match=r"Image folder .*training_images is missing \(it should hold the 10"):
        load_dataset("things-eeg2", data_root=tmp_path)


@pytest.mark.parametrize("variant, reads", [
    ("17ch-250hz", "preprocessed_eeg_{training,test}.npy from {root}/Preprocessed_data_250Hz/sub-03"),
    ("official-17ch-100hz", "preprocessed_eeg_{training,test}.npy from {root}/preprocessed_data/sub-03"),
    ("raw-63ch-250hz", "ses-XX/raw_eeg_*.npy from {root}/raw_data/sub-03"),
])
def test_a_missing_subject_says_which_folder_is_missing_and_how_to_get_it(tmp_path, variant, reads):
    if variant.startswith("raw"):
        pytest.importorskip("sklearn")
        write_image_set(tmp_path, 2, 2, 2)
        write_raw_subject(tmp_path)
    else:
        _eeg2_root(tmp_path, subjects=(1,))
    dataset = load_dataset("things-eeg2", variant=variant, data_root=tmp_path, options=RAW_OPTIONS)
    with pytest.raises(MissingDataError) as error:
        dataset.load_subject(3)
    assert str(error.value) == (
        f"Subject sub-03 of things-eeg2 is not under {tmp_path}: variant {variant!r} reads its "
        f"{reads.replace('{root}', str(tmp_path))}, which is missing. Get it with `eegbench data download "
        f"things-eeg2 --root {tmp_path} --variant {variant} --subjects 3`.")
    with pytest.raises(UnknownNameError, match=r"^Unknown things-eeg2 subject 'sub-11'. Did you mean 'sub-01'\? "
                                               r"Valid things-eeg2 subjects: sub-01.$"):
        dataset.load_subject(11)


def test_metadata_out_of_folder_order_is_refused(tmp_path):
    _eeg2_root(tmp_path, subjects=(1,))
    path = tmp_path / "image_set" / "image_metadata.npy"
    metadata = np.load(path, allow_pickle=True).item()
    for key in ("train_img_concepts", "train_img_files"):
        metadata[key][0], metadata[key][2] = metadata[key][2], metadata[key][0]
    np.save(path, metadata)
    with pytest.raises(DataError, match="the train images are not in sorted folder/file order"):
        load_dataset("things-eeg2", data_root=tmp_path)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    _eeg2_root(tmp_path, subjects=(1,))

    class Exploit:
        def __reduce__(self):
            return (print, ("this must never run",))

    with open(_nice_file(tmp_path), "wb") as handle:
        pickle.dump({"preprocessed_eeg_data": Exploit()}, handle)
    with pytest.raises(DataError, match=r"refusing to load builtins.print \(only numpy arrays are expected\)"):
        load_dataset("things-eeg2", data_root=tmp_path)


# --- preprocessing from raw recordings ---------------------------------------------------------------------

RAW_OPTIONS = {"raw_train_repetitions": 2, "raw_test_repetitions": 2}


def _dominant_hz(epoch: np.ndarray, sfreq: float = 250.0) -> float:
    centred = epoch - epoch.mean(-1, keepdims=True)
    power = (np.abs(np.fft.rfft(centred, axis=-1)) ** 2).sum(0)
    return float(np.fft.rfftfreq(epoch.shape[-1], 1 / sfreq)[power.argmax()])


def test_raw_preprocessing_epochs_orders_and_whitens_with_training_covariance(tmp_path):
    pytest.importorskip("sklearn")
    write_image_set(tmp_path, 2, 2, 2)
    write_raw_subject(tmp_path)
    dataset = load_dataset("things-eeg2", variant="raw-63ch-250hz", data_root=tmp_path, options=RAW_OPTIONS)
    assert dataset.info.ch_names == THINGS63 and dataset.info.unit == "whitened"
    np.testing.assert_allclose(dataset.info.times, np.arange(250) / 250)
    data = dataset.load_subject(1)
    assert data.train.shape == (4, 2, 63, 250) and data.test.shape == (2, 2, 63, 250)
    # Condition k of the arrays is image k of the metadata (event code k + 1), in both sessions.
    assert [[_dominant_hz(rep) for rep in image] for image in data.train] == [[hz, hz] for hz in TRAIN_HZ]
    assert [[_dominant_hz(rep) for rep in image] for image in data.test] == [[hz, hz] for hz in TEST_HZ]
    # Noise normalisation: microvolt-scale signals come out with unit scale.
    assert 0.5 < float(np.mean(np.asarray(data.train, dtype=np.float64) ** 2)) < 2.0
    report = dataset.metadata["source"]["subjects"]["sub-01"]
    assert report["sessions"] == ["ses-01", "ses-02"] and report["epochs_outside_recording"] == 0

    # The covariance comes from training data only: much noisier test recordings leave training data unchanged.
    noisy = tmp_path / "noisy"
    write_image_set(noisy, 2, 2, 2)
    write_raw_subject(noisy, test_noise=20.0)
    other = load_dataset("things-eeg2", variant="raw-17ch-250hz", data_root=noisy, options=RAW_OPTIONS)
    assert other.info.ch_names == POSTERIOR_17
    picks = [THINGS63.index(c) for c in POSTERIOR_17]
    np.testing.assert_array_equal(other.load_subject(1).train, data.train[:, :, picks])
    assert not np.allclose(other.load_subject(1).test, data.test[:, :, picks])


def test_raw_images_with_too_few_repetitions_are_refused(tmp_path):
    pytest.importorskip("sklearn")
    write_image_set(tmp_path, 2, 2, 2)
    write_raw_subject(tmp_path)
    with pytest.raises(DataError, match=r"sub-01: train image 1 has 2 repetitions .*; 3 are required \(4 images "
                                        r"are short\)"):
        load_dataset("things-eeg2", variant="raw-63ch-250hz", data_root=tmp_path,
                     options={**RAW_OPTIONS, "raw_train_repetitions": 3})
    path = tmp_path / "raw_data" / "sub-01" / "ses-02" / "raw_eeg_test.npy"
    raw = np.load(path, allow_pickle=True).item()
    raw["ch_names"] = raw["ch_names"][:-1] + ["trigger"]
    np.save(path, raw)
    with pytest.raises(DataError, match=r"ses-02/raw_eeg_test.npy: no 'stim' channel among"):
        load_dataset("things-eeg2", variant="raw-63ch-250hz", data_root=tmp_path, options=RAW_OPTIONS)
