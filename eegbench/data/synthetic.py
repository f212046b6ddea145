"""The synthetic THINGS-like dataset: eegbench's embedded default, generated offline from a seed.

Images are drawn procedurally (:mod:`eegbench.data.synthetic_images`). Brain responses are
simulated from the features of a real pretrained CNN (the packaged EfficientNet-Lite0) at a
**planted layer**, plus a smaller share of its final embedding:

1. features of the planted layer and of the final layer are centred on the training images and
   divided by one global scale; fixed random projections shared by all subjects (the "brain code")
   map them to latent variables, each standardised;
2. each latent drives one ERP-like component with a Gaussian time course: P1 (100 ms), N1
   (170 ms) and P2 (250 ms) carry the planted layer, a late component (400 ms) the final layer;
3. per subject, component latencies and widths jitter and each latent gets a spatial pattern over
   the 17 posterior channels (a shared template mixed with the subject's own), made of signed
   Gaussian blobs on the real 10-20 electrode positions;
4. noise is 1/f^1.2 with an alpha bump in time and spatially correlated across channels; every
   repetition draws new noise, so averaging repetitions helps as in real recordings.

Responses are in volts, like the THINGS-EEG2 arrays. With the defaults, the image-specific signal
has an RMS of 1 uV per channel at its peak and single-trial noise of 4 uV.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from eegbench._check import InvalidInputError
from eegbench._io import hash_json
from eegbench._paths import cache_home
from eegbench._progress import progress
from eegbench.data.base import Dataset, ImageTable, RecordingInfo
from eegbench.data.canonical import CanonicalWriter, cached_canonical
from eegbench.data.montages import POSTERIOR_17, channel_positions
from eegbench.data.spec import DatasetSpec, RecordingLayout
from eegbench.data.synthetic_images import concept_style, draw_image, family_priors

# Bump whenever the generator's output changes, so cached datasets are rebuilt.
GENERATOR_VERSION = 1

# (name, latency s, width s, sign); the first three carry the planted layer, the last the final layer.
COMPONENTS = (("P1", 0.100, 0.020, 1.0), ("N1", 0.170, 0.030, -1.0), ("P2", 0.250, 0.050, 1.0),
              ("late", 0.400, 0.100, 1.0))


class SyntheticConfig(BaseModel):
    """Parameters of the synthetic dataset (all have defaults; task files may override them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    n_subjects: int = Field(4, ge=1)
    n_train_concepts: int = Field(400, ge=2)
    images_per_concept: int = Field(5, ge=1)
    n_test_concepts: int = Field(200, ge=2)
    train_repetitions: int = Field(4, ge=1)
    test_repetitions: int = Field(80, ge=1)
    image_size: int = Field(128, ge=32)
    sfreq: float = Field(100.0, gt=0)
    tmin: float = -0.1
    n_times: int = Field(110, ge=8)
    backbone: str = "efficientnet_lite0"
    planted_layer: str = "blocks.3"
    final_share: float = Field(0.25, ge=0.0, le=1.0)
    noise_uv: float = Field(4.0, ge=0.0)
    n_latents_planted: int = Field(24, ge=3)
    n_latents_final: int = Field(8, ge=1)


def synthetic_dataset(config: SyntheticConfig | None = None, **overrides) -> Dataset:
    """Return the synthetic dataset for ``config``, generating and caching it on first use.

    Parameters
    ----------
    config : SyntheticConfig, optional
        Generator parameters; defaults are the embedded benchmark's.
    **overrides
        Field overrides applied on top of ``config`` (e.g. ``planted_layer="final"``).
    """
    config = (config or SyntheticConfig()).model_copy(update=overrides) if overrides else (config or SyntheticConfig())
    config = SyntheticConfig.model_validate(config.model_dump())
    from eegbench.backbones import load_backbone

    backbone = load_backbone(config.backbone)
    try:
        backbone.resolve(config.planted_layer)  # a typo fails now, not after the images are drawn
    except InvalidInputError as err:
        raise InvalidInputError(f"Synthetic dataset option planted_layer: {err}") from None
    key = hash_json({"version": GENERATOR_VERSION, "config": config.model_dump(), "backbone": backbone.identity()})
    root = cache_home() / "datasets" / "synthetic" / key[:20]
    return cached_canonical(root, lambda folder: _build(config, backbone, folder), "Generating the synthetic dataset")


def _image_tables(config: SyntheticConfig) -> tuple[ImageTable, ImageTable]:
    def table(prefix: str, n_concepts: int, per_concept: int, folder: str) -> ImageTable:
        ids, files, concepts = [], [], []
        for c in range(n_concepts):
            concept = f"{c + 1:05d}_{prefix}{c + 1:04d}"
            for e in range(per_concept):
                image_id = f"{prefix}{c + 1:04d}_{e + 1:02d}"
                ids.append(image_id)
                files.append(f"{folder}/{concept}/{image_id}.png")
                concepts.append(concept)
        return ImageTable(tuple(ids), tuple(files), tuple(concepts))

    return (table("c", config.n_train_concepts, config.images_per_concept, "training_images"),
            table("t", config.n_test_concepts, 1, "test_images"))


def _draw_concepts(seed: int, split: int, concepts: range, per_concept: int, image_size: int,
                   paths: list[str]) -> int:
    """Draw and save the images of ``concepts`` (runs in a worker process)."""
    from PIL import Image

    families = family_priors(seed)
    paths_iter = iter(paths)
    for c in concepts:
        style = concept_style(seed, split, c, families)
        for e in range(per_concept):
            path = Path(next(paths_iter))
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(draw_image(style, seed, split, c, e, image_size)).save(path, compress_level=1)
    return len(paths)


def _write_images(config: SyntheticConfig, image_root: Path, train: ImageTable, test: ImageTable) -> None:
    """Draw every image, spread over worker processes (each image depends only on its indices)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    jobs = []
    for split, n_concepts, per_concept, table in ((0, config.n_train_concepts, config.images_per_concept, train),
                                                  (1, config.n_test_concepts, 1, test)):
        for start in range(0, n_concepts, 25):
            concepts = range(start, min(start + 25, n_concepts))
            files = table.files[start * per_concept:concepts.stop * per_concept]
            jobs.append((config.seed, split, concepts, per_concept, config.image_size,
                         [str(image_root / f) for f in files]))
    workers = max(1, min(4, os.cpu_count() or 1))
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold torch threads
    with progress("Drawing synthetic images", total=len(train) + len(test)) as advance, \
            ProcessPoolExecutor(workers, mp_context=context) as pool:
        for done in as_completed([pool.submit(_draw_concepts, *job) for job in jobs]):
            advance(done.result())


def _build(config: SyntheticConfig, backbone, root: Path) -> None:
    from eegbench.backbones import get_features

    train_images, test_images = _image_tables(config)
    image_root = root / "images"
    _write_images(config, image_root, train_images, test_images)

    backbone = backbone.at_size(config.image_size)
    planted = backbone.resolve(config.planted_layer)
    final = backbone.resolve("final")
    # Extract every layer in this one pass: layer sweeps on this dataset then hit the cache.
    every_layer = [backbone.resolve(i) for i in range(1, backbone.n_layers + 1)] + [final]
    feats = {split: get_features(backbone, image_root, table.files, every_layer)
             for split, table in (("train", train_images), ("test", test_images))}
    latents = _brain_code(config, feats, planted.key, final.key)

    times = config.tmin + np.arange(config.n_times) / config.sfreq
    info = RecordingInfo("eeg", POSTERIOR_17, config.sfreq, times, unit="V")
    positions = channel_positions(POSTERIOR_17)
    writer = CanonicalWriter(root, dtype="float32")
    subjects_meta = []
    with progress("Simulating subjects", total=config.n_subjects) as advance:
        for s in range(config.n_subjects):
            train, test, meta = _simulate_subject(config, s, latents, times, positions)
            writer.add_subject(f"sub-{s + 1:02d}", train, test)
            subjects_meta.append(meta)
            advance(1)
    writer.finish(
        name="synthetic", variant=f"planted-{planted.name}", info=info, train_images=train_images,
        test_images=test_images, image_root="images",
        source={"generator": "eegbench.data.synthetic", "generator_version": GENERATOR_VERSION,
                "config": config.model_dump(), "backbone": backbone.identity(),
                "planted_layer": planted.to_dict(), "subjects": subjects_meta},
    )


def _brain_code(config: SyntheticConfig, feats: dict, planted_key: str, final_key: str) -> dict[str, np.ndarray]:
    """Standardised latents per split, planted block then final block, scaled to the final share."""
    rng = np.random.default_rng([config.seed, 5])
    blocks = []
    for key, n_latents, share in ((planted_key, config.n_latents_planted, 1 - config.final_share),
                                  (final_key, config.n_latents_final, config.final_share)):
        train, test = feats["train"][key], feats["test"][key]
        mean = train.mean(0)
        scale = (train - mean).std() + 1e-12
        projection = rng.normal(size=(train.shape[1], n_latents)) / math.sqrt(train.shape[1])
        z_train, z_test = ((train - mean) / scale) @ projection, ((test - mean) / scale) @ projection
        sd = z_train.std(0) + 1e-12
        total = config.n_latents_planted + config.n_latents_final
        weight = math.sqrt(share * total / n_latents)
        blocks.append((z_train / sd * weight, z_test / sd * weight))
    return {"train": np.concatenate([b[0] for b in blocks], 1), "test": np.concatenate([b[1] for b in blocks], 1)}


def _spatial_pattern(rng: np.random.Generator, positions: np.ndarray) -> np.ndarray:
    """Sum of one or two signed Gaussian blobs (sigma 3.5 cm) on the electrode positions, unit RMS."""
    pattern = np.zeros(len(positions))
    for _ in range(int(rng.integers(1, 3))):
        centre = positions[rng.integers(len(positions))] + rng.normal(0, 0.01, size=3)
        dist2 = ((positions - centre) ** 2).sum(1)
        pattern += rng.choice([-1.0, 1.0]) * np.exp(-dist2 / (2 * 0.035**2))
    return pattern / (np.sqrt((pattern**2).mean()) + 1e-12)


def _simulate_subject(config: SyntheticConfig, subject: int, latents: dict, times: np.ndarray,
                      positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng([config.seed, 3, subject])
    n_planted = config.n_latents_planted
    n_latents = latents["train"].shape[1]
    # component of each latent: planted latents cycle through P1/N1/P2, final latents use "late"
    component_of = [k % 3 for k in range(n_planted)] + [3] * (n_latents - n_planted)
    latency = [c[1] + rng.normal(0, 0.012) for c in COMPONENTS]
    width = [c[2] * math.exp(rng.normal(0, 0.1)) for c in COMPONENTS]
    courses = np.stack([c[3] * np.exp(-0.5 * ((times - latency[i]) / width[i]) ** 2)
                        for i, c in enumerate(COMPONENTS)])
    basis = np.empty((n_latents, len(positions), len(times)))
    for k in range(n_latents):
        template = _spatial_pattern(np.random.default_rng([config.seed, 4, k]), positions)
        pattern = 0.6 * template + 0.4 * _spatial_pattern(rng, positions)
        basis[k] = np.outer(pattern, courses[component_of[k]])

    clean_train = np.einsum("ik,kct->ict", latents["train"], basis)
    peak_rms = np.sqrt((clean_train.std(0) ** 2).mean(0)).max()
    basis /= peak_rms  # image-specific signal: RMS 1 uV per channel at its peak
    erp = 2.0 * np.outer(_spatial_pattern(np.random.default_rng([config.seed, 6]), positions),
                         courses[0] - courses[1] + courses[2])
    noise_uv = config.noise_uv * math.exp(rng.normal(0, 0.2))
    mixing = _spatial_noise_mixing(positions)

    def trials(z: np.ndarray, reps: int, noise_rng: np.random.Generator) -> np.ndarray:
        clean = np.einsum("ik,kct->ict", z, basis) + erp
        out = np.empty((len(z), reps, len(positions), len(times)), dtype=np.float32)
        for start in range(0, len(z), 256):
            stop = min(start + 256, len(z))
            noise = _coloured_noise(noise_rng, (stop - start) * reps, len(positions), len(times), config.sfreq)
            noise = np.matmul(mixing, noise).reshape(stop - start, reps, len(positions), len(times))
            out[start:stop] = (clean[start:stop, None] + noise_uv * noise) * 1e-6
        return out

    train = trials(latents["train"], config.train_repetitions, np.random.default_rng([config.seed, 7, subject]))
    test = trials(latents["test"], config.test_repetitions, np.random.default_rng([config.seed, 8, subject]))
    meta = {"noise_uv": round(noise_uv, 6),
            "components": {c[0]: {"latency": round(latency[i], 6), "width": round(width[i], 6)}
                           for i, c in enumerate(COMPONENTS)}}
    return train, test, meta


def _spatial_noise_mixing(positions: np.ndarray) -> np.ndarray:
    """Cholesky factor of 0.6 exp(-d^2 / 2 (4 cm)^2) + 0.3 (common mode) + 0.1 I (unit diagonal)."""
    dist2 = ((positions[:, None] - positions[None]) ** 2).sum(-1)
    cov = 0.6 * np.exp(-dist2 / (2 * 0.04**2)) + 0.3 + 0.1 * np.eye(len(positions))
    return np.linalg.cholesky(cov)


def _coloured_noise(rng: np.random.Generator, n: int, n_channels: int, n_times: int, sfreq: float) -> np.ndarray:
    """Unit-variance noise with a 1/f^1.2 spectrum plus a 10 Hz alpha bump, shape (n, channels, times)."""
    import scipy.fft

    # generate a little longer and crop, so the circular FFT does not join the two ends
    length = scipy.fft.next_fast_len(n_times + n_times // 4, real=True)
    freqs = np.fft.rfftfreq(length, 1 / sfreq)
    power = 1 / np.maximum(freqs, 1.0) ** 1.2 + 0.5 * np.exp(-0.5 * ((freqs - 10.0) / 1.5) ** 2)
    amplitude = np.sqrt(power)
    weights = np.full(len(freqs), 2.0)
    weights[0] = 1.0
    if length % 2 == 0:
        weights[-1] = 1.0
    variance = (weights * power).sum() / length
    white = rng.standard_normal((n, n_channels, length), dtype=np.float32)
    spectrum = scipy.fft.rfft(white, axis=-1, workers=-1) * amplitude.astype(np.float32)
    shaped = scipy.fft.irfft(spectrum, n=length, axis=-1, workers=-1)
    return shaped[..., :n_times] / np.float32(math.sqrt(variance))


def _exemplars(config: SyntheticConfig, dataset: Dataset, per_concept: int) -> tuple[Path, ImageTable]:
    """The exemplars after the first of each test concept (the test image is the first), drawn as the
    dataset's images are (each depends only on the seed and its indices) and cached on first use."""
    key = hash_json({"version": GENERATOR_VERSION, "config": config.model_dump(), "per_concept": per_concept})
    root = cache_home() / "datasets" / "synthetic-exemplars" / key[:20]
    ids, files, concepts = [], [], []
    for c, concept in enumerate(dataset.test_images.concept_names):
        for e in range(1, per_concept + 1):
            ids.append(f"t{c + 1:04d}_{e + 1:02d}")
            files.append(f"exemplars/{concept}/{ids[-1]}.png")
            concepts.append(concept)
    if not all((root / file).is_file() for file in files):
        from PIL import Image

        families = family_priors(config.seed)
        for c, concept in enumerate(dataset.test_images.concept_names):
            style = concept_style(config.seed, 1, c, families)
            for e in range(1, per_concept + 1):
                path = root / f"exemplars/{concept}/t{c + 1:04d}_{e + 1:02d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                temporary = path.with_name(f".{path.name}.tmp")
                Image.fromarray(draw_image(style, config.seed, 1, c, e, config.image_size)).save(temporary, format="png")
                os.replace(temporary, path)
    return root, ImageTable(tuple(ids), tuple(files), tuple(concepts))


def _load(data_root: Path | None, variant: None, config: SyntheticConfig) -> Dataset:
    """The loader of :data:`SPEC`: the synthetic dataset is generated, so it has no data root and no variants."""
    return synthetic_dataset(config)


def _layout(variant: None, config: SyntheticConfig) -> RecordingLayout:
    """The layout of :data:`SPEC`: the generator's channels and time axis, set by the options."""
    return RecordingLayout.sampled(config.sfreq, config.tmin, config.n_times, POSTERIOR_17)


SPEC = DatasetSpec(
    name="synthetic", title="Synthetic", options=SyntheticConfig, loader=_load, layout=_layout, exemplars=_exemplars,
    description="THINGS-like images drawn procedurally, with EEG responses simulated from a pretrained CNN's "
                "features; generated offline from a seed.",
)
