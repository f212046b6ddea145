"""The dataset contract: what a dataset declares so that eegbench can load, download and describe it.

A dataset is a module that builds one :class:`DatasetSpec` and adds it to the registry
(:mod:`eegbench.data.registry`). The spec is the single declaration of the dataset's variants,
its subjects, its loader options and its loader; everything else is derived from it:

* :func:`eegbench.data.load_dataset` picks the variant (the default when none is named), validates
  the options against :attr:`DatasetSpec.options` and calls :attr:`DatasetSpec.loader`;
* the packaged download manifest (``manifests/<name>.json``) lists only files and their sources:
  its variants, default variant and subjects come from the spec, and each file's variants and
  subject are checked against it (:mod:`eegbench.data.download`);
* :meth:`DatasetSpec.download_hint` tells users the ``eegbench data download`` command to run.

CONTRIBUTING.md ("Adding a dataset") walks through a new dataset, from its files to ``load_dataset``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ValidationError

from eegbench._check import InvalidInputError, MissingDataError, describe_validation_error, unknown_name
from eegbench._guard import refuse_in_submission_worker
from eegbench._io import check_folder_path
from eegbench.data.base import Dataset, ImageTable, RecordingInfo, subject_label
from eegbench.tasks import Task


class Variant(Protocol):
    """What the contract needs of a variant; each dataset's variant class adds what its loader reads."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...


@dataclass(frozen=True)
class RecordingLayout:
    """A dataset's time axis and channels as declared by its variant and options, before any file is read.

    With it, a task's time window and channels are checked before data is generated, converted or
    loaded; what the files hold is checked again once they are read.
    """

    #: time of each sample in seconds, relative to image onset
    times: np.ndarray
    #: channel names in array order; None when only the files say (checked once they are read)
    channels: tuple[str, ...] | None = None
    #: the number of channels when their names are not declared (None: unknown until the files are read)
    n_channels: int | None = None

    @classmethod
    def sampled(cls, sfreq: float, first: float, n_samples: int, channels: tuple[str, ...] | None = None,
                n_channels: int | None = None) -> RecordingLayout:
        """``n_samples`` samples at ``sfreq`` Hz from ``first`` seconds."""
        return cls(np.round(first + np.arange(n_samples) / sfreq, 9), channels, n_channels)


@dataclass(frozen=True)
class DeclaredSizes:
    """What the published dataset holds, as its documentation states: enough to plan runs without its files."""

    modality: str
    n_train_images: int
    n_test_images: int


#: ``layout(variant, options) -> RecordingLayout``, called with the chosen variant (None for a dataset
#: without variants) and the validated options.
Layout = Callable[[Any, Any], RecordingLayout]

#: ``loader(data_root, variant, options) -> Dataset``, called with the data root (None when not
#: given), the chosen variant (None for a dataset without variants) and the validated options.
Loader = Callable[[Path | None, Any, Any], Dataset]
#: ``exemplars(options, dataset, per_concept) -> (image_root, images)``: up to ``per_concept`` other images of each
#: test concept (never the test images), for analyses that build a concept's gallery entry from other exemplars
Exemplars = Callable[[Any, Dataset, int], tuple[Path, ImageTable]]


