"""Benchmark sizes and reporting helpers (``EEGBENCH_BENCHMARK=ci|full``; see README.md)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one benchmark mode."""

    n_samples: int  # training samples of one model (images of a subject, repetitions averaged)
    n_channels: int
    n_times: int
    feature_dim: int
    batch_size: int
    hidden_dim: int
    proj_dim: int
    n_models: int  # models of one run trained at once (subjects x seeds)
    row: tuple[int, int]  # (models, epochs) of one leaderboard row: subjects x seeds, and the recipe's epochs
    n_layers: int  # layers of a shallow sweep
    n_gallery: int  # retrieval gallery (and trials)
    n_images: int  # images for feature extraction
    full_subject: dict  # synthetic generator options for the memory benchmark


SIZES = {
    "ci": Sizes(512, 17, 100, 64, 256, 64, 32, 4, (4, 1), 10, 200, 16,
                {"n_subjects": 1, "n_train_concepts": 40, "images_per_concept": 4, "n_test_concepts": 20,
                 "test_repetitions": 4, "n_times": 100, "sfreq": 100.0}),
    # THINGS-EEG2 at 250 Hz (16540 images, 17 channels x 250 samples) and the Shallow Alignment
    # recipe (batch 1024, EEGProject 1024 -> 512, 50 epochs); a row is 10 subjects x 5 seeds.
    "full": Sizes(16540, 17, 250, 1024, 1024, 1024, 512, 10, (50, 50), 10, 200, 512,
                  {"n_subjects": 1, "n_train_concepts": 1654, "images_per_concept": 10, "n_test_concepts": 200,
                   "test_repetitions": 80, "n_times": 250, "sfreq": 250.0, "tmin": 0.0}),
}


def mode() -> str:
    value = os.environ.get("EEGBENCH_BENCHMARK", "ci")
    if value not in SIZES:
        raise ValueError(f"EEGBENCH_BENCHMARK must be one of {', '.join(SIZES)}, got {value!r}.")
    return value


def rounds() -> int:
    """Timed rounds per benchmark (one in CI mode)."""
    return 3 if mode() == "full" else 1


def record_rate(benchmark, items: float, unit: str, flops: Callable[[], float] | None = None) -> None:
    """Store ``items`` per second of the fastest round in the benchmark's extra info.

    With ``flops`` (returns the floating-point operations of one round; called only when the
    benchmark was timed), also the achieved GFLOP/s.
    """
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.min > 0:
        benchmark.extra_info[f"{unit}_per_s"] = round(items / stats.stats.min, 1)
        if flops is not None:
            benchmark.extra_info["gflops_per_s"] = round(flops() / stats.stats.min / 1e9, 1)
    benchmark.extra_info["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    benchmark.extra_info["mode"] = mode()
