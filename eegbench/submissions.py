"""The submission API: how an alignment method plugs into eegbench.

A submission is a folder ``submissions/<id>/`` with

* ``submission.yaml``: metadata (id, name, authors, citation, license, description, supported
  tasks, the features it needs, and ``entrypoint: "<module>:<class>"``);
* a Python module holding a :class:`Method` subclass.

The harness calls :meth:`Method.fit_many` with one :class:`TrainingData` per run unit. That data
holds only training responses, training image features of the layers the method asked for, and a
concept-disjoint validation split carved from the training concepts. The method returns one
:class:`Aligner` per unit.

A submission's code never runs in the harness's process (:mod:`eegbench.isolation`): it is
imported and fitted in a worker process; its fitted aligners are pickled and loaded by two other
workers, one that embeds the test responses and one that embeds the gallery, each receiving its
rows in an order only the harness knows. The harness alone restores the orders, checks that the
embeddings are inductive, computes the similarities and scores them. On a transductive task one
worker receives both sets, each in its own hidden order, in one call of
:meth:`Aligner.embed_test_batch`.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eegbench._check import InvalidInputError, describe_validation_error, unknown_name
from eegbench._io import hash_json, sha256_file
from eegbench._paths import submission_dirs
from eegbench.identifiers import ID_PATTERN
from eegbench.backbones.base import BackboneLayers, LayerRef
from eegbench.data.base import RecordingInfo
from eegbench.reports import AlignerReport, LayerUse, RecordedLayer, ValidationPoint
from eegbench.views import Downscale, GaussianBlur, GaussianNoise, ImageView, Mosaic

__all__ = [
    # what a method implements and returns
    "Method", "Aligner", "AlignerReport", "LayerUse", "RecordedLayer", "ValidationPoint", "NoHyperparameters",
    "ImageView", "GaussianBlur", "GaussianNoise", "Downscale", "Mosaic",
    # what it is given
    "TrainingData", "Split", "score_on_validation",
    # how the harness finds submissions
    "SubmissionMeta", "Submission", "submission_folders", "list_submissions", "registered_code_hash", "read_meta",
    "code_hash", "load_submission", "import_method",
]


@dataclass(frozen=True)
class Split:
    """Responses of one part of the training data. The arrays are read-only: the units of a run
    share them (copy before changing anything in place).

    Attributes
    ----------
    responses : numpy.ndarray
        ``(n_samples, channels, times)`` float32, normalised as the task says.
    image_index : numpy.ndarray
        ``(n_samples,)`` row of :attr:`TrainingData.features` arrays each response belongs to.
    subjects : numpy.ndarray
        ``(n_samples,)`` subject label (``"sub-01"``...) of each response: several subjects in
        inter-subject and joint training, for subject-aware methods.
    """

    responses: np.ndarray
    image_index: np.ndarray
    subjects: np.ndarray

    def __len__(self) -> int:
        return len(self.responses)


@dataclass(frozen=True)
class TrainingData:
    """Everything a method may see for one run unit. There is no test data in here.

    Attributes
    ----------
    train, val : Split
        Fitting data and the concept-disjoint validation split (for any selection).
    features : dict of str to numpy.ndarray
        ``(n_training_images, dim)`` features per requested layer, keyed by ``LayerRef.key``.
    image_concepts : numpy.ndarray
        Concept id of each training image.
    layers : list of LayerRef
        The resolved layers of :attr:`features`, as returned by :meth:`Method.feature_layers`.
    info : RecordingInfo
        Channels, sampling rate and time axis of the responses (after the task's selection).
    validation_metric : str
        The task's metric for validation selection (``"top5"``...).
    seed : int
        Seed of this unit; use it for every random choice.
    device : torch.device
        Where to train.
    unit : dict
        Which unit this is (task, training subjects...), for logging only.
    views : dict of str to dict of str to numpy.ndarray
        Features of the views of the training images the method declared
        (:meth:`Method.image_views`): ``views[view.key][layer_key]``, rows as in :attr:`features`.
    """

    train: Split
    val: Split
    features: Mapping[str, np.ndarray]
    image_concepts: np.ndarray
    layers: Sequence[LayerRef]
    info: RecordingInfo
    validation_metric: str
    seed: int
    device: torch.device
    unit: dict = field(default_factory=dict)
    views: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)

    def all(self) -> Split:
        """Training and validation responses together, e.g. to refit after a selection."""
        return Split(np.concatenate([self.train.responses, self.val.responses]),
                     np.concatenate([self.train.image_index, self.val.image_index]),
                     np.concatenate([self.train.subjects, self.val.subjects]))


class Aligner(ABC):
    """A fitted method: embeds brain responses and image features into one space.

    Embeddings are a numpy array (or torch tensor) of real floating-point numbers, one row per
    input, ``(n, dim)`` with ``dim >= 1``, and finite; anything else (integers, booleans, complex
    numbers, NaN or infinity, a list) is refused with an error that says what was found, never cast
    (see :func:`eegbench.metrics.check_embeddings`).

    Two inference tracks (a task's ``inference``):

    * **inductive** (the main board): the harness calls :meth:`embed_brain_of` on the test
      responses and :meth:`embed_images` on the gallery, in separate workers, and checks that each
      row's embedding depends on that row alone;
    * **transductive** (its own track and tables): the harness calls :meth:`embed_test_batch`
      once with the whole test batch, responses and gallery together, so that a method may
      calibrate on the batch's statistics (test-time whitening, CSLS...). The default returns the
      inductive embeddings, so every method runs on both tracks.
    """

    @abstractmethod
    def embed_brain(self, responses: np.ndarray) -> np.ndarray:
        """``(n, channels, times)`` responses -> ``(n, dim)`` floating-point embeddings."""

    def embed_brain_of(self, responses: np.ndarray, subject: str) -> np.ndarray:
        """What the harness calls to embed test responses, all recorded from ``subject``.

        The default ignores the subject and calls :meth:`embed_brain`. Subject-aware methods (a
        per-subject layer or router) override it; in the inter-subject protocol ``subject`` was
        never seen in training, and the method must say what it does then.
        """
        return self.embed_brain(responses)

    @abstractmethod
    def embed_images(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Per-layer ``(n, d)`` image features -> ``(n, dim)`` floating-point embeddings."""

    def embed_test_batch(self, responses: np.ndarray, features: Mapping[str, np.ndarray],
                         subject: str) -> tuple[np.ndarray, np.ndarray]:
        """Transductive track only: embed the whole test batch, brain responses and gallery, in one call.

        ``responses`` are ``(n, channels, times)`` test responses of ``subject``, ``features`` the
        per-layer ``(n_gallery, d)`` features of the gallery; each set comes in its own hidden
        order, and which response saw which image is not given. Returns ``(brain, images)``
        embeddings, one row per input row in the order given. The harness ranks the gallery for
        each response by the cosine similarity of these rows, so a calibrated similarity must be
        expressed through the embeddings (see ``submissions/tta``). Inductive tasks never call
        this; the default embeds each side inductively.
        """
        return self.embed_brain_of(responses, subject), self.embed_images(features)

    def report(self) -> AlignerReport:
        """What the aligner used, chose and measured: its layer(s) with their weights, the validation
        curve of any selection, the chosen parameters and epoch, its parameter count and free
        ``details``. The leaderboard reads these fields; nothing else of the report is interpreted."""
        return AlignerReport()

    def alternatives(self) -> dict[str, Aligner]:
        """Other fitted variants the harness should also score (e.g. ``"last_epoch"`` when the
        epoch was selected on validation); their scores are recorded beside the main ones."""
        return {}


class NoHyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Method(ABC):
    """Base class of an alignment method.

    Class attributes
    ----------------
    Hyperparameters : pydantic model
        The method's hyperparameters with defaults. The harness fills them from the task file's
        ``training`` section (fields the model defines) and command-line overrides, and records
        the result with every score.
    accepts_layer : bool
        Whether ``--layer`` applies to this method.
    """

    Hyperparameters: ClassVar[type[BaseModel]] = NoHyperparameters
    accepts_layer: ClassVar[bool] = False

    def __init__(self, hyperparameters: BaseModel | None = None, layer: str | None = None) -> None:
        self.hp = hyperparameters if hyperparameters is not None else self.Hyperparameters()
        self.layer = layer

    @abstractmethod
    def feature_layers(self, backbone: BackboneLayers) -> list[LayerRef]:
        """The layers whose image features the method needs (resolved with ``backbone.resolve``).

        ``backbone`` holds the layer list only (no weights): ``backbone.layers``,
        ``backbone.resolve(request)`` and ``backbone.resolve_layers(requests)``.
        """

    def image_views(self) -> list[ImageView]:
        """Views of the training images to train against besides the images themselves (default none).

        Each view (:class:`~eegbench.views.GaussianBlur`, :class:`~eegbench.views.GaussianNoise`,
        :class:`~eegbench.views.Downscale`, :class:`~eegbench.views.Mosaic`) is extracted for the layers of :meth:`feature_layers` and given as ``TrainingData.views``. The
        test gallery is always the original images.
        """
        return []

    def fit(self, data: TrainingData) -> Aligner:
        """Fit on one unit's training data. Implement this, or :meth:`fit_many` to fit units together."""
        raise NotImplementedError(f"{type(self).__name__} implements neither fit nor fit_many.")

    def layer_setting(self, layers: Sequence[LayerRef]) -> str:
        """How results are labelled and filed: the one layer used, or ``"auto"`` when the method
        selects among several on validation. Override for methods that combine layers."""
        return layers[0].key if len(layers) == 1 else "auto"

    def fit_many(self, units: Sequence[TrainingData]) -> list[Aligner]:
        """Fit every unit and return one aligner per unit, in order; this is what the harness calls.

        The default calls :meth:`fit` per unit. A method that trains units together (much faster
        for small models) implements this instead of :meth:`fit`.
        """
        return [self.fit(unit) for unit in units]

    @classmethod
    def implements_fitting(cls) -> bool:
        """Whether the class overrides :meth:`fit` or :meth:`fit_many` (one of them is required)."""
        return cls.fit is not Method.fit or cls.fit_many is not Method.fit_many


class SubmissionMeta(BaseModel):
    """The schema of ``submission.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN)
    name: str
    version: str = "1"
    authors: list[str] = Field(min_length=1)
    description: str
    citation: str
    license: str
    tasks: list[str] = Field(default_factory=lambda: ["*"])
    features: str
    #: for a submission that reproduces a published method: every change the honest protocol (or the
    #: harness's trainer) forces on it, so that readers know what the board's number measures
    deviations: str | None = None
    entrypoint: str = Field(pattern=r"^[A-Za-z_][\w]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Submission:
    """A discovered submission as the harness knows it: metadata, folder and code hash.

    The harness never imports a submission's code: the method class is imported only inside the
    worker processes of :mod:`eegbench.isolation` (see :func:`import_method`).
    """

    meta: SubmissionMeta
    folder: Path
    code_sha256: str

    @property
    def id(self) -> str:
        return self.meta.id

    def supports(self, task_id: str) -> bool:
        return any(fnmatch.fnmatch(task_id, pattern) for pattern in self.meta.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta.model_dump(mode="json"), "folder": str(self.folder), "code_sha256": self.code_sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Submission:
        return cls(SubmissionMeta.model_validate(data["meta"]), Path(data["folder"]), str(data["code_sha256"]))


def submission_folders() -> dict[str, Path]:
    """Every submission folder on the search path, by id (the first of a name wins: shipped ones first)."""
    found: dict[str, Path] = {}
    for root in submission_dirs():
        for meta in sorted(root.glob("*/submission.yaml")):
            found.setdefault(meta.parent.name, meta.parent)
    return found


def list_submissions() -> list[str]:
    """Ids of every submission folder on the search path."""
    return sorted(submission_folders())


def registered_code_hash(submission_id: str) -> str | None:
    """The code hash of the registered submission ``submission_id`` (``None`` if none is registered).

    Results are keyed by id *and* code: a record whose ``method.code_sha256`` differs from this
    was computed by other code than the registered submission's.
    """
    folder = submission_folders().get(submission_id)
    return code_hash(folder) if folder is not None else None


def read_meta(folder: Path) -> SubmissionMeta:
    """Parse and validate ``folder/submission.yaml``."""
    path = folder / "submission.yaml"
    if not path.is_file():
        raise InvalidInputError(f"{folder} has no submission.yaml; see CONTRIBUTING.md for the layout.")
    try:
        raw = yaml.safe_load(path.read_text())
        meta = SubmissionMeta.model_validate(raw)
    except yaml.YAMLError as err:
        raise InvalidInputError(f"{path} is not valid YAML: {err}") from err
    except ValidationError as err:
        raise InvalidInputError(describe_validation_error(err, str(path))) from None
    if meta.id != folder.name:
        raise InvalidInputError(f"{path} declares id {meta.id!r}; it must match the folder name {folder.name!r}.")
    return meta


def code_hash(folder: Path) -> str:
    """sha256 over the submission's Python files and metadata (names and contents)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".py", ".yaml", ".yml")
                   and "__pycache__" not in p.parts)
    return hash_json([[str(p.relative_to(folder)), sha256_file(p)] for p in files])


def load_submission(id_or_folder: str | Path) -> Submission:
    """Find a submission by id, or from a folder path, and read its metadata (its code is not run).

    A folder whose id is a registered submission's (see :func:`list_submissions`) must hold the
    same code: results are filed by id, so another folder's code may not write them.
    """
    text = str(id_or_folder)
    registered = submission_folders()
    if isinstance(id_or_folder, str) and text in registered:  # a registered id wins over a folder of that name
        folder = registered[text]
    elif "/" in text or Path(text).is_dir():
        folder = Path(text)
    else:
        raise unknown_name("method", text, registered, "Add one as submissions/<id>/ (see CONTRIBUTING.md).")
    folder = folder.resolve()
    meta = read_meta(folder)
    module_file = folder / f"{meta.entrypoint.split(':')[0]}.py"
    if not module_file.is_file():
        raise InvalidInputError(f"Entrypoint {meta.entrypoint!r}: {module_file} does not exist.")
    submission = Submission(meta, folder, code_hash(folder))
    owner = registered.get(meta.id)
    if owner is not None and owner.resolve() != folder and code_hash(owner) != submission.code_sha256:
        raise InvalidInputError(
            f"{folder} declares id {meta.id!r}, which is the registered submission in {owner} with other code; "
            "results are filed by id, so choose a new id (folder name and submission.yaml) for your method.")
    return submission


def import_method(submission: Submission) -> type[Method]:
    """Import a submission's method class **in this process**.

    Only worker processes (:mod:`eegbench._worker`) and tests call this: the harness itself never
    runs submission code.
    """
    module_name, class_name = submission.meta.entrypoint.split(":")
    module_file = submission.folder / f"{module_name}.py"
    # a flat module name: pickle re-imports a fitted aligner's class by it in the embedding workers
    qualified = f"eegbench_submission__{submission.id.replace('-', '_')}__{module_name}"
    spec = importlib.util.spec_from_file_location(qualified, module_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        sys.modules.pop(qualified, None)
        raise InvalidInputError(f"Importing {module_file} failed: {type(err).__name__}: {err}") from err
    method_class = getattr(module, class_name, None)
    if not (isinstance(method_class, type) and issubclass(method_class, Method)):
        raise InvalidInputError(f"Entrypoint {submission.meta.entrypoint!r} must name a subclass of "
                                "eegbench.submissions.Method.")
    return method_class


def score_on_validation(aligner: Aligner, data: TrainingData, metric: str | None = None) -> float:
    """Score a fitted aligner on the validation split; higher is better.

    The gallery is the distinct validation images; each validation response must retrieve its
    own image. ``metric`` (default: the task's) is ``"top1"``, ``"top5"`` or ``"mean_rank"``
    (returned negated, so that higher is better for every metric).
    """
    from eegbench.metrics import metric as named_metric, retrieve

    metric = metric or data.validation_metric
    gallery, targets = np.unique(data.val.image_index, return_inverse=True)
    features = {key: array[gallery] for key, array in data.features.items()}
    result = retrieve(aligner.embed_brain(data.val.responses), aligner.embed_images(features), targets)
    return named_metric(metric).selection_score(result)
