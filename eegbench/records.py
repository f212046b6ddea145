"""Result and analysis records: the typed, versioned schema of eegbench's product.

A :class:`ResultRecord` is one JSON file per run unit (task and version, method, backbone, layer
setting, hyperparameter tag, subject, seed): what ran (:class:`TaskInfo`, :class:`DatasetInfo`,
:class:`MethodInfo`, :class:`BackboneInfo`), what the method reported (:class:`AlignerReport`),
the harness's scores and per-trial ranks, timing and the environment. Where records are stored,
claimed and marked failed is :mod:`eegbench.results`.

Schema versions
---------------
Every file carries ``schema_version``. :meth:`ResultRecord.from_disk` reads every version this
eegbench ever wrote, upgrading older ones step by step (:data:`RESULT_UPGRADES`), so old result
folders stay readable; a file from a newer eegbench is refused with a clear error.

* **1** (eegbench 0.1): sections were free dictionaries; the method's report held the harness's
  scores of alternative variants (``alternatives``) and of fewer test repetitions
  (``test_repetitions``), and each submission chose its own report keys.
* **2**: typed sections; the report is an :class:`AlignerReport`; ``alternatives`` and
  ``test_repetitions`` are fields of the record; the task names its main score and reference
  method.
* **3**: ``backbone.views`` lists the views of the training images the method trained against
  (:mod:`eegbench.views`; empty for records of version 2).
* **4**: the task names its baseline, inference track, inference target and extra scoring modes;
  ``modes`` holds the scores and per-trial ranks of each extra scoring mode (``single_trial``), and
  ``similarity`` the brain-to-gallery similarities where the task aggregates subjects (records of
  version 3 are inductive, per-subject, without either).

Records are untrusted input (anyone can drop one into a results folder, or hand one to
``eegbench reproduce``): every identifier must match a strict pattern (:mod:`eegbench.identifiers`),
so none can put a path separator, ``..`` or a control character into a path or a table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import TypedDict

from eegbench._check import DataError, describe_validation_error
from eegbench.identifiers import (
    BACKBONE_PATTERN,
    HP_TAG_PATTERN,
    ID_PATTERN,
    LAYER_SETTING_PATTERN,
    SHA256_PATTERN,
    SUBJECT_PATTERN,
    TASK_ID_PATTERN,
)
from eegbench.reports import AlignerReport, RecordedLayer
from eegbench.views import ImageView

SCHEMA_VERSION = 4
ANALYSIS_SCHEMA_VERSION = 1
#: folder of analysis records under a results root (task ids cannot start with "_")
ANALYSES_DIR = "_analyses"

Subject = Annotated[str, Field(pattern=SUBJECT_PATTERN)]
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]
MetricName = Annotated[str, Field(pattern=r"^(top[1-9][0-9]*|mean_rank|median_rank)$")]
#: metric name -> score
Scores = dict[MetricName, float]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaskInfo(_Section):
    """The task a record was computed on, as the task file said (:class:`eegbench.tasks.Task`)."""

    id: Annotated[str, Field(pattern=TASK_ID_PATTERN)]
    version: Annotated[int, Field(strict=True, ge=0)]
    hash: Sha256
    protocol: str
    metrics: list[MetricName]
    chance: Scores
    description: str
    repetitions: dict[str, str]
    normalization: str
    time_window: tuple[float, float]
    #: the metric that ranks the board and its significance tiers
    main_score: MetricName = "top1"
    #: the method every entry is tested against, on the same backbone
    reference_method: Annotated[str, Field(pattern=ID_PATTERN)] = "final"
    #: data-scaling runs: the nested share of training images used, and how many that was
    train_fraction: float = 1.0
    n_train_images: int | None = None
    #: seconds whose mean corrected each trial (None: the data's own baseline only)
    baseline: tuple[float, float] | None = None
    #: ``inductive`` (the main board) or ``transductive`` (its own track)
    inference: Literal["inductive", "transductive"] = "inductive"
    #: what the significance tiers generalise to: ``subjects``, ``images`` or ``auto`` (by subject count)
    inference_target: Literal["auto", "subjects", "images"] = "auto"
    #: scoring modes besides the headline (``single_trial``, ``subject_aggregated``)
    scoring: list[str] = Field(default_factory=list)


class DatasetInfo(_Section):
    """The data a record was computed on, after the task's channel and time selection."""

    name: Annotated[str, Field(pattern=ID_PATTERN)]
    variant: str | None
    fingerprint: Sha256
    channels: list[str]
    sfreq: float
    n_times: int


