"""The core data model every loader produces and every protocol consumes.

A :class:`Dataset` has one image set (training and test images, in condition order), one
recording layout (:class:`RecordingInfo`: channels, sampling rate, time axis) and several
subjects. :meth:`Dataset.load_subject` returns a :class:`SubjectData` whose arrays are

* ``train``: ``(n_train_images, n_repetitions, n_channels, n_times)``
* ``test``: ``(n_test_images, n_repetitions, n_channels, n_times)``

where row ``i`` is the response to image ``i`` of :attr:`Dataset.train_images` /
:attr:`Dataset.test_images`. Arrays are usually memory-mapped, so loading a subject is cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eegbench._check import DataError, InvalidInputError, check_unique, unknown_name


@dataclass(frozen=True)
class ImageTable:
    """The images of one split, in condition order.

    Attributes
    ----------
    image_ids : tuple of str
        Unique image names (e.g. ``"aardvark_01b"``).
    files : tuple of str
        Image paths relative to the dataset's image root.
    concepts : tuple of str
        The concept of each image (e.g. ``"00001_aardvark"``).
    """

    image_ids: tuple[str, ...]
    files: tuple[str, ...]
    concepts: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.image_ids)
        if len(self.files) != n or len(self.concepts) != n:
            raise InvalidInputError(
                f"ImageTable columns disagree: {n} image ids, {len(self.files)} files, "
                f"{len(self.concepts)} concepts."
            )
        if len(set(self.image_ids)) != n:
            raise InvalidInputError("ImageTable image ids must be unique.")

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def concept_names(self) -> tuple[str, ...]:
        """Distinct concepts in order of first appearance."""
        return tuple(dict.fromkeys(self.concepts))

    @property
    def concept_ids(self) -> np.ndarray:
        """Integer concept code per image (index into :attr:`concept_names`)."""
        lookup = {c: i for i, c in enumerate(self.concept_names)}
        return np.array([lookup[c] for c in self.concepts], dtype=np.int64)

    def to_dict(self) -> dict[str, list[str]]:
        return {"image_ids": list(self.image_ids), "files": list(self.files), "concepts": list(self.concepts)}

    @classmethod
    def from_dict(cls, data: dict[str, Sequence[str]]) -> ImageTable:
        return cls(tuple(data["image_ids"]), tuple(data["files"]), tuple(data["concepts"]))


@dataclass(frozen=True)
class RecordingInfo:
    """What the last two axes of a response array mean.

    Attributes
    ----------
    modality : str
        ``"eeg"`` or ``"meg"``.
    ch_names : tuple of str
        Channel names, in array order.
    sfreq : float
        Sampling rate in Hz.
    times : numpy.ndarray
        Time of each sample in seconds, relative to image onset.
    unit : str
        Unit of the values (``"V"``, ``"T"``, or ``"whitened"`` after noise normalisation).
    """

    modality: str
    ch_names: tuple[str, ...]
    sfreq: float
    times: np.ndarray = field(compare=False)
    unit: str = "V"

    @property
    def n_channels(self) -> int:
        return len(self.ch_names)

    @property
    def n_times(self) -> int:
        return len(self.times)

    def channel_indices(self, channels: Sequence[str]) -> np.ndarray:
        """Array indices of ``channels``, in the order given; unknown names raise."""
        lookup = {name: i for i, name in enumerate(self.ch_names)}
        missing = [c for c in channels if c not in lookup]
        if missing:
            raise InvalidInputError(
                f"Channels {missing} are not in this recording. Available channels: "
                f"{', '.join(self.ch_names)}."
            )
        return np.array([lookup[c] for c in channels], dtype=np.int64)

    def time_indices(self, tmin: float, tmax: float) -> np.ndarray:
        """Indices of samples with ``tmin <= t < tmax`` (half-open, to a tolerance of 1e-6 s)."""
        tol = 1e-6
        keep = np.flatnonzero((self.times >= tmin - tol) & (self.times < tmax - tol))
        if keep.size == 0:
            raise InvalidInputError(
                f"Time window [{tmin}, {tmax}) s holds no samples; this recording spans "
                f"{self.times[0]:.3f} to {self.times[-1]:.3f} s."
            )
        return keep

    def to_dict(self) -> dict:
        return {
            "modality": self.modality,
            "ch_names": list(self.ch_names),
            "sfreq": self.sfreq,
            "times": [round(float(t), 9) for t in self.times],
            "unit": self.unit,
        }

    @classmethod
    def from_dict(cls, data: dict) -> RecordingInfo:
        return cls(data["modality"], tuple(data["ch_names"]), float(data["sfreq"]),
                   np.asarray(data["times"], dtype=np.float64), data.get("unit", "V"))


@dataclass
class SubjectData:
    """One subject's responses: ``train`` and ``test`` as (images, repetitions, channels, times)."""

    subject: str
    train: np.ndarray
    test: np.ndarray


