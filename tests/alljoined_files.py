"""Small Alljoined-1.6M data roots in the layout of the Hugging Face repository Alljoined/Alljoined-1.6M.

Written from the publishers' own code (github.com/Alljoined/Alljoined-1.6M): ``preprocessing.py`` and
``preprocessing_utils.save_data`` pickle a dict (``preprocessed_eeg_data`` (trials, channels, 250) float64,
``configs``, ``ch_names``, ``times``) into ``preprocessed_eeg_{training,test}_flat.npy``, whose rows are the
non-``dropped`` rows of the trial table of that ``partition``, in table order; ``upload_hf.py`` puts each
subject's folder under ``preprocessed_eeg/sub-XX/`` and the stimuli in ``stimuli.zip`` (``images/NNNNN.jpg``).
The trial table's columns are those the publishers' code and its users read.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from eegbench.data.alljoined import CHANNELS

#: The channel order inside the files (the EDF's), unlike the variant's: the loader must pick by name.
FILE_CHANNELS = tuple(reversed(CHANNELS))
#: ``preprocessing_utils.Configs`` at its defaults, as ``save_data`` stores it.
CONFIGS = {"baseline": (None, 0), "tmin": -0.2, "tmax": 1.0, "sfreq": 250, "l_freq": None, "h_freq": None,
           "notch_freqs": None, "mvnn_dim": "epochs", "reject": None, "verbose": False}


@dataclass(frozen=True)
class Trial:
    partition: str  # "stim_train" or "stim_test"
    number: int  # the image file's number (NNNNN.jpg)
    concept: str
    dropped: bool = False


def design(train_concepts=("aardvark", "abacus", "accordion"), per_concept=2, test_concepts=("acorn", "aircraft",
           "airplane", "alligator"), train_reps=2, test_reps=3) -> list[Trial]:
    """Trials of one subject in recording order: every training image ``train_reps`` times, then every test image
    ``test_reps`` times (numbers as in THINGS-EEG2's order: training images first, test images from 16541)."""
    train = [Trial("stim_train", 1 + c * per_concept + i, concept)
             for c, concept in enumerate(train_concepts) for i in range(per_concept)]
    test = [Trial("stim_test", 16541 + c, concept) for c, concept in enumerate(test_concepts)]
    return [t for _ in range(train_reps) for t in train] + [t for _ in range(test_reps) for t in test]


def image_path(number: int) -> str:
    return f"/srv/eeg_reconstruction/shared/data/stimuli/repr_eeg2/images/{number:05d}.jpg"


def write_trial_table(path: Path, subject: int, trials: list[Trial]) -> None:
    """``experiment_metadata_categories.parquet`` with the columns the publishers' tables carry."""
    concepts = sorted({t.concept for t in trials})
    rows = [{"subject": subject, "session": 1 + i * 4 // len(trials), "block_id": 1 + i // 8, "sequence_id": i // 4,
             "sequence_image_id": i % 4, "partition": t.partition, "image_path": image_path(t.number),
             "dropped": t.dropped, "dataset": "Alljoined-1.6M", "category_name": t.concept,
             "super_category": "Animals", "category_num": concepts.index(t.concept), "category_img_num": 0,
             "super_category_id": 0} for i, t in enumerate(trials)]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)


def write_flat(path: Path, data: np.ndarray) -> None:
    """One ``preprocessed_eeg_*_flat.npy`` as ``save_data`` writes it (a pickle, despite the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    times = np.round(np.arange(-50, 250) / 250.0, 9)[50:300]
    with open(path, "wb") as handle:
        pickle.dump({"preprocessed_eeg_data": data, "configs": CONFIGS, "ch_names": list(FILE_CHANNELS),
                     "times": times}, handle, protocol=pickle.HIGHEST_PROTOCOL)


def write_subject(root: Path, subject: int, trials: list[Trial], seed: int = 0) -> dict[str, np.ndarray]:
    """A subject's folder; returns the arrays written (kept trials only, the files' channel order)."""
    folder = root / "preprocessed_eeg" / f"sub-{subject:02d}"
    write_trial_table(folder / "experiment_metadata_categories.parquet", subject, trials)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, partition in (("training", "stim_train"), ("test", "stim_test")):
        n = sum(t.partition == partition and not t.dropped for t in trials)
        arrays[split] = rng.normal(size=(n, len(FILE_CHANNELS), 250))
        write_flat(folder / f"preprocessed_eeg_{split}_flat.npy", arrays[split])
    return arrays


def write_images(root: Path, trials: list[Trial]) -> None:
    """``images/NNNNN.jpg`` (what stimuli.zip unpacks to)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for number in sorted({t.number for t in trials}):
        Image.new("RGB", (32, 32), (number % 256, 40, 90)).save(root / "images" / f"{number:05d}.jpg")


def write_root(root: Path, subjects=(1, 2), trials: list[Trial] | None = None) -> dict[int, dict[str, np.ndarray]]:
    trials = trials or design()
    write_images(root, trials)
    return {s: write_subject(root, s, trials, seed=s) for s in subjects}
