"""Resolving a configuration: what one (task, method, backbone, layer, hyperparameters) run computes.

:func:`resolve_task` and :func:`resolve_run` are the one place where a configuration becomes its
task, dataset, backbone model at the task's image size, method plan (layers, layer setting,
hyperparameters), hyperparameter tag, units and result keys. The runner, sweep planning and
feature pre-extraction, the RSA and scaling analyses, ``eegbench check`` and ``eegbench features
extract --task`` all resolve through them.

The method plan comes from the method's own worker process (a :class:`SubmissionSession`, or a
:class:`MethodPlanner` for many configurations): the harness never imports submission code.
Resolving is cheap unless asked otherwise: layers are resolved on the backbone's architecture
without weights (PyTorch's ``meta`` device), and the weights are loaded only for a ``device``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eegbench._check import InvalidInputError, check_seeds, suggest
from eegbench._io import hash_json
from eegbench.backbones import DEFAULT_BACKBONE, Backbone, get_backbone_spec, load_backbone
from eegbench.backbones.base import BackboneLayers
from eegbench.data import Dataset, get_dataset_spec, load_dataset
from eegbench.data.base import check_subjects
from eegbench.data.cross import cross_dataset, shared_channels, shared_samples
from eegbench.devices import resolve_device
from eegbench.isolation import MethodPlan, MethodPlanner, SubmissionSession
from eegbench.protocols import Unit, evaluated_subjects, nested_training_images, plan_units
from eegbench.results import UnitKey
from eegbench.submissions import Submission, load_submission
from eegbench.tasks import Task, TaskDataset, load_task
from eegbench.training import TrainingConfig


def hyperparameter_tag(overrides: Mapping[str, Any]) -> str:
    """The results-folder tag of a set of hyperparameter overrides: ``default``, or ``hp-`` and their hash."""
    return "default" if not overrides else "hp-" + hash_json(dict(overrides))[:10]


def backbone_layout(backbone: str) -> BackboneLayers:
    """A backbone's layers, from its architecture alone (on the meta device: no weights, no memory)."""
    return load_backbone(backbone, pretrained=False, device="meta").layout()


class DatasetCache:
    """Datasets loaded once each, by task ``dataset`` section and data root, for runs that share them."""

    def __init__(self) -> None:
        self._loaded: dict[str, Dataset] = {}

    def load(self, spec: TaskDataset, data_root: str | Path | None = None) -> Dataset:
        key = hash_json({"dataset": spec.model_dump(mode="json"), "data_root": str(data_root) if data_root else None})
        if key not in self._loaded:
            self._loaded[key] = load_dataset(spec.name, options=spec.options, variant=spec.variant,
                                             data_root=data_root)
        return self._loaded[key]


def check_task_datasets(task: Task) -> None:
    """Check the task against the declaration of each dataset it reads, and a cross-dataset task's two
    recordings against each other where both are declared (no file is read)."""
    for section in task.datasets:
        get_dataset_spec(section.name).check_task(task.model_copy(update={"dataset": section}))
    if len(task.datasets) == 2:
        declared = [get_dataset_spec(d.name).declared_recording(options=d.options, variant=d.variant)
                    for d in task.datasets]
        if None not in declared:
            names = tuple(f"{d.name} ({d.variant or 'default'})" for d in task.datasets)
            shared_samples(*declared, names)
            if all(info.ch_names for info in declared):
                shared_channels(*declared, task.channels, names)


def load_task_dataset(task: Task, data_root: str | Path | None = None, datasets: DatasetCache | None = None) -> Dataset:
    """The dataset a task runs on: its ``dataset``, or for ``protocol: cross`` that dataset composed with its
    ``test_dataset`` (:func:`eegbench.data.cross.cross_dataset`). Both are read from ``data_root``."""
    datasets = datasets or DatasetCache()
    loaded = [datasets.load(section, data_root) for section in task.datasets]
    return loaded[0] if len(loaded) == 1 else cross_dataset(*loaded, channels=task.channels)


@dataclass(frozen=True)
class ResolvedTask:
    """A task with its dataset, evaluated subjects and backbone."""

    task: Task
    dataset: Dataset
    #: the evaluated subjects: the task's, or those requested
    subjects: tuple[str, ...]
    backbone: str
    #: the backbone with its weights, fed the task's image size; None when resolved without a device
    model: Backbone | None


