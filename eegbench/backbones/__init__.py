"""Vision backbones, layer addressing and cached feature extraction.

Backbones are registered by short name (``eegbench list backbones``; add one with
:func:`register_backbone_alias` or :func:`register_backbone`) or named directly as
``timm:<model>[.<tag>]`` or ``open_clip:<arch>[/<tag>]``. See :mod:`eegbench.backbones.base` for
layer addressing, :mod:`eegbench.backbones.features` for extraction and the feature cache, and
:mod:`eegbench.backbones.weights` for where weights are found.
"""

from eegbench.backbones import open_clip_backbone as _open_clip_backbone  # noqa: F401  (registers entries)
from eegbench.backbones import timm_backbone as _timm_backbone  # noqa: F401  (registers entries)
from eegbench.backbones import transformers_backbone as _transformers_backbone  # noqa: F401  (registers entries)
from eegbench.backbones.base import (
    FINAL,
    Backbone,
    BackboneLayers,
    LayerInfo,
    LayerRef,
    Preprocessing,
    even_layers,
    resolve_layer,
)
from eegbench.backbones.features import (
    Extraction,
    FeatureCache,
    FeatureSet,
    ImageSet,
    extract_features,
    extract_image_sets,
    folder_image_set,
    get_features,
    image_batches,
    list_images,
)
from eegbench.backbones.probe import describe_backbone, flops_per_image, output_shapes
from eegbench.backbones.registry import (
    BackboneSpec,
    get_backbone_spec,
    list_backbones,
    load_backbone,
    register_backbone,
    register_backbone_alias,
)
from eegbench.backbones.weights import weights_home

DEFAULT_BACKBONE = "efficientnet_lite0"

__all__ = [
    "DEFAULT_BACKBONE", "FINAL", "Backbone", "BackboneLayers", "BackboneSpec", "Extraction", "FeatureCache", "FeatureSet", "ImageSet",
    "LayerInfo", "LayerRef", "Preprocessing", "describe_backbone", "even_layers", "extract_features",
    "extract_image_sets", "flops_per_image", "folder_image_set", "get_backbone_spec", "get_features", "image_batches",
    "list_backbones", "list_images", "load_backbone", "output_shapes", "register_backbone", "register_backbone_alias",
    "resolve_layer", "weights_home",
]

