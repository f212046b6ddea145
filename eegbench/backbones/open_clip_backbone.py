"""open_clip vision towers as backbones: the CLIP models of the Shallow Alignment sweep, and any ``open_clip:<arch>``.

Only the vision tower is kept. Addressable layers are the four stages of the modified ResNets
(``layer1``..``layer4``, globally average pooled) and the residual blocks of the ViTs
(``blocks.0``..; the module ``transformer.resblocks.<i>``, or ``trunk.blocks.<i>`` for towers built
on timm such as EVA-02; pooled by the mean of the patch tokens, or the class token). The final
embedding is the tower's output, the CLIP image embedding before L2 normalisation: the
attention-pool output for ResNets, the projected class token for ViTs.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eegbench._check import DataError, InvalidInputError, UnknownNameError, suggest
from eegbench._io import FileDigests
from eegbench.backbones.base import RANDOM_INIT, Backbone, LayerInfo, Preprocessing
from eegbench.backbones.registry import BackboneSpec, libraries, register_backbone
from eegbench.backbones.timm_backbone import timm_layers, timm_token_layout
from eegbench.backbones.weights import WeightsSource, hub_filenames, resolve_weights


class OpenClipBackbone(Backbone):
    """An open_clip vision tower; the final embedding is its output (the unnormalised CLIP embedding)."""

    def _forward_final(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """open_clip logs "No pretrained weights loaded" on the root logger; eegbench loads weights itself."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def tower_layers(visual: nn.Module, arch: str) -> tuple[list[LayerInfo], dict[str, Any]]:
    """Addressable layers of an open_clip vision tower, and the Backbone keywords describing its outputs."""
    if hasattr(visual, "attnpool") and hasattr(visual, "layer4"):  # ModifiedResNet
        return [LayerInfo(f"layer{i}", f"layer{i}", "gap") for i in range(1, 5)], {"channels_last": True}
    resblocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if resblocks is not None:  # VisionTransformer; its transformer is batch-first since open_clip 2.26
        layers = [LayerInfo(f"blocks.{i}", f"transformer.resblocks.{i}", "mean") for i in range(len(resblocks))]
        return layers, {"tokens_batch_first": getattr(visual.transformer, "batch_first", False)}
    trunk = getattr(visual, "trunk", None)
    if trunk is not None:  # TimmModel (EVA-02, ConvNeXt...)
        layers = timm_layers(trunk, prefix="trunk.")
        return layers, {**timm_token_layout(trunk), "channels_last": layers[0].pooling == "gap"}
    raise InvalidInputError(f"open_clip model {arch!r} has a vision tower of type {type(visual).__name__}, "
                            "whose layers eegbench cannot address.")


def _tower_preprocessing(visual: nn.Module, tag_cfg: dict, arch: str) -> Preprocessing:
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    cfg = {"mean": OPENAI_DATASET_MEAN, "std": OPENAI_DATASET_STD, "interpolation": "bicubic",
           "resize_mode": "shortest", **getattr(visual, "preprocess_cfg", {})}
    cfg.update({k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg})
    size = visual.image_size
    height, width = (size, size) if isinstance(size, int) else size
    if height != width or cfg["resize_mode"] != "shortest":
        raise InvalidInputError(f"open_clip model {arch!r}: only square inputs resized by the shortest side are "
                                f"supported (got {height}x{width}, resize mode {cfg['resize_mode']!r}).")
    # open_clip's evaluation transform: resize the shortest side to `size`, centre crop `size`
    return Preprocessing(height, 1.0, cfg["interpolation"], tuple(cfg["mean"]), tuple(cfg["std"]))


def _weights_source(spec: BackboneSpec, tag_cfg: dict) -> WeightsSource:
    if spec.pretrained is None:
        import open_clip

        tags = open_clip.list_pretrained_tags_by_model(spec.model_id)
        return WeightsSource(f"open_clip {spec.model_id} with no pretrained tag; name one as "
                             f"open_clip:{spec.model_id}/<tag> with a tag of {', '.join(tags) or '(none)'}")
    description = f"open_clip {spec.model_id}, pretrained {spec.pretrained!r}"
    if tag_cfg.get("hf_hub"):
        repo_id, filename = _split_hub(tag_cfg["hf_hub"])
        return WeightsSource(description, repo_id, hub_filenames(filename or "open_clip_pytorch_model.bin"))
    return WeightsSource(description, url=tag_cfg.get("url") or None)


def _split_hub(hub: str) -> tuple[str, str]:
    """``"org/repo/"`` -> (``"org/repo"``, ``""``); ``"org/repo/file.bin"`` -> (``"org/repo"``, ``"file.bin"``)."""
    org, repo, *rest = hub.split("/")
    return f"{org}/{repo}", "/".join(rest)


