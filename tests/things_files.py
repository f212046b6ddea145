"""Small THINGS-EEG2 and THINGS-MEG files in exactly the published on-disk formats, for offline tests.

* ``image_set/image_metadata.npy``: ``np.save`` of the metadata dict; image folders of JPEGs;
* official ``preprocessed_eeg_*.npy``: ``np.save`` of a dict (17 channels, 100 Hz, -0.2..0.79 s);
* NICE/ATM 250 Hz ``preprocessed_eeg_*.npy``: ``pickle.dump`` of a float64 dict whose ``times``
  keeps the full 300-sample axis from -0.2 s while the data holds the last 250 samples;
* raw ``raw_eeg_*.npy``: ``np.save`` of a dict with 63 EEG channels plus ``stim`` at 1000 Hz;
* THINGS-MEG ``preprocessed_P<n>-epo.fif``: MNE epochs (-0.1..1.3 s, 200 Hz) with the trial table as
  metadata and THINGS image numbers as event codes (999999 for catch trials);
* THINGS-EEG1 (ds003825 1.2.0) ``sub-XX/eeg/sub-XX_task-rsvp_{eeg.vhdr,eeg.vmrk,eeg.eeg,events.tsv}``:
  BrainVision float32 at 1000 Hz and the BIDS events table with the snapshot's 22 columns.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eegbench.data.montages import POSTERIOR_17

#: The 63 THINGS-EEG2 channel names (the order of the ZEISS things_eeg2_dataset package).
THINGS63 = ("Fp1", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8", "F7", "F5", "F3", "F1", "F2", "F4", "F6", "F8", "FT9",
            "FT7", "FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "FC6", "FT8", "FT10", "T7", "C5", "C3", "C1", "Cz",
            "C2", "C4", "C6", "T8", "TP9", "TP7", "CP5", "CP3", "CP1", "CPz", "CP2", "CP4", "CP6", "TP8", "TP10",
            "P7", "P5", "P3", "P1", "Pz", "P2", "P4", "P6", "P8", "PO7", "PO3", "POz", "PO4", "PO8", "O1", "Oz",
            "O2")
OFFICIAL_TIMES = np.arange(-20, 80) / 100.0
NICE_TIMES = np.arange(-50, 250) / 250.0
_WORDS = ("aardvark", "abacus", "accordion", "acorn", "air_conditioner", "airplane", "alligator", "almond",
          "altar", "aluminum_foil", "ambulance", "anchor", "anklet", "ant", "anteater", "antelope", "anvil", "apple",
          "apron", "aquarium", "arch", "armchair", "arrow", "artichoke", "ashtray", "asparagus", "avocado", "axe")


def _jpeg(path: Path, seed: int, size: int = 24) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = (rng.random((1, 1, 3)) * 255 + rng.normal(0, 20, (size, size, 3))).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=80)


def concept_name(i: int) -> str:
    """A THINGS-like concept name for index ``i`` (unique for any ``i``)."""
    return f"{_WORDS[i % len(_WORDS)]}{'' if i < len(_WORDS) else i // len(_WORDS) + 1}"


def write_image_set(root: Path, n_train_concepts: int, per_concept: int, n_test: int) -> dict:
    """THINGS-EEG2 ``image_set/``: metadata dict and JPEG folders; returns the metadata."""
    train_concepts = [f"{c + 1:05d}_{concept_name(c)}" for c in range(n_train_concepts)]
    test_concepts = [f"{c + 1:05d}_{concept_name(n_train_concepts + c)}" for c in range(n_test)]
    metadata = {
        "train_img_concepts": [c for c in train_concepts for _ in range(per_concept)],
        "train_img_files": [f"{c[6:]}_{e + 1:02d}{'b' if e == 0 else 's'}.jpg" for c in train_concepts
                            for e in range(per_concept)],
        "test_img_concepts": test_concepts,
        "test_img_files": [f"{c[6:]}_{(i % 9) + 1:02d}s.jpg" for i, c in enumerate(test_concepts)],
    }
    metadata["train_img_concepts_THINGS"] = list(metadata["train_img_concepts"])
    metadata["test_img_concepts_THINGS"] = list(metadata["test_img_concepts"])
    image_set = root / "image_set"
    image_set.mkdir(parents=True, exist_ok=True)
    np.save(image_set / "image_metadata.npy", metadata)
    for split, folder in (("train", "training_images"), ("test", "test_images")):
        for i, (concept, file) in enumerate(zip(metadata[f"{split}_img_concepts"], metadata[f"{split}_img_files"])):
            _jpeg(image_set / folder / concept / file, seed=(0 if split == "train" else 100_000) + i)
    return metadata


def write_official(root: Path, subject: int, train: np.ndarray, test: np.ndarray,
                   ch_names=POSTERIOR_17, times=OFFICIAL_TIMES) -> None:
    """Official ``preprocessed_data/sub-XX/preprocessed_eeg_{training,test}.npy`` (``np.save`` of a dict)."""
    folder = root / "preprocessed_data" / f"sub-{subject:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("training", train), ("test", test)):
        np.save(folder / f"preprocessed_eeg_{name}.npy",
                {"preprocessed_eeg_data": data, "ch_names": list(ch_names), "times": times})


def write_nice_250hz(root: Path, subject: int, train: np.ndarray, test: np.ndarray,
                     ch_names=THINGS63, times=NICE_TIMES) -> None:
    """NICE/ATM ``Preprocessed_data_250Hz/sub-XX/preprocessed_eeg_*.npy`` (``pickle.dump``, float64)."""
    folder = root / "Preprocessed_data_250Hz" / f"sub-{subject:02d}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("training", train), ("test", test)):
        with open(folder / f"preprocessed_eeg_{name}.npy", "wb") as handle:
            pickle.dump({"preprocessed_eeg_data": data.astype(np.float64), "ch_names": list(ch_names),
                         "times": times}, handle, protocol=4)


def write_raw_session(path: Path, events: list[tuple[float, int]], duration_s: float, signal_fn,
                      sfreq: float = 1000.0) -> None:
    """A raw session ``raw_eeg_*.npy``: 63 EEG channels (volts) + ``stim`` (codes held for 5 samples).

    ``signal_fn(times)`` returns the ``(63, n_samples)`` EEG; ``events`` are (onset s, code).
    """
    times = np.arange(int(duration_s * sfreq)) / sfreq
    stim = np.zeros(len(times))
    for onset, code in events:
        start = int(round(onset * sfreq))
        stim[start:start + 5] = code
    data = np.vstack([signal_fn(times), stim])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, {"raw_eeg_data": data, "ch_names": [*THINGS63, "stim"], "ch_types": ["eeg"] * 63 + ["stim"],
                   "sfreq": sfreq, "highpass": 0.01, "lowpass": 100.0})


MEG_CHANNELS = tuple(f"M{side}{region}{i:02d}-4408" for side in "LRZ" for region in "CFOPT"
                     for i in range(1, 20))[:271]


def write_meg_epochs(path: Path, trials: list[tuple[str, str]], data: np.ndarray, split_size: str = "2GB") -> None:
    """``preprocessed_P<n>-epo.fif``: epochs ``data`` (n, 271, 281) at 200 Hz from -0.1 s, with metadata.

    ``trials`` are (trial_type, image_path) in recording order, as in ``sample_attributes_P<n>.csv``.
    Files over ``split_size`` are split into ``-epo-1.fif``... parts, as MNE splits the official ones at 2 GB.
    """
    import mne
    import pandas as pd

    info = mne.create_info(list(MEG_CHANNELS), 200.0, "mag")
    # Event codes are THINGS image numbers (one per distinct image, so repeated test images share one).
    numbers = {path: n for n, path in enumerate(dict.fromkeys(p for k, p in trials if k != "catch"), start=1)}
    codes = [999999 if kind == "catch" else numbers[path] for kind, path in trials]
    events = np.column_stack([np.arange(len(trials)) * 400 + 1000, np.zeros(len(trials), int), codes])
    epochs = mne.EpochsArray(data, info, events, tmin=-0.1, event_id={str(c): c for c in sorted(set(codes))},
                             verbose=False)
    epochs.metadata = pd.DataFrame({
        "session_nr": 1, "run_nr": 1, "trial_type": [k for k, _ in trials], "image_path": [p for _, p in trials],
        "things_image_nr": [c if c != 999999 else np.nan for c in codes]})
    path.parent.mkdir(parents=True, exist_ok=True)
    epochs.save(path, split_size=split_size, overwrite=True, verbose=False)


def meg_image_path(kind: str, concept: str, index: int) -> str:
    """``image_path`` of the THINGS-MEG trial table for an exp, test or catch image."""
    file = f"{concept}_{index:02d}{'b' if index == 1 else 's'}.jpg"
    return {"exp": f"images_meg/{concept}/{file}", "test": f"images_test_meg/{file}",
            "catch": f"images_catch_meg/{file}"}[kind]


def write_things_images(root: Path, files: list[str]) -> None:
    """``object_images/<concept>/<file>.jpg`` of the THINGS database."""
    for i, rel in enumerate(files):
        _jpeg(root / "object_images" / rel, seed=i)


TRAIN_HZ, TEST_HZ = (4, 6, 8, 10), (13, 17)  # each image's response oscillates at its own frequency


def write_raw_subject(root: Path, test_noise: float = 1.0, seed: int = 0) -> None:
    """``raw_data/sub-01``: two sessions, each showing every training image (4, the image set of
    ``write_image_set(root, 2, 2, 2)``) and test image (2) once, plus catch trials (event 99999); each image's
    response oscillates at its own frequency (:data:`TRAIN_HZ`, :data:`TEST_HZ`)."""

    rng = np.random.default_rng(seed)
    pattern = rng.normal(size=(63, 1))
    for session in (1, 2):
        for split, freqs, noise in (("training", TRAIN_HZ, 1.0), ("test", TEST_HZ, test_noise)):
            codes = [*range(1, len(freqs) + 1), 99999]
            order = [codes[i] for i in rng.permutation(len(codes))]
            events = [(1.0 + 1.5 * i, code) for i, code in enumerate(order)]

            def signal(times, events=events, freqs=freqs, noise=noise):
                eeg = rng.normal(scale=noise * 1e-6, size=(63, len(times)))
                for onset, code in events:
                    if code != 99999:
                        on = (times >= onset) & (times < onset + 1.0)
                        eeg[:, on] += 5e-6 * pattern * np.sin(2 * np.pi * freqs[code - 1] * (times[on] - onset))
                return eeg

            path = root / "raw_data" / "sub-01" / f"ses-{session:02d}" / f"raw_eeg_{split}.npy"
            write_raw_session(path, events, duration_s=events[-1][0] + 2.0, signal_fn=signal)


# --- THINGS-EEG1 (OpenNeuro ds003825 1.2.0): BIDS BrainVision recordings and events ---------------------------

#: The columns of ``sub-XX_task-rsvp_events.tsv`` in snapshot 1.2.0, in its order (sub-02 to sub-50).
EEG1_EVENT_COLUMNS = ("onset", "duration", "eventnumber", "blocksequencenumber", "isteststim", "object", "objectnumber",
                      "presentationnumber", "sequencenumber", "stim", "stimnumber", "teststimnumber",
                      "withinsequencenumber", "istarget", "stimname", "response", "rt", "correct", "time_stimon",
                      "time_stimoff", "stimdur", "sample")


def write_brainvision(folder: Path, stem: str, data_uv: np.ndarray, ch_names, markers: list[tuple[int, str]],
                      sfreq: float = 1000.0) -> None:
    """``<stem>.vhdr``, ``.vmrk`` and ``.eeg`` as BrainVision Recorder writes them: multiplexed IEEE float32
    samples in µV (resolution 1), markers ``(sample, description)`` at 1-based positions after a New Segment."""
    folder.mkdir(parents=True, exist_ok=True)
    channels = "\n".join(f"Ch{i}={name},,1,µV" for i, name in enumerate(ch_names, start=1))
    (folder / f"{stem}.vhdr").write_text(
        "Brain Vision Data Exchange Header File Version 1.0\n; Data created by the Vision Recorder\n\n"
        f"[Common Infos]\nCodepage=UTF-8\nDataFile={stem}.eeg\nMarkerFile={stem}.vmrk\nDataFormat=BINARY\n"
        "; Data orientation: MULTIPLEXED=ch1,pt1, ch2,pt1 ...\nDataOrientation=MULTIPLEXED\n"
        f"NumberOfChannels={len(ch_names)}\n; Sampling interval in microseconds\n"
        f"SamplingInterval={1e6 / sfreq:g}\n\n[Binary Infos]\nBinaryFormat=IEEE_FLOAT_32\n\n[Channel Infos]\n"
        "; Each entry: Ch<Channel number>=<Name>,<Reference channel name>,\n"
        '; <Resolution in "Unit">,<Unit>, Future extensions..\n'
        "; Fields are delimited by commas, some fields might be omitted (empty).\n"
        '; Commas in channel names are coded as "\\1".\n' + channels + "\n", encoding="utf-8")
    marks = [f"Mk{i}=Stimulus,{description},{sample + 1},1,0" for i, (sample, description) in enumerate(markers, 2)]
    (folder / f"{stem}.vmrk").write_text(
        "Brain Vision Data Exchange Marker File, Version 1.0\n\n"
        f"[Common Infos]\nCodepage=UTF-8\nDataFile={stem}.eeg\n\n[Marker Infos]\n"
        "; Each entry: Mk<Marker number>=<Type>,<Description>,<Position in data points>,\n"
        "; <Size in data points>, <Channel number (0 = marker is related to all channels)>\n"
        "; Fields are delimited by commas, some fields might be omitted (empty).\n"
        '; Commas in type or description text are coded as "\\1".\n'
        "Mk1=New Segment,,1,1,0,20190305103000000000\n" + "\n".join(marks) + "\n", encoding="utf-8")
    np.ascontiguousarray(data_uv.T, dtype="<f4").tofile(folder / f"{stem}.eeg")


@dataclass(frozen=True)
class EEG1Design:
    """A small THINGS-EEG1 experiment: ``concepts`` x ``per_concept`` images shown once, then one validation
    image of each of the last ``n_test`` concepts shown ``test_repetitions`` times, every ``soa`` seconds."""

    concepts: tuple[str, ...] = tuple(concept_name(i) for i in range(9))
    per_concept: int = 2
    n_test: int = 3
    test_repetitions: int = 3
    soa: float = 1.2  # the real streams run at 0.1 s; apart here so that each epoch holds one image's response

    def training_stims(self) -> list[str]:
        return [f"{c}_{i + 1:02d}{'b' if i == 0 else 's'}.jpg" for c in self.concepts for i in range(self.per_concept)]

    def test_stims(self) -> list[str]:
        return [f"{c}_13n.jpg" for c in self.concepts[-self.n_test:]]

    def image_files(self) -> list[str]:
        """``<concept>/<file>`` of every image shown, as under ``object_images``."""
        return [f"{s.rsplit('_', 1)[0]}/{s}" for s in (*self.training_stims(), *self.test_stims())]

    def hz(self, stimname: str) -> float:
        """The frequency at which the response to an image oscillates (distinct per image)."""
        return 3.0 + sorted(self.image_files()).index(f"{stimname.rsplit('_', 1)[0]}/{stimname}")


def write_things_eeg1_subject(root: Path, subject: int, design: EEG1Design = EEG1Design(),
                              ch_names=None, seed: int = 0) -> None:
    """``sub-XX/eeg/``: the BrainVision recording (1000 Hz, 63 channels by default) and the 1.2.0 events.tsv.

    Training images come in a shuffled order, then the validation images, each repetition shuffled; every
    image's response oscillates at :meth:`EEG1Design.hz` on one spatial pattern, for 0.8 s after its onset.
    """
    import pandas as pd

    from eegbench.data.things_eeg1 import CHANNELS_63

    ch_names = tuple(ch_names or CHANNELS_63)
    rng = np.random.default_rng(seed + subject)
    train, test = design.training_stims(), design.test_stims()
    shown = [train[i] for i in rng.permutation(len(train))]
    shown += [test[i] for _ in range(design.test_repetitions) for i in rng.permutation(len(test))]
    onsets = 1.0 + design.soa * np.arange(len(shown))
    n_samples = int((onsets[-1] + 2.0) * 1000)
    times = np.arange(n_samples) / 1000.0
    pattern = rng.normal(size=(len(ch_names), 1))
    data = rng.normal(scale=1.0, size=(len(ch_names), n_samples))
    for onset, stim in zip(onsets, shown):
        on = (times >= onset) & (times < onset + 0.8)
        data[:, on] += 5.0 * pattern * np.sin(2 * np.pi * design.hz(stim) * (times[on] - onset))
    samples = np.round(onsets * 1000).astype(int)
    markers = sorted([(s, "S  1") for s in samples] + [(s + 50, "S  2") for s in samples])
    label = f"sub-{subject:02d}"
    write_brainvision(root / label / "eeg", f"{label}_task-rsvp_eeg", data, ch_names, markers)
    is_test = np.array([s in test for s in shown], dtype=int)
    concept = [s.rsplit("_", 1)[0] for s in shown]
    number = {c: i for i, c in enumerate(sorted(design.concepts))}
    rows = {
        "onset": np.round(onsets, 3), "duration": 50, "eventnumber": np.arange(len(shown)),
        "blocksequencenumber": np.where(is_test, -1, 0), "isteststim": is_test,
        "object": [c if not t else -1 for c, t in zip(concept, is_test)],
        "objectnumber": [number[c] if not t else -1 for c, t in zip(concept, is_test)],
        "presentationnumber": np.arange(len(shown)), "sequencenumber": np.where(is_test, 1, 0),
        "stim": [f"stimuli\\{c}\\{s}" for c, s in zip(concept, shown)],
        "stimnumber": [int(s.rsplit("_", 1)[1][:2]) - 1 if not t else -1 for s, t in zip(shown, is_test)],
        "teststimnumber": [test.index(s) if t else -1 for s, t in zip(shown, is_test)],
        "withinsequencenumber": np.where(is_test, -1, 0), "istarget": (np.arange(len(shown)) % 7 == 3).astype(int),
        "stimname": shown, "response": 0, "rt": 0.0, "correct": 0, "time_stimon": onsets - 0.5,
        "time_stimoff": onsets - 0.45, "stimdur": 0.05, "sample": samples,
    }
    pd.DataFrame(rows, columns=list(EEG1_EVENT_COLUMNS)).to_csv(
        root / label / "eeg" / f"{label}_task-rsvp_events.tsv", sep="\t", index=False)


def write_things_eeg1(root: Path, subjects=(2, 3), design: EEG1Design = EEG1Design()) -> EEG1Design:
    """A THINGS-EEG1 data root: ``subjects``' BIDS files and the THINGS images they show."""
    for subject in subjects:
        write_things_eeg1_subject(root, subject, design)
    write_things_images(root, design.image_files())
    return design
