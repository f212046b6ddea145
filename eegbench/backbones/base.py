"""Backbones: vision models whose intermediate layers can be addressed and pooled.

A :class:`Backbone` wraps a loaded model with an ordered list of addressable layers
(:class:`LayerInfo`), the preprocessing its weights expect and the definition of its final
embedding. Layers are addressed in one place, :func:`resolve_layer`, by

* a 1-based index ``l`` in ``1..L`` as in the Shallow Alignment paper, or a negative index
  (``-1`` is layer ``L``);
* a relative depth in ``[0, 1]``, defined as ``(l - 1) / (L - 1)`` (written with a decimal
  point, e.g. ``0.5``);
* a layer name (``"blocks.3"``);
* ``"final"``: the backbone's final embedding (CLS/attention-pool output, or pre-logits).

Any of the first three may carry its pooling after a colon (``"0.6667:mean_all"``, ``"blocks.11:cls"``), as
layer labels print it.

Each layer output is pooled to one vector per image: CNN feature maps by global average pooling
(``"gap"``), transformer token sequences by the class token (``"cls"``), the mean of the patch
tokens (``"mean"``, class and register tokens excluded) or the mean of all tokens (``"mean_all"``,
class and register tokens included, as SAMGA and NeuralBench pool).
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from eegbench._check import InvalidInputError, check_count, suggest

FINAL = "final"
POOLINGS = ("gap", "cls", "mean", "mean_all")
#: Pooling of each kind of layer output: feature maps are averaged over space; token sequences
#: take the class token, the mean of the patch tokens or the mean of all tokens.
MAP_POOLINGS = ("gap",)
TOKEN_POOLINGS = ("cls", "mean", "mean_all")
RANDOM_INIT = "random-init"


@dataclass(frozen=True)
class Preprocessing:
    """Evaluation preprocessing: resize, centre crop, normalise (recorded in feature cache keys)."""

    size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def with_size(self, size: int) -> Preprocessing:
        """The same preprocessing at ``size`` pixels with no cropping (for CNNs on small images)."""
        return Preprocessing(size, 1.0, self.interpolation, self.mean, self.std)

    def transform(self):
        """A torchvision transform mapping a PIL image to a normalised ``(3, size, size)`` tensor."""
        from torchvision import transforms

        mode = transforms.InterpolationMode(self.interpolation)
        return transforms.Compose([
            transforms.Resize(int(math.floor(self.size / self.crop_pct)), interpolation=mode),
            transforms.CenterCrop(self.size),
            transforms.ToTensor(),
            transforms.Normalize(self.mean, self.std),
        ])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LayerInfo:
    """An addressable layer: its display name, the module whose output is taken, and pooling.

    The default ``pooling`` also says what the module outputs: ``"gap"`` a feature map
    ``(B, C, H, W)``, a token pooling (``"cls"``, ``"mean"``, ``"mean_all"``) a token sequence ``(B, N, D)``.
    """

    name: str
    module: str
    pooling: str = "gap"

    @property
    def poolings(self) -> tuple[str, ...]:
        """The poolings that apply to this layer's output."""
        return MAP_POOLINGS if self.pooling in MAP_POOLINGS else TOKEN_POOLINGS


@dataclass(frozen=True)
class LayerRef:
    """A resolved layer request.

    ``index`` is 1-based (``None`` for the final embedding); ``relative_depth`` is
    ``(index - 1) / (n_layers - 1)`` (``None`` for the final embedding).
    """

    name: str
    module: str
    pooling: str
    index: int | None
    n_layers: int
    relative_depth: float | None = field(default=None)
    default_pooling: bool = True

    @property
    def is_final(self) -> bool:
        return self.index is None

    @property
    def key(self) -> str:
        """The name, plus the pooling when it is not the layer's default (``"blocks.11:mean"``)."""
        return self.name if self.default_pooling else f"{self.name}:{self.pooling}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_INT = re.compile(r"^[+-]?\d+$")


