"""Which torch device a command runs on.

Feature extraction, training and evaluation all take a ``device`` string; they resolve it here, so
``"auto"`` means the same thing everywhere and a bad value fails with the same message.
"""

from __future__ import annotations

import torch

from eegbench._check import InvalidInputError


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is validated."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise InvalidInputError(f"--device must be cpu, cuda, cuda:N or auto, got {device!r}.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError("--device cuda was requested but PyTorch sees no CUDA device here.")
    return torch.device(device)