def _load_open_clip(spec: BackboneSpec, *, weights_file: Path | None, pretrained: bool,
                    device: str) -> OpenClipBackbone:
    import open_clip

    tag_cfg = dict(open_clip.get_pretrained_cfg(spec.model_id, spec.pretrained)) if spec.pretrained else {}
    path = None
    if weights_file is not None or pretrained:
        path = resolve_weights(spec.name, _weights_source(spec, tag_cfg), weights_file)
    with _quiet_root_logger(), torch.device(device):
        # pretrained_text=False: only the vision tower is kept, so no text-tower weights are fetched
        clip = open_clip.create_model(spec.model_id, pretrained=None, device=device, pretrained_text=False,
                                      force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)), **spec.model_kwargs)
    weights: dict[str, Any] = {"tag": RANDOM_INIT}
    if path is not None:
        try:
            open_clip.load_checkpoint(clip, str(path))
        except (RuntimeError, KeyError, ValueError, OSError) as err:
            raise DataError(f"{path} does not hold weights of open_clip {spec.model_id}: "
                            f"{str(err).splitlines()[0]}") from err
        digests = FileDigests()
        weights = {"tag": spec.pretrained or "file", "file": path.name, "sha256": digests.digest(path)}
        digests.save()
    visual = clip.visual  # the text tower is dropped with `clip`
    layers, layout = tower_layers(visual, spec.model_id)
    preprocessing = spec.preprocessing or _tower_preprocessing(visual, tag_cfg, spec.model_id)
    return OpenClipBackbone(spec.name, visual, layers, preprocessing, weights, **layout)


def open_clip_spec(model: str) -> BackboneSpec:
    """The spec of ``open_clip:<arch>[/<tag>]``; unknown architectures and tags raise a clear error."""
    import open_clip

    arch, _, tag = model.partition("/")
    if arch not in open_clip.list_models():
        raise UnknownNameError(f"Unknown open_clip architecture {arch!r}.{suggest(arch, open_clip.list_models())} "
                               "See open_clip.list_models() for the valid names.")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag and tag not in tags:
        raise UnknownNameError(f"Unknown pretrained tag {tag!r} for open_clip {arch!r}.{suggest(tag, tags)} "
                               f"Valid tags: {', '.join(tags) or '(none)'}.")
    return BackboneSpec(name=f"open_clip:{model}", library="open_clip", model_id=arch, pretrained=tag or None,
                        params_millions=None, final="the vision tower's output (CLIP image embedding)",
                        description=f"open_clip {arch}" + (f" ({tag})" if tag else ""), loader=_load_open_clip)


libraries.register("open_clip", open_clip_spec)


def _register(name: str, arch: str, tag: str, params_millions: float, final: str, description: str,
              paper_best_layer: int | None = None) -> None:
    register_backbone(BackboneSpec(name=name, library="open_clip", model_id=arch, pretrained=tag,
                                   params_millions=params_millions, final=final, description=description,
                                   loader=_load_open_clip, paper_best_layer=paper_best_layer))


_ATTNPOOL = "{}-d attention-pool output of layer4 (visual.attnpool), the CLIP image embedding"
_CLS = "{}-d CLIP image embedding: class token after the final norm, linearly projected"

# The Shallow Alignment sweep (arXiv 2601.21948, Table 4), with its best layer (ViT-L/14 is not in the table);
# parameter counts are of the vision tower.
_register("rn50", "RN50", "openai", 38.32, _ATTNPOOL.format(1024), "OpenAI CLIP ResNet-50 (4 stages)", 3)
_register("rn101", "RN101", "openai", 56.26, _ATTNPOOL.format(512), "OpenAI CLIP ResNet-101 (4 stages)", 3)
_register("vit_b", "ViT-B-16", "laion2b_s34b_b88k", 86.19, _CLS.format(512), "OpenCLIP ViT-B/16, LAION-2B (12 blocks)",
          6)
_register("vit_l", "ViT-L-14", "laion2b_s32b_b82k", 303.97, _CLS.format(768), "OpenCLIP ViT-L/14, LAION-2B (24 blocks)")
_register("vit_h", "ViT-H-14", "laion2b_s32b_b79k", 632.08, _CLS.format(1024), "OpenCLIP ViT-H/14, LAION-2B (32 blocks)",
          11)
_register("vit_bigg", "ViT-bigG-14", "laion2b_s39b_b160k", 1844.91, _CLS.format(1280),
          "OpenCLIP ViT-bigG/14, LAION-2B (48 blocks)", 27)
_register("eva02_e", "EVA02-E-14-plus", "laion2b_s9b_b144k", 4350.56, _CLS.format(1024),
          "EVA-02-CLIP-E/14+, LAION-2B (64 blocks)", 35)
