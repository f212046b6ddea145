"""Hugging Face ``transformers`` vision models as backbones: InternViT-6B.

``internvit_6b`` is OpenGVLab's InternViT-6B-448px-V1-5 built with the vision model that
``transformers`` (>= 4.52) ships natively, ``InternVLVisionModel``, so no code is downloaded from
the hub (no ``trust_remote_code``) and the structure builds offline. Its addressable layers are
the embedding output (``embeddings``: class token plus position-embedded patches) and the 45
blocks (``blocks.0``..``blocks.44``, the modules ``encoder.layer.<i>``): L = 46, as the Shallow
Alignment paper counts the hidden states. Token sequences are pooled by the mean of the patch
tokens (default), the class token, or the mean of all tokens. The final embedding is the class
token of the last block (InternViT-6B has no final norm).

The published checkpoint uses the original InternViT parameter names (``encoder.layers.<i>.attn.qkv``,
``ls1``...); :func:`native_state_dict` renames them to the native model's, so a weights file in
either naming loads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eegbench._check import DataError, InvalidInputError
from eegbench._io import FileDigests
from eegbench.backbones.base import RANDOM_INIT, Backbone, LayerInfo, Preprocessing
from eegbench.backbones.registry import BackboneSpec, register_backbone
from eegbench.backbones.timm_backbone import IMAGENET_MEAN, IMAGENET_STD
from eegbench.backbones.weights import WeightsSource, resolve_weights

#: InternViT-6B-448px-V1-5 (its published ``config.json``), in ``InternVLVisionConfig`` terms.
INTERNVIT_6B_CONFIG: dict[str, Any] = {
    "hidden_size": 3200, "num_hidden_layers": 45, "num_attention_heads": 25, "intermediate_size": 12800,
    "hidden_act": "gelu", "attention_bias": False, "use_qk_norm": True, "norm_type": "rms_norm",
    "layer_norm_eps": 1e-6, "image_size": 448, "patch_size": 14, "layer_scale_init_value": 0.1,
    "use_mean_pooling": True,  # no final norm
}

_TRANSFORMERS_HINT = ('InternViT needs transformers >= 4.52 (its native InternVLVisionModel); install it with '
                      '`pip install "eegbench[internvit]"` (or `pip install "transformers>=4.52"`).')


class TransformersVisionBackbone(Backbone):
    """A ``transformers`` vision model; the final embedding is the class token of its last hidden state."""

    def _forward_final(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=images).last_hidden_state[:, 0]


def internvl_layers(model: nn.Module) -> list[LayerInfo]:
    """The embedding output and every block of an ``InternVLVisionModel``, pooled by the mean of patch tokens."""
    blocks = model.encoder.layer
    return [LayerInfo("embeddings", "embeddings", "mean"),
            *(LayerInfo(f"blocks.{i}", f"encoder.layer.{i}", "mean") for i in range(len(blocks)))]


#: Original InternViT parameter names -> native ``InternVLVisionModel`` names (the fused qkv is split apart).
_RENAMES = (
    (r"^embeddings\.class_embedding$", "embeddings.cls_token"),
    (r"^embeddings\.patch_embedding\.", "embeddings.patch_embeddings.projection."),
    (r"^embeddings\.position_embedding$", "embeddings.position_embeddings"),
    (r"^encoder\.layers\.(\d+)\.attn\.proj\.", r"encoder.layer.\1.attention.projection_layer."),
    (r"^encoder\.layers\.(\d+)\.attn\.([qk])_norm\.", r"encoder.layer.\1.attention.\2_norm."),
    (r"^encoder\.layers\.(\d+)\.mlp\.", r"encoder.layer.\1.mlp."),
    (r"^encoder\.layers\.(\d+)\.norm1\.", r"encoder.layer.\1.layernorm_before."),
    (r"^encoder\.layers\.(\d+)\.norm2\.", r"encoder.layer.\1.layernorm_after."),
    (r"^encoder\.layers\.(\d+)\.ls1$", r"encoder.layer.\1.lambda_1"),
    (r"^encoder\.layers\.(\d+)\.ls2$", r"encoder.layer.\1.lambda_2"),
)
_QKV = re.compile(r"^encoder\.layers\.(\d+)\.attn\.qkv\.(weight|bias)$")


def native_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with original InternViT parameter names renamed to ``InternVLVisionModel``'s.

    The fused ``attn.qkv`` projection becomes ``q_proj``, ``k_proj`` and ``v_proj``. Names already
    native pass unchanged, as does anything else (``load_state_dict`` then names what does not fit).
    """
    native: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        fused = _QKV.match(name)
        if fused:
            block, kind = fused.groups()
            for part, chunk in zip("qkv", tensor.chunk(3, dim=0)):
                native[f"encoder.layer.{block}.attention.{part}_proj.{kind}"] = chunk
            continue
        for pattern, replacement in _RENAMES:
            name, count = re.subn(pattern, replacement, name)
            if count:
                break
        native[name] = tensor
    return native


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_internvl(spec: BackboneSpec, *, weights_file: Path | None, pretrained: bool,
                   device: str) -> TransformersVisionBackbone:
    try:
        from transformers import InternVLVisionConfig, InternVLVisionModel
    except ImportError:
        raise InvalidInputError(f"Backbone {spec.name!r}: {_TRANSFORMERS_HINT}") from None

    path = None
    if weights_file is not None or pretrained:
        source = WeightsSource(f"transformers {spec.model_id}", spec.model_id, ("model.safetensors",))
        path = resolve_weights(spec.name, source, weights_file)
    with torch.device(device):
        model = InternVLVisionModel(InternVLVisionConfig(**spec.model_kwargs))
    weights: dict[str, Any] = {"tag": RANDOM_INIT}
    if path is not None:
        try:
            model.load_state_dict(native_state_dict(_read_state_dict(path)), strict=True)
        except (RuntimeError, KeyError, ValueError) as err:
            raise DataError(f"{path} does not hold weights of {spec.model_id}: {str(err).splitlines()[0]}") from err
        digests = FileDigests()
        weights = {"tag": spec.pretrained, "file": path.name, "sha256": digests.digest(path)}
        digests.save()
    preprocessing = spec.preprocessing or Preprocessing(model.config.image_size[0], 1.0, "bicubic",
                                                        IMAGENET_MEAN, IMAGENET_STD)
    return TransformersVisionBackbone(spec.name, model, internvl_layers(model), preprocessing, weights)


register_backbone(BackboneSpec(
    name="internvit_6b",
    library="transformers",
    model_id="OpenGVLab/InternViT-6B-448px-V1-5",
    pretrained="V1-5",
    params_millions=5536.5,
    final="3200-d class token of the last block (no final norm)",
    description="InternViT-6B-448px-V1-5 (embedding output + 45 blocks, L = 46) at 448 px, transformers-native",
    loader=_load_internvl,
    model_kwargs=INTERNVIT_6B_CONFIG,
    # InternVL's evaluation transform: resize to 448 x 448 (bicubic), ImageNet normalisation
    preprocessing=Preprocessing(448, 1.0, "bicubic", IMAGENET_MEAN, IMAGENET_STD),
    paper_best_layer=28,  # Shallow Alignment, Table 4: blocks.26 (82.6 top-1)
))
