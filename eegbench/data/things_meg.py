"""THINGS-MEG (Hebart et al., eLife 2023; OpenNeuro ds004212): reader of the official epochs and the loader.

A data root holds the official derivatives and the THINGS images::

    derivatives/preprocessed/preprocessed_P1-epo.fif ... P4    (271 sensors, 200 Hz, -0.1 to 1.3 s)
    object_images/<concept>/<image>.jpg                          (THINGS images, osf.io/jum2f)

Each epochs file carries the trial table (``sample_attributes_P{n}.csv``) as its metadata. The
zero-shot split used by ATM, UBP and NeuroBridge is rebuilt from it:

* catch trials (``trial_type == "catch"``) are dropped;
* **test** = the images of ``trial_type == "test"`` (200 images shown 12 times each); all
  repetitions are kept, for the protocol to average;
* **training** = every ``"exp"`` image whose concept is not a test concept (1654 concepts x 12
  images, each shown once).

Explicit rules, never silent: every test image must have the same number of repetitions, every
training image must occur exactly once, and all subjects must share the same training and test
images; otherwise loading that subject fails naming it, the images and the counts. Every file is
checked to be whole before MNE reads it (MNE reads a truncated first part as fewer epochs). Images are ordered
by (concept, file name); concepts are the image file name without its ``_NNx`` suffix.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from eegbench._check import DataError, InvalidInputError, MissingDataError
from eegbench._progress import logger, progress
from eegbench.data.base import Dataset, ImageTable, RecordingInfo
from eegbench.data.canonical import CanonicalWriter
from eegbench.data.conversion import DATA_ROOT_PLACEHOLDER, cached_conversion, require_finite, source_digests
from eegbench.data.spec import DatasetSpec, DeclaredSizes, RecordingLayout

NAME = "things-meg"
CONVERTER_VERSION = 1
EPOCHS_DIR = "derivatives/preprocessed"
IMAGE_DIR = "object_images"
TRIAL_TYPES = ("exp", "test", "catch")
_EPOCHS_FILE = re.compile(r"preprocessed_P(\d+)-epo\.fif")
_FIF_TAG = struct.Struct(">iIii")  # a FIF tag's header: kind, type, data size, position of the next tag


@dataclass(frozen=True)
class Variant:
    """A named reading of the THINGS-MEG epochs (see :data:`VARIANTS`)."""

    name: str
    sfreq: float
    n_channels: int
    window: tuple[float, float]
    description: str

    def to_dict(self) -> dict:
        return {"name": self.name, "sfreq": self.sfreq, "n_channels": self.n_channels, "window": list(self.window),
                "description": self.description}


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("official-271ch-200hz", 200.0, 271, (0.0, 1.0),
            "The official preprocessed epochs (OpenNeuro ds004212 derivatives): 271 MEG sensors, 0.1-40 Hz, "
            "z-scored against the baseline, 200 Hz; cropped to [0, 1) s (200 samples)."),
    Variant("official-271ch-200hz-prestim", 200.0, 271, (-0.1, 1.0),
            "The official preprocessed epochs (OpenNeuro ds004212 derivatives): 271 MEG sensors, 0.1-40 Hz, "
            "z-scored against the baseline, 200 Hz; from their first sample, -0.1 s, to 1 s (220 samples)."),
)}
DEFAULT_VARIANT = "official-271ch-200hz"


class ThingsMEGOptions(BaseModel):
    """Loader options (a task file's ``dataset.options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Literal["float32", "float16"] = "float32"


def images_hint(root: Path | str) -> str:
    return (f"The THINGS images are a password-protected archive under the THINGS license: `eegbench data download "
            f"{NAME} --root {root}` fetches images_THINGS.zip and password_images.txt from osf.io/jum2f; read the "
            f"terms and password there, then unzip the archive so that {Path(root) / IMAGE_DIR}/<concept>/<image>.jpg "
            f"exist.")


def concept_of(file_name: str) -> str:
    """THINGS concept of an image file: ``"aircraft_carrier_06s.jpg"`` -> ``"aircraft_carrier"``."""
    stem = Path(file_name).stem
    concept, sep, suffix = stem.rpartition("_")
    if not sep or not concept or not re.fullmatch(r"\d+[a-z]?", suffix):
        raise InvalidInputError(f"{file_name!r} is not a THINGS image file name (<concept>_<NN><letter>.jpg).")
    return concept


@dataclass
class SplitPlan:
    """Which epochs form the zero-shot training and test sets of one subject.

    Attributes
    ----------
    train_files, test_files : tuple of str
        Image files (``"<concept>/<file>"``, relative to ``object_images``), sorted.
    train_epochs : numpy.ndarray
        ``(n_train, 1)`` epoch index of each training image.
    test_epochs : numpy.ndarray
        ``(n_test, n_repetitions)`` epoch indices of each test image, in recording order.
    report : dict
        Counts of dropped catch trials and excluded test-concept trials.
    """

    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    train_epochs: np.ndarray
    test_epochs: np.ndarray
    report: dict


def zero_shot_split(metadata, path: Path, hint: str) -> SplitPlan:
    """Build the zero-shot split from an epochs file's trial table (see the module docstring)."""
    missing = [c for c in ("trial_type", "image_path") if c not in metadata.columns]
    if missing:
        raise DataError(f"{path}: the epochs metadata lacks the column(s) {missing} (it has "
                        f"{list(metadata.columns)}); the official files carry sample_attributes_P<n>.csv. {hint}")
    trial_types = metadata["trial_type"].astype(str).to_numpy()
    unknown = sorted(set(trial_types) - set(TRIAL_TYPES))
    if unknown:
        raise DataError(f"{path}: unknown trial_type values {unknown}; expected {list(TRIAL_TYPES)}. {hint}")
    try:
        names = [Path(str(p)).name for p in metadata["image_path"]]
        files = [f"{concept_of(n)}/{n}" if t != "catch" else "" for n, t in zip(names, trial_types)]
    except InvalidInputError as err:
        raise DataError(f"{path}: {err} {hint}") from None

    test_rows: dict[str, list[int]] = {}
    for i in np.flatnonzero(trial_types == "test"):
        test_rows.setdefault(files[i], []).append(int(i))
    repetitions = Counter(len(rows) for rows in test_rows.values())
    if len(repetitions) > 1:
        n_reps = repetitions.most_common(1)[0][0]
        odd = sorted((f, len(r)) for f, r in test_rows.items() if len(r) != n_reps)
        raise DataError(f"{path}: test images must all have the same number of repetitions; most have {n_reps}, "
                        f"but {len(odd)} differ, e.g. {odd[:3]}. {hint}")
    test_concepts = {f.split("/")[0] for f in test_rows}
    train_rows: dict[str, list[int]] = {}
    excluded = 0
    for i in np.flatnonzero(trial_types == "exp"):
        if files[i].split("/")[0] in test_concepts:
            excluded += 1
        else:
            train_rows.setdefault(files[i], []).append(int(i))
    repeated = sorted((f, len(r)) for f, r in train_rows.items() if len(r) != 1)
    if repeated:
        raise DataError(f"{path}: training images must occur exactly once, but {len(repeated)} repeat, e.g. "
                        f"{repeated[:3]}. {hint}")
    if not test_rows or not train_rows:
        raise DataError(f"{path}: found {len(test_rows)} test and {len(train_rows)} training images; both are "
                        f"needed. {hint}")
    test_files = tuple(sorted(test_rows, key=lambda f: tuple(f.split("/"))))
    train_files = tuple(sorted(train_rows, key=lambda f: tuple(f.split("/"))))
    return SplitPlan(
        train_files, test_files,
        np.array([train_rows[f] for f in train_files], dtype=np.int64),
        np.array([test_rows[f] for f in test_files], dtype=np.int64),
        {"catch_trials_dropped": int((trial_types == "catch").sum()),
         "test_concept_trials_excluded": excluded},
    )


def image_table(files: tuple[str, ...]) -> ImageTable:
    """The table of THINGS image files ``"<concept>/<file>"``: ids are the file stems, concepts the folders."""
    return ImageTable(tuple(Path(f).stem for f in files), files, tuple(f.split("/")[0] for f in files))


def _epochs_parts(path: Path) -> list[Path]:
    """An epochs file and the split parts beside it (``-epo-1.fif``...): MNE splits files over 2 GB."""
    return [path, *sorted(path.parent.glob(f"{path.stem}-*.fif"))]


def _fif_cut_short(path: Path) -> str | None:
    """Where a FIF file is cut short, in words, or None for a whole file.

    A FIF file is a chain of tags (a 16-byte header: kind, type, data size, position of the next
    tag, 0 meaning right after this one), and MNE ends every file it writes with a tag pointing
    nowhere (-1). Following the chain reads the headers only.
    """
    size = path.stat().st_size
    position = 0
    with open(path, "rb") as handle:
        while True:
            handle.seek(position)
            header = handle.read(_FIF_TAG.size)
            if len(header) < _FIF_TAG.size:
                return f"it ends at byte {size}, before the FIF tag that should start at byte {position}"
            _, _, data_size, following = _FIF_TAG.unpack(header)
            end = position + _FIF_TAG.size + data_size
            if data_size < 0 or end > size:
                return f"its FIF tag at byte {position} runs to byte {end}, past its end at byte {size}"
            if following == -1:
                return None
            if following != 0 and following <= position:
                return f"its FIF tag at byte {position} points back to byte {following}"
            position = following or end


def _read_epochs(path: Path, hint: str):
    """The epochs of ``path`` and its split parts (data not loaded), after checking every part is whole.

    MNE does not check that: it fails on a cut split part with a bare AssertionError, and reads a
    cut first part as fewer epochs (the rest of the recording is named at its end), with a warning.
    """
    import mne

    for part in _epochs_parts(path):
        cut = _fif_cut_short(part)
        if cut:
            raise DataError(f"{part} is truncated or corrupt: {cut}, as when a download or copy was interrupted. "
                            f"Delete it and download it again. {hint}")
    try:
        return mne.read_epochs(path, preload=False, verbose=False)
    except FileNotFoundError as err:  # a missing split part of a large file
        raise MissingDataError(f"{path} cannot be read: {err}. Split parts (-epo-1.fif, ...) must sit beside it. "
                               f"{hint}") from None
    # MNE asserts on some malformed structures
    except (OSError, ValueError, RuntimeError, KeyError, IndexError, AssertionError) as err:
        raise DataError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}). {hint}") from None


