"""Retrieval scoring throughput (feature extraction: test_bench_extraction.py)."""

from __future__ import annotations

import numpy as np

from bench_sizes import record_rate, rounds
from eegbench.metrics import retrieve


def test_retrieval(benchmark, sizes):
    """Scoring one unit: rank the gallery for every test trial (tie-aware)."""
    benchmark.group = "evaluation"
    rng = np.random.default_rng(0)
    brain = rng.standard_normal((sizes.n_gallery, 512), dtype=np.float32)
    images = rng.standard_normal((sizes.n_gallery, 512), dtype=np.float32)
    benchmark.pedantic(retrieve, args=(brain, images), rounds=max(rounds(), 5), iterations=1)
    record_rate(benchmark, sizes.n_gallery, "trials")
