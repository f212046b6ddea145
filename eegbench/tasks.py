"""Benchmark tasks: strict, versioned YAML files in ``tasks/``.

A task fixes everything that decides a number: the dataset and its variant, the protocol
(intra-subject, inter-subject, joint, or cross-dataset with a second, test dataset), subjects, channels, time window and baseline, repetition
handling in training and test, response normalisation (z-score, multivariate noise normalisation or
none), the validation split (carved from training concepts, concept-disjoint), the gallery, metrics,
scoring modes, chance levels, seeds, the inference track (inductive or transductive), the
statistical inference target of its tiers, an optional default target layer, and the training
defaults for its data size. Any change that can move a score must bump ``version``; results of
different versions never share a table.

Every option is honest: none lets a method or the harness use test data for fitting, selection or
normalisation. What dishonest protocols of the field do to scores is measured apart, by
:mod:`eegbench.pitfalls`, whose records never enter a task's tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from eegbench._check import InvalidInputError, check_unique, describe_validation_error, suggest, unknown_name
from eegbench._io import hash_json, read_yaml_mapping
from eegbench._paths import task_dirs
from eegbench.identifiers import ID_PATTERN
from eegbench.metrics import metric as named_metric

_STRICT = ConfigDict(extra="forbid", frozen=True)


class TaskDataset(BaseModel):
    """A task's ``dataset`` section: which dataset, which preprocessing variant, and loader options.

    (What a dataset itself declares, its variants, options model and loader, is its
    :class:`eegbench.data.DatasetSpec`.)
    """

    model_config = _STRICT
    name: str
    variant: str | None = None
    options: dict = Field(default_factory=dict)


#: Deprecated alias of :class:`TaskDataset` (its name before the dataset contract took the name
#: ``DatasetSpec``, in :mod:`eegbench.data.spec`); kept for code that imported it.
DatasetSpec = TaskDataset


class Repetitions(BaseModel):
    """How repetitions of an image are combined: averaged (``mean``) or kept as samples (``single``).

    ``test: single`` scores single-trial retrieval: every test trial is retrieved on its own (the
    gallery is still one embedding per test image).
    """

    model_config = _STRICT
    train: Literal["mean", "single"] = "mean"
    test: Literal["mean", "single"] = "mean"


class TargetLayer(BaseModel):
    """The image target a task is defined against (e.g. NeuralBench's DINOv2-giant at 2/3 depth with
    mean-token pooling): the backbone and layer a run uses when none is passed."""

    model_config = _STRICT
    backbone: str
    layer: str | None = Field(None, description="A layer request: a name, an index, a relative depth such as "
                                                "'0.6667', or 'final'.")
    pooling: Literal["gap", "cls", "mean", "mean_all"] | None = None


class ValidationSplit(BaseModel):
    """A concept-disjoint validation split carved from the training concepts."""

    model_config = _STRICT
    fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0
    metric: Literal["top1", "top5", "mean_rank"] = "top5"


class FeatureOptions(BaseModel):
    """How image features are computed and handed to methods."""

    model_config = _STRICT
    image_size: int | None = Field(None, ge=16)
    normalization: Literal["l2", "none"] = "l2"


class Limits(BaseModel):
    """Execution limits of a task's runs. They never change a score, so they are not part of
    :attr:`Task.content_hash` (nor of task dumps)."""

    model_config = _STRICT
    unit_seconds: float = Field(6 * 3600.0, gt=0, description="Time one unit may take to fit (and one "
                                "embedding call to run) before the method is stopped and the unit recorded as failed.")


METRICS = ("top1", "top5")
MetricName = Annotated[str, Field(pattern=r"^(top[1-9][0-9]*|mean_rank|median_rank)$")]
#: how a task's tables may score test responses besides its headline (per subject, repetitions as
#: ``repetitions.test`` says): ``single_trial`` retrieves every test trial on its own;
#: ``subject_aggregated`` averages each test image's similarities over the subjects of a seed (the
#: records keep their similarity matrices for it)
SCORING_MODES = ("single_trial", "subject_aggregated")
#: Task fields that enter :attr:`Task.content_hash` only when they differ from their default
_HASHED_ONLY_WHEN_SET = ("main_score", "reference_method", "baseline", "scoring", "inference", "inference_target",
                         "target", "test_dataset")
#: below this many subjects, ``inference_target: auto`` tests differences over test images, not subjects
MIN_SUBJECTS_FOR_SUBJECT_INFERENCE = 8

#: the sample a paired test between methods draws its units from
InferenceTarget = Literal["subjects", "images"]


def resolve_inference_target(declared: str, n_subjects: int) -> InferenceTarget:
    """The inference target of a table of ``n_subjects`` subjects whose task declares ``declared``.

    ``auto`` means images below :data:`MIN_SUBJECTS_FOR_SUBJECT_INFERENCE` subjects (the exact sign-flip
    test over 4 subjects cannot go below p = 0.125), subjects otherwise.
    """
    if declared in ("subjects", "images"):
        return declared  # type: ignore[return-value]
    if declared != "auto":
        raise InvalidInputError(f"Unknown inference target {declared!r}: use subjects, images or auto.")
    return "images" if n_subjects < MIN_SUBJECTS_FOR_SUBJECT_INFERENCE else "subjects"


class Task(BaseModel):
    """A benchmark task (the schema of ``tasks/*.yaml``)."""

    model_config = _STRICT

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)
    description: str
    dataset: TaskDataset
    protocol: Literal["intra", "inter", "joint", "cross"]
    #: ``protocol: cross`` only: the dataset whose subjects are tested (on its test images) by models
    #: trained on every subject of ``dataset`` (:mod:`eegbench.data.cross`)
    test_dataset: TaskDataset | None = None
    #: the evaluated subjects (of ``test_dataset`` for ``protocol: cross``, which trains on every subject of ``dataset``)
    subjects: Literal["all"] | list[int] = "all"
    channels: Literal["all"] | list[str] = "all"
    time_window: tuple[float, float]
    #: seconds whose mean each trial's channels are corrected by (None: the data's own baseline only)
    baseline: tuple[float, float] | None = None
    repetitions: Repetitions = Repetitions()
    #: ``zscore``: per (channel, time) with training statistics; ``mvnn``: multivariate noise
    #: normalisation, whitening channels by the noise covariance of the training trials (their
    #: deviations from their image's mean; needs 2 or more training repetitions); ``none``
    normalization: Literal["zscore", "mvnn", "none"] = "zscore"
    validation: ValidationSplit = ValidationSplit()
    gallery: Literal["test_images"] = "test_images"
    features: FeatureOptions = FeatureOptions()
    metrics: list[MetricName] = Field(default_factory=lambda: list(METRICS))
    chance: dict[str, float]
    #: the metric that ranks the board and decides its significance tiers (a top-k accuracy)
    main_score: Annotated[str, Field(pattern=r"^top[1-9][0-9]*$")] = "top1"
    #: the method every board entry is tested against on the same backbone
    reference_method: str = Field("final", pattern=ID_PATTERN)
    #: scoring modes computed besides the headline (:data:`SCORING_MODES`)
    scoring: list[Literal["single_trial", "subject_aggregated"]] = Field(default_factory=list)
    #: ``inductive``: each test row is embedded on its own (the main board); ``transductive``: the
    #: method gets the whole test batch in one call, and its results form their own track
    inference: Literal["inductive", "transductive"] = "inductive"
    #: what the significance tiers generalise to: other ``subjects`` (a paired test over subjects) or
    #: other test ``images`` for these subjects (a paired test over images within subjects); ``auto``
    #: is ``images`` below :data:`MIN_SUBJECTS_FOR_SUBJECT_INFERENCE` subjects
    inference_target: Literal["auto", "subjects", "images"] = "auto"
    #: the backbone and layer a run uses when none is passed (None: eegbench's default backbone)
    target: TargetLayer | None = None
    seeds: list[Annotated[int, Field(ge=0)]] = Field(min_length=1)
    training: dict = Field(default_factory=dict)
    superseded_by: str | None = None
    limits: Limits = Field(default_factory=Limits, exclude=True)

    @field_validator("time_window")
    @classmethod
    def _window_order(cls, window: tuple[float, float]) -> tuple[float, float]:
        if window[1] <= window[0]:
            raise ValueError("time_window must be [start, end) with end > start")
        return window

    @field_validator("baseline")
    @classmethod
    def _baseline_order(cls, window: tuple[float, float] | None) -> tuple[float, float] | None:
        if window is not None and window[1] <= window[0]:
            raise ValueError("baseline must be [start, end) with end > start")
        return window

    @field_validator("subjects", "channels", "seeds", "metrics", "scoring")
    @classmethod
    def _no_repeats(cls, values: str | list) -> str | list:
        if isinstance(values, list):
            check_unique(values)
        return values

    @field_validator("subjects")
    @classmethod
    def _subject_numbers(cls, subjects: str | list[int]) -> str | list[int]:
        if isinstance(subjects, list) and any(s < 1 for s in subjects):
            raise ValueError("subject numbers start at 1")
        return subjects

    @model_validator(mode="after")
    def _test_dataset_for_cross(self) -> Task:
        if (self.protocol == "cross") != (self.test_dataset is not None):
            raise ValueError("protocol: cross needs test_dataset (the dataset tested on), and only it takes one")
        return self

    @property
    def datasets(self) -> tuple[TaskDataset, ...]:
        """The datasets the task reads: ``dataset``, then ``test_dataset`` where set."""
        return (self.dataset,) if self.test_dataset is None else (self.dataset, self.test_dataset)

    @model_validator(mode="after")
    def _chance_for_each_metric(self) -> Task:
        missing = [m for m in self.metrics if m not in self.chance]
        if missing:
            raise ValueError(f"chance must give a level for every metric; missing {missing}")
        if self.main_score not in self.metrics:
            raise ValueError(f"main_score must be one of the task's metrics {self.metrics}, got {self.main_score!r}")
        if self.repetitions.test == "single" and "single_trial" in self.scoring:
            raise ValueError("scoring: single_trial repeats the headline of a task whose repetitions.test is single; "
                             "drop it")
        if self.inference == "transductive" and "subject_aggregated" in self.scoring:
            raise ValueError("scoring: subject_aggregated averages similarities of one embedding across subjects, but "
                             "a transductive embedding depends on its test batch; drop it or use inference: inductive")
        return self

    def resolved_inference_target(self, n_subjects: int) -> InferenceTarget:
        """``inference_target`` for a table of ``n_subjects`` subjects (``auto`` resolved)."""
        return resolve_inference_target(self.inference_target, n_subjects)

    @property
    def content_hash(self) -> str:
        """sha256 of the task's parsed content: any change to the file's meaning changes it."""
        content = self.model_dump(mode="json")
        for name in _HASHED_ONLY_WHEN_SET:  # fields added later: tasks that leave them alone keep their hash
            if content[name] == Task.model_fields[name].get_default(call_default_factory=True):
                del content[name]
        return hash_json(content)

    def check_chance(self, n_gallery: int) -> None:
        """Fail if the declared chance levels disagree with a gallery of ``n_gallery`` images."""
        for metric in self.metrics:
            expected = named_metric(metric).chance(n_gallery)
            if abs(self.chance[metric] - expected) > 1e-9:
                raise InvalidInputError(
                    f"Task {self.id!r} declares chance {metric} = {self.chance[metric]}, but its gallery "
                    f"has {n_gallery} images (chance {expected:g}). Fix `chance` in the task file."
                )

    def check_recording(self, times: Sequence[float], channels: Sequence[str] | None, source: str) -> None:
        """Fail unless the time window lies within ``times`` and the channels are among ``channels``.

        ``source`` names the recording in messages; ``channels`` None means they are not known yet.
        A window reaching past the recording would silently select less than the record says.
        """
        times = np.asarray(times, dtype=np.float64)
        step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        start, end = float(times[0]), float(times[-1]) + step
        for name, window in (("time_window", self.time_window), ("baseline", self.baseline)):
            if window is None:
                continue
            tmin, tmax = window
            if tmin < start - 1e-6 or tmax > end + 1e-6:
                raise InvalidInputError(f"Task {self.id!r}: {name} [{tmin:g}, {tmax:g}] s is not within {source}, "
                                        f"which spans [{start:g}, {end:g}) s. Set {name} inside it in the task file.")
        if channels is not None and self.channels != "all":
            missing = [c for c in self.channels if c not in channels]
            if missing:
                raise InvalidInputError(f"Task {self.id!r}: channels {missing} are not in {source}."
                                        f"{suggest(missing[0], channels)} Its channels: {', '.join(channels)}.")

    def with_overrides(self, **changes) -> Task:
        """A validated copy with top-level fields replaced (``dataset`` options are merged)."""
        data = self.model_dump()
        if "dataset_options" in changes:
            data["dataset"]["options"] = {**data["dataset"]["options"], **changes.pop("dataset_options")}
        data.update(changes)
        return Task.model_validate(data)


def list_tasks() -> list[str]:
    """Ids of every task file found on the task search path."""
    names = set()
    for folder in task_dirs():
        names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def task_path(name: str) -> Path:
    """The file of task ``name`` (first match on the search path)."""
    for folder in task_dirs():
        candidate = folder / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    raise unknown_name("task", name, list_tasks(), "Pass a task id or the path of a task YAML file.")


def load_task(name_or_path: str | Path) -> Task:
    """Load and validate a task by id (``"synthetic-intra"``) or from a YAML file path."""
    text = str(name_or_path)
    path = Path(text) if text.endswith((".yaml", ".yml")) or Path(text).is_file() else task_path(text)
    raw = read_yaml_mapping(path, "Task file", "a mapping of fields")
    try:
        task = Task.model_validate(raw)
    except ValidationError as err:
        raise InvalidInputError(describe_validation_error(err, f"Task file {path}")) from None
    if task.id != path.stem:
        raise InvalidInputError(f"Task file {path} declares id {task.id!r}; the id must match the file name.")
    return task
