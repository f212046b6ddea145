"""Protocols: which units a task runs, and exactly what each unit's method and evaluation see.

* **intra**: for each subject, train on its training responses, test on its test responses.
* **inter**: leave one subject out; train on the other subjects' training responses, test on the
  held-out subject's test responses. Nothing of the held-out subject (not even its training
  responses, nor their normalisation statistics) is used for fitting or selection.
* **joint**: train one model per seed on every subject's training responses (each labelled with
  its subject), test it on each subject's test responses. The units of a seed share one fit.
* **cross**: train one model per seed on every subject of the task's ``dataset``, test it on each
  subject of its ``test_dataset`` (:mod:`eegbench.data.cross`); the tested dataset's training
  responses are never read, and its subjects are normalised with training statistics only.

Methods learn the subject of every training response (``Split.subjects``) and of the test
responses they embed (:meth:`~eegbench.submissions.Aligner.embed_brain_of`).

The harness owns every preprocessing step: baseline correction, channel selection, time window,
repetition handling, and the normalisation whose statistics come from training responses only:
the per-(channel, time) z-score, or multivariate noise normalisation (:mod:`eegbench.normalization`)
with each subject's noise covariance from its own training trials (a held-out subject of an inter
task, whose training trials are never used, is whitened with the mean covariance of the training
subjects). The validation split is a seeded, concept-disjoint subset of the training concepts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from eegbench._check import InvalidInputError, check_seeds
from eegbench.backbones.base import LayerRef
from eegbench.data.base import Dataset, RecordingInfo, check_subjects
from eegbench.data.cross import CrossDataset
from eegbench.normalization import noise_covariance, whiten, whitening_matrix
from eegbench.submissions import Split, TrainingData
from eegbench.tasks import Task


@dataclass(frozen=True)
class Unit:
    """One unit of a protocol: the evaluated subject, the subjects trained on, and the seed."""

    subject: str
    train_subjects: tuple[str, ...]
    seed: int

    @property
    def fit_key(self) -> tuple[tuple[str, ...], int]:
        """Units with equal keys are fitted on the same data with the same seed: one fit serves them all
        (the evaluated subjects of a joint task)."""
        return self.train_subjects, self.seed


def task_subjects(task: Task, dataset: Dataset) -> list[str]:
    """The subjects a task uses (``all`` means every subject of the dataset)."""
    if task.subjects == "all":
        return list(dataset.subjects)
    return [dataset.resolve_subject(s) for s in task.subjects]


def evaluated_subjects(task: Task, dataset: Dataset, subjects: Sequence[str | int] | None = None) -> list[str]:
    """The task's subjects, or those of ``subjects`` (``3``, ``"sub-03"``...), which must be part of the task."""
    pool = task_subjects(task, dataset)
    subjects = check_subjects(subjects)
    # resolving each subject also raises, before any work, the problem of one whose files are damaged
    chosen = [dataset.resolve_subject(s) for s in (pool if subjects is None else subjects)]
    outside = [s for s in chosen if s not in pool]
    if outside:
        raise InvalidInputError(f"Subjects {outside} are not part of task {task.id!r} (its subjects: {pool}).")
    return chosen


def plan_units(task: Task, dataset: Dataset, subjects: Sequence[str | int] | None = None,
               seeds: Sequence[int] | None = None) -> list[Unit]:
    """The units to run: every (evaluated subject, seed), optionally restricted to a subset."""
    pool = task_subjects(task, dataset)
    chosen = evaluated_subjects(task, dataset, subjects)
    seed_list = list(task.seeds) if seeds is None else check_seeds(seeds)
    if task.protocol == "inter" and len(pool) < 2:
        raise InvalidInputError(f"Task {task.id!r} is inter-subject but has only {len(pool)} subject.")
    if task.protocol in ("inter", "joint"):
        pool = [dataset.resolve_subject(s) for s in pool]  # every subject is trained on: each must be usable
    if task.protocol == "cross":
        if not isinstance(dataset, CrossDataset):
            raise InvalidInputError(f"Task {task.id!r} is cross-dataset: run it on the composition of its two datasets "
                                    "(eegbench.plan.load_task_dataset), not on one dataset.")
        training = tuple(dataset.resolve_subject(s) for s in dataset.training_subjects)
    trained_on = {"intra": lambda subject: (subject,),
                  "inter": lambda subject: tuple(s for s in pool if s != subject),
                  "joint": lambda subject: tuple(pool),
                  "cross": lambda subject: training}[task.protocol]
    return [Unit(subject, trained_on(subject), seed) for subject in chosen for seed in seed_list]