def resolve_layer(request: str | int | float, layers: Sequence[LayerInfo], *, backbone: str = "backbone",
                  pooling: str | None = None) -> LayerRef:
    """Resolve an index, negative index, relative depth, name or ``"final"`` to a :class:`LayerRef`.

    Parameters
    ----------
    request : str, int or float
        What to resolve (see the module docstring). Strings are parsed: ``"3"`` is an index,
        ``"0.5"`` a relative depth.
    layers : sequence of LayerInfo
        The backbone's addressable layers, shallowest first.
    backbone : str
        Backbone name, for error messages.
    pooling : str, optional
        Override the layer's default pooling: ``"gap"`` for feature maps, ``"cls"``, ``"mean"``
        or ``"mean_all"`` for token sequences. The final embedding takes no pooling.
    """
    n = len(layers)
    names = [layer.name for layer in layers]
    if pooling is not None and pooling not in POOLINGS:
        raise InvalidInputError(f"Unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}.")
    if isinstance(request, str):
        text = request.strip()
        head, colon, suffix = text.rpartition(":")
        if colon and suffix in POOLINGS:  # "0.6667:mean": a layer with its pooling
            if pooling is not None and pooling != suffix:
                raise InvalidInputError(f"Layer {request!r} names pooling {suffix!r} but {pooling!r} was asked for; "
                                        "give the pooling once.")
            text, pooling = head, suffix
        if text == FINAL:
            if pooling is not None:
                raise InvalidInputError(f"The final embedding of {backbone!r} is already one vector per image; "
                                        f"pooling {pooling!r} applies to intermediate layers only.")
            return LayerRef(FINAL, FINAL, "embedding", None, n)
        if text in names:
            return _ref(layers, names.index(text) + 1, pooling, backbone)
        if _INT.match(text):
            request = int(text)
        else:
            try:
                request = float(text)
            except ValueError:
                raise _layer_error(request, names, backbone) from None
    if isinstance(request, bool):
        raise _layer_error(request, names, backbone)
    if isinstance(request, int):
        index = request + n + 1 if request < 0 else request
        if not 1 <= index <= n:
            raise _layer_error(request, names, backbone)
        return _ref(layers, index, pooling, backbone)
    if isinstance(request, float):
        if not 0.0 <= request <= 1.0 or math.isnan(request):
            raise _layer_error(request, names, backbone)
        # nearest layer to the requested depth; ties go to the deeper layer
        index = int(math.floor(request * (n - 1) + 0.5)) + 1 if n > 1 else 1
        return _ref(layers, index, pooling, backbone)
    raise _layer_error(request, names, backbone)


def _ref(layers: Sequence[LayerInfo], index: int, pooling: str | None, backbone: str) -> LayerRef:
    layer = layers[index - 1]
    n = len(layers)
    depth = (index - 1) / (n - 1) if n > 1 else 1.0
    chosen = pooling or layer.pooling
    if chosen not in layer.poolings:
        what = "a feature map" if layer.poolings == MAP_POOLINGS else "a token sequence"
        raise InvalidInputError(f"Layer {layer.name!r} of {backbone!r} outputs {what}; pool it with "
                                f"{' or '.join(repr(p) for p in layer.poolings)}, not {chosen!r}.")
    return LayerRef(layer.name, layer.module, chosen, index, n, round(depth, 6), chosen == layer.pooling)


def _layer_error(request: object, names: Sequence[str], backbone: str) -> InvalidInputError:
    n = len(names)
    hint = suggest(request, [*names, FINAL]) if isinstance(request, str) else ""
    return InvalidInputError(
        f"Invalid layer {request!r} for backbone {backbone!r}.{hint} Valid layers: an index 1..{n} or "
        f"-{n}..-1, a relative depth in [0, 1] such as 0.5, 'final', or a name: {', '.join(names)}."
    )


def even_layers(layers: Sequence[LayerInfo], count: int = 10) -> list[int]:
    """1-based indices of about ``count`` evenly spaced layers, always including the first and last."""
    n = len(layers)
    if n <= count:
        return list(range(1, n + 1))
    return sorted({int(math.floor(i * (n - 1) / (count - 1) + 0.5)) + 1 for i in range(count)})


