"""What protocol choices do to scores: the honest task against the same units with one pitfall on.

Published THINGS numbers differ by protocol choices that eegbench's board forbids (checkpoint or
layer chosen on test accuracy, blurred, centroid or augmented galleries, MVNN whose covariance
includes the test trials) or fixes (the channel set). :func:`run_pitfalls` measures, for one method
and backbone, how much each choice changes top-1 and top-5 on the same units, with a paired 95 % CI
over subjects and test images, and files a :class:`PitfallRecord` under ``<results>/_pitfalls/``.

This module is a dead end of the import graph on purpose: nothing that runs, sweeps or builds the
main tables imports it (``tests/test_architecture.py`` checks), and its records are their own type
in their own folder, which no result loader reads. The leaderboard imports it only inside the
function that adds the section "What protocol choices do to scores" to a task page.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict
from tabulate import tabulate

from eegbench._check import InvalidInputError, unknown_name
from eegbench._io import atomic_write_json, hash_json
from eegbench._paths import DEFAULT_RESULTS_DIR
from eegbench._plots import save_png, subplots
from eegbench._progress import logger
from eegbench.backbones import get_features
from eegbench.data import POSTERIOR_17, Dataset, ImageTable, get_dataset_spec
from eegbench.devices import resolve_device
from eegbench.isolation import FittedAligner, SubmissionSession
from eegbench.metrics import RetrievalResult, metric
from eegbench.plan import DatasetCache, ResolvedRun, check_request, resolve_run, run_target
from eegbench.protocols import (Normalizer, ResponseCache, Unit, noise_covariance_of, test_responses, test_trials,
                                training_data)
from eegbench.provenance import environment, now
from eegbench.records import Environment
from eegbench.results import PITFALLS_DIR
from eegbench.scoring import HiddenScorer, metric_scores
from eegbench.stats import hierarchical_bootstrap_ci
from eegbench.submissions import Split, Submission, TrainingData, load_submission
from eegbench.tasks import Task, load_task
from eegbench.views import Downscale, GaussianBlur, GaussianNoise, ImageView, Mosaic

__all__ = ["PITFALLS", "Pitfall", "PitfallRecord", "PitfallResult", "run_pitfalls", "load_pitfalls",
           "pitfall_section", "summary_table"]

SCHEMA_VERSION = 1
#: the metrics whose change is reported (per-trial hits make them paired)
REPORTED = ("top1", "top5")

#: UBP's 'medium' test gallery: OpenCV kernel 51 (sigma 0.3 * ((51 - 1) / 2 - 1) + 0.8 = 8.0), foveated as
#: the ``ubp`` submission's views (fovea 3.0)
UBP_MEDIUM_BLUR = GaussianBlur(sigma=8.0, fovea=3.0)
#: other exemplars per test concept averaged into a centroid (NICE averages the other THINGS images of a concept)
CENTROID_EXEMPLARS = 4
#: NeuroBridge's four corruptions (the ``neurobridge`` submission's default views), averaged by ``--image_test_aug``
NEUROBRIDGE_VIEWS: tuple[ImageView, ...] = (GaussianBlur(sigma=2.6), GaussianNoise(std=25.0), Downscale(factor=0.1),
                                            Mosaic(block=5.0))


@dataclasses.dataclass(frozen=True)
class Pitfall:
    """One protocol choice: its name, what it changes, which peer code makes it, and its reference."""

    name: str
    title: str
    changes: str
    peers: str
    reference: str


PITFALLS: dict[str, Pitfall] = {p.name: p for p in (
    Pitfall("test-checkpoint", "Checkpoint chosen on test accuracy",
            "the epoch is selected on the test trials (main score) instead of the validation concepts",
            "ATM (best test accuracy per epoch), NeuroBridge (epoch of minimum test loss)",
            "the same training with the epoch selected on validation (same layer)"),
    Pitfall("test-layer", "Layer chosen on test accuracy",
            "per unit, the candidate layer with the best test main score is kept",
            "Shallow Alignment (layer picked by test top-1)",
            "the layer selected on validation"),
    Pitfall("blurred-gallery", "Blurred gallery",
            "the gallery holds foveated-blurred test images (UBP 'medium': kernel 51, sigma 8)",
            "UBP (uncertainty-aware config, tag='medium')",
            "the same aligner on the original test images"),
    Pitfall("centroid-gallery", "Concept-centroid gallery",
            "the gallery holds per test concept the mean feature of other images of that concept",
            "NICE (center_clip.npy)",
            "the same aligner on the original test images"),
    Pitfall("augmented-gallery", "Test-time augmented gallery",
            "the gallery holds the mean of four corrupted views of each test image (blur, noise, downscale, mosaic)",
            "NeuroBridge (--image_test_aug)",
            "the same aligner on the original test images"),
    Pitfall("mvnn-test-covariance", "MVNN with test covariance",
            "the noise covariance of multivariate noise normalisation includes the test trials",
            "Gifford et al.'s official preprocessing",
            "MVNN with the training trials only"),
    Pitfall("channels-63-vs-17", "All channels instead of 17 posterior ones (honest)",
            "the task uses all of the dataset's channels instead of the 17 posterior ones",
            "NICE, ATM (63 channels) vs UBP, NeuroBridge intra, Shallow Alignment (17)",
            "the 17 posterior channels"),
)}


# --- records -----------------------------------------------------------------------------------------------

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnitScores(_Model):
    """One unit's scores with and without the pitfall, and the layers of each where the pitfall fixed them."""

    subject: str
    seed: int
    reference_layer: str | None = None
    pitfall_layer: str | None = None
    reference: dict[str, float]
    pitfall: dict[str, float]


