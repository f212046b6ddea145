import json

import numpy as np
import pytest

from eegbench._check import DataError, InvalidInputError, MissingDataError, UnknownNameError
from eegbench.data import CanonicalWriter, ImageTable, RecordingInfo, open_canonical
from eegbench.data.montages import POSTERIOR_17


def _info(n_times=10):
    return RecordingInfo("eeg", ("O1", "Oz", "O2"), 100.0, -0.02 + np.arange(n_times) / 100.0, "V")


def _tables():
    train = ImageTable(("a_01", "a_02", "b_01", "b_02"), ("tr/a/a_01.png", "tr/a/a_02.png", "tr/b/b_01.png",
                                                           "tr/b/b_02.png"), ("a", "a", "b", "b"))
    test = ImageTable(("c_01", "d_01"), ("te/c/c_01.png", "te/d/d_01.png"), ("c", "d"))
    return train, test


def _write(root, train_arrays):
    train, test = _tables()
    writer = CanonicalWriter(root)
    for label, array in train_arrays.items():
        writer.add_subject(label, array, np.zeros((2, 5, 3, 10), np.float32))
    writer.finish(name="toy", variant="v1", info=_info(), train_images=train, test_images=test,
                  image_root="images", source={"made": "in a test"})
    return open_canonical(root)


def test_canonical_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"sub-01": rng.normal(size=(4, 2, 3, 10)).astype(np.float32),
              "sub-02": rng.normal(size=(4, 2, 3, 10)).astype(np.float32)}
    dataset = _write(tmp_path, arrays)
    assert dataset.subjects == ("sub-01", "sub-02")
    assert dataset.info.ch_names == ("O1", "Oz", "O2")
    np.testing.assert_allclose(dataset.info.times, _info().times)
    subject = dataset.load_subject(2)
    np.testing.assert_array_equal(subject.train, arrays["sub-02"])
    assert isinstance(subject.train, np.memmap)
    assert dataset.train_images.concept_names == ("a", "b")
    np.testing.assert_array_equal(dataset.train_images.concept_ids, [0, 0, 1, 1])
    assert dataset.image_paths("test")[1] == tmp_path / "images" / "te/d/d_01.png"
    described = dataset.describe()
    assert described["train_shape"] == [4, 2, 3, 10] and described["test_shape"] == [2, 5, 3, 10]


def test_fingerprint_changes_with_content(tmp_path):
    a = _write(tmp_path / "a", {"sub-01": np.zeros((4, 2, 3, 10), np.float32)})
    b = _write(tmp_path / "b", {"sub-01": np.ones((4, 2, 3, 10), np.float32)})
    c = _write(tmp_path / "c", {"sub-01": np.zeros((4, 2, 3, 10), np.float32)})
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == c.fingerprint


def test_truncated_array_is_reported_with_its_path(tmp_path):
    dataset = _write(tmp_path, {"sub-01": np.zeros((4, 2, 3, 10), np.float32)})
    path = tmp_path / "sub-01" / "train.npy"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"sub-01/train\.npy is truncated or corrupt"):
        dataset.load_subject("sub-01")


def test_shape_disagreeing_with_sidecar_is_reported(tmp_path):
    dataset = _write(tmp_path, {"sub-01": np.zeros((4, 2, 3, 10), np.float32)})
    np.save(tmp_path / "sub-01" / "train.npy", np.zeros((3, 2, 3, 10), np.float32))
    with pytest.raises(DataError, match=r"holds float32 \(3, 2, 3, 10\), but dataset.json declares float32 "
                                        r"\(4, 2, 3, 10\)"):
        dataset.load_subject(1)


def test_nan_responses_are_refused(tmp_path):
    bad = np.zeros((4, 2, 3, 10), np.float32)
    bad[1, 0, 2, 3] = np.nan
    with pytest.raises(DataError, match="NaN or Inf"):
        _write(tmp_path, {"sub-01": bad})


