"""End-to-end runs on the synthetic task."""

import json

import numpy as np
import pytest

from eegbench._check import InvalidInputError
from eegbench.data.base import Dataset, SubjectData
from eegbench import protocols
from eegbench.results import ResultStore
from eegbench.runner import run
from helpers import tiny_task


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """final and shallow (validation-selected layer) on the tiny intra task."""
    results = tmp_path_factory.mktemp("results")
    task = tiny_task()
    return {"results": results, "task": task,
            "final": run(task, "final", results_dir=results),
            "shallow": run(task, "shallow", results_dir=results)}


def _top1(result):
    return result.summary()["metrics"]["top1"]["mean"]


def test_shallow_beats_final_on_the_tiny_task(tiny_runs):
    final, shallow = _top1(tiny_runs["final"]), _top1(tiny_runs["shallow"])
    assert final > 3 * 0.02 and shallow > final + 0.05


def test_shallow_records_its_validation_curve(tiny_runs):
    record = tiny_runs["shallow"].records[0]
    curve = record.report.validation_curve
    assert [point.params["layer"] for point in curve] == ["stem"] + [f"blocks.{i}" for i in range(7)]
    best = max(curve, key=lambda p: p.score)
    assert record.report.layers[0].layer.name == best.params["layer"]
    assert record.report.validation_metric == "top5"
    assert record.backbone.layer_setting == "auto"


def test_records_hold_provenance(tiny_runs):
    record = tiny_runs["final"].records[0]
    assert record.task.id == "synthetic-intra" and record.task.hash == tiny_runs["task"].content_hash
    assert record.dataset.variant == "planted-blocks.3" and len(record.dataset.fingerprint) == 64
    assert record.method.hyperparameters["epochs"] == 20 and len(record.method.code_sha256) == 64
    assert record.environment.packages["torch"] and record.environment.git.commit
    assert record.n_test_trials == 50 == record.n_gallery
    assert len(record.per_trial.n_better) == 50
    hits = np.mean(np.array(record.per_trial.n_better) < 1)
    assert record.scores["top1"] == pytest.approx(hits, abs=1e-6)
    assert record.report.n_parameters > 0 and record.timing.fit_seconds > 0


def test_rerun_skips_finished_units_and_overwrite_modes(tiny_runs):
    results, task = tiny_runs["results"], tiny_runs["task"]
    again = run(task, "final", results_dir=results)
    assert (again.computed, again.skipped) == (0, 2)
    assert again.summary()["metrics"] == tiny_runs["final"].summary()["metrics"]
    with pytest.raises(InvalidInputError, match="2 requested units already have result files"):
        run(task, "final", results_dir=results, overwrite="never")
    fresh = run(task, "final", results_dir=results, overwrite="always", subjects=[1])
    assert fresh.computed == 1
    assert fresh.records[0].scores == tiny_runs["final"].records[0].scores  # deterministic on CPU


def test_hyperparameter_overrides_get_their_own_results(tiny_runs, tmp_path):
    short = run(tiny_runs["task"], "final", results_dir=tmp_path, hyperparameters={"epochs": 2}, subjects=[1])
    assert short.hp_tag.startswith("hp-") and short.records[0].method.hyperparameters["epochs"] == 2
    assert "hp-" in str(ResultStore(tmp_path).path(short.records[0].key))


def test_final_wins_when_the_final_layer_is_planted(tmp_path):
    task = tiny_task(planted_layer="final")
    final = run(task, "final", results_dir=tmp_path)
    intermediate = run(task, "shallow", layer="blocks.3", results_dir=tmp_path)
    assert _top1(final) >= _top1(intermediate) + 0.05
    assert intermediate.records[0].report.layers[0].layer.name == "blocks.3"


class _Tracked(np.ndarray):
    """An array that logs every indexing access with its tag."""

    def __new__(cls, array, tag, log):
        obj = np.asarray(array).view(cls)
        obj.tag, obj.log = tag, log
        return obj

    def __array_finalize__(self, obj):
        self.tag, self.log = getattr(obj, "tag", None), None  # slices do not log again

    def __getitem__(self, item):
        if self.log is not None:
            self.log.append(self.tag)
        return super().__getitem__(item)


@pytest.fixture
def access_log(monkeypatch):
    log = []
    original = Dataset.load_subject

    def tracked(self, subject):
        data = original(self, subject)
        return SubjectData(data.subject, _Tracked(data.train, (data.subject, "train"), log),
                           _Tracked(data.test, (data.subject, "test"), log))

    monkeypatch.setattr(Dataset, "load_subject", tracked)
    return log


def test_inter_subject_training_never_sees_the_held_out_subject(access_log, tmp_path):
    result = run(tiny_task("synthetic-inter"), "final", results_dir=tmp_path, subjects=[1],
                 hyperparameters={"epochs": 2})
    assert result.records[0].train_subjects == ["sub-02"]
    touched = set(access_log)
    assert ("sub-01", "train") not in touched and ("sub-02", "test") not in touched
    assert ("sub-01", "test") in touched and ("sub-02", "train") in touched


def test_the_seeds_of_a_subject_share_one_preprocessing(monkeypatch, tmp_path):
    """Units training on the same responses are preprocessed once, and score exactly as run alone."""
    prepared = []
    original = protocols.prepare_responses
    monkeypatch.setattr(protocols, "prepare_responses",
                        lambda *args, **kwargs: prepared.append(args[2]) or original(*args, **kwargs))
    options = {"subjects": [1], "hyperparameters": {"epochs": 2}}
    together = run(tiny_task(), "final", results_dir=tmp_path / "together", seeds=[0, 1, 2], batch_units=3, **options)
    assert [unit.seed for unit in prepared] == [0]
    alone = run(tiny_task(), "final", results_dir=tmp_path / "alone", seeds=[1], **options)
    assert together.records[1].seed == alone.records[0].seed == 1
    assert together.records[1].per_trial == alone.records[0].per_trial


@pytest.mark.slow
def test_default_task_shallow_clearly_beats_final(tmp_path):
    """The acceptance check on the embedded default, exactly as `eegbench run` runs it."""
    final = run("synthetic-intra", "final", results_dir=tmp_path)
    shallow = run("synthetic-intra", "shallow", results_dir=tmp_path)
    chance = final.task.chance["top1"]
    assert _top1(final) > 20 * chance
    assert _top1(shallow) >= _top1(final) + 0.10
    per_subject = {s["subject"]: s["top1"] for s in final.summary()["per_subject"]}
    for entry in shallow.summary()["per_subject"]:
        assert entry["top1"] > per_subject[entry["subject"]]
    json.dumps(shallow.summary())
