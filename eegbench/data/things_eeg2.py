"""THINGS-EEG2 (Gifford et al., NeuroImage 2022): readers, preprocessing from raw, and the loader.

A data root holds the public files in their published layout (``eegbench data download`` writes it)::

    image_set/image_metadata.npy                       concepts and files of the training/test images
    image_set/training_images/00001_aardvark/aardvark_01b.jpg ...
    image_set/test_images/00001_aircraft_carrier/aircraft_carrier_06s.jpg ...
    preprocessed_data/sub-01/preprocessed_eeg_{training,test}.npy        official, 17 ch, 100 Hz
    Preprocessed_data_250Hz/sub-01/preprocessed_eeg_{training,test}.npy  NICE/ATM re-preprocessing, 63 ch, 250 Hz
    raw_data/sub-01/ses-01/raw_eeg_{training,test}.npy                  raw, 63 ch + stim, 1000 Hz

Condition ``i`` of every EEG array is image ``i`` of ``image_metadata.npy``, which lists the image
folders in sorted concept/file order; the loader checks that order instead of trusting it. Each
variant (:data:`VARIANTS`) is converted once into the canonical form and cached.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from eegbench._check import DataError, MissingDataError
from eegbench._progress import logger, progress
from eegbench.data.base import Dataset, ImageTable, RecordingInfo
from eegbench.data.canonical import CanonicalWriter
from eegbench.data.conversion import (
    DATA_ROOT_PLACEHOLDER,
    cached_conversion,
    epoch_continuous,
    read_pickled_dict,
    require_finite,
    require_keys,
    source_digests,
)
from eegbench.data.montages import POSTERIOR_17
from eegbench.normalization import noise_whitener
from eegbench.data.spec import DatasetSpec, DeclaredSizes, RecordingLayout

NAME = "things-eeg2"
# Bump whenever the conversion's output changes, so cached canonical folders are rebuilt.
CONVERTER_VERSION = 1
IMAGE_DIR = "image_set"
METADATA_FILE = f"{IMAGE_DIR}/image_metadata.npy"
CATCH_EVENT = 99999
_SPLIT_FILES = {"train": "training", "test": "test"}
_SPLIT_FOLDERS = {"train": "training_images", "test": "test_images"}


@dataclass(frozen=True)
class Variant:
    """One named preprocessing of THINGS-EEG2.

    Attributes
    ----------
    name : str
        Recorded with every result (e.g. ``"17ch-250hz"``).
    source : {"official", "250hz", "raw"}
        Which public files it is read from.
    folder : str
        Their folder under the data root.
    sfreq : float
        Sampling rate of the converted data.
    channels : tuple of str or None
        Channels kept, in this order; None keeps every channel of the source, in file order.
    n_channels : int
        How many channels the source files must hold.
    description : str
        What the variant is, in words.
    start : float
        Raw variants: the first time kept of each epoch, in seconds (the epochs span -0.2 to 1.0 s).
    """

    name: str
    source: Literal["official", "250hz", "raw"]
    folder: str
    sfreq: float
    channels: tuple[str, ...] | None
    n_channels: int
    description: str
    start: float = 0.0

    def to_dict(self) -> dict:
        data = {"name": self.name, "source": self.source, "folder": self.folder, "sfreq": self.sfreq,
                "channels": list(self.channels) if self.channels else None, "n_channels": self.n_channels,
                "description": self.description}
        return data | ({"start": self.start} if self.start else {})  # variants from before keep their dict


_NICE = ("epochs -0.2 to 1.0 s with baseline (None, 0), resampled to 250 Hz, the 250 samples from 0 to 0.996 s "
         "kept, multivariate noise normalisation with the covariance of the training partition only")
_RAW = ("eegbench's own MNE preprocessing of the raw recordings (osf.io/crxs4, figshare mirror): catch trials (event "
        f"{CATCH_EVENT}) dropped, epochs -0.2 to 1.0 s with baseline (None, 0), resampled to 250 Hz, the 250 samples "
        "from 0 to 0.996 s kept, multivariate noise normalisation per session with the mean Ledoit-Wolf covariance of "
        "that session's training epochs only")
_POSTERIOR = "the 17 occipital/parietal channels (the UBP/NeuroBridge/Shallow Alignment protocol)"
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("official-17ch-100hz", "official", "preprocessed_data", 100.0, None, 17,
            "The official preprocessed files (osf.io/anp5v): 17 occipital/parietal channels, 100 Hz, -0.2 to "
            "0.79 s, multivariate noise normalisation with the covariance of training and test data."),
    Variant("63ch-250hz", "250hz", "Preprocessed_data_250Hz", 250.0, None, 63,
            f"The NICE/ATM re-preprocessing (Hugging Face LidongYang/EEG_Image_decode): 63 channels, {_NICE}."),
    Variant("17ch-250hz", "250hz", "Preprocessed_data_250Hz", 250.0, POSTERIOR_17, 63,
            f"The NICE/ATM re-preprocessing (Hugging Face LidongYang/EEG_Image_decode) restricted to {_POSTERIOR}: "
            f"{_NICE}."),
    Variant("raw-63ch-250hz", "raw", "raw_data", 250.0, None, 63, f"{_RAW}; 63 channels."),
    Variant("raw-17ch-250hz", "raw", "raw_data", 250.0, POSTERIOR_17, 63, f"{_RAW}; {_POSTERIOR}."),
    Variant("raw-63ch-250hz-prestim", "raw", "raw_data", 250.0, None, 63,
            _RAW.replace("the 250 samples from 0 to 0.996 s", "the 300 samples from -0.2 to 0.996 s") +
            "; 63 channels (the window NeuralBench's image task reads, -0.2 to 0.8 s, lies within it).", start=-0.2),
)}
DEFAULT_VARIANT = "17ch-250hz"


class ThingsEEG2Options(BaseModel):
    """Loader options (a task file's ``dataset.options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Literal["float32", "float16"] = "float32"
    raw_train_repetitions: int = Field(4, ge=1)
    raw_test_repetitions: int = Field(80, ge=1)


# --- images ------------------------------------------------------------------------------------


def read_image_tables(root: Path, hint: str) -> tuple[ImageTable, ImageTable]:
    """Training and test images from ``image_metadata.npy``, checked against the image folders.

    Files are relative to ``root/image_set``. Raises when the metadata is not in sorted
    concept/file order (EEG condition ``i`` is image ``i`` of that order), when a training concept
    is also a test concept, or when image files are missing.
    """
    path = root / METADATA_FILE
    metadata = read_pickled_dict(path, "the THINGS-EEG2 image metadata dict", hint)
    tables = {}
    for split, folder in _SPLIT_FOLDERS.items():
        keys = (f"{split}_img_concepts", f"{split}_img_files")
        require_keys(metadata, keys, path, hint)
        concepts = [str(c) for c in metadata[keys[0]]]
        files = [str(f) for f in metadata[keys[1]]]
        if len(concepts) != len(files):
            raise DataError(f"{path}: {keys[0]} has {len(concepts)} entries but {keys[1]} has {len(files)}. {hint}")
        _check_sorted(list(zip(concepts, files)), path, split, hint)
        ids = [Path(f).stem for f in files]
        if len(set(ids)) != len(ids):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})[:3]
            raise DataError(f"{path}: {split} image names repeat (e.g. {duplicates}). {hint}")
        tables[split] = ImageTable(tuple(ids), tuple(f"{folder}/{c}/{f}" for c, f in zip(concepts, files)),
                                   tuple(concepts))
    shared = set(tables["train"].concepts) & set(tables["test"].concepts)
    if shared:
        raise DataError(f"{path}: concepts {sorted(shared)[:3]} are both training and test concepts; THINGS-EEG2 "
                        f"test concepts are held out of training. {hint}")
    for split, table in tables.items():
        _check_image_files(root / IMAGE_DIR, _SPLIT_FOLDERS[split], table, hint)
    return tables["train"], tables["test"]


