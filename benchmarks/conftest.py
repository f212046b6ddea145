"""Benchmark fixtures: offline, quiet, a private cache; sizes from ``EEGBENCH_BENCHMARK``.

Two sizes: ``ci`` (default; seconds, run inside the test suite with ``--benchmark-disable`` so the
suite never rots) and ``full`` (protocol sizes). See README.md.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("EEGBENCH_PROGRESS", "0")
os.environ.setdefault("EEGBENCH_HOME", tempfile.mkdtemp(prefix="eegbench-bench-"))

import pytest  # noqa: E402
import torch  # noqa: E402

import eegbench  # noqa: E402,F401  (installs the torchvision import fix)
from bench_sizes import SIZES, Sizes, mode  # noqa: E402


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    return SIZES[mode()]


@pytest.fixture(scope="session")
def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
