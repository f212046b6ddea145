"""The transductive track: one call per test batch, hidden orders, its own tables, and the reference `tta`."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from eegbench.check import check_task
from eegbench.errors import InvalidInputError, TransductiveMethodError
from eegbench.leaderboard import build_leaderboard
from eegbench.metrics import retrieve
from eegbench.runner import run
from eegbench.submissions import import_method, load_submission
from helpers import tiny_task
from test_integrity import probes, submission

TRANSDUCTIVE = "synthetic-intra-transductive"

#: the honest ridge method, recording what each call of embed_test_batch saw
RECORDER = '''
def fingerprint(rows):
    """One number per row, that tells rows apart (their projection on a fixed random direction)."""
    return (rows @ np.random.default_rng(0).normal(size=rows.shape[1])).round(3).tolist()


class Recorder(Linear):
    def embed_test_batch(self, responses, features, subject):
        brain, images = self.embed_brain(responses), self.embed_images(features)
        cosine = brain @ images.T / np.outer(np.linalg.norm(brain, axis=1), np.linalg.norm(images, axis=1))
        write_probe(subject=subject, n_brain=len(brain), n_images=len(images),
                    diagonal=float(np.mean(cosine.argmax(axis=1) == np.arange(len(brain)))),
                    brain_rows=fingerprint(brain), image_rows=fingerprint(images))
        return brain, images

    def alternatives(self):
        return {"again": self}


class Probe(Honest):
    def fit(self, data):
        honest = fit_linear(data)
        return Recorder(honest.weights, honest.key)
'''


def _run(folder, results, task: str, **options):
    return run(tiny_task(task), str(folder), subjects=[1], seeds=[0], results_dir=results, **options)


def _module(name: str):
    return sys.modules[import_method(load_submission(name)).__module__]


def test_the_method_gets_both_sets_in_one_call_in_hidden_orders(tmp_path):
    folder = submission(tmp_path, "recorder", RECORDER, cls="Probe")
    record = _run(folder, tmp_path / "results", TRANSDUCTIVE).records[0]
    first, second = probes(folder)  # the main aligner and its alternative, on the same rows
    assert (first["n_brain"], first["n_images"], first["subject"]) == (50, 50, "sub-01")
    # the pairing is hidden: in the order given, response i rarely retrieves image i ...
    assert first["diagonal"] <= 0.1 and second["diagonal"] <= 0.1
    # ... while the harness, which restores both orders, scores the honest embeddings well above chance
    assert record.scores["top1"] > 3 * 0.02 and record.task.inference == "transductive"
    for side in ("brain_rows", "image_rows"):  # the same rows, each call in a fresh order
        assert sorted(first[side]) == sorted(second[side]) and first[side] != second[side]
    assert record.alternatives["again"] == record.scores


def test_the_default_is_the_inductive_embedding_and_inductive_tasks_never_call_it(tmp_path):
    folder = submission(tmp_path, "recorder", RECORDER, cls="Probe")
    inductive = _run(folder, tmp_path / "results", "synthetic-intra").records[0]
    assert probes(folder) == []  # the inductive task scored it without embed_test_batch
    honest = submission(tmp_path, "honest")  # no override: the default embed_test_batch
    transductive = _run(honest, tmp_path / "results", TRANSDUCTIVE).records[0]
    assert transductive.scores == inductive.scores
    assert transductive.per_trial == inductive.per_trial
    assert (inductive.task.inference, transductive.task.inference) == ("inductive", "transductive")


def test_batch_dependent_embeddings_are_refused_on_inductive_tasks_only(tmp_path):
    folder = submission(tmp_path, "centred", '''
        class Centred(Linear):
            def embed_brain(self, responses):
                embedded = super().embed_brain(responses)
                return embedded - embedded.mean(axis=0)

        class BatchMethod(Honest):
            def fit(self, data):
                honest = fit_linear(data)
                return Centred(honest.weights, honest.key)
        ''', cls="BatchMethod")
    with pytest.raises(TransductiveMethodError, match="transductive: embed_brain"):
        _run(folder, tmp_path / "results", "synthetic-intra")
    assert _run(folder, tmp_path / "results", TRANSDUCTIVE).records[0].scores["top1"] > 3 * 0.02


@pytest.mark.parametrize("returned, message", [
    ("brain, images[:-1]", r"the images embeddings of embed_test_batch\(\) must have one row per input, "
                           r"\(50, dim\); found shape \(49, \d+\)"),
    ("brain * np.nan, images", r"the brain embeddings of embed_test_batch\(\) must be finite; found NaN in 50 "
                               r"rows \(0, 1, 2, 3, 4, \.\.\.\) of the 50 rows"),
    ("brain, images[:, :3]", r"brain and image embeddings differ in width \(\d+ vs 3\)"),
    ("brain", r"embed_test_batch\(\) must return a pair \(brain embeddings, image embeddings\); found"),
], ids=["rows", "nan", "width", "not-a-pair"])
def test_bad_batch_outputs_are_refused_clearly(tmp_path, returned, message):
    folder = submission(tmp_path, "bad", f'''
        class Bad(Linear):
            def embed_test_batch(self, responses, features, subject):
                brain, images = self.embed_brain(responses), self.embed_images(features)
                return {returned}

        class BadMethod(Honest):
            def fit(self, data):
                honest = fit_linear(data)
                return Bad(honest.weights, honest.key)
        ''', cls="BadMethod")
    with pytest.raises(InvalidInputError, match=r"Method 'bad'.*" + message):
        _run(folder, tmp_path / "results", TRANSDUCTIVE)


def test_csls_embeddings_rank_every_row_as_csls_does():
    tta = _module("tta")
    rng = np.random.default_rng(0)
    brain, images, k = rng.normal(size=(30, 8)), rng.normal(size=(20, 8)), 4
    unit = [rows / np.linalg.norm(rows, axis=1, keepdims=True) for rows in (brain, images)]
    cosine = unit[0] @ unit[1].T
    r_brain = np.sort(cosine, axis=0)[-k:].mean(axis=0)  # per image: its k nearest responses
    r_image = np.sort(cosine, axis=1)[:, -k:].mean(axis=1)  # per response: its k nearest images
    csls = 2 * cosine - r_brain[None, :] - r_image[:, None]
    targets = rng.integers(0, 20, size=30)
    harness = retrieve(*tta.csls_embeddings(brain, images, k), targets)
    assert np.array_equal(harness.n_better, (csls > csls[np.arange(30), targets][:, None]).sum(axis=1))
    assert not np.array_equal(harness.n_better, retrieve(brain, images, targets).n_better)  # CSLS changed ranks


def test_whitening_uses_the_batch_statistics_and_ledoit_wolf_shrinkage():
    sklearn_covariance = pytest.importorskip("sklearn.covariance")
    tta = _module("tta")
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 5.0
    white = tta.whiten(rows, shrinkage=1e-9)
    assert np.allclose(white.mean(axis=0), 0, atol=1e-9)
    assert np.allclose(white.T @ white / len(white), np.eye(6), atol=1e-6)
    centred = rows - rows.mean(axis=0)
    covariance = centred.T @ centred / len(rows)
    assert tta.ledoit_wolf_shrinkage(centred, covariance, np.trace(covariance) / 6) == pytest.approx(
        sklearn_covariance.ledoit_wolf_shrinkage(rows), abs=1e-9)


@pytest.fixture(scope="module")
def boards(tmp_path_factory):
    """tta on the tiny transductive task and final on the tiny inductive one, in one results folder."""
    results = tmp_path_factory.mktemp("results")
    fast = {"epochs": 3}
    return {"results": results,
            "tta": run(tiny_task(TRANSDUCTIVE), "tta", results_dir=results, subjects=[1], hyperparameters=fast),
            "final": run(tiny_task(), "final", results_dir=results, subjects=[1], hyperparameters=fast)}


def test_tta_runs_on_the_transductive_task_and_is_refused_elsewhere(boards, tmp_path):
    record = boards["tta"].records[0]
    assert record.task.inference == "transductive" and record.task.id == TRANSDUCTIVE
    assert set(record.alternatives) == {"uncalibrated"} and record.report.details["test_time"] == "whitening + CSLS"
    assert record.backbone.layer_setting == "blocks.3"  # the fixed depth 0.6 of efficientnet_lite0
    with pytest.raises(InvalidInputError, match="Method 'tta' does not support task 'synthetic-intra'"):
        run(tiny_task(), "tta", results_dir=tmp_path, subjects=[1])
    assert (check_task(load_submission("tta")), check_task(load_submission("final"))) == (TRANSDUCTIVE,
                                                                                          "synthetic-intra")


def test_transductive_results_get_their_own_page_and_never_enter_the_main_tables(boards, tmp_path):
    pages = build_leaderboard(boards["results"], tmp_path / "board")
    index = pages["index"].read_text()
    assert f"[{TRANSDUCTIVE}]({TRANSDUCTIVE}-v1.md): transductive track" in index
    assert "[synthetic-intra](synthetic-intra-v1.md) |" in index
    inductive = pages["synthetic-intra-v1"].read_text()
    main_table = inductive.split("## Main table")[1].split("\n## ")[0]
    methods = {line.split("|")[1].split()[0] for line in main_table.splitlines() if line.startswith("| ")}
    assert methods == {"Method", "final"} and not re.search(r"\btta\b", inductive)
    transductive = pages[f"{TRANSDUCTIVE}-v1"].read_text()
    assert f"# {TRANSDUCTIVE} (version 1): transductive track" in transductive.splitlines()
    assert re.search(r"^\| tta ", transductive.split("## Main table")[1], re.M) and "**Transductive track.**" in transductive
