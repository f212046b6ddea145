"""Task protocol options: baseline, MVNN, single-trial test retrieval, scoring modes, target layers, and the
NeuralBench-compatible tasks on files in the published formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import TINY, tiny_task
from things_files import (
    MEG_CHANNELS,
    meg_image_path,
    write_image_set,
    write_meg_epochs,
    write_raw_subject,
    write_things_images,
)
from typer.testing import CliRunner

import eegbench
from eegbench.cli import app
from eegbench.errors import InvalidInputError
from eegbench.metrics import RetrievalResult, metric, rank_similarities
from eegbench.normalization import whitening_matrix
from eegbench.plan import run_target
from eegbench import protocols
from eegbench.protocols import ResponsePipeline, Unit, prepare_responses
from eegbench.records import ResultRecord
from eegbench.scoring_modes import mode_scores
from eegbench.tasks import Task, load_task

REPO = Path(__file__).resolve().parents[1]


def test_baseline_subtracts_each_trials_mean_over_the_baseline_window(tiny_dataset):
    task = tiny_task().with_overrides(baseline=(-0.1, 0.0))
    raw = np.asarray(tiny_dataset.load_subject(1).train[:3], dtype=np.float64)
    times = tiny_dataset.info.times
    expected = raw - raw[..., (times >= -0.1 - 1e-9) & (times < 0.0 - 1e-9)].mean(-1, keepdims=True)
    expected = expected[..., (times >= -1e-9) & (times < 1.0 - 1e-9)].mean(1)
    responses, _ = ResponsePipeline(task, tiny_dataset.info).train(tiny_dataset.load_subject(1).train[:3])
    np.testing.assert_allclose(responses, expected, rtol=1e-5, atol=1e-5)


def test_a_baseline_outside_the_recording_is_refused_before_any_work():
    with pytest.raises(InvalidInputError, match=r"baseline \[-0.5, 0\] s is not within .* Set baseline inside it"):
        eegbench.run(tiny_task().with_overrides(baseline=(-0.5, 0.0)), "final")


def test_single_trial_scoring_beside_a_single_trial_headline_is_refused():
    with pytest.raises(ValueError, match="single_trial repeats the headline"):
        tiny_task().with_overrides(repetitions={"train": "mean", "test": "single"}, scoring=["single_trial"])


def test_subject_aggregation_of_a_transductive_task_is_refused():
    with pytest.raises(ValueError, match="transductive embedding depends on its test batch"):
        tiny_task().with_overrides(inference="transductive", scoring=["subject_aggregated"])
    assert tiny_task().with_overrides(inference="transductive", scoring=["single_trial"]).inference == "transductive"


def test_whitening_matrix_whitens_its_covariance():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(5, 5))
    covariance = mixing @ mixing.T + 0.1 * np.eye(5)
    matrix = whitening_matrix(covariance)
    np.testing.assert_allclose(matrix @ covariance @ matrix.T, np.eye(5), atol=1e-9)
    with pytest.raises(InvalidInputError, match="not positive definite"):
        whitening_matrix(np.ones((3, 3)))


def test_mvnn_uses_only_the_training_trials_of_the_subjects_trained_on(tiny_dataset):
    """Each training subject is whitened with its own training covariance; the held-out subject of an inter unit
    (whose training trials are never read) gets the mean covariance of the others; no test trial is read."""
    pytest.importorskip("sklearn")
    task = tiny_task().with_overrides(normalization="mvnn", protocol="inter")
    asked = []

    def covariance(task, dataset, subject):
        asked.append(subject)
        return np.cov(np.asarray(dataset.load_subject(subject).train[:, 0].mean(-1)).T) + np.eye(17)

    unit = Unit("sub-01", ("sub-02",), 0)
    prepared = prepare_responses(task, tiny_dataset, unit, covariance=covariance)
    assert asked == ["sub-02"]
    own = whitening_matrix(covariance(task, tiny_dataset, "sub-02"))
    np.testing.assert_allclose(prepared.normalizer.whitening["sub-02"], own)
    np.testing.assert_allclose(prepared.normalizer.fallback, own)  # the mean of one covariance
    raw = ResponsePipeline(task, tiny_dataset.info).test(tiny_dataset.load_subject(1).test)
    np.testing.assert_allclose(protocols.test_responses(task, tiny_dataset, unit, prepared.normalizer),
                               np.einsum("ij,njt->nit", own, raw), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_a_run_with_mvnn_reads_no_test_trial_for_its_covariance(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    splits = []
    original = protocols.noise_covariance_of
    monkeypatch.setattr(protocols, "noise_covariance_of",
                        lambda task, dataset, subject, split: splits.append(split) or original(task, dataset, subject,
                                                                                                split))
    result = eegbench.run(tiny_task().with_overrides(normalization="mvnn"), "final", subjects=[1], epochs=1,
                          results_dir=tmp_path)
    assert splits == ["train"] and result.records[0].task.normalization == "mvnn"


@pytest.fixture(scope="module")
def single_trial_records(tmp_path_factory):
    """The same fits scored with a single-trial headline, and with averaged test responses plus both extra modes."""
    root = tmp_path_factory.mktemp("modes")
    single = tiny_task().with_overrides(repetitions={"train": "mean", "test": "single"})
    modes = tiny_task().with_overrides(scoring=["single_trial", "subject_aggregated"])
    options = {"epochs": 2, "seeds": [0, 1]}  # the tasks share an id: each writes its own folder
    return (eegbench.run(single, "final", results_dir=root / "single", **options).records,
            eegbench.run(modes, "final", results_dir=root / "modes", **options).records)


@pytest.mark.slow
def test_single_trial_retrieval_scores_every_test_trial_on_its_own(single_trial_records):
    single, modes = single_trial_records
    n_test, n_reps = TINY["n_test_concepts"], TINY["test_repetitions"]
    for record in single:
        assert record.n_test_trials == n_test * n_reps and record.task.repetitions["test"] == "single"
        assert record.per_trial.target == np.repeat(np.arange(n_test), n_reps).tolist()
    # The same fit scored by mode: the single-trial mode of an averaged-headline task equals the single-trial headline.
    for headline, scored in zip(sorted(single, key=lambda r: r.key.subject + str(r.seed)),
                                sorted(modes, key=lambda r: r.key.subject + str(r.seed))):
        assert scored.modes["single_trial"].scores == headline.scores
        assert scored.modes["single_trial"].n_trials == headline.n_test_trials
        assert scored.n_test_trials == n_test  # the headline of the modes task averages repetitions


@pytest.mark.slow
def test_subject_aggregation_ranks_the_mean_of_the_kept_similarities(single_trial_records):
    _, modes = single_trial_records
    for record in modes:  # the kept similarities are the ones the headline was ranked by
        again = rank_similarities(record.similarity.array())
        assert again.n_better.tolist() == record.per_trial.n_better and again.n_tied.tolist() == record.per_trial.n_tied
    summaries = mode_scores(modes, "top1")
    expected = [metric("top1").score(rank_similarities(np.mean([r.similarity.array() for r in modes if r.seed == s],
                                                               axis=0))) for s in (0, 1)]
    mean, sd, count = summaries["subject_aggregated"]
    assert count == 2 and mean == pytest.approx(np.mean(expected)) and sd == pytest.approx(np.std(expected, ddof=1))
    assert summaries["per_subject"][2] == TINY["n_subjects"] and summaries["single_trial"][2] == TINY["n_subjects"]


def test_rank_metrics_have_known_values():
    result = RetrievalResult(np.array([0, 3, 9]), np.array([0, 1, 0]), 10)  # ranks 1, 4.5, 10
    assert metric("mean_rank").score(result) == pytest.approx((1 + 4.5 + 10) / 3)
    assert metric("median_rank").score(result) == 4.5
    assert metric("top10").score(result) == 1.0 and metric("median_rank").chance(200) == 100.5
    assert not metric("median_rank").higher_is_better


def test_the_task_target_is_the_default_backbone_and_layer():
    task = load_task("things-eeg-neuralbench")
    assert run_target(task, None, None) == ("dinov2_g", "0.6667:mean_all")
    assert run_target(task, "efficientnet_lite0", None) == ("efficientnet_lite0", "0.6667")  # the depth, not the pooling
    assert run_target(task, "vit_h", "7") == ("vit_h", "7")
    assert run_target(load_task("synthetic-intra"), None, None) == ("efficientnet_lite0", None)


def test_new_task_fields_keep_the_hashes_of_tasks_that_leave_them_alone():
    task = load_task("synthetic-intra")
    data = task.model_dump()
    for name in ("baseline", "scoring", "inference", "inference_target", "target"):
        assert name in data
    changed = task.with_overrides(inference_target="images")
    assert changed.content_hash != task.content_hash
    # the hash of synthetic-intra v1 is the one its committed records were computed with
    (record_file, *_) = sorted((REPO / "leaderboard/results/synthetic-intra/v1").rglob("*.json"))
    assert json.loads(record_file.read_text())["task"]["hash"] == task.content_hash


def test_the_honest_variant_tasks_differ_from_their_base_in_one_field():
    base = load_task("things-eeg-intra").model_dump()
    for name, field, value in (("things-eeg-intra-63ch", "channels", "all"),
                               ("things-eeg-intra-single-trial", "repetitions", {"train": "single", "test": "mean"})):
        other = load_task(name).model_dump()
        differing = {k for k in base if base[k] != other[k]} - {"id", "description"}
        assert differing == ({field, "dataset"} if field == "channels" else {field}) and other[field] == value


# --- NeuralBench-compatible tasks on files in the published formats, the embedded backbone standing in -------------


def _write_task(folder, name: str, **changes) -> str:
    data = load_task(name).model_dump(mode="json")
    data = Task.model_validate(data | changes).model_dump(mode="json")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _run(task_file, data_root, results) -> ResultRecord:
    outcome = CliRunner().invoke(app, [
        "run", "--task", task_file, "--data-root", str(data_root), "--backbone", "efficientnet_lite0",
        "--method", "shallow", "--epochs", "2", "--json", "--results-dir", str(results)])
    assert outcome.exit_code == 0, outcome.output
    (path, *more) = sorted(results.rglob("sub-01_seed-33.json"))
    return ResultRecord.from_disk(json.loads(path.read_text()))


def _small_gallery_chance(n: int) -> dict:
    return {"top1": 1 / n, "top5": min(5, n) / n, "top10": min(10, n) / n, "mean_rank": (n + 1) / 2,
            "median_rank": (n + 1) / 2}


@pytest.mark.slow
def test_things_eeg_neuralbench_runs_on_raw_files(tmp_path):
    pytest.importorskip("sklearn")
    root = tmp_path / "data"
    write_image_set(root, 2, 2, 2)
    write_raw_subject(root)
    task_file = _write_task(tmp_path, "things-eeg-neuralbench", chance=_small_gallery_chance(2), seeds=[33],
                            dataset={"name": "things-eeg2", "variant": "raw-63ch-250hz-prestim",
                                     "options": {"raw_train_repetitions": 2, "raw_test_repetitions": 2}})
    record = _run(task_file, root, tmp_path / "results")
    assert record.dataset.variant == "raw-63ch-250hz-prestim" and len(record.dataset.channels) == 63
    assert record.dataset.n_times == 250 and record.task.baseline == (-0.2, 0.0)  # -0.2 to 0.8 s at 250 Hz
    assert record.task.protocol == "joint" and record.task.main_score == "top5"
    (layer,) = record.report.layers
    assert layer.layer.relative_depth == pytest.approx(0.6667, abs=0.1)  # the target depth on the stand-in backbone
    assert set(record.scores) >= {"top1", "top5", "top10", "mean_rank", "median_rank"}
    assert record.modes["single_trial"].n_trials == 4 and record.similarity.shape == (2, 2)


@pytest.mark.slow
def test_things_meg_neuralbench_runs_on_epochs_files(tmp_path):
    train_concepts, test_concepts = ("acorn", "anchor", "apple", "axe", "bag"), ("altar", "ant", "arrow")
    trials = [("exp", meg_image_path("exp", c, i)) for c in train_concepts for i in (1, 2)]
    trials += [("test", meg_image_path("test", c, 4)) for _ in range(3) for c in test_concepts]
    trials += [("catch", meg_image_path("catch", "boat", 1))]
    root = tmp_path / "data"
    for subject in (1, 2):
        data = np.random.default_rng(subject).normal(size=(len(trials), len(MEG_CHANNELS), 281)).astype(np.float32)
        write_meg_epochs(root / "derivatives" / "preprocessed" / f"preprocessed_P{subject}-epo.fif", trials, data)
    names = {p.rsplit("/", 1)[1] for kind, p in trials if kind != "catch"}
    write_things_images(root, sorted(f"{name.rsplit('_', 1)[0]}/{name}" for name in names))
    task_file = _write_task(tmp_path, "things-meg-neuralbench", chance=_small_gallery_chance(3), seeds=[33])
    record = _run(task_file, root, tmp_path / "results")
    assert record.dataset.variant == "official-271ch-200hz-prestim" and len(record.dataset.channels) == 271
    assert record.dataset.n_times == 180 and record.task.baseline == (-0.1, 0.0)  # -0.1 to 0.8 s at 200 Hz
    assert record.train_subjects == ["sub-01", "sub-02"] and record.n_test_trials == 3
    assert record.modes["single_trial"].n_trials == 9


def test_list_tasks_shows_the_neuralbench_compatible_tasks():
    outcome = CliRunner().invoke(app, ["list", "tasks"])
    assert outcome.exit_code == 0
    assert "things-eeg-neuralbench" in outcome.stdout and "things-meg-neuralbench" in outcome.stdout