class MetricChange(_Model):
    """A metric with and without the pitfall (fractions, averaged over seeds then subjects), their paired
    difference and its 95 % CI from a hierarchical bootstrap (subjects, then test images)."""

    reference: float
    pitfall: float
    difference: float
    ci: tuple[float, float]


class PitfallResult(_Model):
    """One pitfall's outcome: applied (with its changes) or not applicable (with the reason)."""

    name: str
    status: Literal["applied", "not-applicable"]
    reason: str | None = None
    metrics: dict[str, MetricChange] = {}
    n_subjects: int = 0
    n_units: int = 0
    units: list[UnitScores] = []


class PitfallTask(_Model):
    id: str
    version: int
    hash: str


class PitfallRecord(_Model):
    """What protocol choices do to one (task, method, backbone, layer setting): an analysis record of its
    own type, filed under ``_pitfalls/`` where no result loader looks."""

    schema_version: int = SCHEMA_VERSION
    kind: Literal["protocol-pitfalls"] = "protocol-pitfalls"
    created: str
    task: PitfallTask
    method: str
    method_version: str
    code_sha256: str
    backbone: str
    layer_setting: str
    hyperparameters: dict[str, Any]
    pitfalls: list[PitfallResult]
    environment: Environment

    def relative_path(self) -> Path:
        return Path(PITFALLS_DIR, self.task.id, f"v{self.task.version}", f"{self.method}-{self.backbone}.json")

    def result(self, name: str) -> PitfallResult | None:
        return next((p for p in self.pitfalls if p.name == name), None)


def load_pitfalls(results_dir: str | Path, task: str | None = None, version: int | None = None) -> list[PitfallRecord]:
    """The pitfall records under ``results_dir`` (of one task and version, if given), in path order."""
    root = Path(results_dir) / PITFALLS_DIR
    pattern = f"{task or '*'}/v{version if version is not None else '*'}/*.json"
    return [PitfallRecord.model_validate_json(path.read_text(encoding="utf-8")) for path in sorted(root.glob(pattern))
            if not path.name.startswith(".")]


# --- the harness's pieces, for the units of one configuration ----------------------------------------------

Outcomes = dict[Unit, RetrievalResult]


@dataclasses.dataclass
class _Fit:
    """A configuration fitted on every unit: its resolved run, and per unit the aligner and the normaliser."""

    resolved: ResolvedRun
    aligners: dict[Unit, FittedAligner]
    normalizers: dict[Unit, Normalizer]