def _check_sorted(entries: list[tuple[str, str]], path: Path, split: str, hint: str) -> None:
    for i in range(1, len(entries)):
        if entries[i] <= entries[i - 1]:
            raise DataError(
                f"{path}: the {split} images are not in sorted folder/file order (entry {i}, {entries[i]}, follows "
                f"{entries[i - 1]}). Condition i of the EEG arrays is image i of that order, so this metadata "
                f"cannot be matched to the EEG. {hint}")


def _check_image_files(image_root: Path, folder: str, table: ImageTable, hint: str) -> None:
    directory = image_root / folder
    if not directory.is_dir():
        raise MissingDataError(f"Image folder {directory} is missing (it should hold the {len(table)} images listed "
                               f"in {METADATA_FILE}). {hint}")
    missing = [f for f in table.files if not (image_root / f).is_file()]
    if missing:
        raise MissingDataError(f"{len(missing)} of the {len(table)} images listed in {METADATA_FILE} are missing "
                               f"under {image_root}, e.g. {missing[0]}. {hint}")


# --- preprocessed files (official and 250 Hz) ----------------------------------------------------------


@dataclass
class SubjectArrays:
    """One subject's converted responses and their layout."""

    train: np.ndarray
    test: np.ndarray
    ch_names: tuple[str, ...]
    times: np.ndarray
    report: dict


