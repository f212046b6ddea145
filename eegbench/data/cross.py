"""Cross-dataset composition: train on the recordings of one dataset, test on those of another.

A task with ``protocol: cross`` names the dataset it trains on in ``dataset`` and the one it tests
on in ``test_dataset``. :func:`cross_dataset` composes the two into one :class:`CrossDataset`, so
that every protocol step (preprocessing, normalisation, validation split, scoring) runs on it
unchanged:

* its **training images** are the training dataset's, its **test images** (the gallery) the test
  dataset's; both keep their own files, under the two datasets' common folder;
* its **subjects** are the test dataset's (the evaluated ones); the training dataset's subjects are
  its :attr:`CrossDataset.training_subjects`, relabelled ``sub-train01``... so the two sets never
  collide. A training subject serves only training responses, a test subject only test responses:
  nothing of the test recordings can reach a fit;
* its **recording** is the channels both datasets have (the task's channel list, which both must
  have) at the samples both time axes share, at one sampling rate and in one unit.

Zero-shot retrieval needs the test concepts to be absent from training. The two datasets may name a
THINGS concept differently (``00001_aardvark`` or ``aardvark``), so concepts are compared by
:func:`concept_key`; a test concept found among the training concepts refuses the composition.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eegbench._check import InvalidInputError
from eegbench._io import hash_json
from eegbench.data.base import Dataset, ImageTable, RecordingInfo, subject_label

#: samples of the two time axes closer than this (in seconds) are the same sample
_TIME_TOLERANCE = 1e-6


def training_label(label: str) -> str:
    """The composite's label of a training-dataset subject: ``sub-01`` becomes ``sub-train01``."""
    return "sub-train" + label.removeprefix("sub-")


def concept_key(concept: str) -> str:
    """A THINGS concept's name without the number some releases prefix it with (``00001_aardvark`` -> ``aardvark``)."""
    return re.sub(r"^\d+_", "", concept.strip()).lower()


class SelectedResponses:
    """Responses ``(images, repetitions, channels, times)`` restricted to some channels and samples, lazily.

    Indexing the first two axes (a slice of images, of repetitions) reads only those rows of the
    underlying (usually memory-mapped) array, then keeps the selected channels and samples.
    """

    def __init__(self, base: np.ndarray, channels: np.ndarray, times: np.ndarray) -> None:
        self.base, self.channels, self.times = base, channels, times

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.base.shape[:2], len(self.channels), len(self.times))

    @property
    def ndim(self) -> int:
        return 4

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: object) -> np.ndarray:
        rows = key if isinstance(key, tuple) else (key,)
        if len(rows) > 2 or any(k is Ellipsis for k in rows):
            raise IndexError("selected responses are indexed by images and repetitions only")
        block = np.asarray(self.base[rows])
        return block[..., self.channels, :][..., self.times]

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        block = self[:]
        return block if dtype is None else block.astype(dtype)


@dataclass
class CrossDataset(Dataset):
    """A training dataset and a test dataset composed into one (see the module docstring).

    Attributes
    ----------
    training_subjects : tuple of str
        The training dataset's subjects, as this dataset labels them (:func:`training_label`).
        :attr:`metadata` describes the two datasets composed (``train_dataset``, ``test_dataset``).
    """

    training_subjects: tuple[str, ...] = ()

    def resolve_subject(self, subject: str | int) -> str:
        """A test subject (``3``, ``"sub-03"``) or a training subject (``"sub-train03"``) of this composition."""
        label = subject_label(subject)
        if label in self.training_subjects and label not in self.unavailable:
            return label
        return super().resolve_subject(label)  # a damaged subject of either dataset raises why