class _Bench:
    """Fits configurations of one method on the same units and scores them on galleries, memoised, through
    the run's own pieces (resolution, training data, isolated workers, hidden scoring)."""

    def __init__(self, task: Task, submission: Submission, backbone: str, session: SubmissionSession, *,
                 device: str, subjects: Sequence[str | int] | None, seeds: Sequence[int] | None,
                 data_root: str | Path | None, weights: str | Path | None, overrides: Mapping[str, Any]) -> None:
        self.task, self.submission, self.backbone, self.session = task, submission, backbone, session
        self.device, self.overrides = device, dict(overrides)
        self.options = {"subjects": subjects, "seeds": seeds, "data_root": data_root, "datasets": DatasetCache(),
                        "weights": weights}
        self.model = None
        self._fits: dict[str, _Fit] = {}
        self._features: dict[tuple, dict[str, np.ndarray]] = {}
        self._scores: dict[tuple, Outcomes] = {}
        self._covariances: dict[tuple, np.ndarray] = {}

    def resolve(self, layer: str | None, task: Task | None = None, overrides: Mapping[str, Any] = (),
                subjects: Sequence[str] | None = None) -> ResolvedRun:
        """The run of ``layer`` (on ``task``, with extra ``overrides``, on some of the ``subjects``), its backbone
        loaded once."""
        options = self.options | ({"subjects": subjects} if subjects is not None else {})
        resolved = resolve_run(task or self.task, self.submission, self.backbone, layer, self.overrides | dict(overrides),
                               planner=self.session, device=self.device if self.model is None else None, **options)
        if self.model is None:
            self.model = resolved.model
        return dataclasses.replace(resolved, model=self.model)

    def with_overrides(self, resolved: ResolvedRun, overrides: Mapping[str, Any]) -> ResolvedRun:
        """``resolved`` again with extra hyperparameter ``overrides``."""
        return self.resolve(resolved.layer, resolved.task, overrides, subjects=resolved.subjects)

    def features(self, resolved: ResolvedRun, part: str, view: ImageView | None = None) -> dict[str, np.ndarray]:
        """Normalised features of an image set (:func:`_image_set`), or of a view of it, for the run's layers."""
        key = (part, view.key if view else None, tuple(ref.key for ref in resolved.plan.layers),
               resolved.task.features.image_size)
        if key not in self._features:
            root, images = _image_set(resolved, part)
            arrays = get_features(self.model, root, images.files, resolved.plan.layers, view=view).arrays
            if resolved.task.features.normalization == "l2":
                arrays = {k: _l2(v) for k, v in arrays.items()}
            self._features[key] = arrays
        return self._features[key]

    def fit(self, resolved: ResolvedRun, test_as_validation: bool = False, test_covariance: bool = False) -> _Fit:
        """Fit every unit of ``resolved`` (once per configuration), optionally with the test split as validation
        or (``normalization: mvnn``) with noise covariances that include the test trials."""
        key = hash_json({"task": resolved.task.content_hash, "hp": resolved.plan.hyperparameters,
                         "layers": [r.key for r in resolved.plan.layers], "test": test_as_validation,
                         "units": [[unit.subject, unit.seed] for unit in resolved.units],
                         "test_covariance": test_covariance})
        if key in self._fits:
            return self._fits[key]
        task, dataset = resolved.task, resolved.dataset
        train = self.features(resolved, "train")
        views = {view.key: self.features(resolved, "train", view) for view in resolved.plan.views}
        cache = _SharedCovarianceCache(self.covariance, with_test=test_covariance)
        groups: dict[tuple, list[Unit]] = defaultdict(list)  # the units of a joint fit share it
        for unit in resolved.units:
            groups[unit.fit_key].append(unit)
        prepared = {}
        for fit_key, units in groups.items():
            data, normalizer = training_data(task, dataset, units[0], train, resolved.plan.layers,
                                             resolve_device(self.device), resolved.training_images[units[0]],
                                             cache=cache, views=views)
            if test_as_validation:
                data = self._test_as_validation(resolved, data, units, normalizer)
            prepared[fit_key] = (data, normalizer)
        fitted = self.session.fit(task.training, resolved.overrides, resolved.layer,
                                  [data for data, _ in prepared.values()])
        by_key = dict(zip(prepared, fitted))
        self._fits[key] = _Fit(resolved, {u: by_key[u.fit_key] for u in resolved.units},
                               {u: prepared[u.fit_key][1] for u in resolved.units})
        return self._fits[key]

    def _test_as_validation(self, resolved: ResolvedRun, data: TrainingData, units: list[Unit],
                            normalizer: Normalizer) -> TrainingData:
        """``data`` whose validation split is the test split, as ATM and NeuroBridge select their checkpoint: the
        evaluated subjects' averaged, normalised test responses, the test images' features appended to the
        features (and views) with ``image_index`` pointing at them, and the task's main score as the metric.
        The fitting part is untouched, so a method that selects its epoch on validation trains the same way."""
        task, dataset = resolved.task, resolved.dataset
        n_train, n_test = len(dataset.train_images), len(dataset.test_images)
        test = self.features(resolved, "test")
        responses = np.concatenate([test_responses(task, dataset, unit, normalizer) for unit in units])
        val = Split(responses, np.tile(n_train + np.arange(n_test), len(units)),
                    np.repeat([unit.subject for unit in units], n_test))
        views = {view.key: {k: np.concatenate([data.views[view.key][k], v])
                            for k, v in self.features(resolved, "test", view).items()} for view in resolved.plan.views}
        return dataclasses.replace(
            data, val=val, features={k: np.concatenate([data.features[k], test[k]]) for k in data.features},
            image_concepts=_concept_ids([*dataset.train_images.concepts, *dataset.test_images.concepts]),
            validation_metric=task.main_score, views=views)

    def covariance(self, task: Task, dataset: Dataset, subject: str, split: str) -> np.ndarray:
        """The noise covariance of a subject's training or test trials (``normalization: mvnn``), computed once."""
        key = (task.content_hash, subject, split)
        if key not in self._covariances:
            self._covariances[key] = noise_covariance_of(task, dataset, subject, split)
        return self._covariances[key]

    def score(self, fit: _Fit, gallery: str = "original") -> Outcomes:
        """Each unit's retrieval of ``gallery`` (:data:`GALLERIES`) by its fitted aligner, scored hidden."""
        key = (id(fit), gallery)
        if key not in self._scores:
            images = GALLERIES[gallery](self, fit.resolved)
            scorer = HiddenScorer(self.session)
            task, dataset = fit.resolved.task, fit.resolved.dataset
            scores = {}
            for unit in fit.resolved.units:
                responses, targets = _test_set(task, dataset, unit, fit.normalizers[unit])
                scores[unit] = scorer.score(fit.aligners[unit], None, responses, images, subject=unit.subject,
                                            targets=targets)[0]
            self._scores[key] = scores
        return self._scores[key]


