"""`eegbench features extract | layers | ls`."""

import json
import re

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from eegbench.cli import app
from helpers import write_tiny_task_file

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_extract_a_folder_then_list_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EEGBENCH_HOME", str(tmp_path / "home"))  # an empty cache for this test
    rng = np.random.default_rng(1)
    (tmp_path / "img" / "sub").mkdir(parents=True)
    for name in ["b.png", "a.jpg", "sub/c.png"]:
        Image.fromarray(rng.integers(0, 255, (36, 36, 3), dtype=np.uint8)).save(tmp_path / "img" / name)
    (tmp_path / "img" / "notes.txt").write_text("not an image")
    args = ["features", "extract", "--images", tmp_path / "img", "--layers", "2,-1,0.5,final", "--image-size", 32,
            "--device", "cpu", "--json"]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["key"] for r in rows] == ["blocks.0", "blocks.6", "blocks.3", "final"]
    assert {r["n_images"] for r in rows} == {3} and not any(r["cached"] for r in rows)
    assert rows[2]["relative_depth"] == 0.571429 and rows[2]["output_shape"] == [80, 2, 2]
    again = json.loads(_invoke(*args).stdout)
    assert all(r["cached"] for r in again) and [r["cache_key"] for r in again] == [r["cache_key"] for r in rows]

    listed = _invoke("features", "ls", "--json")
    entries = json.loads(listed.stdout)
    assert sorted(e["key"] for e in entries) == sorted(r["cache_key"] for r in rows)
    assert all(e["dtype"] == "float16" and e["n_images"] == 3 for e in entries)
    table = _invoke("features", "ls")
    assert "efficientnet_lite0" in table.stdout and "4 entries" in table.stdout
    outdated = tmp_path / "home" / "features" / "efficientnet_lite0" / "0ld.json"  # written by feature format 1
    outdated.write_text(json.dumps({"format": 1, "key": "0ld", "backbone": {"name": "efficientnet_lite0"}}))
    outdated.with_suffix(".npy").write_bytes(bytes(2**20))
    table = _invoke("features", "ls")
    assert "4 entries" in table.stdout and "1 entries of an older feature format" in table.output
    assert "reclaim 1.0 MiB" in table.output and len(json.loads(_invoke("features", "ls", "--json").stdout)) == 5
    assert "No cached features for 'rn50'" in _invoke("features", "ls", "--backbone", "rn50").stdout


def test_layers_are_described_without_weights():
    result = _invoke("features", "layers", "rn50")
    assert result.exit_code == 0, result.output
    assert "38.32M parameters" in result.stdout and "attention-pool output of layer4" in result.stdout
    assert re.search(r"3\s+layer3\s+layer3\s+0\.667\s+gap\s+1024x14x14\s+1024\n", result.stdout)
    info = json.loads(_invoke("features", "layers", "efficientnet_lite0", "--image-size", 64, "--json").stdout)
    assert info["layers"][0] == {"index": 1, "name": "stem", "module": "bn1", "relative_depth": 0.0, "pooling": "gap",
                                 "output_shape": [32, 32, 32], "dim": 32}


def test_bad_requests_exit_with_code_2(tmp_path):
    result = _invoke("features", "extract", "--images", tmp_path, "--layers", "3", "--device", "cpu")
    assert result.exit_code == 2 and "No image files" in result.output
    # the layers are checked on the architecture first, before the folder is listed
    result = _invoke("features", "extract", "--images", tmp_path, "--layers", "99", "--device", "cpu")
    assert result.exit_code == 2
    assert "Invalid layer 99 for backbone 'efficientnet_lite0'. Valid layers: an index 1..8" in result.output
    result = _invoke("features", "extract", "--images", tmp_path, "--dataset", "synthetic")
    assert result.exit_code == 2 and "either an image folder or a dataset" in result.output


def test_task_extraction_hits_the_entries_runs_use(tiny_dataset, tmp_path):
    task_file = write_tiny_task_file(tmp_path)
    result = _invoke("features", "extract", "--task", task_file, "--layers", "sweep", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    # the synthetic generator extracted every layer at the task's image size: nothing is recomputed
    assert all(r["cached"] for r in rows) and len(rows) == 2 * 9
    assert {(r["images"], r["n_images"]) for r in rows} == {("train", 400), ("test", 50)}
