"""Alljoined-1.6M (Xu et al. 2025, arXiv 2508.18571): the publishers' preprocessed files and the loader.

20 subjects watched the THINGS-EEG2 images in RSVP (100 ms on, 100 ms off) on a consumer-grade
32-channel EMOTIV FLEX2 headset, four sessions each: the 16540 training images (1654 concepts x
10) about 4 times and the 200 test images (200 other concepts) about 80 times. The data are on the
Hugging Face Hub (``Alljoined/Alljoined-1.6M``) under **CC-BY-NC-ND-4.0** (non-commercial, no
derivatives): ``eegbench data download alljoined --accept-license`` fetches them. A data root
holds them in the repository's layout::

    preprocessed_eeg/sub-XX/preprocessed_eeg_training_flat.npy      one row per kept training trial
    preprocessed_eeg/sub-XX/preprocessed_eeg_test_flat.npy          one row per kept test trial
    preprocessed_eeg/sub-XX/experiment_metadata_categories.parquet  the trial table (one row per trial shown)
    images/NNNNN.jpg                                                the stimuli (stimuli.zip, unpacked)

As the publishers' ``preprocessing.py`` writes them, each ``*_flat.npy`` is a pickled dict:
``preprocessed_eeg_data`` ``(trials, 32, 250)`` (epoched, baseline-corrected on [-0.2, 0] s,
resampled to 250 Hz, multivariate noise normalisation with the training trials' covariance per
session, cropped to 0-0.996 s), ``ch_names``, ``times`` and ``configs``. Its rows are the trial
table's rows of that ``partition`` (``stim_train`` or ``stim_test``) that are not ``dropped``, in
table order; ``image_path`` names the image shown and ``category_name`` its THINGS concept.

The trial table is read with the ``datasets`` library (its Arrow cache is keyed by the file's
sha256, so it is never stale); the arrays, which are not a table, with eegbench's numpy-only
unpickler. The conversion into the canonical cache groups the trials by image, sorted by file
name, and keeps the first ``train_repetitions`` (default 4) and ``test_repetitions`` (default 80)
of each image, in recording order. An image shown fewer times (its other trials were dropped by the
publishers) has its missing repetitions filled with the mean of its recorded ones, which leaves its
repetition average unchanged; the counts of filled repetitions and of trials beyond the limit are
logged and recorded in the dataset's source description. An image never recorded for a subject,
training and test concepts that overlap, or subjects shown different images fail with the
subject, the image and the counts.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from eegbench._check import DataError, MissingDataError
from eegbench._paths import cache_home
from eegbench._progress import logger, progress
from eegbench.data.base import Dataset, ImageTable, RecordingInfo
from eegbench.data.canonical import CanonicalWriter
from eegbench.data.conversion import (
    DATA_ROOT_PLACEHOLDER,
    cached_conversion,
    read_pickled_dict,
    require_finite,
    require_keys,
    source_digests,
)
from eegbench.data.spec import DatasetSpec, DeclaredSizes, RecordingLayout

NAME = "alljoined"
REPO_ID = "Alljoined/Alljoined-1.6M"
LICENSE = "CC-BY-NC-ND-4.0"
CONVERTER_VERSION = 1
EEG_DIR = "preprocessed_eeg"
IMAGE_DIR = "images"
TRIALS_FILE = "experiment_metadata_categories.parquet"
ARRAY_FILES = {"train": "preprocessed_eeg_training_flat.npy", "test": "preprocessed_eeg_test_flat.npy"}
PARTITIONS = {"train": "stim_train", "test": "stim_test"}
TRIAL_COLUMNS = ("partition", "dropped", "image_path", "category_name")
#: The EMOTIV FLEX2 montage of the recordings, as the dataset's BIDS release (NEMAR nm000134) lists it.
CHANNELS = ("Cz", "Fp1", "F7", "F3", "CP5", "CP1", "P1", "P3", "P5", "P7", "PO9", "PO7", "PO3", "O1", "O9", "Pz",
            "POz", "Oz", "O10", "O2", "PO4", "PO8", "PO10", "P8", "P6", "P4", "P2", "CP2", "CP6", "F4", "F8", "Fp2")
_SUBJECT_FOLDER = re.compile(r"sub-(\d+)")


@dataclass(frozen=True)
class Variant:
    """A named reading of the publishers' preprocessed files (see :data:`VARIANTS`)."""

    name: str
    channels: tuple[str, ...]
    sfreq: float
    window: tuple[float, float]
    description: str

    def to_dict(self) -> dict:
        return {"name": self.name, "channels": list(self.channels), "sfreq": self.sfreq, "window": list(self.window),
                "description": self.description}


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("official-32ch-250hz", CHANNELS, 250.0, (0.0, 1.0),
            f"The publishers' preprocessed files (Hugging Face {REPO_ID}, preprocessed_eeg/): 32 EMOTIV FLEX2 "
            "channels, epochs baseline-corrected on [-0.2, 0] s, 250 Hz, multivariate noise normalisation with the "
            "training trials' covariance per session, 0-0.996 s (250 samples). Licence: CC-BY-NC-ND-4.0."),
)}
DEFAULT_VARIANT = "official-32ch-250hz"


