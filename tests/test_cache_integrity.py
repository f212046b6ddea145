"""Caches serve only the bytes they recorded: canonical datasets and feature entries are checked
against their sha256 (memoised by size and mtime) and rebuilt, with one warning, when damaged."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from PIL import Image
from test_data import _write
from test_things_eeg2 import _eeg2_root

import eegbench._io
from eegbench._check import DataError
from eegbench._progress import logger
from eegbench.backbones import FeatureCache, get_features
from eegbench.data import load_dataset, open_canonical, synthetic_dataset

#: The smallest synthetic dataset: generating it takes seconds, so rebuilding it can be tested.
MINI = {"n_subjects": 1, "n_train_concepts": 2, "images_per_concept": 2, "n_test_concepts": 4,
        "train_repetitions": 1, "test_repetitions": 2, "image_size": 32}


@pytest.fixture
def warnings_logged():
    """Messages of the warnings eegbench logs during the test (whatever handlers the CLI installed)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


@pytest.fixture
def hash_calls(monkeypatch):
    """Files whose bytes are read by ``sha256_file`` (what the digest memo could not answer)."""
    calls = []
    original = eegbench._io.sha256_file

    def counting(path, *args, **kwargs):
        calls.append(os.path.basename(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(eegbench._io, "sha256_file", counting)
    return calls


def _permute_rows(path):
    """Reverse the rows of a saved array: same header, same size, different bytes."""
    array = np.load(path)
    np.save(path, array[::-1])
    assert not np.array_equal(np.load(path), array)


# --- canonical datasets --------------------------------------------------------------------------


def test_permuted_rows_of_a_synthetic_dataset_are_regenerated(tmp_path, monkeypatch, warnings_logged):
    monkeypatch.setenv("EEGBENCH_HOME", str(tmp_path))
    dataset = synthetic_dataset(**MINI)
    path = dataset.root / "sub-01" / "test.npy"
    original = np.load(path)

    _permute_rows(path)  # after the dataset was opened: the subject load notices (opening is tested below)
    np.testing.assert_array_equal(dataset.load_subject(1).test, original)
    assert len(warnings_logged) == 1
    assert f"{path} does not match the sha256 recorded in dataset.json" in warnings_logged[0].getMessage()
    assert f"Rebuilding {dataset.root} from its source" in warnings_logged[0].getMessage()
    assert synthetic_dataset(**MINI).fingerprint == dataset.fingerprint and len(warnings_logged) == 1


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-64])


def _garble_description(path):
    (path.parent.parent / "dataset.json").write_text("{not json")


@pytest.mark.parametrize("damage", [_permute_rows, _truncate, os.remove, _garble_description])
def test_a_damaged_things_conversion_is_converted_again(tmp_path, monkeypatch, warnings_logged, damage):
    monkeypatch.setenv("EEGBENCH_HOME", str(tmp_path / "home"))
    _eeg2_root(tmp_path, subjects=(1,))
    first = load_dataset("things-eeg2", data_root=tmp_path)
    path = first.root / "sub-01" / "test.npy"
    original = np.load(path)

    damage(path)
    again = load_dataset("things-eeg2", data_root=tmp_path)
    assert len(warnings_logged) == 1 and "Rebuilding" in warnings_logged[0].getMessage()
    assert again.root == first.root and again.fingerprint == first.fingerprint
    np.testing.assert_array_equal(again.load_subject(1).test, original)


def test_a_damaged_folder_without_its_source_is_refused(tmp_path):
    dataset = _write(tmp_path, {"sub-01": np.arange(4 * 2 * 3 * 10, dtype=np.float32).reshape(4, 2, 3, 10)})
    _permute_rows(tmp_path / "sub-01" / "train.npy")
    with pytest.raises(DataError, match=r"sub-01/train\.npy does not match the sha256 recorded in dataset\.json.*"
                                        r"cannot be rebuilt") as error:
        dataset.load_subject(1)
    assert "\n" not in str(error.value)

    meta = json.loads((tmp_path / "dataset.json").read_text())
    meta["files"]["sub-01/train.npy"] = "0" * 64  # an edit that leaves the fingerprint stale
    (tmp_path / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="does not match its fingerprint"):
        open_canonical(tmp_path)


