"""The reference submissions on the tiny synthetic task (issue: methods as submissions)."""

import numpy as np
import pytest
from typer.testing import CliRunner

from eegbench.cli import app
from eegbench.check import check_submission, check_task
from eegbench.runner import run
from eegbench.submissions import import_method, list_submissions, load_submission
from helpers import tiny_task


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("methods")
    task = tiny_task()
    return {name: run(task, name, layer=layer, results_dir=root)
            for name, layer in (("final", None), ("multi", None), ("ridge", None), ("shallow", None))}


def _top1(result):
    return result.summary()["metrics"]["top1"]["mean"]


def test_every_reference_method_is_far_above_chance(runs):
    chance = runs["final"].task.chance["top1"]
    for name, result in runs.items():
        assert _top1(result) > 3 * chance, name


def test_multi_is_at_least_as_good_as_final(runs):
    assert _top1(runs["multi"]) >= _top1(runs["final"])
    report = runs["multi"].records[0].report
    assert [use.layer.name for use in report.layers] == ["blocks.1", "blocks.3", "blocks.4", "final"]
    assert sum(use.weight for use in report.layers) == pytest.approx(1.0, abs=1e-5)
    assert runs["multi"].records[0].layer_choice == "combined"
    assert runs["multi"].layer_setting == "multi:blocks.1+blocks.3+blocks.4+final"


def test_shallow_validation_sweep_peaks_near_the_planted_layer(runs):
    for record in runs["shallow"].records:
        peak = max(record.report.validation_curve, key=lambda point: point.score)
        index = {layer.name: layer.index for layer in record.backbone.layers}[peak.params["layer"]]
        planted_index = 5  # blocks.3 is layer 5 of 8 (stem, blocks.0 ... blocks.6)
        assert abs(index - planted_index) <= 1, record.report.validation_curve
        assert record.report.selected == {"layer": peak.params["layer"]} == {"layer": record.report.layers[0].layer.name}


def test_ridge_is_deterministic(runs, tmp_path):
    again = run(runs["ridge"].task, "ridge", results_dir=tmp_path)
    for first, second in zip(runs["ridge"].records, again.records):
        assert first.scores == second.scores and first.per_trial == second.per_trial
    report = runs["ridge"].records[0].report
    assert report.selected["alpha"] in import_method(load_submission("ridge")).Hyperparameters().alphas
    assert {point.params["alpha"] for point in report.validation_curve} == set(
        import_method(load_submission("ridge")).Hyperparameters().alphas)


def test_ridge_auto_selects_a_layer_on_validation(tmp_path):
    result = run(tiny_task(), "ridge", layer="auto", results_dir=tmp_path, subjects=[1])
    record = result.records[0]
    assert result.layer_setting == "auto"
    assert {p.params["layer"] for p in record.report.validation_curve} >= {"stem", "blocks.3", "final"}
    assert record.layer_choice == "selected" and record.report.selected["layer"] == record.report.layers[0].layer.name


def test_epoch_selection_uses_validation_and_reports_the_last_epoch(tmp_path):
    result = run(tiny_task(), "final", results_dir=tmp_path, subjects=[1],
                 hyperparameters={"select_epoch": True, "epochs": 6})
    report = result.records[0].report
    curve = report.validation_by_epoch
    assert len(curve) == 6 and report.selected_epoch == int(np.argmax(curve)) + 1
    assert set(result.records[0].alternatives["last_epoch"]) >= {"top1", "top5"}


@pytest.mark.parametrize("name", list_submissions())
def test_check_every_submission(name, tmp_path):
    """What CI runs for each folder in submissions/ (here on the tiny task to stay fast)."""
    submission = load_submission(name)
    fast = {"epochs": 3} if "epochs" in import_method(submission).Hyperparameters.model_fields else None
    report = check_submission(submission.folder, tiny_task(check_task(submission)), hyperparameters=fast,
                              results_dir=tmp_path, isolation="process")  # the sandbox is tested in test_integrity
    assert report.result.records and report.result.computed == len(report.result.records)
    assert (report.reference is None) == (name == "final")
    assert "chance" in report.table()


def test_check_refuses_a_broken_submission(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "submission.yaml").write_text("id: broken\nname: x\n")
    result = CliRunner().invoke(app, ["check", str(folder)])
    assert result.exit_code == 2
    assert "submission.yaml is invalid" in " ".join(result.output.split())


def test_check_takes_the_encoder_option():
    result = CliRunner().invoke(app, ["check", "final", "--encoder", "tsconf"])
    assert result.exit_code == 2
    assert "Unknown encoder 'tsconf'. Did you mean 'tsconv'?" in " ".join(result.output.split())


@pytest.mark.parametrize("name, published", [
    ("nice", {"encoder": "tsconv", "epochs": 200, "batch_size": 1000, "lr": 2e-4, "weight_decay": 0.0,
              "temperature": 0.07, "learnable_temperature": False, "hidden_dim": 768, "dropout": 0.5,
              "select_epoch": True}),
    ("atm", {"encoder": "atm", "epochs": 40, "batch_size": 64, "lr": 3e-4, "learnable_temperature": True,
             "hidden_dim": 1024, "dropout": 0.5, "select_epoch": True}),
])
def test_published_methods_default_to_their_papers_settings_and_say_what_differs(name, published):
    from eegbench.isolation import MethodPlanner
    from eegbench.plan import backbone_layout

    submission = load_submission(name)
    with MethodPlanner() as planner:  # a task without a training section: the method's own defaults
        plan = planner.describe(submission, {}, {}, None, backbone_layout("efficientnet_lite0"))
    assert {key: plan.hyperparameters[key] for key in published} == published
    assert [ref.name for ref in plan.layers] == ["final"]
    assert "validation split" in " ".join(submission.meta.deviations.split())