@dataclass(frozen=True)
class DatasetSpec:
    """Everything eegbench needs to know of one dataset.

    Attributes
    ----------
    name : str
        Name in task files and on the command line (``"things-eeg2"``).
    description : str
        One line: what the dataset is and where it comes from.
    options : type of pydantic.BaseModel
        The loader options (a task file's ``dataset.options``); unknown fields are refused.
    loader : callable
        ``loader(data_root, variant, options) -> Dataset`` (see :data:`Loader`).
    variants : mapping of str to Variant
        The named preprocessings, by name; empty for a dataset that has none (then its options
        say everything, as for the synthetic dataset).
    default_variant : str or None
        The variant used when none is named; None exactly when there are no variants.
    subjects : tuple of int
        Subject numbers of the published dataset (the download manifest offers these; loaders
        report which of them a data root lacks). Empty when the options decide the subjects.
    manifest : bool
        Whether a download manifest is packaged (``eegbench/data/manifests/<name>.json``, read by
        :mod:`eegbench.data.download`).
    title : str, optional
        The name at the start of a message (default: ``name``).
    layout : callable, optional
        ``layout(variant, options) -> RecordingLayout`` (see :data:`Layout`): the time axis and
        channels the loader will produce, known without reading files, so that a task's window and
        channels are checked before any heavy work. None when only the files say.
    exemplars : callable, optional
        ``exemplars(options, dataset, per_concept) -> (image_root, images)`` (see :data:`Exemplars`): other
        images of the test concepts; None when the dataset has none (THINGS-EEG2 holds one image per test concept).
    """

    name: str
    description: str
    options: type[BaseModel]
    loader: Loader = field(repr=False, compare=False)
    variants: Mapping[str, Variant] = field(default_factory=dict)
    default_variant: str | None = None
    subjects: tuple[int, ...] = ()
    manifest: bool = False
    title: str | None = None
    layout: Layout | None = field(default=None, repr=False, compare=False)
    sizes: DeclaredSizes | None = None
    exemplars: Exemplars | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A spec is written once by a developer: mistakes in it fail at import, naming the dataset.
        wrong = [key for key, variant in self.variants.items() if key != variant.name]
        if wrong:
            raise InvalidInputError(f"Dataset {self.name!r}: variants {wrong} are registered under another name.")
        if (self.default_variant is None) != (not self.variants) or (
                self.default_variant is not None and self.default_variant not in self.variants):
            raise InvalidInputError(f"Dataset {self.name!r}: default variant {self.default_variant!r} must be one of "
                                    f"its variants {list(self.variants)} (None when it has none).")

    def variant(self, name: str | None) -> Variant | None:
        """The variant called ``name`` (None: the default); unknown names raise, listing the valid ones."""
        if not self.variants:
            if name is not None:
                raise InvalidInputError(f"The {self.name} dataset has no variants; set dataset.options instead.")
            return None
        name = name or self.default_variant
        if name not in self.variants:
            raise unknown_name(f"{self.name} variant", name, self.variants)
        return self.variants[name]

    def parse_options(self, options: Mapping[str, Any] | None) -> BaseModel:
        """``options`` validated against :attr:`options`; problems raise one error listing each of them."""
        try:
            return self.options(**dict(options or {}))
        except ValidationError as err:
            source = f"{self.title or self.name} dataset options"
            raise InvalidInputError(describe_validation_error(err, source)) from None

    def declared_layout(self, *, options: Mapping[str, Any] | None = None,
                        variant: str | None = None) -> RecordingLayout | None:
        """The time axis and channels ``load`` will produce with these options, without reading a file.

        None when the dataset declares no :attr:`layout`. Bad options or variants raise as in :meth:`load`.
        """
        chosen = self.variant(variant)
        parsed = self.parse_options(options)
        return None if self.layout is None else self.layout(chosen, parsed)

    def check_task(self, task: Task) -> None:
        """Check a task's dataset section, time window and channels against this declaration; reads no file.

        An unknown variant or option, or a window or channel the dataset cannot have, fails before
        anything is loaded, converted or generated (what the files hold is checked once read).
        """
        layout = self.declared_layout(options=task.dataset.options, variant=task.dataset.variant)
        if layout is not None:
            variant = self.variant(task.dataset.variant)
            source = f"dataset {self.name!r}" + (f" (variant {variant.name!r})" if variant is not None else "")
            task.check_recording(layout.times, layout.channels, source)

    def declared_recording(self, *, options: Mapping[str, Any] | None = None,
                           variant: str | None = None) -> RecordingInfo | None:
        """Modality, sampling rate, time axis and channel names (empty where only the files say) as declared,
        without reading a file; None when the dataset does not declare its sizes and layout."""
        layout = self.declared_layout(options=options, variant=variant)
        if self.sizes is None or layout is None:
            return None
        return RecordingInfo(self.sizes.modality, layout.channels or (), _sampling_rate(layout.times), layout.times)

    def declared_dataset(self, *, options: Mapping[str, Any] | None = None, variant: str | None = None) -> Dataset:
        """The dataset as declared, with no data: subjects, recording layout and image counts, no arrays.

        Enough to plan runs (units, result keys, compute estimates) before downloading anything; its
        images are numbered placeholders and reading a subject raises :class:`MissingDataError`.
        Raises :class:`InvalidInputError` for a dataset that does not declare its sizes and layout.
        """
        layout = self.declared_layout(options=options, variant=variant)
        n_channels = len(layout.channels) if layout is not None and layout.channels else (
            layout.n_channels if layout is not None else None)
        if self.sizes is None or layout is None or n_channels is None or not self.subjects:
            raise InvalidInputError(f"Dataset {self.name!r} does not declare its subjects, sizes and layout, so it "
                                    "cannot be planned without its files; pass --data-root DIR.")
        chosen = self.variant(variant)
        channels = layout.channels or tuple(f"channel-{i + 1:03d}" for i in range(n_channels))
        hint = self.download_hint("DIR", variant)

        def no_arrays(dataset: Dataset, label: str) -> tuple[np.ndarray, np.ndarray]:
            raise MissingDataError(f"Dataset {self.name!r} is only declared here (no data on disk). {hint}")

        return Dataset(name=self.name, variant=chosen.name if chosen is not None else "default",
                       subjects=tuple(subject_label(s) for s in self.subjects),
                       info=RecordingInfo(self.sizes.modality, channels, _sampling_rate(layout.times), layout.times),
                       train_images=_placeholder_images("train", self.sizes.n_train_images),
                       test_images=_placeholder_images("test", self.sizes.n_test_images),
                       image_root=Path("."), fingerprint="declared", root=Path("."), read_arrays=no_arrays,
                       metadata={"declared": True})

    def download_hint(self, root: Path | str, variant: str | None = None, subject: int | None = None) -> str:
        """The ``eegbench data download`` command that fetches ``variant`` into ``root`` (``subject``'s files only).

        The command names the variant only for a dataset with several (otherwise there is no choice).
        """
        choice = f" --variant {variant or self.default_variant}" if len(self.variants) > 1 else ""
        only = f" --subjects {subject}" if subject is not None else ""
        return f"Get it with `eegbench data download {self.name} --root {root}{choice}{only}`."

    def load(self, *, options: Mapping[str, Any] | None = None, variant: str | None = None,
             data_root: str | Path | None = None) -> Dataset:
        """Load this dataset in canonical form (see :func:`eegbench.data.load_dataset`)."""
        refuse_in_submission_worker("load datasets")
        chosen = self.variant(variant)
        parsed = self.parse_options(options)
        root = Path(data_root).expanduser() if data_root else None
        if root is not None:
            check_folder_path(root, f"pass the folder that `eegbench data download {self.name}` fills")
        return self.loader(root, chosen, parsed)


def _sampling_rate(times: np.ndarray) -> float:
    """The sampling rate of an evenly sampled time axis (1 Hz for a single sample)."""
    return 1.0 / float(times[1] - times[0]) if len(times) > 1 else 1.0


def _placeholder_images(split: str, n_images: int) -> ImageTable:
    """``n_images`` numbered images, each its own concept: the image table of a declared dataset."""
    ids = tuple(f"{split}-{i + 1:05d}" for i in range(n_images))
    return ImageTable(ids, ids, ids)