def _extract(epochs, indices: np.ndarray, picks: np.ndarray, keep: np.ndarray, dtype: str, path: Path, hint: str,
             chunk: int = 1000) -> np.ndarray:
    """Epochs ``indices`` (any shape) as ``(*indices.shape, channels, kept times)``, read in chunks."""
    flat = indices.ravel()
    out = np.empty((len(flat), len(picks), int(keep.sum())), dtype=dtype)
    order = np.argsort(flat, kind="stable")  # read the file front to back
    for start in range(0, len(flat), chunk):
        rows = order[start:start + chunk]
        block = epochs.get_data(picks=picks, item=flat[rows], verbose=False)[:, :, keep]
        require_finite(block, path, "the epochs data", hint,
                       where=lambda i, r=rows: f"epoch {flat[r[i[0]]]}, sensor {epochs.ch_names[picks[i[1]]]}")
        out[rows] = block
    return out.reshape(*indices.shape, *out.shape[1:])


def _load(data_root: Path | None, variant: Variant, opts: ThingsMEGOptions) -> Dataset:
    """THINGS-MEG in canonical form (zero-shot split, test repetitions kept), converted once.

    The loader of :data:`SPEC`: load it with ``eegbench.data.load_dataset("things-meg", options=...,
    data_root=...)``.

    Parameters
    ----------
    data_root : pathlib.Path
        Folder holding ``derivatives/preprocessed/preprocessed_P<n>-epo.fif`` and ``object_images/``.
    variant : Variant
        One of :data:`VARIANTS` (default ``"official-271ch-200hz"``).
    opts : ThingsMEGOptions
        ``dtype``.
    """
    if data_root is None:
        raise MissingDataError(f"The {NAME} tasks need the dataset on disk: pass --data-root DIR (Python: "
                               f"data_root=DIR). {SPEC.download_hint('DIR')}")
    root = Path(data_root).expanduser().resolve()
    hint = SPEC.download_hint(root)
    folder = root / EPOCHS_DIR
    numbered = sorted((int(m.group(1)), p) for p in folder.glob("preprocessed_P*-epo.fif")
                      if (m := _EPOCHS_FILE.fullmatch(p.name)))
    found = {f"sub-{number:02d}": path for number, path in numbered}
    if not found:
        raise MissingDataError(f"No THINGS-MEG epochs files (preprocessed_P1-epo.fif ... P4) in {folder}. {hint}")
    if not (root / IMAGE_DIR).is_dir():
        raise MissingDataError(f"Image folder {root / IMAGE_DIR} is missing. {images_hint(root)}")
    # The split is cheap (metadata only) and decides the image tables, so it is checked on every load. A
    # subject whose files fail stays listed and raises its error when asked for; the others still load.
    plans, broken = {}, {}
    for label, path in found.items():
        try:
            plans[label] = (path, _subject_plan(path, _subject_hint(root, label)))
        except DataError as error:
            broken[label] = error
    train_images, test_images = shared_image_tables(plans, lambda entry: entry, broken, root / IMAGE_DIR,
                                                    "the THINGS-MEG trials", images_hint(root))
    digests = source_digests(root, [part for path, _ in plans.values() for part in _epochs_parts(path)])
    key = {"dataset": NAME, "converter": CONVERTER_VERSION, "variant": variant.to_dict(),
           "options": opts.model_dump(), "sources": digests}

    def build(out_folder: Path) -> None:
        writer = CanonicalWriter(out_folder, dtype=opts.dtype, data_root=root)
        layout = None
        with progress(f"Converting {NAME} {variant.name}", total=len(plans)) as advance:
            for label, (path, plan) in plans.items():
                with writer.subject(label):
                    subject_hint = _subject_hint(root, label)
                    epochs = _read_epochs(path, subject_hint)
                    checked = _check_layout(epochs, variant, path, subject_hint, layout)
                    picks, keep = checked[2], checked[3]
                    train = _extract(epochs, plan.train_epochs, picks, keep, opts.dtype, path, subject_hint)
                    test = _extract(epochs, plan.test_epochs, picks, keep, opts.dtype, path, subject_hint)
                    writer.add_subject(label, train, test)
                    layout = checked
                    logger.info("%s %s: %d training images, %d test images x %d repetitions (%d catch trials "
                                "dropped, %d trials of test concepts excluded from training).", NAME, label,
                                len(train), len(test), test.shape[1], plan.report["catch_trials_dropped"],
                                plan.report["test_concept_trials_excluded"])
                advance(1)
        writer.require_subjects()
        info = RecordingInfo("meg", layout[0], variant.sfreq, layout[1], unit="zscore")
        writer.finish(name=NAME, variant=variant.name, info=info, train_images=train_images, test_images=test_images,
                      image_root=f"{DATA_ROOT_PLACEHOLDER}/{IMAGE_DIR}",
                      source={**key, "description": variant.description,
                              "subjects": {label: plans[label][1].report for label in writer.subjects}})

    return cached_conversion(NAME, variant.name, key, root / IMAGE_DIR, build, data_root=root, broken=broken,
                             absent=_absent_subjects(root, found))