def test_unchanged_canonical_files_are_not_hashed_again(tmp_path, hash_calls):
    dataset = _write(tmp_path, {"sub-01": np.zeros((4, 2, 3, 10), np.float32)})
    hash_calls.clear()  # the first open hashed both files
    touched = tmp_path / "sub-01" / "test.npy"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    open_canonical(tmp_path).load_subject(1)
    assert hash_calls == ["test.npy"]  # a newer mtime is hashed again (and matches: no rebuild)
    open_canonical(tmp_path).load_subject(1)
    dataset.load_subject(1)
    assert hash_calls == ["test.npy"]  # the memo, saved to disk, answers for unchanged files


# --- feature cache -------------------------------------------------------------------------------


@pytest.fixture
def small_features(backbone, tmp_path):
    """Features of 4 random images from a 32-pixel backbone in a fresh cache: (run, first result, entry path)."""
    rng = np.random.default_rng(0)
    files = []
    for i in range(4):
        (tmp_path / "img").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{i}.png")
        files.append(f"{i}.png")
    small = backbone.at_size(32)
    cache = FeatureCache(tmp_path / "cache")

    def run():
        return get_features(small, tmp_path / "img", files, [small.resolve("final")], cache=cache)

    first = run()
    return run, first, cache.root / small.name / f"{first.cache_keys['final']}.npy"


def test_permuted_rows_of_a_feature_entry_are_re_extracted(small_features, warnings_logged):
    run, first, path = small_features
    assert json.loads(path.with_suffix(".json").read_text())["sha256"] == eegbench._io.sha256_file(path)
    _permute_rows(path)
    again = run()
    np.testing.assert_array_equal(again["final"], first["final"])
    assert not again.layers["final"]["cached"]
    assert len(warnings_logged) == 1 and "does not match the sha256 in its sidecar" in warnings_logged[0].getMessage()
    assert run().layers["final"]["cached"] and len(warnings_logged) == 1  # the rewritten entry is served again


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00garbage", b"{\"key\": ", b"[1, 2]"])
def test_a_garbage_sidecar_is_re_extracted_and_listed_without_a_crash(small_features, warnings_logged, garbage,
                                                                      tmp_path, monkeypatch):
    run, first, path = small_features
    path.with_suffix(".json").write_bytes(garbage)
    assert FeatureCache(path.parent.parent).entries() == []
    assert len(warnings_logged) == 1 and "unreadable; skipped" in warnings_logged[0].getMessage()

    from typer.testing import CliRunner

    from eegbench.cli import app

    monkeypatch.setenv("EEGBENCH_HOME", str(tmp_path))  # `features ls` reads <home>/features
    (tmp_path / "features").symlink_to(path.parent.parent)
    listed = CliRunner().invoke(app, ["features", "ls"])
    assert listed.exit_code == 0 and "No cached features" in listed.stdout, listed.output

    warnings_logged.clear()
    again = run()
    np.testing.assert_array_equal(again["final"], first["final"])
    assert len(warnings_logged) == 1 and "has an unreadable sidecar" in warnings_logged[0].getMessage()
    assert run().layers["final"]["cached"]


def test_unchanged_feature_entries_are_not_hashed_again(small_features, hash_calls):
    run, _, path = small_features
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert run().layers["final"]["cached"] and hash_calls == [path.name]
    assert run().layers["final"]["cached"] and hash_calls == [path.name]


def test_a_sidecar_of_another_entry_is_re_extracted(small_features, warnings_logged):
    run, first, path = small_features
    meta = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**meta, "key": "0" * 64}))  # its sha256 still matches
    again = run()
    np.testing.assert_array_equal(again["final"], first["final"])
    assert not again.layers["final"]["cached"]
    assert len(warnings_logged) == 1 and f"has the sidecar of another entry ({'0' * 64})" in \
        warnings_logged[0].getMessage()


def test_a_feature_cache_that_cannot_be_written_costs_a_warning_not_the_features(small_features, warnings_logged,
                                                                                 monkeypatch):
    import errno

    run, first, path = small_features
    path.unlink()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("eegbench.backbones.features.atomic_save_npy", full)
    again = run()
    np.testing.assert_array_equal(again["final"], first["final"])
    assert [w.getMessage() for w in warnings_logged] == [
        f"Cannot cache features in {path.parent}: no space left on device. Free some space, or set EEGBENCH_HOME to "
        "another folder. The features are kept for this run and extracted again next time."]
    assert not path.exists()