@dataclass(frozen=True)
class ResolvedRun(ResolvedTask):
    """A run's configuration, resolved: a :class:`ResolvedTask` and the method, its plan, units and result keys."""

    submission: Submission
    #: the layer request, for methods that take one (None for the others)
    layer: str | None
    #: hyperparameter overrides (after the task file's ``training`` section)
    overrides: Mapping[str, Any]
    #: hyperparameters, layers and layer setting, as the method's worker described them
    plan: MethodPlan
    hp_tag: str
    units: tuple[Unit, ...]
    keys: Mapping[Unit, UnitKey]
    train_fraction: float
    #: per unit, its seed's nested subset of the training images (None: all of them)
    training_images: Mapping[Unit, np.ndarray | None]


def check_hyperparameters(task: Task, submission: Submission, overrides: Mapping[str, Any], plan: MethodPlan) -> None:
    """Check the task's ``training`` section and the overrides against what the method's worker made of them.

    A task's ``training`` section serves every method run on it: each key must be a hyperparameter of
    the method being run or of eegbench's contrastive trainer (:class:`~eegbench.training.TrainingConfig`,
    which the reference methods share), so that a typo cannot silently leave a method default in place.
    A yes/no value given for a number (``epochs=true``), or a number for a yes/no, is refused rather
    than converted.
    """
    known = set(plan.hyperparameters)
    unknown = [key for key in task.training if key not in known | set(TrainingConfig.model_fields)]
    if unknown:
        raise InvalidInputError(
            f"Task {task.id!r}: training.{unknown[0]} is a hyperparameter neither of method {submission.id!r} nor of "
            f"the contrastive trainer.{suggest(unknown[0], known | set(TrainingConfig.model_fields))} Method "
            f"{submission.id!r} takes: {', '.join(sorted(known)) or '(none)'}. Fix the task file's training section.")
    given = {key: value for key, value in task.training.items() if key in known} | dict(overrides)
    for key, value in given.items():
        taken = plan.hyperparameters.get(key)
        if isinstance(value, bool) != isinstance(taken, bool):
            source = "--hp" if key in overrides else "the task file's training section"
            expected = "true or false" if isinstance(taken, bool) else (
                "a number" if isinstance(taken, (int, float)) else f"a {type(taken).__name__}")
            raise InvalidInputError(f"Hyperparameter {key!r} of method {submission.id!r} expects {expected}, got "
                                    f"{json.dumps(value)} (from {source}).")


def check_request(task: Task, backbone: str | None = None, *, subjects: Sequence[str | int] | None = None,
                  seeds: Sequence[int] | None = None, weights: str | Path | None = None) -> None:
    """Every check of a run's request that needs no data, model or worker process.

    The backbone's name, a weights file's presence, subjects and seeds (non-empty, none repeated,
    seeds non-negative) and the task against its dataset's declaration
    (:meth:`~eegbench.data.DatasetSpec.check_task`): callers run it first, so that such mistakes
    fail at once, before workers start or anything is loaded.
    """
    if backbone is not None:
        get_backbone_spec(backbone)
    if weights is not None and not Path(weights).is_file():
        raise InvalidInputError(f"Weights file {weights} does not exist (or is not a file); pass the path of a "
                                "local weights file, or leave --weights out to use the backbone's own weights.")
    check_subjects(subjects)
    check_seeds(seeds)
    check_task_datasets(task)


def run_target(task: Task, backbone: str | None, layer: str | None) -> tuple[str, str | None]:
    """The backbone and layer request of a run: those given, else the task's :attr:`~eegbench.tasks.Task.target`
    (its layer applies to any backbone, its pooling only to its own), else eegbench's default backbone."""
    target = task.target
    chosen = backbone or (target.backbone if target is not None else DEFAULT_BACKBONE)
    if layer is None and target is not None and target.layer is not None:
        layer = target.layer + (f":{target.pooling}" if target.pooling and chosen == target.backbone else "")
    return chosen, layer