def read_preprocessed(path: Path, variant: Variant, n_images: int, split: str,
                      hint: str) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """Read one ``preprocessed_eeg_{training,test}.npy`` dict and validate it.

    Returns the raw ``(images, repetitions, channels, times)`` array (as stored), the channel names
    and the time axis of the stored samples. For the 250 Hz files, whose ``times`` keeps the full
    epoch (300 values from -0.2 s) while the data holds only its last samples (0 to 0.996 s), the
    time axis is the matching tail of ``times``; it must start at image onset.
    """
    data = read_pickled_dict(path, f"a THINGS-EEG2 {variant.name} dict", hint)
    require_keys(data, ("preprocessed_eeg_data", "ch_names", "times"), path, hint)
    eeg = data["preprocessed_eeg_data"]
    if not isinstance(eeg, np.ndarray) or eeg.ndim != 4 or not np.issubdtype(eeg.dtype, np.floating):
        raise DataError(f"{path}: preprocessed_eeg_data must be a 4-d float array (images, repetitions, channels, "
                        f"times), got {type(eeg).__name__} {getattr(eeg, 'shape', '')}. {hint}")
    if eeg.shape[0] != n_images:
        raise DataError(f"{path}: preprocessed_eeg_data has {eeg.shape[0]} image conditions, but {METADATA_FILE} "
                        f"lists {n_images} {split} images. {hint}")
    ch_names = tuple(str(c) for c in data["ch_names"])
    if len(ch_names) != eeg.shape[2] or len(set(ch_names)) != len(ch_names):
        raise DataError(f"{path}: ch_names has {len(ch_names)} (distinct: {len(set(ch_names))}) names, but "
                        f"preprocessed_eeg_data has {eeg.shape[2]} channels. {hint}")
    if len(ch_names) != variant.n_channels:
        raise DataError(f"{path}: holds {len(ch_names)} channels; variant {variant.name!r} reads files with "
                        f"{variant.n_channels}. {hint}")
    times = _stored_times(np.asarray(data["times"], dtype=np.float64).ravel(), eeg.shape[3], variant, path, hint)
    return eeg, ch_names, times


def _stored_times(times: np.ndarray, n_samples: int, variant: Variant, path: Path, hint: str) -> np.ndarray:
    step = 1.0 / variant.sfreq
    if len(times) < n_samples or (len(times) > n_samples and variant.source != "250hz"):
        raise DataError(f"{path}: times has {len(times)} values but the data has {n_samples} samples. {hint}")
    if len(times) > n_samples:
        # NICE/ATM keep the last samples of a longer epoch and store its full time axis.
        tail = times[-n_samples:]
        if abs(tail[0]) > step / 2:
            raise DataError(
                f"{path}: times has {len(times)} values for {n_samples} samples; the 250 Hz files keep the last "
                f"{n_samples} samples, which must start at image onset (0 s), but they start at {tail[0]:.4f} s. "
                f"The data's time axis cannot be determined. {hint}")
        times = tail
    if len(times) > 1 and not np.allclose(np.diff(times), step, rtol=0, atol=1e-6):
        raise DataError(f"{path}: times are not spaced 1/{variant.sfreq:g} s as variant {variant.name!r} "
                        f"requires (spacing {np.diff(times).min():.6f} to {np.diff(times).max():.6f} s). {hint}")
    return np.round(times, 9)


