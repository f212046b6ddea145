"""THINGS-EEG1 (Grootswagers et al., Scientific Data 2022; OpenNeuro ds003825): preprocessing of the BIDS raw
recordings and the loader.

A data root holds snapshot 1.2.0 of ds003825 (``eegbench data download things-eeg1`` writes it) and the THINGS
images::

    participants.tsv                                        subjects, with the authors' exclusion flags
    sub-02/eeg/sub-02_task-rsvp_eeg.{vhdr,vmrk,eeg}         BrainVision, 63 EEG channels (Cz reference), 1000 Hz
    sub-02/eeg/sub-02_task-rsvp_events.tsv                  one row per image presentation
    object_images/<concept>/<image>.jpg                     THINGS images (osf.io/jum2f)

Every subject saw the 22,248 THINGS images of 1,854 concepts (12 per concept) once each in 10 Hz RSVP streams
(``isteststim`` 0), then 200 validation images of 200 concepts 12 times each (``isteststim`` 1). The events
file names the image of each presentation (``stim``, a Windows path ``stimuli\\<concept>\\<file>``) and its
onset in seconds (snapshot 1.2.0 fixed the onsets to seconds; its ``sample`` column is the same onset in
samples). Zero-shot split, as for THINGS-MEG (:func:`eegbench.data.things_meg.zero_shot_split`):

* **test** = the 200 validation images, all 12 repetitions kept for the protocol to average;
* **training** = every image whose concept is not a test concept: 22,248 - 200 x 12 = 19,848 images of
  1,654 concepts, each shown once. The 2,400 training images of the 200 test concepts are removed.

Fixation-colour target trials (``istarget``) show their image like any other and are kept. Preprocessing
(``raw`` variants, with MNE): the variant's channels are picked by name, band-pass filtered 0.1-100 Hz
(zero-phase FIR, as the dataset paper's technical validation), epoched -0.1 to 1.0 s around each onset with
baseline (None, 0), resampled to 250 Hz and cropped to 0-0.996 s; multivariate noise normalisation uses the
mean Ledoit-Wolf covariance of the subject's training epochs only (:mod:`eegbench.normalization`).

The authors flag four subjects in ``participants.tsv`` (``exclude`` = 1): sub-01 has no validation part (its
events have no ``isteststim`` column, so it cannot be loaded), sub-06 did not complete the experiment (its
images differ from the others', so it cannot be loaded), sub-18 had poor signal on six channels and sub-23
monitor issues; the tasks leave all four out. Sub-49 and sub-50 were recorded with a 128-channel set-up of
which 64 electrodes were connected: the variants pick their channels by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from eegbench._check import DataError, MissingDataError
from eegbench._progress import logger, progress
from eegbench.data.base import Dataset, RecordingInfo
from eegbench.data.canonical import CanonicalWriter
from eegbench.data.conversion import (
    DATA_ROOT_PLACEHOLDER,
    cached_conversion,
    epoch_continuous,
    require_finite,
    source_digests,
)
from eegbench.data.montages import POSTERIOR_17
from eegbench.data.spec import DatasetSpec, DeclaredSizes, RecordingLayout
from eegbench.data.things_meg import SplitPlan, shared_image_tables, zero_shot_split
from eegbench.normalization import noise_whitener, whiten

NAME = "things-eeg1"
# Bump whenever the conversion's output changes, so cached canonical folders are rebuilt.
CONVERTER_VERSION = 1
SNAPSHOT = "1.2.0"
IMAGE_DIR = "object_images"
RAW_SFREQ = 1000.0
SFREQ = 250.0
EPOCH = (-0.1, 1.0)  # seconds around each onset, as the dataset paper epochs
FILTER = (0.1, 100.0)  # band-pass in Hz
N_SAMPLES = 250  # kept: 0 to 0.996 s at 250 Hz
EVENT_COLUMNS = ("onset", "stim", "isteststim")
BYTES_PER_SAMPLE = {"IEEE_FLOAT_32": 4, "INT_16": 2, "INT_32": 4}
#: The 63 recorded EEG channels: the 64-channel 10-10 cap without Cz, the online reference (not recorded), in
#: 10-10 order. A file's own order does not matter: channels are picked by name.
CHANNELS_63 = ("Fp1", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8", "F7", "F5", "F3", "F1", "Fz", "F2", "F4", "F6", "F8",
               "FT9", "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "FT10", "T7", "C5", "C3", "C1",
               "C2", "C4", "C6", "T8", "TP9", "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "TP10",
               "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8", "PO7", "PO3", "POz", "PO4", "PO8", "O1", "Oz",
               "O2")
#: Subjects the dataset's authors flag with exclude = 1 in participants.tsv (see the module docstring).
EXCLUDED_SUBJECTS = (1, 6, 18, 23)


@dataclass(frozen=True)
class Variant:
    """One named preprocessing of THINGS-EEG1: the channels it keeps (the rest is :data:`EPOCH`, :data:`FILTER`)."""

    name: str
    channels: tuple[str, ...]
    description: str

    def to_dict(self) -> dict:
        return {"name": self.name, "channels": list(self.channels), "description": self.description,
                "epoch": list(EPOCH), "filter": list(FILTER), "sfreq": SFREQ, "n_samples": N_SAMPLES}


_RAW = ("eegbench's MNE preprocessing of the BrainVision raw recordings (OpenNeuro ds003825 1.2.0): band-pass "
        "0.1-100 Hz (zero-phase FIR), epochs -0.1 to 1.0 s with baseline (None, 0), resampled to 250 Hz, the 250 "
        "samples from 0 to 0.996 s kept, multivariate noise normalisation with the mean Ledoit-Wolf covariance of "
        "the subject's training epochs only")
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("raw-17ch-250hz", POSTERIOR_17,
            f"{_RAW}; the 17 occipital/parietal channels of the THINGS-EEG2 tasks."),
    Variant("raw-63ch-250hz", CHANNELS_63, f"{_RAW}; all 63 recorded channels."),
)}
DEFAULT_VARIANT = "raw-17ch-250hz"


class ThingsEEG1Options(BaseModel):
    """Loader options (a task file's ``dataset.options``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dtype: Literal["float32", "float16"] = "float32"


def subject_files(root: Path, label: str) -> dict[str, Path]:
    """The BIDS files of subject ``label`` (``"sub-02"``): header, markers, data and events."""
    folder = root / label / "eeg"
    stem = f"{label}_task-rsvp"
    return {"vhdr": folder / f"{stem}_eeg.vhdr", "vmrk": folder / f"{stem}_eeg.vmrk",
            "eeg": folder / f"{stem}_eeg.eeg", "events": folder / f"{stem}_events.tsv"}


def images_hint(root: Path | str) -> str:
    return (f"The THINGS images are a password-protected archive under the THINGS license: `eegbench data download "
            f"{NAME} --root {root}` fetches images_THINGS.zip and password_images.txt from osf.io/jum2f; read the "
            f"terms and password there, then unzip the archive so that {Path(root) / IMAGE_DIR}/<concept>/<image>.jpg "
            f"exist.")


# --- events ---------------------------------------------------------------------------------------


def read_events(path: Path, hint: str):
    """The events table of one subject (a ``pandas.DataFrame``), its columns and onsets checked."""
    import pandas as pd

    if not path.is_file():
        raise MissingDataError(f"{path} is missing (the subject's BIDS events). {hint}")
    try:
        events = pd.read_csv(path, sep="\t")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise DataError(f"{path} is truncated or corrupt ({type(err).__name__}: {err}). {hint}") from None
    if "isteststim" not in events.columns and {"onset", "stim"} <= set(events.columns):
        raise DataError(f"{path}: there is no isteststim column, so this subject has no validation-image trials "
                        f"(ds003825's participants.tsv says of sub-01: 'No data for final test-images part'). "
                        f"Leave it out of the task's subjects.")
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise DataError(f"{path}: the events lack the column(s) {missing} (found {list(events.columns)}); "
                        f"snapshot {SNAPSHOT} of ds003825 has them. {hint}")
    onsets = pd.to_numeric(events["onset"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(onsets).all() or (np.diff(onsets) <= 0).any():
        raise DataError(f"{path}: onsets must be finite and increasing (row {_first_bad_onset(onsets)}). {hint}")
    if "sample" in events.columns and not np.allclose(onsets * RAW_SFREQ, events["sample"], atol=1.0):
        raise DataError(f"{path}: onsets are not in seconds (onset x {RAW_SFREQ:g} Hz differs from the sample "
                        f"column), as in snapshots before {SNAPSHOT}. {hint}")
    return events


def _first_bad_onset(onsets: np.ndarray) -> int:
    bad = ~np.isfinite(onsets)
    bad[1:] |= np.diff(onsets) <= 0
    return int(np.flatnonzero(bad)[0])


def split_plan(events, path: Path, hint: str) -> SplitPlan:
    """The zero-shot split of one subject's events (see the module docstring)."""
    import pandas as pd

    is_test = pd.to_numeric(events["isteststim"], errors="coerce").to_numpy()
    if not np.isin(is_test, (0, 1)).all():
        raise DataError(f"{path}: isteststim must be 0 or 1 in every row. {hint}")
    trials = pd.DataFrame({"trial_type": np.where(is_test == 1, "test", "exp"),
                           "image_path": events["stim"].astype(str).str.replace("\\", "/", regex=False)})
    return zero_shot_split(trials, path, hint)


# --- the recording --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """What the BrainVision header says of the data file: channels, sampling rate and sample format."""

    channels: tuple[str, ...]
    sfreq: float
    bytes_per_sample: int


def read_header(path: Path, hint: str) -> Header:
    """The channel names, sampling rate and sample width of a ``.vhdr`` file (read as text, no data)."""
    if not path.is_file():
        raise MissingDataError(f"{path} is missing (the subject's BrainVision header). {hint}")
    text = path.read_text(encoding="utf-8", errors="replace")
    fields = dict(re.findall(r"^\s*([A-Za-z]+\d*)=(.*?)\s*$", text, flags=re.MULTILINE))
    channels = tuple(value.split(",")[0] for key, value in sorted(
        ((k, v) for k, v in fields.items() if re.fullmatch(r"Ch\d+", k)), key=lambda kv: int(kv[0][2:])))
    try:
        n_channels, interval = int(fields["NumberOfChannels"]), float(fields["SamplingInterval"])
        width = BYTES_PER_SAMPLE[fields.get("BinaryFormat", "")]
    except (KeyError, ValueError):
        raise DataError(f"{path} is not a complete BrainVision header (NumberOfChannels, SamplingInterval, "
                        f"BinaryFormat one of {list(BYTES_PER_SAMPLE)}, Ch1...). {hint}") from None
    if len(channels) != n_channels:
        raise DataError(f"{path}: NumberOfChannels is {n_channels} but {len(channels)} channels are listed. {hint}")
    return Header(channels, 1e6 / interval, width)


def check_recording(files: dict[str, Path], header: Header, variant: Variant, last_onset: float, hint: str) -> None:
    """Refuse a data file cut short, a wrong sampling rate or missing channels before anything is read.

    MNE reads a cut BrainVision data file as a shorter recording; here its size must be a whole number of
    samples of every channel and cover every epoch.
    """
    for kind in ("vmrk", "eeg"):
        if not files[kind].is_file():
            raise MissingDataError(f"{files[kind]} is missing (the subject's BrainVision "
                                   f"{'markers' if kind == 'vmrk' else 'data'}). {hint}")
    if abs(header.sfreq - RAW_SFREQ) > 1e-6:
        raise DataError(f"{files['vhdr']}: sampled at {header.sfreq:g} Hz; THINGS-EEG1 is recorded at "
                        f"{RAW_SFREQ:g} Hz. {hint}")
    missing = [c for c in variant.channels if c not in header.channels]
    if missing:
        raise DataError(f"{files['vhdr']}: channels {missing} of variant {variant.name!r} are not in the recording "
                        f"(it has {', '.join(header.channels)}). {hint}")
    frame = len(header.channels) * header.bytes_per_sample
    size = files["eeg"].stat().st_size
    duration = size // frame / RAW_SFREQ
    if size % frame or duration < last_onset + EPOCH[1]:
        raise DataError(f"{files['eeg']} is truncated: its {size} bytes hold {duration:.3f} s of "
                        f"{len(header.channels)} channels{' and a partial sample' if size % frame else ''}, but the "
                        f"last image's epoch ends at {last_onset + EPOCH[1]:.3f} s, as when a download was "
                        f"interrupted. Delete it and download it again. {hint}")


def _preprocess(files: dict[str, Path], events, plan: SplitPlan, variant: Variant, opts: ThingsEEG1Options,
                hint: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One subject's whitened ``train (images, 1, ...)`` and ``test (images, reps, ...)`` arrays and time axis."""
    import mne

    try:
        raw = mne.io.read_raw_brainvision(files["vhdr"], preload=False, verbose=False)
    except (OSError, ValueError, RuntimeError, KeyError, IndexError) as err:
        raise DataError(f"{files['vhdr']} cannot be read ({type(err).__name__}: {err}). {hint}") from None
    raw.pick(list(variant.channels)).load_data(verbose=False)
    signal = raw.get_data()
    require_finite(signal, files["eeg"], "the EEG", hint,
                   where=lambda i: f"channel {raw.ch_names[i[0]]}, {i[1] / RAW_SFREQ:.3f} s")
    del signal
    raw.filter(*FILTER, verbose=False)
    samples = np.round(events["onset"].to_numpy(dtype=np.float64) * RAW_SFREQ).astype(np.int64)
    rows = np.arange(len(events))  # the event code of a row is its index + 1: epochs map back to rows
    data, codes, _, times, dropped = epoch_continuous(
        raw, np.column_stack([samples + raw.first_samp, np.zeros_like(rows), rows + 1]), tmin=EPOCH[0],
        tmax=EPOCH[1], sfreq=SFREQ, first_time=0.0, path=files["eeg"], hint=hint)
    if dropped:
        raise DataError(f"{files['eeg']}: {dropped} epochs leave the recording. {hint}")
    by_row = np.empty(len(events), dtype=np.int64)
    by_row[codes - 1] = np.arange(len(codes))
    train, test = data[by_row[plan.train_epochs]], data[by_row[plan.test_epochs]]
    whitener = noise_whitener(train[:, 0])
    return (whiten(train.reshape(-1, *train.shape[2:]), whitener).reshape(train.shape).astype(opts.dtype),
            whiten(test.reshape(-1, *test.shape[2:]), whitener).reshape(test.shape).astype(opts.dtype), times)


# --- the loader -----------------------------------------------------------------------------------


def _subject_hint(root: Path, variant: Variant, label: str) -> str:
    return SPEC.download_hint(root, variant.name, int(label[4:]))


def _plan_subject(root: Path, label: str, variant: Variant, hint: str):
    """Events, split and checked recording of one subject: reads the events and the header, no EEG."""
    files = subject_files(root, label)
    events = read_events(files["events"], hint)
    plan = split_plan(events, files["events"], hint)
    check_recording(files, read_header(files["vhdr"], hint), variant, float(events["onset"].iloc[-1]), hint)
    return files, events, plan


def _load(data_root: Path | None, variant: Variant, opts: ThingsEEG1Options) -> Dataset:
    """THINGS-EEG1 in canonical form (zero-shot split, test repetitions kept), preprocessed once per variant.

    The loader of :data:`SPEC`: load it with ``eegbench.data.load_dataset("things-eeg1", variant=...,
    options=..., data_root=...)``. Subjects are the ``sub-XX`` folders present; one whose files are missing,
    damaged or whose images differ from the first subject's stays listed and raises its error when asked for.
    """
    if data_root is None:
        raise MissingDataError(f"The {NAME} tasks need the dataset on disk: pass --data-root DIR (Python: "
                               f"data_root=DIR). {SPEC.download_hint('DIR', variant.name)}")
    root = Path(data_root).expanduser().resolve()
    hint = SPEC.download_hint(root, variant.name)
    labels = sorted(p.name for p in root.glob("sub-*") if p.is_dir() and re.fullmatch(r"sub-\d{2}", p.name))
    if not labels:
        raise MissingDataError(f"No subject folders (sub-01 ... sub-50) found in {root}. {hint}")
    plans, broken = {}, {}
    for label in labels:
        try:
            plans[label] = _plan_subject(root, label, variant, _subject_hint(root, variant, label))
        except DataError as error:
            broken[label] = error
    train_images, test_images = shared_image_tables(plans, lambda entry: (entry[0]["events"], entry[2]), broken,
                                                    root / IMAGE_DIR, "the THINGS-EEG1 presentations",
                                                    images_hint(root))
    digests = source_digests(root, [path for files, _, _ in plans.values() for path in files.values()])
    key = {"dataset": NAME, "converter": CONVERTER_VERSION, "variant": variant.to_dict(),
           "options": opts.model_dump(), "sources": digests}

    def build(folder: Path) -> None:
        writer = CanonicalWriter(folder, dtype=opts.dtype, data_root=root)
        times = None
        with progress(f"Converting {NAME} {variant.name}", total=len(plans)) as advance:
            for label, (files, events, plan) in plans.items():
                with writer.subject(label):
                    train, test, times = _preprocess(files, events, plan, variant, opts,
                                                     _subject_hint(root, variant, label))
                    writer.add_subject(label, train, test)
                    logger.info("%s %s: %d training images, %d test images x %d repetitions (%d presentations of "
                                "test concepts removed from training).", NAME, label, len(train), len(test),
                                test.shape[1], plan.report["test_concept_trials_excluded"])
                advance(1)
        writer.require_subjects()
        info = RecordingInfo("eeg", variant.channels, SFREQ, times, unit="whitened")
        writer.finish(name=NAME, variant=variant.name, info=info, train_images=train_images, test_images=test_images,
                      image_root=f"{DATA_ROOT_PLACEHOLDER}/{IMAGE_DIR}",
                      source={**key, "description": variant.description, "snapshot": SNAPSHOT,
                              "subjects": {label: plans[label][2].report for label in writer.subjects}})

    absent = {f"sub-{n:02d}": MissingDataError(
        f"Subject sub-{n:02d} of {NAME} is not under {root}: its BIDS files {root / f'sub-{n:02d}' / 'eeg'} are "
        f"missing. {_subject_hint(root, variant, f'sub-{n:02d}')}") for n in SPEC.subjects
        if f"sub-{n:02d}" not in labels}
    return cached_conversion(NAME, variant.name, key, root / IMAGE_DIR, build, data_root=root, broken=broken,
                             absent=absent)


def _layout(variant: Variant, opts: ThingsEEG1Options) -> RecordingLayout:
    """The layout of :data:`SPEC`: 250 samples at 250 Hz from image onset, on the variant's channels."""
    return RecordingLayout.sampled(SFREQ, 0.0, N_SAMPLES, variant.channels)


SPEC = DatasetSpec(
    name=NAME, options=ThingsEEG1Options, loader=_load, variants=VARIANTS, default_variant=DEFAULT_VARIANT,
    subjects=tuple(range(1, 51)), manifest=True, layout=_layout, sizes=DeclaredSizes("eeg", 19848, 200),
    description="THINGS-EEG1 (Grootswagers et al., Sci Data 2022; OpenNeuro ds003825 1.2.0): 50 subjects, 63-channel "
                "BrainVision at 1000 Hz, 10 Hz RSVP; zero-shot split of 19848 training images (1654 concepts x 12, "
                "the 2400 images of the 200 test concepts removed) seen once and 200 test images seen 12 times.",
)