def subject_label(subject: str | int) -> str:
    """The label of a subject as the datasets name them: ``3``, ``"3"`` and ``"sub-03"`` are ``"sub-03"``."""
    label = str(subject).strip()
    return f"sub-{int(label):02d}" if label.isdigit() else label


def check_subjects(subjects: Sequence[str | int] | None) -> list[str | int] | None:
    """Requested subjects as a list: non-empty, none named twice (``1`` and ``"sub-01"`` are one subject).

    Whether each exists is checked against the dataset (:func:`evaluated_subjects`).
    """
    if subjects is None:
        return None
    subjects = list(subjects)
    if not subjects:
        raise InvalidInputError("No subjects given; pass subjects such as 1,2 (or sub-01), or leave them out for all "
                                "of the task's subjects.")
    check_unique([subject_label(s) for s in subjects], "Subjects")
    return subjects


@dataclass
class Dataset:
    """A brain-response dataset in eegbench's canonical form.

    Attributes
    ----------
    name : str
        Dataset name (``"synthetic"``, ``"things-eeg2"``, ``"things-meg"``).
    variant : str
        The preprocessing variant, recorded in every result (e.g. ``"17ch-250hz"``).
    subjects : tuple of str
        Subject labels, ``"sub-01"``...
    info : RecordingInfo
        Channels, sampling rate and time axis shared by all subjects.
    train_images, test_images : ImageTable
        The image sets, in condition order.
    image_root : pathlib.Path
        Folder the image files are relative to.
    fingerprint : str
        Content hash of the data and its metadata; changes whenever any of them changes.
    root : pathlib.Path
        Folder holding the canonical arrays.
    read_arrays : callable
        ``read_arrays(dataset, label) -> (train, test)``: how the storage the dataset was opened
        from serves one subject's arrays (for canonical folders,
        :func:`eegbench.data.canonical.load_subject_arrays`, which checks them first). The storage
        passes it in, so this data model does not depend on any storage.
    metadata : dict
        The content of the folder's ``dataset.json``.
    rebuild : callable or None
        Rewrites :attr:`root` from the dataset's source when its arrays fail their check on load;
        None for a folder opened without its source.
    unavailable : mapping of str to DataError
        Subjects of the published dataset this copy cannot serve, each with the error that says why
        and how to get it: one whose files are damaged or incomplete (listed in :attr:`subjects`, so
        that asking for it fails instead of leaving it out) or one whose files are absent (not listed).
        A damaged subject does not keep the others from loading.
    """

    name: str
    variant: str
    subjects: tuple[str, ...]
    info: RecordingInfo
    train_images: ImageTable
    test_images: ImageTable
    image_root: Path
    fingerprint: str
    root: Path
    read_arrays: Callable[[Dataset, str], tuple[np.ndarray, np.ndarray]] = field(repr=False, compare=False)
    metadata: dict = field(default_factory=dict)
    rebuild: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    unavailable: Mapping[str, DataError] = field(default_factory=dict, repr=False, compare=False)

    def resolve_subject(self, subject: str | int) -> str:
        """Map ``3``, ``"3"`` or ``"sub-03"`` to this dataset's label ``"sub-03"``; one it cannot serve raises why."""
        label = subject_label(subject)
        if label in self.unavailable:
            problem = self.unavailable[label]
            raise type(problem)(str(problem))  # a fresh error each time: no traceback piles up on the stored one
        if label not in self.subjects:
            raise unknown_name(f"{self.name} subject", label, self.subjects)
        return label

    def load_subject(self, subject: str | int) -> SubjectData:
        """Memory-map one subject's training and test responses."""
        label = self.resolve_subject(subject)
        train, test = self.read_arrays(self, label)
        return SubjectData(label, train, test)

    def image_paths(self, split: str) -> list[Path]:
        """Absolute paths of the ``"train"`` or ``"test"`` images."""
        table = self.train_images if split == "train" else self.test_images
        return [self.image_root / f for f in table.files]

    def describe(self) -> dict:
        """A JSON-able summary: subjects, variant, shapes, channels, sampling, images."""
        n_train_reps, n_test_reps = self.metadata.get("repetitions", [None, None])
        return {
            "name": self.name,
            "variant": self.variant,
            "subjects": list(self.subjects),
            "unavailable_subjects": {label: str(error) for label, error in self.unavailable.items()
                                     if label in self.subjects},
            "modality": self.info.modality,
            "unit": self.info.unit,
            "channels": list(self.info.ch_names),
            "sfreq": self.info.sfreq,
            "time_window": [float(self.info.times[0]), float(self.info.times[-1])],
            "n_times": self.info.n_times,
            "train_shape": [len(self.train_images), n_train_reps, self.info.n_channels, self.info.n_times],
            "test_shape": [len(self.test_images), n_test_reps, self.info.n_channels, self.info.n_times],
            "n_train_images": len(self.train_images),
            "n_train_concepts": len(self.train_images.concept_names),
            "n_test_images": len(self.test_images),
            "n_test_concepts": len(self.test_images.concept_names),
            "fingerprint": self.fingerprint,
            "root": str(self.root),
        }