def resolve_task(task: str | Task, backbone: str = DEFAULT_BACKBONE, *, subjects: Sequence[str | int] | None = None,
                 data_root: str | Path | None = None, datasets: DatasetCache | None = None,
                 device: str | None = None, weights: str | Path | None = None) -> ResolvedTask:
    """Resolve a task, its dataset (with the task's chance levels checked against its gallery) and subjects.

    Parameters
    ----------
    task : str or Task
        Task id, task file path, or a :class:`Task`.
    backbone : str
        Backbone name.
    subjects : sequence, optional
        Restrict the task's subjects.
    data_root : path-like, optional
        Where a real dataset lives.
    datasets : DatasetCache, optional
        Datasets already loaded (by other runs of a sweep or an analysis).
    device : str, optional
        Load the backbone with its weights there (``"auto"``, ``"cpu"``, ``"cuda"``...), before
        the dataset, so that missing weights fail first; default: not loaded.
    weights : path-like, optional
        Local weights file for the backbone.
    """
    task = task if isinstance(task, Task) else load_task(task)
    subjects = check_subjects(subjects)
    check_task_datasets(task)  # before the backbone and the dataset are loaded
    model = None
    if device is not None:
        model = load_backbone(backbone, weights=weights, device=str(resolve_device(device)))
        model = model.at_size(task.features.image_size)
    dataset = load_task_dataset(task, data_root, datasets)
    task.check_chance(len(dataset.test_images))
    task.check_recording(dataset.info.times, dataset.info.ch_names, f"the recording of dataset {dataset.name!r}")
    chosen = tuple(evaluated_subjects(task, dataset, subjects))
    return ResolvedTask(task, dataset, chosen, backbone, model)


def resolve_run(task: str | Task, method: str | Submission, backbone: str = DEFAULT_BACKBONE,
                layer: str | None = None, hyperparameters: Mapping[str, Any] | None = None, *,
                planner: SubmissionSession | MethodPlanner, subjects: Sequence[str | int] | None = None,
                seeds: Sequence[int] | None = None, data_root: str | Path | None = None,
                datasets: DatasetCache | None = None, device: str | None = None,
                weights: str | Path | None = None, train_fraction: float = 1.0) -> ResolvedRun:
    """Resolve a run: the method is described by its worker before anything heavy is loaded.

    Parameters
    ----------
    task, backbone, subjects, data_root, datasets, device, weights
        As for :func:`resolve_task`.
    method : str or Submission
        Submission id or folder, or a loaded :class:`Submission`.
    layer : str, optional
        Layer request for methods that take one; :class:`MethodPlanner` drops it for the others.
    hyperparameters : mapping, optional
        Overrides of the method's hyperparameters.
    planner : SubmissionSession or MethodPlanner
        The worker that describes the method: the run's own session (of this submission), or a
        planner of many configurations.
    seeds : sequence of int, optional
        Restrict the task's seeds.
    train_fraction : float
        Train on this nested fraction of the training images (:func:`nested_training_images`).
    """
    task = task if isinstance(task, Task) else load_task(task)
    seeds = check_seeds(seeds)
    submission = method if isinstance(method, Submission) else load_submission(method)
    if not submission.supports(task.id):
        raise InvalidInputError(f"Method {submission.id!r} does not support task {task.id!r} "
                                f"(it supports {submission.meta.tasks}).")
    overrides = dict(hyperparameters or {})
    layout = backbone_layout(backbone)
    if isinstance(planner, MethodPlanner):
        plan = planner.describe(submission, task.training, overrides, layer, layout)
    elif planner.submission.folder == submission.folder:
        plan = planner.describe(task.training, overrides, layer, layout)
    else:
        raise ValueError(f"The session of {planner.submission.id!r} cannot describe {submission.id!r}.")
    check_hyperparameters(task, submission, overrides, plan)
    resolved = resolve_task(task, backbone, subjects=subjects, data_root=data_root, datasets=datasets, device=device,
                            weights=weights)
    units = tuple(plan_units(task, resolved.dataset, resolved.subjects, seeds))
    hp_tag = hyperparameter_tag(overrides)
    keys = {u: UnitKey(task.id, task.version, submission.id, backbone, plan.layer_setting, hp_tag, u.subject, u.seed)
            for u in units}
    subsets = {} if train_fraction == 1.0 else {  # one per seed: the units of a seed keep the same images
        seed: nested_training_images(task, resolved.dataset, train_fraction, seed) for seed in {u.seed for u in units}}
    return ResolvedRun(task=task, dataset=resolved.dataset, subjects=resolved.subjects, backbone=backbone,
                       model=resolved.model, submission=submission, layer=layer if plan.accepts_layer else None,
                       overrides=overrides, plan=plan, hp_tag=hp_tag, units=units, keys=keys,
                       train_fraction=train_fraction, training_images={u: subsets.get(u.seed) for u in units})