class MethodInfo(_Section):
    """The submission that ran and how it was configured."""

    id: Annotated[str, Field(pattern=ID_PATTERN)]
    version: str
    code_sha256: Sha256  # what ran, checked against the registered code
    hp_tag: Annotated[str, Field(pattern=HP_TAG_PATTERN)]
    hyperparameters: dict[str, Any]
    #: hash of everything besides subject and seed that determines the numbers
    config_hash: Sha256


class BackboneInfo(_Section):
    """The vision backbone and the layers offered to the method."""

    name: Annotated[str, Field(pattern=BACKBONE_PATTERN)]
    layer_setting: Annotated[str, Field(pattern=LAYER_SETTING_PATTERN)]
    layer_request: str | None
    identity: dict[str, Any]
    #: every layer the method was given features of (it may select among them or combine them)
    layers: list[RecordedLayer]
    n_layers: int
    params_millions: float | None
    feature_cache_keys: dict[str, dict[str, Sha256]]
    #: views of the training images whose features the method was given too (never of the gallery)
    views: list[ImageView] = Field(default_factory=list)

    @property
    def layer_choice(self) -> Literal["fixed", "selected", "combined"]:
        """``fixed`` when one layer was given; otherwise the method ``selected`` one on validation or
        ``combined`` several (see :attr:`ResultRecord.layer_choice`)."""
        return "fixed" if len(self.layers) == 1 else "selected"


class Timing(_Section):
    """Seconds spent fitting (a batch of units fitted together shares its time) and scoring."""

    fit_seconds: float
    fit_seconds_batch: float
    units_in_batch: int
    eval_seconds: float


class GitState(_Section):
    commit: str | None
    dirty: bool | None


class Environment(_Section):
    """Versions, hardware and determinism flags (:func:`eegbench.provenance.environment`)."""

    eegbench: str
    git: GitState
    python: str
    platform: str
    machine: str
    cpu_count: int | None
    torch_threads: int
    device: str
    device_name: str | None
    packages: dict[str, str | None]
    deterministic_algorithms: bool
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    tf32_matmul: bool
    torch_compile: bool | None = None  # None: not recorded (early version-1 records)
    #: how the method's code was kept apart from the harness (None: before isolation existed)
    isolation: str | None = None


class PerTrial(_Section):
    """For each test trial: gallery images scored strictly above the true one, and tied with it.

    With ``target`` (single-trial scoring) the gallery index of each trial's image; without, trial
    ``i`` saw gallery image ``i``.
    """

    n_better: list[int]
    n_tied: list[int]
    target: list[int] | None = None


class ModeScores(_Section):
    """The scores and per-trial ranks of one extra scoring mode of a unit."""

    scores: Scores
    n_trials: int
    per_trial: PerTrial


class Similarity(_Section):
    """The ``(n_test, n_gallery)`` cosine similarities of a unit's averaged test responses to the
    gallery, as little-endian float64 in base64 (as the harness ranked them; for subject-aggregated scoring)."""

    shape: tuple[int, int]
    dtype: Literal["<f8"] = "<f8"
    data: str

    @classmethod
    def of(cls, matrix: Any) -> Similarity:
        import base64

        import numpy as np

        array = np.ascontiguousarray(matrix, dtype="<f8")
        return cls(shape=array.shape, data=base64.b64encode(array.tobytes()).decode("ascii"))

    def array(self) -> Any:
        """The matrix as a numpy array."""
        import base64

        import numpy as np

        values = np.frombuffer(base64.b64decode(self.data, validate=True), dtype=self.dtype)
        if values.size != self.shape[0] * self.shape[1]:
            raise DataError(f"A similarity matrix of shape {self.shape} holds {values.size} values.")
        return values.reshape(self.shape)


