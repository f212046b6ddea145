import json
import shutil
from pathlib import Path

import pytest

from eegbench.leaderboard import build_leaderboard
from eegbench.runner import run
from helpers import tiny_task


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    task = tiny_task()
    run(task, "final", results_dir=root, hyperparameters={"epochs": 2})
    run(task, "shallow", layer="blocks.3", results_dir=root, hyperparameters={"epochs": 2})
    return root


def test_pages_state_protocol_and_are_byte_identical(results, tmp_path):
    first = build_leaderboard(results, tmp_path / "a")
    second = build_leaderboard(results, tmp_path / "b")
    for name, path in first.items():
        assert path.read_bytes() == second[name].read_bytes()
    page = first["synthetic-intra-v1"].read_text()
    assert "Do not edit by hand" in page
    assert "**Chance**: top-1 2 %, top-5 10 %." in page and "50-way zero-shot retrieval" in page
    assert "intra-subject" in page and "17 channels (Pz, P3" in page and "variant `planted-blocks.3`" in page
    assert "| final (hp-" in page and "| shallow (hp-" in page and "blocks.3 (0.57)" in page
    assert "## Per subject (top-1 %)" in page and "sub-02" in page


def test_task_versions_are_never_mixed(results, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    for path in list((copy / "synthetic-intra" / "v1").rglob("*.json"))[:2]:
        record = json.loads(path.read_text())
        record["task"]["version"] = 2
        target = copy / "synthetic-intra" / "v2" / path.relative_to(copy / "synthetic-intra" / "v1")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record))
        path.unlink()
    pages = build_leaderboard(copy, tmp_path / "board")
    assert {"synthetic-intra-v1", "synthetic-intra-v2", "index", "published"} == set(pages)
    index = pages["index"].read_text()
    assert "[synthetic-intra](synthetic-intra-v1.md) | 1" in index and "(synthetic-intra-v2.md) | 2" in index


def test_empty_results_give_an_empty_index(tmp_path):
    (tmp_path / "empty").mkdir()
    pages = build_leaderboard(tmp_path / "empty", tmp_path / "board")
    assert "(no results yet)" in pages["index"].read_text()


def test_committed_pages_regenerate_byte_identically(tmp_path):
    """The official pages in leaderboard/ are exactly what the committed result files give."""
    root = Path(__file__).resolve().parents[1] / "leaderboard"
    pages = build_leaderboard(root / "results", tmp_path)
    generated = sorted(p.name for p in tmp_path.iterdir())
    assert generated == sorted(p.name for p in root.iterdir() if p.suffix in (".md", ".png"))
    for name in generated:
        assert (tmp_path / name).read_bytes() == (root / name).read_bytes(), f"leaderboard/{name} is stale"
    assert "synthetic-intra-v1" in pages and "synthetic-inter-v1" in pages
