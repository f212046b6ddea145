"""The resolver: one configuration -> task, dataset, backbone, method plan, units and their result keys."""

import textwrap

import pytest

from eegbench import plan as plan_module
from eegbench.errors import InvalidInputError
from eegbench.isolation import MethodPlanner, SubmissionSession
from eegbench.plan import DatasetCache, hyperparameter_tag, resolve_run, resolve_task
from eegbench.protocols import Unit
from eegbench.results import UnitKey
from eegbench.submissions import load_submission
from eegbench.sweep import plan_sweep, sweep_from_options
from helpers import tiny_task, write_tiny_task_file


@pytest.fixture(scope="module")
def planner():
    with MethodPlanner() as planner:
        yield planner


@pytest.fixture
def calls(monkeypatch):
    """What the resolver loads and draws, as it happens: the device of each backbone it loads, the name of
    each dataset, and the seed of each nested training subset."""
    log = {"load_backbone": [], "load_dataset": [], "nested_training_images": []}

    def spy(name, original):
        def logged(*args, **kwargs):
            log[name].append(kwargs["device"] if name == "load_backbone" else args[-1])
            return original(*args, **kwargs)
        return logged

    for name in log:
        monkeypatch.setattr(plan_module, name, spy(name, getattr(plan_module, name)))
    return log


def test_planning_loads_no_weights_and_names_every_unit(planner, calls):
    task = tiny_task()
    resolved = resolve_run(task, "shallow", layer="blocks.3", hyperparameters={"epochs": 2}, planner=planner,
                           subjects=[2, "sub-01"], seeds=[0, 1])
    assert resolved.model is None and set(calls["load_backbone"]) == {"meta"}
    assert resolved.subjects == ("sub-02", "sub-01") and resolved.layer == "blocks.3"
    assert [ref.name for ref in resolved.plan.layers] == ["blocks.3"] and resolved.plan.hyperparameters["epochs"] == 2
    assert resolved.hp_tag == hyperparameter_tag({"epochs": 2}) != "default"
    assert resolved.units == (Unit("sub-02", ("sub-02",), 0), Unit("sub-02", ("sub-02",), 1),
                              Unit("sub-01", ("sub-01",), 0), Unit("sub-01", ("sub-01",), 1))
    assert resolved.keys[resolved.units[0]] == UnitKey("synthetic-intra", 1, "shallow", "efficientnet_lite0",
                                                       resolved.plan.layer_setting, resolved.hp_tag, "sub-02", 0)
    assert set(resolved.training_images.values()) == {None} and calls["nested_training_images"] == []


def test_a_layer_is_dropped_for_methods_that_choose_their_own(planner):
    resolved = resolve_run(tiny_task(), "final", layer="0.5", planner=planner, subjects=[1], seeds=[0])
    assert resolved.layer is None and resolved.plan.layer_setting == "final"


def test_nested_subsets_are_drawn_once_per_seed_and_datasets_loaded_once(planner, calls):
    datasets = DatasetCache()
    task = tiny_task()
    resolved = resolve_run(task, "final", planner=planner, subjects=[1, 2], seeds=[0, 3], datasets=datasets,
                           train_fraction=0.25)
    assert sorted(calls["nested_training_images"]) == [0, 3]
    subsets = resolved.training_images
    assert subsets[Unit("sub-01", ("sub-01",), 3)] is subsets[Unit("sub-02", ("sub-02",), 3)]
    assert subsets[Unit("sub-01", ("sub-01",), 0)].sum() < len(resolved.dataset.train_images)
    assert resolve_task(task, datasets=datasets).dataset is resolved.dataset and len(calls["load_dataset"]) == 1
    with pytest.raises(InvalidInputError, match=r"training fraction must be in \(0, 1\]"):
        resolve_run(task, "final", planner=planner, subjects=[1], seeds=[0], datasets=datasets, train_fraction=1.5)