@dataclass(frozen=True)
class UnitKey:
    """Identity of one result: what was run, on whom, with which seed."""

    task: str
    task_version: int
    method: str
    backbone: str
    layer_setting: str
    hp_tag: str
    subject: str
    seed: int

    def relative_path(self) -> Path:
        layer = self.layer_setting.replace(":", "_").replace("/", "_")
        return Path(self.task, f"v{self.task_version}", self.method, self.backbone, layer, self.hp_tag,
                    f"{self.subject}_seed-{self.seed}.json")


class ResultRecord(_Section):
    """One run unit's result file (schema version 4). Read files with :meth:`from_disk`."""

    schema_version: Literal[4] = SCHEMA_VERSION
    created: str
    task: TaskInfo
    dataset: DatasetInfo
    method: MethodInfo
    backbone: BackboneInfo
    subject: Subject
    train_subjects: list[Subject]
    seed: int
    report: AlignerReport = Field(default_factory=AlignerReport)
    scores: Scores
    #: the harness's scores of the method's other fitted variants (e.g. ``last_epoch``)
    alternatives: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], Scores] = Field(default_factory=dict)
    #: scores on test responses averaged over the first n repetitions, by n (data-scaling analyses)
    test_repetitions: dict[int, Scores] = Field(default_factory=dict)
    n_test_trials: int
    n_gallery: int
    per_trial: PerTrial
    #: scores and per-trial ranks of the task's extra scoring modes, by mode (``single_trial``)
    modes: dict[Literal["single_trial"], ModeScores] = Field(default_factory=dict)
    #: similarities of the averaged test responses to the gallery (tasks that aggregate subjects)
    similarity: Similarity | None = None
    timing: Timing | None = None
    environment: Environment

    @classmethod
    def from_disk(cls, data: Mapping[str, Any]) -> ResultRecord:
        """Validate a record read from a file, upgrading it from an older schema version first."""
        return cls.model_validate(upgrade(data, SCHEMA_VERSION, RESULT_UPGRADES, "result record"))

    @property
    def key(self) -> UnitKey:
        return UnitKey(self.task.id, self.task.version, self.method.id, self.backbone.name,
                       self.backbone.layer_setting, self.method.hp_tag, self.subject, self.seed)

    @property
    def config_hash(self) -> str:
        return self.method.config_hash

    @property
    def main_score(self) -> float:
        """The score of the task's main metric."""
        return self.scores[self.task.main_score]

    @property
    def layer_choice(self) -> Literal["fixed", "selected", "combined"]:
        """How the layer was settled: ``fixed`` (one layer given), ``selected`` (one of several,
        on validation) or ``combined`` (several mixed)."""
        return "combined" if self.report.combines_layers else self.backbone.layer_choice

    @property
    def layer_kind(self) -> Literal["final", "fixed", "selected", "combined"]:
        """:attr:`layer_choice`, with ``final`` for a fixed layer that is the backbone's final embedding."""
        choice = self.layer_choice
        return "final" if choice == "fixed" and self.backbone.layers[0].is_final else choice


class TaskIdentity(TypedDict):
    """The task of an analysis record: its id and version name the record's folder."""

    id: Annotated[str, Field(pattern=TASK_ID_PATTERN)]
    version: Annotated[int, Field(strict=True, ge=0)]
    __pydantic_config__ = ConfigDict(extra="allow")  # type: ignore[misc]


class AnalysisRecord(_Section):
    """Schema of an analysis file (version 1): what was analysed and the numbers it gave.

    ``config`` identifies the analysis (method, backbone, fractions...), ``results`` holds its
    numbers, and ``inputs`` how they were obtained (result files used, data fingerprints).
    """

    schema_version: Literal[1] = ANALYSIS_SCHEMA_VERSION
    kind: Literal["data-scaling", "backbone-scaling", "rsa"]
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
    created: str
    task: TaskIdentity
    config: dict[str, Any]
    results: dict[str, Any]
    inputs: dict[str, Any] = Field(default_factory=dict)
    environment: Environment

    @classmethod
    def from_disk(cls, data: Mapping[str, Any]) -> AnalysisRecord:
        """Validate an analysis record read from a file."""
        return cls.model_validate(upgrade(data, ANALYSIS_SCHEMA_VERSION, {}, "analysis record"))

    def relative_path(self) -> Path:
        return analysis_folder(self.task["id"], self.task["version"], self.kind) / f"{self.name}.json"


