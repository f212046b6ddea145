"""Shapes and FLOPs of a backbone's layers, computed on the meta device: no weights, no data, instant.

A backbone's *meta twin* has the same architecture with no values; running it on a meta tensor
gives every layer's output shape and, under :class:`torch.utils.flop_counter.FlopCounterMode`,
the FLOPs of a forward pass, in well under a second even for billion-parameter models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from eegbench.backbones.base import Backbone, LayerRef
from eegbench.backbones.registry import get_backbone_spec, load_backbone


def meta_twin(backbone: Backbone | str) -> Backbone:
    """The structure of ``backbone`` (or of the backbone named so) on the meta device."""
    name = backbone if isinstance(backbone, str) else backbone.name
    return load_backbone(name, pretrained=False, device="meta")


def _meta_images(backbone: Backbone, batch: int = 1) -> torch.Tensor:
    size = backbone.preprocessing.size
    return torch.empty(batch, 3, size, size, device="meta")


def output_shapes(backbone: Backbone, refs: Sequence[LayerRef]) -> dict[str, tuple[int, ...]]:
    """Per-image output shape of each layer before pooling (``(C, H, W)``, ``(N, D)`` or ``(D,)``)."""
    shapes: dict[str, tuple[int, ...]] = {}
    meta_twin(backbone).forward_layers(_meta_images(backbone), refs, shapes)
    return shapes


def flops_per_image(backbone: Backbone, refs: Sequence[LayerRef]) -> int:
    """FLOPs (2 per multiply-add) of one image's forward pass up to the deepest layer of ``refs``.

    Counts what the extraction runs: the pass stops early when ``refs`` holds no final embedding.
    """
    from torch.utils.flop_counter import FlopCounterMode

    twin = meta_twin(backbone)
    with FlopCounterMode(display=False) as counter:
        twin.forward_layers(_meta_images(backbone), refs)
    return int(counter.get_total_flops())


def describe_backbone(name: str, image_size: int | None = None) -> dict[str, Any]:
    """Registry metadata of backbone ``name`` plus every addressable layer with its output shape.

    Built on the meta device, so it needs no weights and runs offline. ``image_size`` feeds
    backbones that accept any input size (CNNs) smaller images, as tasks may do.
    """
    spec = get_backbone_spec(name)
    twin = meta_twin(name).at_size(image_size)
    refs = twin.resolve_layers(["all"])
    shapes: dict[str, tuple[int, ...]] = {}
    pooled = twin.forward_layers(_meta_images(twin), refs, shapes)
    layers = [{"index": ref.index, "name": ref.name, "module": ref.module, "relative_depth": ref.relative_depth,
               "pooling": ref.pooling, "output_shape": list(shapes[ref.key]), "dim": pooled[ref.key].shape[1]}
              for ref in refs]
    return {"name": spec.name, "library": spec.library, "model_id": spec.model_id, "pretrained": spec.pretrained,
            "params_millions": round(twin.n_params / 1e6, 2), "final": spec.final,
            "preprocessing": twin.preprocessing.to_dict(), "n_layers": twin.n_layers,
            "gflops_per_image": round(flops_per_image(twin, [refs[-1]]) / 1e9, 3), "layers": layers}