def _select(eeg: np.ndarray, channels: np.ndarray, ch_names: Sequence[str], dtype: str, path: Path, hint: str,
            chunk: int = 256) -> np.ndarray:
    """``eeg[:, :, channels]`` cast to ``dtype`` in chunks of images, refusing NaN/Inf in what is kept."""
    out = np.empty((eeg.shape[0], eeg.shape[1], len(channels), eeg.shape[3]), dtype=dtype)
    for start in range(0, len(eeg), chunk):
        block = eeg[start:start + chunk][:, :, channels]
        require_finite(block, path, "preprocessed_eeg_data", hint,
                       where=lambda i, s=start: f"image {s + i[0]}, repetition {i[1]}, channel "
                                                f"{ch_names[channels[i[2]]]}, sample {i[3]}")
        out[start:start + chunk] = block
    return out


def _channel_indices(ch_names: Sequence[str], variant: Variant, path: Path, hint: str) -> np.ndarray:
    if variant.channels is None:
        return np.arange(len(ch_names))
    missing = [c for c in variant.channels if c not in ch_names]
    if missing:
        raise DataError(f"{path}: channels {missing} of variant {variant.name!r} are not in the file "
                        f"(it has {', '.join(ch_names)}). {hint}")
    return np.array([list(ch_names).index(c) for c in variant.channels])


def _convert_preprocessed(subject_dir: Path, variant: Variant, tables: dict[str, ImageTable],
                          options: ThingsEEG2Options, hint: str) -> SubjectArrays:
    out, layout = {}, None
    for split, table in tables.items():
        path = subject_dir / f"preprocessed_eeg_{_SPLIT_FILES[split]}.npy"
        eeg, ch_names, times = read_preprocessed(path, variant, len(table), split, hint)
        if layout is not None and (ch_names != layout[0] or not np.array_equal(times, layout[1])):
            raise DataError(f"{path}: channels or time axis differ from the training file of the same subject. "
                            f"{hint}")
        layout = (ch_names, times)
        out[split] = _select(eeg, _channel_indices(ch_names, variant, path, hint), ch_names, options.dtype, path,
                             hint)
        del eeg
    ch_names, times = layout
    kept = variant.channels or ch_names
    return SubjectArrays(out["train"], out["test"], tuple(kept), times, {})


# --- raw recordings ---------------------------------------------------------------------------------


def _load_raw_session(path: Path, hint: str):
    """An ``mne.io.RawArray`` from one ``raw_eeg_{training,test}.npy`` dict (EEG channels plus ``stim``)."""
    import mne

    data = read_pickled_dict(path, "a THINGS-EEG2 raw session dict", hint)
    require_keys(data, ("raw_eeg_data", "ch_names", "ch_types", "sfreq"), path, hint)
    signal = np.asarray(data["raw_eeg_data"], dtype=np.float64)
    ch_names, ch_types = [str(c) for c in data["ch_names"]], [str(t) for t in data["ch_types"]]
    if signal.ndim != 2 or signal.shape[0] != len(ch_names) or len(ch_types) != len(ch_names):
        raise DataError(f"{path}: raw_eeg_data has shape {signal.shape} for {len(ch_names)} channel names and "
                        f"{len(ch_types)} channel types. {hint}")
    if "stim" not in ch_names:
        raise DataError(f"{path}: no 'stim' channel among {ch_names}; the raw files carry the events there. {hint}")
    require_finite(signal, path, "raw_eeg_data", hint)
    info = mne.create_info(ch_names, float(data["sfreq"]), ch_types)
    return mne.io.RawArray(signal, info, verbose=False)