def test_missing_folder_and_unknown_subject(tmp_path):
    with pytest.raises(MissingDataError, match="is not an eegbench canonical dataset folder"):
        open_canonical(tmp_path / "nowhere")
    dataset = _write(tmp_path, {"sub-01": np.zeros((4, 2, 3, 10), np.float32)})
    with pytest.raises(UnknownNameError, match=r"^Unknown toy subject 'sub-07'. Did you mean 'sub-01'\? Valid toy "
                                               r"subjects: sub-01.$"):
        dataset.load_subject(7)
    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="format 'eegbench-canonical' v99"):
        open_canonical(tmp_path)


def test_recording_info_selection():
    info = _info()
    np.testing.assert_array_equal(info.channel_indices(["O2", "O1"]), [2, 0])
    with pytest.raises(InvalidInputError, match=r"Channels \['Cz'\] are not in this recording"):
        info.channel_indices(["Cz"])
    np.testing.assert_array_equal(info.time_indices(0.0, 0.05), [2, 3, 4, 5, 6])  # half-open window
    with pytest.raises(InvalidInputError, match="holds no samples"):
        info.time_indices(1.0, 2.0)


def test_image_table_validation():
    with pytest.raises(InvalidInputError, match="columns disagree"):
        ImageTable(("a",), ("a.png", "b.png"), ("x",))
    with pytest.raises(InvalidInputError, match="must be unique"):
        ImageTable(("a", "a"), ("a.png", "b.png"), ("x", "x"))


def test_synthetic_layout_and_concepts(tiny_dataset):
    ds = tiny_dataset
    assert ds.name == "synthetic" and ds.variant == "planted-blocks.3"
    assert ds.subjects == ("sub-01", "sub-02")
    assert ds.info.ch_names == POSTERIOR_17 and ds.info.sfreq == 100.0
    assert ds.info.times[0] == pytest.approx(-0.1) and ds.info.n_times == 110
    subject = ds.load_subject(1)
    assert subject.train.shape == (400, 4, 17, 110) and subject.test.shape == (50, 40, 17, 110)
    assert subject.train.dtype == np.float32
    assert 1e-7 < float(np.abs(subject.train).mean()) < 1e-4  # volts, like THINGS-EEG2 arrays
    assert len(ds.train_images.concept_names) == 100 and len(ds.test_images.concept_names) == 50
    assert not set(ds.train_images.concept_names) & set(ds.test_images.concept_names)
    assert ds.train_images.files[0] == "training_images/00001_c0001/c0001_01.png"
    assert all(path.is_file() for path in ds.image_paths("test"))


def test_synthetic_is_deterministic_and_cached(tiny_dataset):
    from eegbench.data import synthetic_dataset

    from helpers import TINY

    again = synthetic_dataset(**TINY)
    assert again.root == tiny_dataset.root and again.fingerprint == tiny_dataset.fingerprint


def test_synthetic_repetitions_average_out_noise(tiny_dataset):
    """Averaging more repetitions brings responses closer to the repetition-free signal."""
    test = np.asarray(tiny_dataset.load_subject(1).test, dtype=np.float64)
    reference = test[:, 20:].mean(1)  # an independent estimate of the clean signal
    errors = [np.mean((test[:, :n].mean(1) - reference) ** 2) for n in (1, 4, 16)]
    assert errors[0] > errors[1] > errors[2]


def test_synthetic_signal_follows_planted_erp(tiny_dataset):
    """Image-specific signal (split-half covariance across images) sits in the ERP window, not the baseline."""
    test = np.asarray(tiny_dataset.load_subject(1).test, dtype=np.float64)
    a, b = test[:, :20].mean(1), test[:, 20:].mean(1)
    signal = ((a - a.mean(0)) * (b - b.mean(0))).mean(0).mean(0)  # per time point, averaged over channels
    times = tiny_dataset.info.times
    assert 0.07 < times[np.argmax(signal)] < 0.5
    assert np.abs(signal[times < 0]).mean() < 0.2 * signal.max()


def test_synthetic_options_are_validated():
    from eegbench.data import load_dataset

    with pytest.raises(InvalidInputError, match=r"Synthetic dataset options is invalid: noise: unknown field"):
        load_dataset("synthetic", options={"noise": 3})