def _test_set(task: Task, dataset: Dataset, unit: Unit, normalizer: Normalizer) -> tuple[np.ndarray, np.ndarray | None]:
    """The test responses a task scores (repetitions averaged, or every trial on its own) and, for single trials,
    the gallery index of each, as the runner scores its headline."""
    if task.repetitions.test == "single":
        return test_trials(task, dataset, unit, normalizer)
    return test_responses(task, dataset, unit, normalizer), None


class _SharedCovarianceCache(ResponseCache):
    """Training responses of one fit, their subjects whitened (``normalization: mvnn``) with covariances computed
    once for every fit of the run; with ``with_test``, as in Gifford et al.'s official THINGS-EEG2 preprocessing,
    each subject's covariance is the mean of its training and its test partition's covariances."""

    def __init__(self, covariance_of: Callable[[Task, Dataset, str, str], np.ndarray], *, with_test: bool) -> None:
        super().__init__()
        self._covariance_of, self._with_test = covariance_of, with_test

    def covariance(self, task: Task, dataset: Dataset, subject: str) -> np.ndarray:
        train = self._covariance_of(task, dataset, subject, "train")
        return (train + self._covariance_of(task, dataset, subject, "test")) / 2 if self._with_test else train


def _concept_ids(concepts: Sequence[str]) -> np.ndarray:
    """Integer code per image of its concept (codes in order of first appearance), across image sets."""
    lookup: dict[str, int] = {}
    return np.array([lookup.setdefault(concept, len(lookup)) for concept in concepts], dtype=np.int64)