def _epoch_raw(path: Path, hint: str, first_time: float = 0.0, chunk: int = 2000
               ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], np.ndarray, int]:
    """Epochs of one raw file as NICE preprocesses them; returns data, event codes, channels, times, drops.

    Catch trials (event 99999) are dropped; epochs span -0.2 to 1.0 s, are baseline-corrected on
    the pre-stimulus interval, resampled to 250 Hz and cropped to ``first_time``-0.996 s (NICE: from 0).
    Events are epoched in chunks so memory stays bounded at 1000 Hz.
    """
    import mne

    raw = _load_raw_session(path, hint)
    events = mne.find_events(raw, stim_channel="stim", verbose=False)
    events = events[events[:, 2] != CATCH_EVENT]
    if not len(events):
        raise DataError(f"{path}: the stim channel holds no image events. {hint}")
    raw.pick("eeg")
    return epoch_continuous(raw, events, tmin=-0.2, tmax=1.0, sfreq=250.0, first_time=first_time, path=path,
                            hint=hint, chunk=chunk)


def _collect(epochs_by_session: list[tuple[np.ndarray, np.ndarray]], n_images: int, n_reps: int, split: str,
             subject_dir: Path, hint: str) -> tuple[np.ndarray, int]:
    """Arrange epochs as (images, repetitions, ...): event ``k`` is image ``k - 1``, sessions in order.

    Every image needs at least ``n_reps`` repetitions; extra ones (after the first ``n_reps`` in
    session and recording order) are discarded and counted.
    """
    data = np.concatenate([d for d, _ in epochs_by_session])
    codes = np.concatenate([c for _, c in epochs_by_session])
    outside = codes[(codes < 1) | (codes > n_images)]
    if outside.size:
        raise DataError(f"{subject_dir}: {split} event code {int(outside[0])} is outside 1..{n_images} (the "
                        f"{split} images in {METADATA_FILE}). {hint}")
    counts = np.bincount(codes - 1, minlength=n_images)
    short = np.flatnonzero(counts < n_reps)
    if short.size:
        raise DataError(f"{subject_dir}: {split} image {int(short[0]) + 1} has {int(counts[short[0]])} repetitions "
                        f"(after dropping catch trials and epochs outside the recording); {n_reps} are required "
                        f"({short.size} images are short). {hint}")
    order = np.argsort(codes, kind="stable")
    first = np.concatenate([np.flatnonzero(codes[order] == k + 1)[:n_reps] for k in range(n_images)])
    arranged = data[order[first]].reshape(n_images, n_reps, *data.shape[1:])
    return arranged, int(counts.sum() - n_images * n_reps)


def _convert_raw(subject_dir: Path, variant: Variant, tables: dict[str, ImageTable], options: ThingsEEG2Options,
                 hint: str) -> SubjectArrays:
    sessions = sorted(p for p in subject_dir.glob("ses-*") if p.is_dir())
    if not sessions:
        raise MissingDataError(f"{subject_dir} holds no ses-XX folders of raw recordings. {hint}")
    by_split: dict[str, list] = {"train": [], "test": []}
    layout, dropped = None, 0
    for session in sessions:
        epoched = {}
        for split in ("train", "test"):
            path = session / f"raw_eeg_{_SPLIT_FILES[split]}.npy"
            data, codes, ch_names, times, n_dropped = _epoch_raw(path, hint, variant.start)
            if len(ch_names) != variant.n_channels:
                raise DataError(f"{path}: holds {len(ch_names)} EEG channels; variant {variant.name!r} needs "
                                f"{variant.n_channels}. {hint}")
            if layout is not None and (ch_names != layout[0] or not np.array_equal(times, layout[1])):
                raise DataError(f"{path}: channels or time axis differ from {sessions[0]}. {hint}")
            layout, dropped = (ch_names, times), dropped + n_dropped
            epoched[split] = (data, codes)
        whitener = noise_whitener(epoched["train"][0]).astype(np.float32)
        for split, (data, codes) in epoched.items():
            by_split[split].append((np.einsum("ij,ejt->eit", whitener, data), codes))
    ch_names, times = layout
    channels = _channel_indices(ch_names, variant, subject_dir, hint)
    out, extra = {}, {}
    for split, n_reps in (("train", options.raw_train_repetitions), ("test", options.raw_test_repetitions)):
        arranged, extra[split] = _collect(by_split[split], len(tables[split]), n_reps, split, subject_dir, hint)
        out[split] = _select(arranged, channels, ch_names, options.dtype, subject_dir, hint)
    if dropped or any(extra.values()):
        logger.warning("%s: %d epochs fell outside the recording; %s extra repetitions beyond the required ones "
                       "were discarded.", subject_dir.name, dropped, extra)
    report = {"sessions": [s.name for s in sessions], "epochs_outside_recording": dropped,
              "extra_repetitions_discarded": extra}
    return SubjectArrays(out["train"], out["test"], tuple(variant.channels or ch_names), times, report)


