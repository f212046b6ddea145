"""`eegbench run` on THINGS-EEG2 files in the real layout, and `eegbench data info`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from things_files import write_image_set, write_nice_250hz
from typer.testing import CliRunner

from eegbench.cli import app


@pytest.fixture(scope="module")
def eeg2_root(tmp_path_factory):
    """One subject, 20 training concepts x 2 images, the full 200-image test set (2 repetitions each)."""
    root = tmp_path_factory.mktemp("things-eeg2-run")
    write_image_set(root, 20, 2, 200)
    rng = np.random.default_rng(0)
    write_nice_250hz(root, 1, rng.normal(size=(40, 2, 63, 250)), rng.normal(size=(200, 2, 63, 250)))
    return root


@pytest.mark.slow
def test_run_things_eeg_intra_end_to_end(eeg2_root, tmp_path):
    result = CliRunner().invoke(app, [
        "run", "--task", "things-eeg-intra", "--data-root", str(eeg2_root), "--backbone", "efficientnet_lite0",
        "--method", "final", "--json", "--seeds", "0", "--epochs", "2", "--results-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["task"] == "things-eeg-intra" and summary["computed"] == 1
    assert [s["subject"] for s in summary["per_subject"]] == ["sub-01"]
    (record_path,) = tmp_path.rglob("sub-01_seed-0.json")
    record = json.loads(record_path.read_text())
    assert record["dataset"]["name"] == "things-eeg2" and record["dataset"]["variant"] == "17ch-250hz"
    assert record["dataset"]["sfreq"] == 250.0 and record["dataset"]["n_times"] == 250 and record["n_gallery"] == 200


def test_data_info_describes_the_variant(eeg2_root):
    result = CliRunner().invoke(app, ["data", "info", "things-eeg2", "--root", str(eeg2_root), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["variant"] == "17ch-250hz" and info["subjects"] == ["sub-01"]
    assert info["train_shape"] == [40, 2, 17, 250] and info["test_shape"] == [200, 2, 17, 250]
    assert info["sfreq"] == 250.0 and info["time_window"] == [0.0, 0.996]
    assert info["n_train_concepts"] == 20 and info["n_test_images"] == 200
    assert "multivariate noise normalisation with the covariance of the training partition only" in \
        info["description"]
    table = CliRunner().invoke(app, ["data", "info", "things-eeg2", "--root", str(eeg2_root), "--variant",
                                     "63ch-250hz"])
    assert table.exit_code == 0 and "63ch-250hz" in table.stdout and "Fp1, Fp2" in table.stdout


def test_data_commands_explain_what_is_missing(tmp_path):
    result = CliRunner().invoke(app, ["data", "info", "things-eeg2", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "image_metadata.npy is missing" in result.output and "eegbench data download things-eeg2" in result.output
    result = CliRunner().invoke(app, ["run", "--task", "things-meg-intra", "--method", "final"])
    assert result.exit_code == 2 and "pass --data-root DIR" in " ".join(result.output.split())