def _subject_hint(root: Path, label: str) -> str:
    """The download command that fetches subject ``label`` (``"sub-02"``)."""
    return SPEC.download_hint(root, subject=int(label[4:]))


def _absent_subjects(root: Path, found: dict[str, Path]) -> dict[str, MissingDataError]:
    """Why each published subject without an epochs file cannot be loaded, and how to get it."""
    absent = [number for number in SPEC.subjects if f"sub-{number:02d}" not in found]
    return {f"sub-{number:02d}": MissingDataError(
        f"Subject sub-{number:02d} of {NAME} is not under {root}: its epochs "
        f"{root / EPOCHS_DIR / f'preprocessed_P{number}-epo.fif'} (with its split parts -epo-1.fif ...) are "
        f"missing. {_subject_hint(root, f'sub-{number:02d}')}") for number in absent}


def _subject_plan(path: Path, hint: str) -> SplitPlan:
    """The zero-shot split of one subject's epochs file, from its trial metadata (no data is read)."""
    epochs = _read_epochs(path, hint)
    if epochs.metadata is None or len(epochs.metadata) != len(epochs):
        number = _EPOCHS_FILE.fullmatch(path.name).group(1)
        raise DataError(f"{path}: the epochs carry no trial metadata (expected the rows of "
                        f"sample_attributes_P{number}.csv, one per epoch). {hint}")
    return zero_shot_split(epochs.metadata, path, hint)


