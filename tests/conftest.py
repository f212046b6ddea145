"""Shared fixtures. Tests run offline, silently, and with a private cache folder."""

from __future__ import annotations

import os
import tempfile

# Before anything imports huggingface_hub: fail fast instead of ~45 s of retries per download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("EEGBENCH_PROGRESS", "0")
# A private cache per test session (set EEGBENCH_TEST_HOME to reuse one between local runs).
os.environ["EEGBENCH_HOME"] = os.environ.get("EEGBENCH_TEST_HOME") or tempfile.mkdtemp(prefix="eegbench-tests-")

import pytest  # noqa: E402

import eegbench  # noqa: E402,F401  (installs the torchvision import fix)
from eegbench._compat import keep_freed_memory  # noqa: E402

keep_freed_memory()

from helpers import TINY  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dataset():
    from eegbench.data import synthetic_dataset

    return synthetic_dataset(**TINY)


@pytest.fixture(scope="session")
def backbone():
    from eegbench.backbones import load_backbone

    return load_backbone("efficientnet_lite0")
