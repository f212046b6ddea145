"""Import and runtime fixes for the pinned CPU stack.

The only torchvision wheel that pairs with ``torch==2.13.0`` on PyPI is a CUDA build whose compiled
ops (``torchvision/_C.so``) need CUDA libraries. On a CPU-only torch, ``import torchvision`` then
fails with ``operator torchvision::nms does not exist`` (and so do ``import timm`` and ``import
open_clip``). Defining the two op schemas that torchvision's meta registrations look up makes the
import work; torchvision's C++ ops (``nms``, ``decode_jpeg``...) stay unavailable, which eegbench
never uses (images are decoded with PIL).

``import eegbench`` installs an import hook that applies the fix right before torchvision is first
imported, and only when the compiled ops really fail to load, so it costs nothing otherwise and is
a no-op on a matching (e.g. CUDA) install.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

_library = None  # keeps the op definitions alive for the life of the process


def ensure_torchvision_importable() -> bool:
    """Make ``import torchvision`` work on CPU-only torch; return True if a fix was applied."""
    global _library
    if "torchvision" in sys.modules or _library is not None:
        return False
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    compiled_ops = os.path.join(os.path.dirname(spec.origin), "_C.so")
    if not os.path.exists(compiled_ops):
        return False
    import torch

    try:
        torch.ops.load_library(compiled_ops)
        return False
    except (OSError, RuntimeError):
        pass
    _library = torch.library.Library("torchvision", "DEF")
    _library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    return True


class _TorchvisionImportHook(importlib.abc.MetaPathFinder):
    """Runs :func:`ensure_torchvision_importable` just before the first ``import torchvision``."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        if fullname == "torchvision":
            uninstall_import_hook()
            ensure_torchvision_importable()
        return None  # let the normal finders import the module


def install_import_hook() -> None:
    """Arrange for the torchvision fix to run on first import (idempotent)."""
    if "torchvision" in sys.modules or any(isinstance(f, _TorchvisionImportHook) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionImportHook())


def uninstall_import_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionImportHook)]


def keep_freed_memory() -> bool:
    """Tell glibc's allocator to keep freed memory instead of returning it to the OS.

    Returning memory after every large tensor makes the next allocation page-fault again; on CPU
    this halves feature-extraction speed. Equivalent to the ``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_TOP_PAD_`` environment variables. The CLI calls it at
    start; returns False where glibc's ``mallopt`` is unavailable.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 2**31 - 1)
                and libc.mallopt(m_top_pad, 1 << 30))