# --- the loader ---------------------------------------------------------------------------------------


def _subject_dirs(root: Path, variant: Variant, hint: str) -> list[Path]:
    folder = root / variant.folder
    subjects = sorted(p for p in folder.glob("sub-*") if p.is_dir() and re.fullmatch(r"sub-\d{2}", p.name))
    if not subjects:
        raise MissingDataError(f"No subject folders (sub-01 ... sub-10) found in {folder} for {NAME} variant "
                               f"{variant.name!r}. {hint}")
    return subjects


def _source_files(subject_dir: Path, variant: Variant, hint: str) -> list[Path]:
    if variant.source == "raw":
        files = [s / f"raw_eeg_{part}.npy" for s in sorted(subject_dir.glob("ses-*")) for part in ("training", "test")]
    else:
        files = [subject_dir / f"preprocessed_eeg_{part}.npy" for part in ("training", "test")]
    missing = [f for f in files if not f.is_file()] or ([] if files else [subject_dir / "ses-01"])
    if missing:
        raise MissingDataError(f"Subject {subject_dir.name} of {NAME} is incomplete: {missing[0]} is missing. {hint}")
    return files


def _subject_hint(root: Path, variant: Variant, label: str) -> str:
    """The download command that fetches subject ``label`` (``"sub-02"``) of ``variant``."""
    return SPEC.download_hint(root, variant.name, int(label[4:]))


def _absent_subjects(root: Path, variant: Variant, present: list[Path]) -> dict[str, MissingDataError]:
    """Why each published subject without a folder cannot be loaded, and how to get it."""
    files = "ses-XX/raw_eeg_*.npy" if variant.source == "raw" else "preprocessed_eeg_{training,test}.npy"
    absent = sorted({f"sub-{number:02d}" for number in SPEC.subjects} - {d.name for d in present})
    return {label: MissingDataError(
        f"Subject {label} of {NAME} is not under {root}: variant {variant.name!r} reads its {files} from "
        f"{root / variant.folder / label}, which is missing. {_subject_hint(root, variant, label)}")
        for label in absent}