def _l2(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def _image_set(resolved: ResolvedRun, part: str) -> tuple[Path, ImageTable]:
    """The image root and images of ``train``, ``test`` or ``exemplars`` (other images of the test concepts)."""
    dataset = resolved.dataset
    if part == "exemplars":
        spec = get_dataset_spec(dataset.name)
        options = spec.options.model_validate(resolved.task.dataset.options)
        return spec.exemplars(options, dataset, CENTROID_EXEMPLARS)
    return dataset.image_root, dataset.train_images if part == "train" else dataset.test_images


def _centroid_gallery(bench: _Bench, resolved: ResolvedRun) -> dict[str, np.ndarray]:
    """Per test image, the mean of the (normalised) features of the other exemplars of its concept."""
    concepts = np.asarray(_image_set(resolved, "exemplars")[1].concepts)
    rows = [concepts == concept for concept in resolved.dataset.test_images.concepts]
    return {key: np.stack([array[mine].mean(0) for mine in rows])
            for key, array in bench.features(resolved, "exemplars").items()}


def _mean_of_views(bench: _Bench, resolved: ResolvedRun) -> dict[str, np.ndarray]:
    views = [bench.features(resolved, "test", view) for view in NEUROBRIDGE_VIEWS]
    return {key: np.mean([view[key] for view in views], axis=0) for key in views[0]}


#: how each gallery is built from a run's test images
GALLERIES: dict[str, Callable[[_Bench, ResolvedRun], dict[str, np.ndarray]]] = {
    "original": lambda bench, resolved: bench.features(resolved, "test"),
    "blurred": lambda bench, resolved: bench.features(resolved, "test", UBP_MEDIUM_BLUR),
    "augmented": _mean_of_views,
    "centroid": _centroid_gallery,
}


# --- the pitfalls ------------------------------------------------------------------------------------------

class NotApplicable(Exception):
    """A pitfall that cannot be measured on this configuration (the message says why)."""


#: per-unit pitfall and reference outcomes, and where layers were fixed each unit's (reference, pitfall) layers
Paired = tuple[Outcomes, Outcomes, dict[Unit, tuple[str, str]]]


def _selected_layers(fit: _Fit) -> dict[Unit, str] | None:
    """The layer each unit's aligner selected on validation; None when the method selects none."""
    chosen = {unit: aligner.report.selected.get("layer") for unit, aligner in fit.aligners.items()}
    return None if None in chosen.values() else {unit: str(layer) for unit, layer in chosen.items()}


def _at_selected_layers(bench: _Bench, base: _Fit, measure: Callable[[ResolvedRun], tuple[Outcomes, Outcomes]]) -> Paired:
    """Pitfall and reference outcomes with each unit's layer fixed to the one the honest run selected on validation,
    so that only the pitfall changes (runs grouped by layer, each on the subjects that selected it); for a method
    that selects no layer, at the honest run's layer request."""
    selected = _selected_layers(base)
    layers = selected or {unit: base.resolved.layer for unit in base.resolved.units}
    pitfall, reference = {}, {}
    for layer in sorted(set(layers.values()), key=str):
        mine = [unit for unit, chosen in layers.items() if chosen == layer]
        with_pitfall, without = measure(bench.resolve(layer, subjects=sorted({unit.subject for unit in mine})))
        for unit in mine:
            pitfall[unit], reference[unit] = with_pitfall[unit], without[unit]
    return pitfall, reference, {u: (layer, layer) for u, layer in selected.items()} if selected else {}


def _test_checkpoint(bench: _Bench, base: _Fit) -> Paired:
    """Per unit, the epoch selected on the test split against the epoch selected on validation, at the layer the
    honest run selected."""
    if "select_epoch" not in base.resolved.plan.hyperparameters:
        raise NotApplicable(f"method {bench.submission.id!r} has no validation-selected epoch (select_epoch)")

    def measure(resolved: ResolvedRun) -> tuple[Outcomes, Outcomes]:
        resolved = bench.with_overrides(resolved, {"select_epoch": True})
        on_test = bench.fit(resolved, test_as_validation=True)
        if any(aligner.report.selected_epoch is None for aligner in on_test.aligners.values()):
            raise NotApplicable(f"method {bench.submission.id!r} reported no validation-selected epoch")
        return bench.score(on_test), bench.score(bench.fit(resolved))

    return _at_selected_layers(bench, base, measure)


def _test_layer(bench: _Bench, base: _Fit) -> Paired:
    """Per unit, the candidate layer with the best test main score against the validation-selected one, each
    run honestly with its layer fixed."""
    candidates = [ref.name for ref in base.resolved.plan.layers]
    if len(candidates) < 2:
        raise NotApplicable(f"the method was given a single layer ({candidates[0]}): nothing to select")
    selected = _selected_layers(base)
    if selected is None:
        raise NotApplicable(f"method {bench.submission.id!r} uses several layers without selecting one")
    runs = {layer: bench.score(bench.fit(bench.resolve(layer))) for layer in candidates}
    main = metric(base.resolved.task.main_score)
    pitfall, reference, layers = {}, {}, {}
    for unit in base.resolved.units:
        best = max(candidates, key=lambda layer: main.score(runs[layer][unit]))  # ties: the first candidate
        pitfall[unit], reference[unit] = runs[best][unit], runs[selected[unit]][unit]
        layers[unit] = (selected[unit], best)
    return pitfall, reference, layers


def _gallery(name: str) -> Callable[[_Bench, _Fit], Paired]:
    def measure(bench: _Bench, base: _Fit) -> Paired:
        if name == "centroid" and get_dataset_spec(base.resolved.dataset.name).exemplars is None:
            raise NotApplicable(f"dataset {base.resolved.dataset.name!r} holds no other images of the test concepts "
                                "(NICE's centroids come from the THINGS database)")
        return bench.score(base, name), bench.score(base), {}
    return measure


def _mvnn_test_covariance(bench: _Bench, base: _Fit) -> Paired:
    n_repetitions = base.resolved.dataset.load_subject(base.resolved.units[0].subject).train.shape[1]
    if n_repetitions < 2:
        raise NotApplicable("the dataset has fewer than 2 training repetitions to estimate a noise covariance")
    mvnn = bench.task if bench.task.normalization == "mvnn" else bench.task.with_overrides(normalization="mvnn")

    def measure(resolved: ResolvedRun) -> tuple[Outcomes, Outcomes]:
        resolved = bench.resolve(resolved.layer, mvnn, subjects=resolved.subjects)
        return bench.score(bench.fit(resolved, test_covariance=True)), bench.score(bench.fit(resolved))

    return _at_selected_layers(bench, base, measure)


def _channels(bench: _Bench, base: _Fit) -> Paired:
    available = base.resolved.dataset.info.ch_names
    if set(available) <= set(POSTERIOR_17):
        raise NotApplicable(f"dataset {base.resolved.dataset.name!r} records only the 17 posterior channels")
    if not set(POSTERIOR_17) <= set(available):
        raise NotApplicable(f"dataset {base.resolved.dataset.name!r} lacks some of the 17 posterior channels")
    layer = base.resolved.layer
    runs = [bench.score(bench.fit(bench.resolve(layer, bench.task.with_overrides(channels=channels))))
            for channels in ("all", list(POSTERIOR_17))]
    return runs[0], runs[1], {}


MEASURES: dict[str, Callable[[_Bench, _Fit], Paired]] = {
    "test-checkpoint": _test_checkpoint, "test-layer": _test_layer, "blurred-gallery": _gallery("blurred"),
    "centroid-gallery": _gallery("centroid"), "augmented-gallery": _gallery("augmented"),
    "mvnn-test-covariance": _mvnn_test_covariance, "channels-63-vs-17": _channels,
}


# --- statistics ----------------------------------------------------------------------------------------------

def paired_change(pitfall: Outcomes, reference: Outcomes, name: str, *, seed: int = 0) -> MetricChange:
    """The change of top-``k`` from ``reference`` to ``pitfall`` on the same trials: per subject the seed-averaged
    per-trial differences, their mean over subjects and a hierarchical bootstrap CI (the same resample of
    subjects and test images applies to both, so the CI is paired)."""
    k = metric(name).k
    differences: dict[str, list[np.ndarray]] = defaultdict(list)
    scores: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for unit in reference:
        differences[unit.subject].append(pitfall[unit].hits(k) - reference[unit].hits(k))
        scores[unit.subject].append((reference[unit].top_k(k), pitfall[unit].top_k(k)))
    per_subject = {s: np.mean(d, axis=0) for s, d in sorted(differences.items())}
    low, high = hierarchical_bootstrap_ci(per_subject, seed=seed)
    means = np.mean([np.mean(v, axis=0) for v in scores.values()], axis=0)
    return MetricChange(reference=round(float(means[0]), 6), pitfall=round(float(means[1]), 6),
                        difference=round(float(np.mean([d.mean() for d in per_subject.values()])), 6),
                        ci=(round(low, 6), round(high, 6)))


def _result(name: str, paired: Paired, metrics: Sequence[str]) -> PitfallResult:
    pitfall, reference, layers = paired
    units = [UnitScores(subject=u.subject, seed=u.seed, reference_layer=layers.get(u, (None, None))[0],
                        pitfall_layer=layers.get(u, (None, None))[1], reference=metric_scores(reference[u], metrics),
                        pitfall=metric_scores(pitfall[u], metrics)) for u in reference]
    return PitfallResult(name=name, status="applied", metrics={m: paired_change(pitfall, reference, m) for m in metrics},
                         n_subjects=len({u.subject for u in reference}), n_units=len(reference), units=units)


# --- entry point ---------------------------------------------------------------------------------------------

def check_pitfalls(only: Sequence[str] | None) -> list[str]:
    """The requested pitfall names, in :data:`PITFALLS` order (all of them by default)."""
    if not only:
        return list(PITFALLS)
    for name in only:
        if name not in PITFALLS:
            raise unknown_name("pitfall", name, list(PITFALLS), "Pass names from this list, separated by commas.")
    return [name for name in PITFALLS if name in only]


def run_pitfalls(method: str | Submission = "shallow", task: str | Task = "synthetic-intra",
                 backbone: str | None = None, layer: str | None = None, *, only: Sequence[str] | None = None,
                 results_dir: str | Path = DEFAULT_RESULTS_DIR, device: str = "auto", isolation: str = "process",
                 subjects: Sequence[str | int] | None = None, seeds: Sequence[int] | None = None,
                 hyperparameters: Mapping[str, Any] | None = None, data_root: str | Path | None = None,
                 weights: str | Path | None = None, timeout: float | None = None) -> tuple[PitfallRecord, Path]:
    """Measure what each protocol pitfall does to a method's scores, on the same units, and file the record.

    The honest run of (``task``, ``method``, ``backbone``, ``layer``; backbone and layer default to the task's
    target, as for :func:`eegbench.run`) is fitted once; each pitfall then
    changes one thing (:data:`PITFALLS`) and is compared with its reference on the same test trials.
    Returns the :class:`PitfallRecord` and the path it was written to
    (``<results_dir>/_pitfalls/<task>/v<version>/<method>-<backbone>.json``).
    """
    names = check_pitfalls(only)
    task = task if isinstance(task, Task) else load_task(task)
    backbone, layer = run_target(task, backbone, layer)
    check_request(task, backbone, subjects=subjects, seeds=seeds, weights=weights)
    submission = method if isinstance(method, Submission) else load_submission(method)
    device = str(resolve_device(device))
    metrics = [m for m in REPORTED if m in task.metrics]
    if not metrics:
        raise InvalidInputError(f"Task {task.id!r} scores none of {list(REPORTED)}; pitfalls report top-1 and top-5.")
    with SubmissionSession(submission, isolation=isolation, device=device,
                           timeout=timeout if timeout is not None else task.limits.unit_seconds) as session:
        bench = _Bench(task, submission, backbone, session, device=device, subjects=subjects, seeds=seeds,
                       data_root=data_root, weights=weights, overrides=hyperparameters or {})
        logger.info("Honest run: %s | %s | %s | layer %s", task.id, submission.id, backbone, layer or "default")
        base = bench.fit(bench.resolve(layer))
        results = []
        for name in names:
            logger.info("Pitfall %s: %s", name, PITFALLS[name].title)
            try:
                results.append(_result(name, MEASURES[name](bench, base), metrics))
            except NotApplicable as why:
                results.append(PitfallResult(name=name, status="not-applicable", reason=str(why)))
        isolation_used = session.isolation
    resolved = base.resolved
    record = PitfallRecord(
        created=now(), task={"id": task.id, "version": task.version, "hash": task.content_hash},
        method=submission.id, method_version=submission.meta.version, code_sha256=submission.code_sha256,
        backbone=backbone, layer_setting=resolved.plan.layer_setting, hyperparameters=resolved.plan.hyperparameters,
        pitfalls=results, environment=Environment(**environment(resolve_device(device)), isolation=isolation_used))
    path = Path(results_dir) / record.relative_path()
    atomic_write_json(path, record.model_dump(mode="json"))
    return record, path


# --- leaderboard section -------------------------------------------------------------------------------------

SECTION_TITLE = "What protocol choices do to scores"
#: the columns of :func:`pitfall_table`
TABLE_HEADERS = ("Pitfall", "What it changes", "Peer code that does it", "Reference %", "With pitfall %",
                 "Δ top-1 [95 % CI]", "Δ top-5 [95 % CI]")


def _points(change: MetricChange) -> str:
    low, high = (100 * v for v in change.ci)
    return f"{100 * change.difference:+.1f} [{low:+.1f}, {high:+.1f}]"


def pitfall_table(record: PitfallRecord) -> list[list[str]]:
    """Rows of the section's table for one record: applied pitfalls with their changes, the others with why not."""
    rows = []
    for result in record.pitfalls:
        pitfall = PITFALLS[result.name]
        if result.status == "applied":
            top1, top5 = result.metrics.get("top1"), result.metrics.get("top5")
            rows.append([pitfall.title, pitfall.changes, pitfall.peers,
                         f"{100 * top1.reference:.1f}" if top1 else "", f"{100 * top1.pitfall:.1f}" if top1 else "",
                         _points(top1) if top1 else "", _points(top5) if top5 else ""])
        else:
            rows.append([pitfall.title, pitfall.changes, pitfall.peers, "", "", f"not applicable: {result.reason}", ""])
    return rows


def summary_table(record: PitfallRecord) -> str:
    """The command line's table: per pitfall the top-1 with and without it and the paired changes."""
    rows = []
    for result in record.pitfalls:
        if result.status == "applied":
            top1, top5 = result.metrics.get("top1"), result.metrics.get("top5")
            rows.append([result.name, f"{100 * top1.reference:.1f}" if top1 else "",
                         f"{100 * top1.pitfall:.1f}" if top1 else "", _points(top1) if top1 else "",
                         _points(top5) if top5 else "", f"{result.n_subjects} / {result.n_units}"])
        else:
            rows.append([result.name, "", "", f"not applicable: {result.reason}", "", ""])
    head = (f"{record.task.id} v{record.task.version} | {record.method} | {record.backbone} | "
            f"layer {record.layer_setting}")
    table = tabulate(rows, ["pitfall", "reference top-1 %", "with pitfall %", "Δ top-1 [95 % CI]",
                            "Δ top-5 [95 % CI]", "subjects / units"], tablefmt="github", disable_numparse=True)
    return f"{head}\n\n{table}"


def _plot(record: PitfallRecord, path: Path) -> bool:
    """Changes of top-1 and top-5 with their CIs, one row per applied pitfall; False when none applied."""
    applied = [r for r in record.pitfalls if r.status == "applied"]
    if not applied:
        return False
    fig, ax = subplots(figsize=(6.5, 0.5 + 0.45 * len(applied)))
    y = np.arange(len(applied))
    for offset, name, colour in ((-0.15, "top1", "C0"), (0.15, "top5", "C1")):
        changes = [r.metrics[name] for r in applied if name in r.metrics]
        if len(changes) != len(applied):
            continue
        centre = np.array([100 * c.difference for c in changes])
        low = centre - np.array([100 * c.ci[0] for c in changes])
        high = np.array([100 * c.ci[1] for c in changes]) - centre
        ax.errorbar(centre, y + offset, xerr=[low, high], fmt="o", color=colour, capsize=3,
                    label=f"Δ {name} (95 % CI)")
    ax.axvline(0.0, color="grey", linewidth=0.8)
    ax.set_yticks(y, [PITFALLS[r.name].title for r in applied], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("change in percentage points (pitfall − reference)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="x")
    save_png(fig, path)
    return True


def pitfall_section(records: Sequence[PitfallRecord], plot_dir: Path | None) -> list[str]:
    """The markdown section "What protocol choices do to scores" of a task page (empty without records); one
    table and one plot per (method, backbone)."""
    if not records:
        return []
    lines = [f"## {SECTION_TITLE}", "",
             "Not part of the tables above: each row runs the same units with one protocol choice switched on "
             "(`eegbench pitfalls`), against the honest reference named; Δ in percentage points with a 95 % CI "
             "from a paired hierarchical bootstrap (subjects, then test images). Reference % and pitfall % are "
             "top-1.", ""]
    for record in sorted(records, key=lambda r: (r.method, r.backbone)):
        # method, backbone and layer setting are validated identifiers; the cells are this module's own text
        lines += [f"### {record.method} on {record.backbone} (layer `{record.layer_setting}`)", "",
                  tabulate(pitfall_table(record), TABLE_HEADERS, tablefmt="github", disable_numparse=True), ""]
        name = f"pitfalls-{record.task.id}-v{record.task.version}-{record.method}-{record.backbone}.png"
        if plot_dir is not None and _plot(record, Path(plot_dir) / name):
            lines += [f"![Changes of top-1 and top-5 by protocol choice]({name})", ""]
    return lines