def shared_samples(train: RecordingInfo, test: RecordingInfo, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The indices into each time axis of the samples both recordings have.

    Modality, unit and sampling rate must agree, and the time axes must share their samples over the
    span both cover. ``names`` names the training and the test recording in messages.
    """
    train_name, test_name = names
    for what, a, b in (("modality", train.modality, test.modality), ("unit", train.unit, test.unit)):
        if a != b:
            raise InvalidInputError(f"Cannot test on {test_name} what is trained on {train_name}: their {what} differs "
                                    f"({a} vs {b}). Choose variants of the two datasets recorded in the same {what}.")
    if abs(train.sfreq - test.sfreq) > 1e-6:
        raise InvalidInputError(f"Cannot test on {test_name} what is trained on {train_name}: {train_name} is sampled "
                                f"at {train.sfreq:g} Hz and {test_name} at {test.sfreq:g} Hz. Choose variants at the "
                                "same sampling rate.")
    start, stop = max(train.times[0], test.times[0]), min(train.times[-1], test.times[-1])
    in_span = [np.flatnonzero((info.times >= start - _TIME_TOLERANCE) & (info.times <= stop + _TIME_TOLERANCE))
               for info in (train, test)]
    if not len(in_span[0]) or len(in_span[0]) != len(in_span[1]) or not np.allclose(
            train.times[in_span[0]], test.times[in_span[1]], atol=_TIME_TOLERANCE):
        raise InvalidInputError(f"The time axes of {train_name} ({train.times[0]:g} to {train.times[-1]:g} s) and "
                                f"{test_name} ({test.times[0]:g} to {test.times[-1]:g} s) share no common samples; "
                                "choose variants sampled on the same grid.")
    return in_span[0], in_span[1]


def shared_channels(train: RecordingInfo, test: RecordingInfo, channels: Sequence[str] | str,
                    names: tuple[str, str]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The channels a cross-dataset task uses, and their indices into each recording.

    ``channels`` is a list of channel names both must have, or ``"all"`` for every channel they share
    (in the training recording's order).
    """
    if channels == "all":
        channels = [c for c in train.ch_names if c in set(test.ch_names)]
        if not channels:
            raise InvalidInputError(f"{names[0]} and {names[1]} share no channel name; list the channels to use in "
                                    "the task file.")
    for info, name in zip((train, test), names):
        missing = [c for c in channels if c not in info.ch_names]
        if missing:
            raise InvalidInputError(f"Channels {missing} are not in {name}, which has {', '.join(info.ch_names)}. "
                                    "A cross-dataset task lists channels both datasets have.")
    return tuple(channels), train.channel_indices(channels), test.channel_indices(channels)


def shared_recording(train: RecordingInfo, test: RecordingInfo, channels: Sequence[str] | str,
                     names: tuple[str, str]) -> tuple[RecordingInfo, tuple[np.ndarray, np.ndarray],
                                                      tuple[np.ndarray, np.ndarray]]:
    """The recording both datasets have (:func:`shared_samples`, :func:`shared_channels`), and the
    (channel, sample) indices of each into it."""
    train_times, test_times = shared_samples(train, test, names)
    names_kept, train_channels, test_channels = shared_channels(train, test, channels, names)
    info = RecordingInfo(train.modality, names_kept, train.sfreq, train.times[train_times], train.unit)
    return info, (train_channels, train_times), (test_channels, test_times)


def check_zero_shot(train: ImageTable, test: ImageTable, names: tuple[str, str]) -> None:
    """Refuse a composition whose test concepts appear among the training concepts."""
    trained = {concept_key(c) for c in train.concept_names}
    shared = sorted(c for c in test.concept_names if concept_key(c) in trained)
    if shared:
        raise InvalidInputError(f"{len(shared)} test concepts of {names[1]} are training concepts of {names[0]} "
                                f"(e.g. {shared[:3]}), so retrieval would not be zero-shot; a cross-dataset task "
                                "needs test concepts that the training dataset never shows.")


def _rerooted(table: ImageTable, root: Path, common: Path) -> ImageTable:
    """``table`` with its files relative to ``common`` (a folder above ``root``)."""
    prefix = Path(os.path.relpath(root, common))
    files = tuple(f if prefix == Path(".") else (prefix / f).as_posix() for f in table.files)
    return ImageTable(table.image_ids, files, table.concepts)


def cross_dataset(train: Dataset, test: Dataset, channels: Sequence[str] | str = "all") -> CrossDataset:
    """Compose ``train`` (whose subjects' training responses are fitted) and ``test`` (whose subjects'
    test responses are scored) into one dataset; see the module docstring."""
    names = (f"{train.name} ({train.variant})", f"{test.name} ({test.variant})")
    check_zero_shot(train.train_images, test.test_images, names)
    info, (train_channels, train_times), (test_channels, test_times) = shared_recording(
        train.info, test.info, channels, names)
    training_subjects = {training_label(s): s for s in train.subjects}
    empty = np.empty((0, 1, info.n_channels, info.n_times), np.float32)

    def read_arrays(dataset: Dataset, label: str) -> tuple[np.ndarray, np.ndarray]:
        if label in training_subjects:
            responses = train.load_subject(training_subjects[label]).train
            return SelectedResponses(responses, train_channels, train_times), empty  # type: ignore[return-value]
        responses = test.load_subject(label).test
        return empty, SelectedResponses(responses, test_channels, test_times)  # type: ignore[return-value]

    image_roots = [Path(os.path.abspath(d.image_root)) for d in (train, test)]
    common = Path(os.path.commonpath(image_roots))
    repetitions = [train.metadata.get("repetitions", [None, None])[0], test.metadata.get("repetitions", [None, None])[1]]
    unavailable = {**{training_label(s): e for s, e in train.unavailable.items()}, **test.unavailable}
    return CrossDataset(
        name=f"{train.name}-to-{test.name}", variant=f"{train.variant}+{test.variant}", subjects=test.subjects,
        info=info, train_images=_rerooted(train.train_images, image_roots[0], common),
        test_images=_rerooted(test.test_images, image_roots[1], common), image_root=common,
        fingerprint=hash_json({"train": train.fingerprint, "test": test.fingerprint, "recording": info.to_dict()}),
        root=test.root, read_arrays=read_arrays, unavailable=unavailable,
        metadata={"repetitions": repetitions, "train_dataset": train.describe(), "test_dataset": test.describe()},
        training_subjects=tuple(training_subjects))