def validation_mask(task: Task, dataset: Dataset) -> np.ndarray:
    """Boolean mask over training images: True for images of the validation concepts."""
    concepts = dataset.train_images.concept_ids
    n_concepts = int(concepts.max()) + 1
    n_val = max(1, int(round(task.validation.fraction * n_concepts)))
    if n_val >= n_concepts:
        raise InvalidInputError(f"Task {task.id!r}: the validation fraction leaves no training concepts.")
    chosen = np.random.default_rng(task.validation.seed).choice(n_concepts, size=n_val, replace=False)
    return np.isin(concepts, chosen)


def nested_training_images(task: Task, dataset: Dataset, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over training images: a seeded ``fraction`` of them, for data-scaling analyses.

    Fitting and validation images are subsampled separately (``ceil(fraction * n)`` of each, at
    least one), so the validation split keeps its share and is never empty. The subsets are nested:
    for the same seed, a smaller fraction keeps a subset of the images of a larger one.
    """
    if not 0.0 < fraction <= 1.0:
        raise InvalidInputError(f"The training fraction must be in (0, 1], got {fraction!r}.")
    keep = np.zeros(len(dataset.train_images), dtype=bool)
    rng = np.random.default_rng([seed, 0x5CA1E])
    for part in (~validation_mask(task, dataset), validation_mask(task, dataset)):
        order = rng.permutation(np.flatnonzero(part))
        keep[order[:max(1, math.ceil(fraction * len(order)))]] = True
    return keep


def _as_slice(indices: np.ndarray) -> np.ndarray | slice:
    """A run of consecutive indices as a slice: selecting with it reads a view, not a fancy-indexed copy."""
    indices = np.asarray(indices)
    if len(indices) and np.array_equal(indices, np.arange(indices[0], indices[0] + len(indices))):
        return slice(int(indices[0]), int(indices[0]) + len(indices))
    return indices


class ResponsePipeline:
    """The task's baseline correction, channel selection, time window and repetition handling for one dataset."""

    def __init__(self, task: Task, info: RecordingInfo) -> None:
        channels = info.ch_names if task.channels == "all" else task.channels
        self.channels = _as_slice(info.channel_indices(channels))
        self.times = _as_slice(info.time_indices(*task.time_window))
        self.baseline = None if task.baseline is None else _as_slice(info.time_indices(*task.baseline))
        self.task = task
        self.info = RecordingInfo(info.modality, tuple(channels), info.sfreq, info.times[self.times], info.unit)

    def _select(self, block: np.ndarray) -> np.ndarray:
        """Channels and times of ``(..., channels, times)`` responses, baseline-corrected first (float32)."""
        block = np.asarray(block[..., self.channels, :], dtype=np.float32)
        if self.baseline is not None:
            block = block - block[..., self.baseline].mean(-1, keepdims=True)
        return block[..., self.times]

    def trials(self, array: np.ndarray, chunk: int = 512) -> Iterator[np.ndarray]:
        """Every trial of ``(n_images, n_reps, ...)`` responses, selected, in chunks of ``(n, C, T)``."""
        for start in range(0, len(array), chunk):
            block = self._select(array[start:start + chunk])
            yield block.reshape(-1, *block.shape[2:])

    def _reduce(self, array: np.ndarray, average: bool, chunk: int = 512) -> np.ndarray:
        """Select channels and times (and average repetitions) in chunks of images.

        Chunking keeps memory bounded on memory-mapped arrays: only the kept samples of one chunk
        are ever read into RAM.
        """
        n_images, n_reps = array.shape[:2]
        n_channels, n_times = self.info.n_channels, self.info.n_times
        shape = (n_images, n_channels, n_times) if average else (n_images, n_reps, n_channels, n_times)
        out = np.empty(shape, dtype=np.float32)
        for start in range(0, n_images, chunk):
            block = self._select(array[start:start + chunk])
            out[start:start + chunk] = block.mean(1) if average else block
        return out

    def train(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Training responses ``(n_samples, C, T)`` and the image index of each sample."""
        n_images, n_reps = array.shape[:2]
        if self.task.repetitions.train == "mean":
            return self._reduce(array, average=True), np.arange(n_images)
        selected = self._reduce(array, average=False)
        return selected.reshape(n_images * n_reps, *selected.shape[2:]), np.repeat(np.arange(n_images), n_reps)

    def test_trials(self, array: np.ndarray) -> np.ndarray:
        """Test responses with their repetitions kept: ``(n_test, n_repetitions, C, T)``."""
        return self._reduce(array, average=False)

    def test(self, array: np.ndarray, n_repetitions: int | None = None) -> np.ndarray:
        """Test responses averaged over (the first ``n_repetitions``) repetitions: ``(n_test, C, T)``."""
        if n_repetitions is not None:
            array = array[:, :n_repetitions]
        return self._reduce(array, average=True)

    def test_single(self, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every test trial on its own, ``(n_test * n_reps, C, T)``, and the test image of each."""
        selected = self._reduce(array, average=False)
        n_test, n_reps = selected.shape[:2]
        return selected.reshape(n_test * n_reps, *selected.shape[2:]), np.repeat(np.arange(n_test), n_reps)


@dataclass
class Normalizer:
    """The task's normalisation, fitted on training responses: a per-(channel, time) z-score, and
    for ``mvnn`` a whitening matrix per subject (:mod:`eegbench.normalization`).

    ``whitening`` maps each subject trained on to its matrix; ``fallback`` whitens any other
    subject (the held-out subject of an inter task).
    """

    mean: np.ndarray
    std: np.ndarray
    whitening: Mapping[str, np.ndarray] = field(default_factory=dict)
    fallback: np.ndarray | None = None

    @classmethod
    def fit(cls, responses: np.ndarray, enabled: bool) -> Normalizer:
        if not enabled:
            return cls(np.zeros(responses.shape[1:], np.float32), np.ones(responses.shape[1:], np.float32))
        mean, std = _column_mean_std(responses.reshape(len(responses), -1))
        mean, std = mean.reshape(responses.shape[1:]), std.reshape(responses.shape[1:])
        std = np.where(std > 1e-12 * max(float(std.max()), 1e-30), std, 1.0)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def whiten(self, responses: np.ndarray, subject: str) -> np.ndarray:
        """``subject``'s responses whitened (unchanged without whitening)."""
        matrix = self.whitening.get(subject, self.fallback)
        return responses if matrix is None else whiten(responses, matrix)

    def __call__(self, responses: np.ndarray, subject: str | None = None) -> np.ndarray:
        """Normalise responses (of ``subject``, needed where subjects are whitened)."""
        if self.whitening:
            if subject is None:
                raise ValueError("whitened normalisation needs the subject of the responses")
            responses = self.whiten(responses, subject)
        out = np.subtract(responses, self.mean, dtype=np.float32)
        out /= self.std  # in place: one full-size array, not three
        return out


def _column_mean_std(flat: np.ndarray, block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean and standard deviation of each column, a block of columns at a time.

    Bit for bit what ``flat.mean(0, dtype=np.float64)`` and ``flat.std(0, dtype=np.float64)`` give
    (each column's sum runs over the rows in the same order), but the float64 temporaries hold one
    block, not the whole array: at THINGS-EEG2 size twice as fast and 0.5 GB smaller.
    """
    mean, std = np.empty(flat.shape[1]), np.empty(flat.shape[1])
    for start in range(0, flat.shape[1], block):
        columns = flat[:, start:start + block]
        mean[start:start + block] = columns.mean(0, dtype=np.float64)
        std[start:start + block] = columns.std(0, dtype=np.float64)
    return mean, std


@dataclass
class PreparedResponses:
    """A training set's preprocessed responses, split into fitting and validation parts, and the
    normaliser fitted on them."""

    train: Split
    val: Split
    normalizer: Normalizer
    info: RecordingInfo


class ResponseCache:
    """Preprocessed training responses, shared by the units that train on the same responses.

    The units of one subject differ only in their seed, so (unless each seed keeps its own subset
    of the training images, :func:`nested_training_images`) they train on the same responses:
    preprocessing them once saves seconds per unit at THINGS-EEG2 size, and the units then hold the
    very same arrays, which the trainer keeps on the device once. :meth:`retain` bounds memory to
    the units at hand. One cache serves one run: its seeds keep the same subsets throughout.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple, PreparedResponses] = {}
        self._covariances: dict[str, np.ndarray] = {}

    @staticmethod
    def key(unit: Unit, kept: np.ndarray | None) -> tuple:
        return unit.train_subjects, (unit.seed if kept is not None else None)

    def retain(self, units: Mapping[Unit, np.ndarray | None]) -> None:
        """Drop the entries none of ``units`` (each with its kept training images) uses."""
        keep = {self.key(unit, kept) for unit, kept in units.items()}
        self._entries = {k: v for k, v in self._entries.items() if k in keep}

    def get(self, task: Task, dataset: Dataset, unit: Unit, kept: np.ndarray | None) -> PreparedResponses:
        key = self.key(unit, kept)
        if key not in self._entries:
            self._entries[key] = prepare_responses(task, dataset, unit, kept, covariance=self.covariance)
        return self._entries[key]

    def covariance(self, task: Task, dataset: Dataset, subject: str) -> np.ndarray:
        """:func:`training_noise_covariance`, computed once per subject and run."""
        if subject not in self._covariances:
            self._covariances[subject] = training_noise_covariance(task, dataset, subject)
        return self._covariances[subject]


#: ``covariance(task, dataset, subject)``: the noise covariance a subject is whitened with
Covariance = Callable[[Task, Dataset, str], np.ndarray]


def noise_covariance_of(task: Task, dataset: Dataset, subject: str, split: str) -> np.ndarray:
    """The noise covariance of ``subject``'s ``split`` (``"train"`` or ``"test"``) trials, after the task's
    baseline correction, channel and time selection (:func:`eegbench.normalization.noise_covariance`)."""
    pipeline = ResponsePipeline(task, dataset.info)
    array = getattr(dataset.load_subject(subject), split)
    return noise_covariance(pipeline.trials(array), total=array.shape[0] * array.shape[1],
                            description=f"Noise covariance of {subject}")


def training_noise_covariance(task: Task, dataset: Dataset, subject: str) -> np.ndarray:
    """The noise covariance of ``subject``'s training trials: what ``normalization: mvnn`` whitens with."""
    return noise_covariance_of(task, dataset, subject, "train")


def fit_whitening(task: Task, dataset: Dataset, subjects: Sequence[str],
                  covariance: Covariance = training_noise_covariance) -> Normalizer:
    """A whitening-only :class:`Normalizer` for ``subjects``, each with its own covariance; other subjects get
    the whitening of the mean covariance."""
    covariances = {subject: covariance(task, dataset, subject) for subject in subjects}
    identity = np.zeros((), np.float32), np.ones((), np.float32)
    return Normalizer(*identity, whitening={s: whitening_matrix(c) for s, c in covariances.items()},
                      fallback=whitening_matrix(np.mean(list(covariances.values()), axis=0)))


def prepare_responses(task: Task, dataset: Dataset, unit: Unit, kept: np.ndarray | None = None,
                      covariance: Covariance = training_noise_covariance) -> PreparedResponses:
    """The training subjects' responses of ``unit``: selected, averaged, normalised and split.

    With ``kept`` (a mask over training images, :func:`nested_training_images`) only the responses
    to those images are kept (normalisation statistics included), for data-scaling analyses.
    ``covariance`` gives each subject's noise covariance for ``normalization: mvnn`` (by default
    from its training trials).
    """
    pipeline = ResponsePipeline(task, dataset.info)
    whitening = (fit_whitening(task, dataset, unit.train_subjects, covariance) if task.normalization == "mvnn"
                 else None)
    parts, index, subjects = [], [], []
    for subject in unit.train_subjects:
        responses, image_index = pipeline.train(dataset.load_subject(subject).train)
        if kept is not None:
            responses, image_index = responses[kept[image_index]], image_index[kept[image_index]]
        parts.append(responses if whitening is None else whitening.whiten(responses, subject))
        index.append(image_index)
        subjects.append(np.full(len(image_index), subject))
    responses = parts[0] if len(parts) == 1 else np.concatenate(parts)
    image_index = np.concatenate(index)
    subject_labels = np.concatenate(subjects)
    if whitening is not None:
        normalizer = whitening
    else:
        normalizer = Normalizer.fit(responses, task.normalization == "zscore")
        responses = normalizer(responses)
    is_val = validation_mask(task, dataset)[image_index]
    train, val = (Split(*(_read_only(a[rows]) for a in (responses, image_index, subject_labels)))
                  for rows in (~is_val, is_val))
    return PreparedResponses(train=train, val=val, normalizer=normalizer, info=pipeline.info)


def _read_only(array: np.ndarray) -> np.ndarray:
    """Units (and their methods) share these arrays: an in-place change by one would reach the others."""
    array.flags.writeable = False
    return array


def training_data(task: Task, dataset: Dataset, unit: Unit, features: dict[str, np.ndarray],
                  layers: Sequence[LayerRef], device: torch.device, kept: np.ndarray | None = None,
                  cache: ResponseCache | None = None,
                  views: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> tuple[TrainingData, Normalizer]:
    """Build what the method sees for ``unit`` (no test data), and the fitted normaliser.

    With ``kept`` (a mask over training images, :func:`nested_training_images`) only the responses
    to those images are kept (normalisation statistics included), for data-scaling analyses. With a
    ``cache``, units that train on the same responses share one preprocessed copy. ``views`` holds
    the features of the views of the training images the method declared (:mod:`eegbench.views`).
    """
    prepared = (cache.get(task, dataset, unit, kept) if cache is not None
                else prepare_responses(task, dataset, unit, kept))
    data = TrainingData(
        train=prepared.train,
        val=prepared.val,
        features=features,
        image_concepts=dataset.train_images.concept_ids,
        layers=list(layers),
        info=prepared.info,
        validation_metric=task.validation.metric,
        seed=unit.seed,
        device=device,
        unit={"task": task.id, "protocol": task.protocol, "train_subjects": list(unit.train_subjects),
              "seed": unit.seed} | ({} if task.protocol in ("joint", "cross") else {"subject": unit.subject}),
        views=dict(views or {}),
    )
    return data, prepared.normalizer


def test_responses(task: Task, dataset: Dataset, unit: Unit, normalizer: Normalizer,
                   n_repetitions: int | None = None) -> np.ndarray:
    """The evaluated subject's averaged, normalised test responses ``(n_test, C, T)``."""
    pipeline = ResponsePipeline(task, dataset.info)
    return normalizer(pipeline.test(dataset.load_subject(unit.subject).test, n_repetitions), unit.subject)


def test_trials(task: Task, dataset: Dataset, unit: Unit, normalizer: Normalizer) -> tuple[np.ndarray, np.ndarray]:
    """The evaluated subject's normalised single test trials ``(n_test * n_reps, C, T)``, and each one's test
    image (single-trial retrieval)."""
    responses, images = ResponsePipeline(task, dataset.info).test_single(dataset.load_subject(unit.subject).test)
    return normalizer(responses, unit.subject), images