#: what a loader keeps per subject while planning its conversion
T = TypeVar("T")


def shared_image_tables(plans: dict[str, T], trials: Callable[[T], tuple[Path, SplitPlan]],
                        broken: dict[str, DataError], image_root: Path, shown: str,
                        hint: str) -> tuple[ImageTable, ImageTable]:
    """The training and test image tables every subject shares: the first subject's.

    ``trials(plans[label])`` gives a subject's source file and split plan. A subject whose trials
    differ from the first's (:func:`check_same_trials`) moves from ``plans`` to ``broken`` (the others
    still load); with no subject left, the first error is raised. Every image must be under
    ``image_root`` (``shown`` and ``hint`` complete the message when some are not).
    """
    if not plans:
        raise next(iter(broken.values()))
    reference_label, first = next(iter(plans.items()))
    reference = trials(first)[1]
    for label, entry in list(plans.items())[1:]:
        try:
            check_same_trials(label, *trials(entry), reference_label, reference)
        except DataError as error:
            broken[label] = error
            del plans[label]
    train_images, test_images = image_table(reference.train_files), image_table(reference.test_files)
    missing = [f for f in (*train_images.files, *test_images.files) if not (image_root / f).is_file()]
    if missing:
        raise MissingDataError(f"{len(missing)} images of {shown} are missing under {image_root}, e.g. {missing[0]}. "
                               f"{hint}")
    return train_images, test_images