def pool(output: Any, pooling: str, n_prefix_tokens: int = 1) -> torch.Tensor:
    """Pool a layer output to ``(batch, dim)``.

    Maps ``(B, C, H, W)`` are averaged over space (``"gap"``). Token sequences ``(B, L, D)`` take
    the class token (``"cls"``), the mean of the patch tokens (``"mean"``, the ``n_prefix_tokens``
    class and register tokens excluded) or the mean of all tokens (``"mean_all"``).
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    if output.ndim == 4:
        return output.mean(dim=(2, 3))
    if output.ndim == 3:
        if pooling == "cls":
            return output[:, 0]
        if pooling == "mean_all":
            return output.mean(dim=1)
        return output[:, n_prefix_tokens:].mean(dim=1)
    if output.ndim == 2:
        return output
    raise InvalidInputError(f"Cannot pool a layer output of shape {tuple(output.shape)}.")


class _StopForward(Exception):
    """Raised by a hook once every requested layer has been captured, to skip the rest."""


def state_dict_digest(model: nn.Module) -> str:
    """sha256 of a model's state dict (names, dtypes, shapes and values): identifies random weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class LayerAddressing:
    """Layer addressing shared by a loaded :class:`Backbone` and its weightless :class:`BackboneLayers`.

    Needs ``name``, ``layers`` and ``has_class_token`` attributes.
    """

    name: str
    layers: tuple[LayerInfo, ...]
    has_class_token: bool

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def resolve(self, request: str | int | float, pooling: str | None = None) -> LayerRef:
        """Resolve a layer request against this backbone (see :func:`resolve_layer`)."""
        if pooling == "cls" and not self.has_class_token:
            raise InvalidInputError(f"Backbone {self.name!r} has no class token; use pooling 'mean'.")
        return resolve_layer(request, self.layers, backbone=self.name, pooling=pooling)

    def resolve_layers(self, requests: Sequence[str | int | float], pooling: str | None = None) -> list[LayerRef]:
        """Resolve several requests, with two shorthands for layer sweeps.

        ``"all"`` is every layer and the final embedding; ``"sweep"`` is about ten evenly spaced
        layers (:func:`even_layers`, as the Shallow Alignment paper probes) and the final embedding.
        ``pooling`` applies to the intermediate layers; the final embedding is never pooled.
        Duplicates are dropped, keeping the first occurrence.
        """
        shorthands = {"all": [*range(1, self.n_layers + 1), FINAL], "sweep": [*even_layers(self.layers), FINAL]}
        expanded: list[str | int | float] = []
        for request in requests:
            expanded += shorthands.get(request, [request]) if isinstance(request, str) else [request]
        refs = []
        for request in expanded:
            ref = self.resolve(request)
            refs.append(ref if ref.is_final or pooling is None else self.resolve(request, pooling))
        return list({ref.key: ref for ref in refs}.values())

    def layout(self) -> BackboneLayers:
        """The layers alone, without the model: what a submission sees to choose its layers."""
        return BackboneLayers(self.name, tuple(self.layers), self.has_class_token)


@dataclass(frozen=True)
class BackboneLayers(LayerAddressing):
    """A backbone's addressable layers without its model or weights.

    This is the ``backbone`` a submission's :meth:`~eegbench.submissions.Method.feature_layers`
    receives: it resolves layer requests exactly as the loaded :class:`Backbone` does.
    """

    name: str
    layers: tuple[LayerInfo, ...]
    has_class_token: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "layers": [asdict(layer) for layer in self.layers],
                "has_class_token": self.has_class_token}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneLayers:
        return cls(str(data["name"]), tuple(LayerInfo(**layer) for layer in data["layers"]),
                   bool(data["has_class_token"]))