def _load(data_root: Path | None, variant: Variant, opts: ThingsEEG2Options) -> Dataset:
    """THINGS-EEG2 in canonical form, converting the source files once per variant.

    The loader of :data:`SPEC`: load it with ``eegbench.data.load_dataset("things-eeg2", variant=...,
    options=..., data_root=...)``.

    Parameters
    ----------
    data_root : pathlib.Path
        Folder holding the files in their published layout (see the module docstring).
    variant : Variant
        One of :data:`VARIANTS` (default ``"17ch-250hz"``).
    opts : ThingsEEG2Options
        ``dtype`` (``"float32"`` or ``"float16"``) and, for the raw variants, the number of
        repetitions each training/test image must have (``raw_train_repetitions=4``,
        ``raw_test_repetitions=80``).

    Notes
    -----
    Subjects are the ``sub-XX`` folders present. One whose files are missing or damaged stays listed
    but raises its error when asked for, without keeping the others from loading. Reading a 250 Hz
    training file (8.3 GB of pickled float64) needs about twice its size in memory once; later loads
    memory-map the cache.
    """
    if data_root is None:
        raise MissingDataError(
            f"The {NAME} tasks need the dataset on disk: pass --data-root DIR (Python: data_root=DIR). "
            f"{SPEC.download_hint('DIR', variant.name)}")
    root = Path(data_root).expanduser().resolve()
    if not root.is_dir():
        raise MissingDataError(f"Data root {root} does not exist. {SPEC.download_hint(root, variant.name)}")
    hint = SPEC.download_hint(root, variant.name)
    train_images, test_images = read_image_tables(root, hint)
    tables = {"train": train_images, "test": test_images}
    present = _subject_dirs(root, variant, hint)
    # A subject whose files are incomplete stays listed and raises its error when asked for; the others still load.
    files, incomplete = {}, {}
    for subject_dir in present:
        try:
            files[subject_dir] = _source_files(subject_dir, variant, _subject_hint(root, variant, subject_dir.name))
        except MissingDataError as error:
            incomplete[subject_dir.name] = error
    if not files:
        raise next(iter(incomplete.values()))
    absent = _absent_subjects(root, variant, present)
    if absent:
        logger.info("%s %s: subjects %s are not in %s; loading %d subjects.", NAME, variant.name,
                    ", ".join(absent), root / variant.folder, len(present))
    subject_dirs = list(files)
    digests = source_digests(root, [root / METADATA_FILE, *[f for group in files.values() for f in group]])
    key = {"dataset": NAME, "converter": CONVERTER_VERSION, "variant": variant.to_dict(),
           "options": opts.model_dump(), "sources": digests}

    def build(folder: Path) -> None:
        writer = CanonicalWriter(folder, dtype=opts.dtype, data_root=root)
        layout, reports = None, {}
        convert = _convert_raw if variant.source == "raw" else _convert_preprocessed
        with progress(f"Converting {NAME} {variant.name}", total=len(subject_dirs)) as advance:
            for subject_dir in subject_dirs:
                label = subject_dir.name
                with writer.subject(label):
                    arrays = convert(subject_dir, variant, tables, opts, _subject_hint(root, variant, label))
                    if layout is not None and (arrays.ch_names != layout[0]
                                               or not np.array_equal(arrays.times, layout[1])):
                        raise DataError(f"{subject_dir}: channels or time axis differ from {writer.subjects[0]}. "
                                        f"{hint}")
                    layout = (arrays.ch_names, arrays.times)
                    writer.add_subject(label, arrays.train, arrays.test)
                    reports[label] = arrays.report
                advance(1)
        writer.require_subjects()
        info = RecordingInfo("eeg", layout[0], variant.sfreq, layout[1], unit="whitened")
        writer.finish(name=NAME, variant=variant.name, info=info, train_images=train_images, test_images=test_images,
                      image_root=f"{DATA_ROOT_PLACEHOLDER}/{IMAGE_DIR}",
                      source={**key, "description": variant.description, "subjects": reports})

    return cached_conversion(NAME, variant.name, key, root / IMAGE_DIR, build, data_root=root, broken=incomplete,
                             absent=absent)


#: (first sample in s, number of samples) of each source's epochs, as published (official) or preprocessed
_TIME_AXES = {"official": (-0.2, 100), "250hz": (0.0, 250), "raw": (0.0, 250)}


def _layout(variant: Variant, opts: ThingsEEG2Options) -> RecordingLayout:
    """The layout of :data:`SPEC`: each variant's time axis, and its channels when it selects them."""
    first, n_samples = _TIME_AXES[variant.source]
    if variant.source == "raw":  # cropped from variant.start to 0.996 s
        first, n_samples = variant.start, n_samples + round(-variant.start * variant.sfreq)
    return RecordingLayout.sampled(variant.sfreq, first, n_samples, variant.channels)


SPEC = DatasetSpec(
    name=NAME, options=ThingsEEG2Options, loader=_load, variants=VARIANTS, default_variant=DEFAULT_VARIANT,
    subjects=tuple(range(1, 11)), manifest=True, layout=_layout, sizes=DeclaredSizes("eeg", 16540, 200),
    description="THINGS-EEG2 (Gifford et al., NeuroImage 2022): 10 subjects, 16540 training images seen 4 times "
                "and 200 test images seen 80 times.",
)