def analysis_folder(task: str, version: int, kind: str) -> Path:
    """Folder of the analysis records of one kind, relative to the results root."""
    return Path(ANALYSES_DIR, task, f"v{version}", kind)


# --- upgrades ------------------------------------------------------------------------------------

Upgrade = Callable[[dict[str, Any]], dict[str, Any]]

#: v1 report keys that became fields of :class:`AlignerReport`, as they were
_V1_REPORT_FIELDS = ("validation_metric", "selected_epoch", "validation_by_epoch", "n_parameters")
#: v1 validation-curve keys that described the layer rather than a parameter tried
_V1_LAYER_DESCRIPTORS = ("index", "relative_depth")


def _report_v1_to_v2(report: dict[str, Any]) -> dict[str, Any]:
    """A version-1 report (free keys) as an :class:`AlignerReport`."""
    report = dict(report)
    out: dict[str, Any] = {name: report.pop(name) for name in _V1_REPORT_FIELDS if name in report}
    if "layer" in report:
        out["layers"] = [{"layer": report.pop("layer")}]
    elif "layers" in report:
        weights = report.pop("layer_weights", [None] * len(report["layers"]))
        out["layers"] = [{"layer": layer, "weight": w} for layer, w in zip(report.pop("layers"), weights)]
    curve = report.pop("validation_curve", [])
    out["validation_curve"] = [
        {"params": {k: v for k, v in point.items() if k != "score" and k not in _V1_LAYER_DESCRIPTORS},
         "score": point["score"]} for point in curve]
    if "alpha" in report:  # ridge's validation-selected regularisation
        out["selected"] = {"alpha": report.pop("alpha")}
    if len({point["params"].get("layer") for point in out["validation_curve"]}) > 1 and out.get("layers"):
        out.setdefault("selected", {})["layer"] = out["layers"][0]["layer"]["name"]
    out["details"] = report
    return out


def _result_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    report = dict(data.get("report", {}))
    data["alternatives"] = report.pop("alternatives", {})
    data["test_repetitions"] = report.pop("test_repetitions", {})
    data["report"] = _report_v1_to_v2(report)
    data["schema_version"] = 2
    return data


def _result_v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    return dict(data) | {"backbone": dict(data["backbone"]) | {"views": []}, "schema_version": 3}


def _result_v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    return dict(data) | {"schema_version": 4}  # every new field's default describes a version-3 record


#: version -> function upgrading a record of that version by one version
RESULT_UPGRADES: dict[int, Upgrade] = {1: _result_v1_to_v2, 2: _result_v2_to_v3, 3: _result_v3_to_v4}


def upgrade(data: Mapping[str, Any], current: int, upgrades: Mapping[int, Upgrade], kind: str) -> dict[str, Any]:
    """Bring a record's JSON from its ``schema_version`` to ``current``, one version at a time."""
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or not (version == current or version in upgrades):
        newer = isinstance(version, int) and not isinstance(version, bool) and version > current
        raise DataError(f"This {kind} has schema version {version!r}; this eegbench reads versions "
                        f"{sorted({*upgrades, current})}" + ("; upgrade eegbench to read it." if newer else "."))
    out = dict(data)
    while out["schema_version"] != current:
        try:
            out = upgrades[out["schema_version"]](out)
        except (KeyError, TypeError, AttributeError, ValueError) as err:  # a malformed old record
            raise DataError(f"This {kind} of schema version {version} cannot be upgraded: it lacks or mangles "
                            f"{err}.") from None
    return out


def read_record(path: Path, model: type[ResultRecord] | type[AnalysisRecord], kind: str) -> Any:
    """Read, upgrade and validate a JSON record; unreadable, foreign or invalid files raise DataError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # ValueError: not JSON, or not UTF-8 (e.g. cut in a character)
        raise DataError(f"{kind} {path} is unreadable: {err}") from err
    if not isinstance(data, dict):
        raise DataError(f"{kind} {path} holds a JSON {type(data).__name__}, not a record.")
    try:
        return model.from_disk(data)
    except DataError as err:
        raise DataError(f"{kind} {path}: {err}") from None
    except ValidationError as err:
        raise DataError(describe_validation_error(err, f"{kind} {path}")) from None