class Backbone(LayerAddressing):
    """A loaded vision model with addressable layers.

    Subclasses implement :meth:`_forward_final` (the final embedding) and may override
    :meth:`_forward_trunk` (the part that runs every hooked layer).

    Attributes
    ----------
    name : str
        Registry name (or ``timm:<model>`` / ``open_clip:<arch>[/<tag>]``).
    model : torch.nn.Module
        The model (for CLIP models: the vision tower only), in eval mode.
    layers : tuple of LayerInfo
        Addressable layers, shallowest first.
    preprocessing : Preprocessing
        The evaluation preprocessing the weights expect.
    weights : dict
        Provenance of the weights (tag, file, sha256), part of feature cache keys. Random weights
        are identified by the sha256 of their values.
    flexible_input : bool
        Whether the model accepts any input size (CNNs), see :meth:`at_size`.
    n_prefix_tokens : int
        Tokens before the patch tokens in transformer outputs (class and register tokens),
        excluded by ``"mean"`` pooling (and included by ``"mean_all"``).
    has_class_token : bool
        Whether ``"cls"`` pooling is possible.
    channels_last : bool
        Whether the model runs faster in channels-last memory format on CUDA (CNNs).
    nhwc_maps : bool
        Whether hooked feature maps come as ``(B, H, W, C)`` (e.g. timm Swin) instead of ``(B, C, H, W)``.
    tokens_batch_first : bool
        Whether hooked token sequences come as ``(B, N, D)``; False for ``(N, B, D)`` (old open_clip).
    """

    def __init__(self, name: str, model: nn.Module, layers: Sequence[LayerInfo], preprocessing: Preprocessing,
                 weights: dict[str, Any], *, flexible_input: bool = False, n_prefix_tokens: int = 1,
                 has_class_token: bool = True, channels_last: bool = False, nhwc_maps: bool = False,
                 tokens_batch_first: bool = True) -> None:
        self.name = name
        self.model = model.eval()
        self.layers = tuple(layers)
        self.preprocessing = preprocessing
        self.weights = weights
        self.flexible_input = flexible_input
        self.n_prefix_tokens = n_prefix_tokens
        self.has_class_token = has_class_token
        self.channels_last = channels_last
        self.nhwc_maps = nhwc_maps
        self.tokens_batch_first = tokens_batch_first

    def at_size(self, size: int | None) -> Backbone:
        """This backbone fed ``size``-pixel images without cropping, if it accepts any input size.

        CNNs do; for backbones with a fixed input size (ViTs) ``self`` is returned unchanged.
        """
        if check_count("image_size", size, 16) is None or not self.flexible_input:
            return self
        resized = copy.copy(self)
        resized.preprocessing = self.preprocessing.with_size(size)
        return resized

    @property
    def n_params(self) -> int:
        """Number of parameters of the model (the vision tower for CLIP models)."""
        return sum(p.numel() for p in self.model.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def identity(self) -> dict[str, Any]:
        """What determines this backbone's numbers: name, class, weights and preprocessing."""
        if self.weights.get("tag") == RANDOM_INIT and "sha256" not in self.weights and self.device.type != "meta":
            self.weights["sha256"] = state_dict_digest(self.model)
        return {"name": self.name, "class": type(self).__name__, "weights": self.weights,
                "preprocessing": self.preprocessing.to_dict()}

    @torch.inference_mode()
    def forward_layers(self, images: torch.Tensor, refs: Sequence[LayerRef],
                       shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, torch.Tensor]:
        """Run one forward pass and return each requested layer pooled to float32 ``(batch, dim)``.

        The pass stops as soon as every requested intermediate layer has been seen, unless the
        final embedding is requested too. If ``shapes`` is given, it receives the per-image shape
        of each layer's output before pooling (``(C, H, W)`` or ``(N, D)``).
        """
        captured: dict[str, Any] = {}
        modules = dict(self.model.named_modules())
        wanted = {ref.module for ref in refs if not ref.is_final}
        need_final = any(ref.is_final for ref in refs)

        def hook_for(module_name: str):
            def hook(_module, _inputs, output):
                captured[module_name] = output
                if not need_final and wanted.issubset(captured):
                    raise _StopForward

            return hook

        handles = [modules[m].register_forward_hook(hook_for(m)) for m in wanted]
        final = None
        try:
            final = self._forward_final(images) if need_final else self._forward_trunk(images)
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        out = {}
        for ref in refs:
            value = final if ref.is_final else self._layer_output(captured[ref.module])
            if shapes is not None:
                shapes[ref.key] = tuple(value.shape[1:])
            out[ref.key] = value.float() if ref.is_final else pool(value.float(), ref.pooling, self.n_prefix_tokens)
        return out

    def _layer_output(self, output: Any) -> torch.Tensor:
        """A hooked output as ``(B, C, H, W)`` or ``(B, N, D)``."""
        output = output[0] if isinstance(output, (tuple, list)) else output
        if output.ndim == 4 and self.nhwc_maps:
            return output.permute(0, 3, 1, 2)
        if output.ndim == 3 and not self.tokens_batch_first:
            return output.transpose(0, 1)
        return output

    def _forward_trunk(self, images: torch.Tensor) -> Any:
        return self._forward_final(images)

    def _forward_final(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
