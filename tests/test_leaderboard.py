import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from eegbench.leaderboard import build_leaderboard, build_rows, main_table, task_page
from eegbench.results import ResultStore
from eegbench.runner import run
from eegbench.stats import image_sign_flip_test, seed_averaged, subject_sign_flip_test, subject_trials, trial_ranks
from helpers import tiny_task

COMMITTED = Path(__file__).resolve().parents[1] / "leaderboard" / "results"


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


def _with_task(records, **changes):
    """Copies of ``records`` whose task info has ``changes``."""
    return [r.model_copy(update={"task": r.task.model_copy(update=changes)}) for r in records]


def _header(table: str) -> list[str]:
    return [cell.strip() for cell in table.splitlines()[0].split("|")[1:-1]]


def _main_header(page: str) -> list[str]:
    return _header(page.split("## Main table")[1].strip())


@pytest.fixture(scope="module")
def committed_intra():
    """The committed synthetic-intra v1 records (4 subjects, 200 test images)."""
    return [r for r in ResultStore(COMMITTED).records() if (r.task.id, r.task.version) == ("synthetic-intra", 1)]


def test_images_separate_shallow_from_final_where_four_subjects_cannot(committed_intra):
    def entry(method, layer_setting):
        return [r for r in committed_intra if r.method.id == method and r.backbone.layer_setting == layer_setting
                and r.method.hp_tag == "default" and r.backbone.name == "efficientnet_lite0"]

    shallow, final = entry("shallow", "auto"), entry("final", "final")
    assert len(shallow) == len(final) == 12  # 4 subjects x 3 seeds
    assert subject_sign_flip_test(seed_averaged(shallow, "top1"), seed_averaged(final, "top1")) == 0.125
    assert image_sign_flip_test(subject_trials(shallow, 1), subject_trials(final, 1)) < 0.05

    rows = {(row.entry.method, row.entry.layer_setting): row for row in build_rows(committed_intra)}
    assert rows["shallow", "auto"].p_vs_reference["images"] < 0.05  # Holm-corrected over the table
    # the contrast over 4 subjects, uncorrected: at its floor, 2 / 2 ** 4
    assert rows["shallow", "auto"].p_vs_reference["subjects"] == pytest.approx(0.125)
    assert rows["shallow", "auto"].tier < rows["final", "final"].tier


def test_pages_say_which_test_made_the_tiers(committed_intra, results):
    page = task_page(committed_intra)
    assert "paired sign-flip test over the 200 test images within each of these 4 subjects" in page
    assert "inference target: images (auto: fewer than 8 subjects). They do not generalise to new subjects." in page
    assert {"p vs final (images)", "p vs final (subjects, uncorrected)"} <= set(_main_header(page))

    declared = _with_task(ResultStore(results).records(), inference_target="subjects")
    page = task_page(declared)
    assert "exact paired sign-flip test over the 2 subjects; its smallest attainable p-value is 0.5" in page
    assert "(inference target: subjects, declared by the task)" in page and "within each of" not in page
    headers = _main_header(page)
    assert "p vs final" in headers and not any("(images)" in h for h in headers)


def test_rank_metrics_print_as_ranks_with_a_trial_bootstrap_for_the_mean(results):
    records = [r.model_copy(update={"scores": r.scores | {"median_rank": float(np.median(trial_ranks(r)))}})
               for r in _with_task(ResultStore(results).records(), metrics=["top1", "mean_rank", "median_rank"])]
    table = main_table(records)
    headers = _header(table)
    assert "Mean rank (± SD) \\[95% CI\\]" in headers and "Median rank (± SD) \\[95% CI\\]" in headers
    mean_column, median_column = headers.index("Mean rank (± SD) \\[95% CI\\]"), headers.index(
        "Median rank (± SD) \\[95% CI\\]")
    rows = build_rows(records)
    for line, row in zip(table.splitlines()[2:], rows):
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        mean, _ = row.summary["mean_rank"]
        low, high = row.ci["mean_rank"]
        assert 1 <= low <= mean <= high <= 50  # a rank among 50 test images, not a percentage
        assert cells[mean_column] == f"{mean:.1f} ± {row.summary['mean_rank'][1]:.1f} \\[{low:.1f}, {high:.1f}\\]"
        assert re.fullmatch(r"\d+\.\d ± \d+\.\d \\\[-\\\]", cells[median_column])
        assert row.ci["median_rank"] is None