class AlljoinedOptions(BaseModel):
    """Loader options (a task file's ``dataset.options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Literal["float32", "float16"] = "float32"
    train_repetitions: int = Field(4, ge=1, description="Repetitions kept per training image (the design shows 4).")
    test_repetitions: int = Field(80, ge=1, description="Repetitions kept per test image (the design shows 80).")


@dataclass(frozen=True)
class Trials:
    """The kept trials of one subject: for each split, the image of each array row, in row order."""

    images: dict[str, tuple[str, ...]]
    concepts: dict[str, dict[str, str]]


def read_trials(path: Path, cache_key: str, hint: str) -> Trials:
    """The trial table of ``path`` (via ``datasets``), reduced to the image of each kept trial per split.

    ``cache_key`` (the file's sha256) names the Arrow cache, so a changed file is never served from it.
    """
    import datasets
    import pyarrow

    if not path.is_file():
        raise MissingDataError(f"{path} is missing (the Alljoined-1.6M trial table). {hint}")
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # eegbench's own progress covers the conversion
    try:
        table = datasets.load_dataset("parquet", data_files=str(path), split="train",
                                      cache_dir=str(cache_home() / "hf-datasets" / cache_key[:16]))
    except (pyarrow.ArrowException, datasets.exceptions.DatasetGenerationError, OSError) as err:
        raise DataError(f"{path} is truncated or corrupt, not a readable parquet file ({type(err).__name__}: "
                        f"{err}). Delete it and download it again. {hint}") from None
    finally:
        if bars:
            datasets.enable_progress_bars()
    missing = [c for c in TRIAL_COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: the trial table lacks the column(s) {missing} (it has {table.column_names}). "
                        f"{hint}")
    columns = {c: table.data.column(c).to_numpy(zero_copy_only=False) for c in TRIAL_COLUMNS}
    kept = ~columns["dropped"].astype(bool)
    names = np.array([Path(str(p)).name for p in columns["image_path"]], dtype=object)
    images, concepts = {}, {}
    for split, partition in PARTITIONS.items():
        rows = kept & (columns["partition"] == partition)
        images[split] = tuple(names[rows])
        concepts[split] = {}
        for name, concept in zip(names[rows], columns["category_name"][rows]):
            if concepts[split].setdefault(name, str(concept)) != str(concept):
                raise DataError(f"{path}: image {name} is listed under the concepts {concepts[split][name]!r} and "
                                f"{concept!r}. {hint}")
        if not images[split]:
            raise DataError(f"{path}: no kept trial has partition {partition!r}. {hint}")
    shared = sorted(set(concepts["train"].values()) & set(concepts["test"].values()))
    if shared:
        raise DataError(f"{path}: concepts {shared[:3]} are both training and test concepts; the test concepts are "
                        f"held out of training. {hint}")
    return Trials(images, concepts)


def _image_table(concepts: dict[str, str]) -> ImageTable:
    """Images sorted by file name (their number), each with its concept."""
    files = tuple(sorted(concepts))
    return ImageTable(tuple(Path(f).stem for f in files), files, tuple(concepts[f] for f in files))


def group_repetitions(rows: tuple[str, ...], files: tuple[str, ...], repetitions: int, path: Path,
                      hint: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Which array rows form each image's repetitions (see the module docstring).

    Returns ``(index, recorded, report)``: ``index`` ``(images, repetitions)`` rows of each image in recording
    order, padded with its first row; ``recorded`` ``(images,)`` how many of them are real trials (the
    others are filled with their mean); ``report`` the counts of filled repetitions and ignored trials.
    """
    by_image: dict[str, list[int]] = {}
    for row, name in enumerate(rows):
        by_image.setdefault(name, []).append(row)
    never = [f for f in files if f not in by_image]
    if never:
        raise DataError(f"{path}: {len(never)} images have no kept trial, e.g. {never[:3]}; every image of the "
                        f"design needs at least one. {hint}")
    index = np.empty((len(files), repetitions), dtype=np.int64)
    recorded = np.empty(len(files), dtype=np.int64)
    for i, name in enumerate(files):
        kept = by_image[name][:repetitions]
        index[i] = kept + [kept[0]] * (repetitions - len(kept))
        recorded[i] = len(kept)
    counts = Counter(len(by_image[f]) for f in files)
    report = {"repetitions_filled": int((repetitions - recorded).sum()),
              "trials_ignored": int(sum(max(0, n - repetitions) * k for n, k in counts.items())),
              "trials_per_image": {str(n): k for n, k in sorted(counts.items())}}
    return index, recorded, report


def _repetition_array(data: np.ndarray, index: np.ndarray, recorded: np.ndarray, dtype: str) -> np.ndarray:
    """``data[index]`` with each image's padded repetitions replaced by the mean of its recorded ones."""
    out = np.empty(index.shape + data.shape[1:], dtype=dtype)
    for start in range(0, len(index), 1024):  # bounded float64 temporaries
        out[start:start + 1024] = data[index[start:start + 1024]]
    for i in np.flatnonzero(recorded < index.shape[1]):
        out[i, recorded[i]:] = data[index[i, :recorded[i]]].mean(axis=0)
    return out


def _read_array(path: Path, variant: Variant, hint: str) -> np.ndarray:
    """The ``(trials, channels, times)`` array of a flat file, in the variant's channel order, checked."""
    contents = read_pickled_dict(path, "an Alljoined-1.6M preprocessed EEG dict", hint)
    require_keys(contents, ("preprocessed_eeg_data", "ch_names", "times"), path, hint)
    data = np.asarray(contents["preprocessed_eeg_data"])
    names = [str(c) for c in contents["ch_names"]]
    if data.ndim != 3 or data.shape[1] != len(names):
        raise DataError(f"{path}: preprocessed_eeg_data has shape {data.shape}; expected (trials, {len(names)} "
                        f"channels, times). {hint}")
    missing = [c for c in variant.channels if c not in names]
    if missing:
        raise DataError(f"{path}: lacks the channel(s) {missing} of variant {variant.name!r} (it has {names}). {hint}")
    expected = _layout(variant, None).times
    times = np.round(np.asarray(contents["times"], dtype=np.float64), 9)
    if times.shape != expected.shape or not np.allclose(times, expected, atol=1e-6):
        raise DataError(f"{path}: its {times.size} samples span {times[0]:g} to {times[-1]:g} s; variant "
                        f"{variant.name!r} expects {expected.size} samples from {expected[0]:g} to {expected[-1]:g} "
                        f"s. {hint}")
    picked = data[:, [names.index(c) for c in variant.channels]]
    require_finite(picked, path, "preprocessed_eeg_data", hint,
                   where=lambda i: f"trial {i[0]}, channel {variant.channels[i[1]]}, sample {i[2]}")
    return picked


def _load(data_root: Path | None, variant: Variant, opts: AlljoinedOptions) -> Dataset:
    """Alljoined-1.6M in canonical form, converted once (the loader of :data:`SPEC`).

    Parameters
    ----------
    data_root : pathlib.Path
        Folder holding ``preprocessed_eeg/sub-XX/`` and ``images/`` (see the module docstring).
    variant : Variant
        One of :data:`VARIANTS`.
    opts : AlljoinedOptions
        ``dtype``, ``train_repetitions``, ``test_repetitions``.
    """
    if data_root is None:
        raise MissingDataError(f"The {NAME} tasks need the dataset on disk: pass --data-root DIR (Python: "
                               f"data_root=DIR). {SPEC.download_hint('DIR')}")
    root = Path(data_root).expanduser().resolve()
    found = {f"sub-{int(m.group(1)):02d}": folder for folder in sorted((root / EEG_DIR).glob("sub-*"))
             if folder.is_dir() and (m := _SUBJECT_FOLDER.fullmatch(folder.name))}
    if not found:
        raise MissingDataError(f"No Alljoined-1.6M subject folders (sub-01 ... sub-20) in {root / EEG_DIR}. "
                               f"{SPEC.download_hint(root)}")
    sources = {label: [folder / TRIALS_FILE, *(folder / f for f in ARRAY_FILES.values())]
               for label, folder in found.items()}
    absent_files = {label: [p for p in paths if not p.is_file()] for label, paths in sources.items()}
    broken: dict[str, DataError] = {label: MissingDataError(
        f"Subject {label} of {NAME} lacks {', '.join(str(p) for p in missing)}. {_subject_hint(root, label)}")
        for label, missing in absent_files.items() if missing}
    digests = source_digests(root, [p for label, paths in sources.items() if label not in broken for p in paths])
    # The trial tables are small and decide the image tables, so they are read on every load; a subject
    # whose table fails stays listed and raises its error when asked for, the others still load.
    trials: dict[str, Trials] = {}
    for label in sources:
        if label in broken:
            continue
        path = sources[label][0]
        try:
            trials[label] = read_trials(path, digests[path.relative_to(root).as_posix()], _subject_hint(root, label))
        except DataError as error:
            broken[label] = error
    if not trials:
        raise next(iter(broken.values()))
    reference_label, reference = next(iter(trials.items()))
    for label, subject in list(trials.items())[1:]:
        if subject.concepts != reference.concepts:
            differ = sorted(set(subject.concepts["train"]) ^ set(reference.concepts["train"])
                            | set(subject.concepts["test"]) ^ set(reference.concepts["test"]))
            broken[label] = DataError(f"{sources[label][0]}: {label} was shown other images than {reference_label} "
                                      f"(e.g. {differ[:3]}); all subjects must share the same images.")
            del trials[label]
    tables = {split: _image_table(reference.concepts[split]) for split in PARTITIONS}
    missing_images = [f for table in tables.values() for f in table.files if not (root / IMAGE_DIR / f).is_file()]
    if missing_images:
        raise MissingDataError(f"{len(missing_images)} stimulus images are missing under {root / IMAGE_DIR}, e.g. "
                               f"{missing_images[0]}. {SPEC.download_hint(root)} (it unpacks stimuli.zip there).")
    key = {"dataset": NAME, "converter": CONVERTER_VERSION, "variant": variant.to_dict(), "options": opts.model_dump(),
           "sources": {rel: digest for rel, digest in digests.items()
                       if rel.split("/")[1] in trials}}
    limits = {"train": opts.train_repetitions, "test": opts.test_repetitions}

    def build(out_folder: Path) -> None:
        writer = CanonicalWriter(out_folder, dtype=opts.dtype, data_root=root)
        reports = {}
        with progress(f"Converting {NAME} {variant.name}", total=len(trials)) as advance:
            for label, subject in trials.items():
                with writer.subject(label):
                    hint = _subject_hint(root, label)
                    arrays, reports[label] = {}, {}
                    for split, limit in limits.items():
                        path = sources[label][1 + list(PARTITIONS).index(split)]
                        data = _read_array(path, variant, hint)
                        if len(data) != len(subject.images[split]):
                            raise DataError(f"{path}: holds {len(data)} trials, but the trial table lists "
                                            f"{len(subject.images[split])} kept {PARTITIONS[split]} trials; the "
                                            f"files do not belong together. {hint}")
                        index, recorded, reports[label][split] = group_repetitions(
                            subject.images[split], tables[split].files, limit, path, hint)
                        arrays[split] = _repetition_array(data, index, recorded, opts.dtype)
                        del data
                    writer.add_subject(label, arrays["train"], arrays["test"])
                    logger.info("%s %s: %d training images x %d and %d test images x %d repetitions (filled "
                                "with the image's mean: %d training, %d test).", NAME, label,
                                len(tables["train"].files), limits["train"], len(tables["test"].files),
                                limits["test"], reports[label]["train"]["repetitions_filled"],
                                reports[label]["test"]["repetitions_filled"])
                advance(1)
        info = RecordingInfo("eeg", variant.channels, variant.sfreq, _layout(variant, opts).times, unit="whitened")
        writer.finish(name=NAME, variant=variant.name, info=info, train_images=tables["train"],
                      test_images=tables["test"], image_root=f"{DATA_ROOT_PLACEHOLDER}/{IMAGE_DIR}",
                      source={**key, "description": variant.description, "license": LICENSE,
                              "subjects": {label: reports[label] for label in writer.subjects}})

    return cached_conversion(NAME, variant.name, key, root / IMAGE_DIR, build, data_root=root, broken=broken,
                             absent=_absent_subjects(root, found))


def _subject_hint(root: Path, label: str) -> str:
    """The download command that fetches subject ``label`` (``"sub-02"``)."""
    return SPEC.download_hint(root, subject=int(label[4:]))


def _absent_subjects(root: Path, found: dict[str, Path]) -> dict[str, MissingDataError]:
    """Why each published subject without a folder cannot be loaded, and how to get it."""
    return {label: MissingDataError(f"Subject {label} of {NAME} is not under {root}: {root / EEG_DIR / label} is "
                                    f"missing. {_subject_hint(root, label)}")
            for label in (f"sub-{number:02d}" for number in SPEC.subjects) if label not in found}


def _layout(variant: Variant, opts: AlljoinedOptions | None) -> RecordingLayout:
    """The layout of :data:`SPEC`: the variant's channels and window at its sampling rate."""
    start, stop = variant.window
    return RecordingLayout.sampled(variant.sfreq, start, round((stop - start) * variant.sfreq), variant.channels)


SPEC = DatasetSpec(
    name=NAME, options=AlljoinedOptions, loader=_load, variants=VARIANTS,
    default_variant=DEFAULT_VARIANT, subjects=tuple(range(1, 21)), manifest=True, layout=_layout,
    sizes=DeclaredSizes("eeg", 16540, 200),
    description="Alljoined-1.6M (Xu et al. 2025, arXiv 2508.18571; Hugging Face Alljoined/Alljoined-1.6M, "
                "CC-BY-NC-ND-4.0): 20 subjects, consumer 32-channel EMOTIV FLEX2 headset; the THINGS-EEG2 images, "
                "16540 training images (1654 concepts x 10) seen ~4 times and 200 test images of other concepts "
                "seen ~80 times.",
)
