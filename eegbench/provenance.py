"""Provenance: what every result records about where and how it was computed.

Versions of eegbench and the numeric stack, the git state of the checkout, the hardware, and the
execution flags that change speed but not the model (determinism settings, ``torch.compile``).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from eegbench._version import __version__


def now() -> str:
    """The local time with its UTC offset, as records store it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def compile_requested() -> bool:
    """Whether ``EEGBENCH_COMPILE=1`` asks to compile the training step with ``torch.compile``.

    An execution option like the device, not a hyperparameter: it changes speed, not the model.
    Worth it on GPU for long runs; compilation itself takes tens of seconds.
    """
    return os.environ.get("EEGBENCH_COMPILE", "0") == "1"


#: the parts of a checkout that decide a result's numbers
_CODE_PATHS = ("eegbench", "submissions", "tasks", "pyproject.toml")


@functools.cache
def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the eegbench checkout, if it runs from one. Dirty means that what
    decides a number (the package, the submissions, the task files) differs from the commit; result
    files and generated pages do not count."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return {"commit": None, "dirty": None}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                 *_CODE_PATHS], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


_PACKAGES = ("torch", "torchvision", "timm", "open_clip_torch", "numpy", "scipy", "mne", "pydantic")


def environment(device: Any) -> dict[str, Any]:
    """Versions, hardware and determinism flags, recorded with every result."""
    import torch

    packages = {}
    for name in _PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    device = torch.device(device)
    return {
        "eegbench": __version__,
        "git": git_state(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or None,
        "packages": packages,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "torch_compile": compile_requested(),
    }