def check_same_trials(label: str, path: Path, plan: SplitPlan, reference_label: str, reference: SplitPlan) -> None:
    """Every subject must show the same training and test images, with as many test repetitions."""
    for split in ("train", "test"):
        mine, theirs = getattr(plan, f"{split}_files"), getattr(reference, f"{split}_files")
        if mine != theirs:
            differ = sorted(set(mine) ^ set(theirs))
            raise DataError(f"{path}: {label} has {len(mine)} {split} images and {reference_label} has "
                            f"{len(theirs)}; they differ in e.g. {differ[:3]}. All subjects must share the same "
                            f"images.")
    if plan.test_epochs.shape[1] != reference.test_epochs.shape[1]:
        raise DataError(f"{path}: {label} has {plan.test_epochs.shape[1]} repetitions per test image and "
                        f"{reference_label} has {reference.test_epochs.shape[1]}; all subjects must match.")


def _check_layout(epochs, variant: Variant, path: Path, hint: str, previous: tuple | None) -> tuple:
    """Sensor names, kept time axis, sensor picks and time mask of ``epochs``, checked against the
    variant and the previous subject. Sensors marked bad are kept: nothing is dropped silently."""
    import mne

    picks = mne.pick_types(epochs.info, meg=True, ref_meg=False, exclude=[])
    ch_names = tuple(epochs.ch_names[i] for i in picks)
    if len(ch_names) != variant.n_channels:
        raise DataError(f"{path}: holds {len(ch_names)} MEG sensors; variant {variant.name!r} expects "
                        f"{variant.n_channels}. {hint}")
    if abs(epochs.info["sfreq"] - variant.sfreq) > 1e-6:
        raise DataError(f"{path}: sampled at {epochs.info['sfreq']:g} Hz; variant {variant.name!r} expects "
                        f"{variant.sfreq:g} Hz. {hint}")
    step = 1 / variant.sfreq
    if epochs.times[0] > variant.window[0] + 1e-6 or epochs.times[-1] < variant.window[1] - step - 1e-6:
        raise DataError(f"{path}: epochs span {epochs.times[0]:g} to {epochs.times[-1]:g} s; variant {variant.name!r} "
                        f"needs [{variant.window[0]:g}, {variant.window[1]:g}) s. {hint}")
    keep = (epochs.times >= variant.window[0] - 1e-6) & (epochs.times < variant.window[1] - 1e-6)
    times = np.round(epochs.times[keep], 9)
    if previous is not None and (ch_names != previous[0] or not np.array_equal(times, previous[1])):
        raise DataError(f"{path}: sensors or time axis differ from the first subject. {hint}")
    return ch_names, times, picks, keep


def _layout(variant: Variant, opts: ThingsMEGOptions) -> RecordingLayout:
    """The layout of :data:`SPEC`: the variant's window at its sampling rate (the sensors come from the files)."""
    start, stop = variant.window
    return RecordingLayout.sampled(variant.sfreq, start, round((stop - start) * variant.sfreq),
                                   n_channels=variant.n_channels)


SPEC = DatasetSpec(
    name=NAME, options=ThingsMEGOptions, loader=_load, variants=VARIANTS, default_variant=DEFAULT_VARIANT,
    subjects=(1, 2, 3, 4), manifest=True, layout=_layout, sizes=DeclaredSizes("meg", 19848, 200),
    description="THINGS-MEG (Hebart et al., eLife 2023; OpenNeuro ds004212): 4 subjects; zero-shot split of 19848 "
                "training images (1654 concepts x 12) seen once and 200 test images seen 12 times.",
)