def test_a_device_loads_the_backbone_at_the_task_image_size(calls):
    resolved = resolve_task(tiny_task(), subjects=[1], device="cpu")
    assert resolved.model.preprocessing.size == 128 == resolved.task.features.image_size
    assert calls["load_backbone"] == ["cpu"]


def test_unsupported_tasks_and_foreign_sessions_are_refused(tmp_path, planner):
    folder = tmp_path / "meg-only"
    folder.mkdir()
    (folder / "submission.yaml").write_text(textwrap.dedent("""\
        id: meg-only
        name: MEG only
        authors: [eegbench tests]
        description: A method for MEG tasks.
        citation: none
        license: MIT
        tasks: ["things-meg-*"]
        features: final
        entrypoint: "method:Method"
    """))
    (folder / "method.py").write_text("")
    with pytest.raises(InvalidInputError, match=r"does not support task 'synthetic-intra' \(it supports \['things-meg-\*'\]\)"):
        resolve_run(tiny_task(), str(folder), planner=planner)
    with SubmissionSession(load_submission("shallow"), timeout=60) as session, \
            pytest.raises(ValueError, match="The session of 'shallow' cannot describe 'final'"):
        resolve_run(tiny_task(), "final", planner=session)


def test_sweep_planning_loads_no_weights_and_says_which_grid_failed(tmp_path, calls):
    task_file = str(write_tiny_task_file(tmp_path))
    spec = sweep_from_options(tasks=[task_file], methods=["final", "shallow"], layers=["0.5", None], subjects=[1],
                              seeds=[0], results_dir=tmp_path / "results")
    planned = plan_sweep(spec)
    assert set(calls["load_backbone"]) == {"meta"} and len(calls["load_dataset"]) == 1
    # final takes no layer: its two layer requests are one configuration
    assert [(c.config.method, c.config.layer, c.keys[0].layer_setting) for c in planned.configs] == [
        ("final", None, "final"), ("shallow", "0.5", "blocks.3"), ("shallow", None, "auto")]
    with pytest.raises(InvalidInputError, match=r"^Grid 1: Method 'final' has no hyperparameter 'nope'"):
        plan_sweep(sweep_from_options(tasks=[task_file], methods=["final"], hp={"nope": [1]},
                                      results_dir=tmp_path / "results"))


@pytest.mark.parametrize("training, overrides, message", [
    ({"lrr": 5.0}, {}, r"Task 'synthetic-intra': training\.lrr is a hyperparameter neither of method 'shallow' nor "
                       r"of the contrastive trainer\. Did you mean 'lr'\? Method 'shallow' takes: batch_size, "),
    ({"epochs": True}, {}, r"Hyperparameter 'epochs' of method 'shallow' expects a number, got true \(from the task "
                           r"file's training section\)\."),
    ({}, {"epochs": True}, r"Hyperparameter 'epochs' of method 'shallow' expects a number, got true \(from --hp\)\."),
    ({}, {"select_epoch": 1}, r"Hyperparameter 'select_epoch' of method 'shallow' expects true or false, got 1"),
])
def test_training_keys_are_checked_and_yes_no_is_not_a_number(planner, calls, training, overrides, message):
    task = tiny_task().with_overrides(training={**tiny_task().training, **training})
    with pytest.raises(InvalidInputError, match=message):
        resolve_run(task, "shallow", hyperparameters=overrides, planner=planner)
    assert calls["load_dataset"] == []  # refused before the data is loaded


def test_trainer_keys_in_a_task_serve_methods_that_do_not_train(planner):
    """The reference tasks' training sections hold the contrastive trainer's keys: ridge ignores them."""
    task = tiny_task()
    assert {"epochs", "lr"} <= set(task.training)
    resolved = resolve_run(task, "ridge", planner=planner, subjects=[1], seeds=[0])
    assert "epochs" not in resolved.plan.hyperparameters
