"""Vision backbones, layer addressing and cached feature extraction."""

from eegbench.backbones import timm_backbone as _timm_backbone  # noqa: F401  (registers entries)
from eegbench.backbones.base import (
    FINAL,
    Backbone,
    LayerInfo,
    LayerRef,
    Preprocessing,
    even_layers,
    resolve_layer,
)
from eegbench.backbones.features import FeatureCache, FeatureSet, extract_features, get_features
from eegbench.backbones.registry import (
    BackboneSpec,
    get_backbone_spec,
    list_backbones,
    load_backbone,
    register_backbone,
)

DEFAULT_BACKBONE = "efficientnet_lite0"

__all__ = [
    "DEFAULT_BACKBONE", "FINAL", "Backbone", "BackboneSpec", "FeatureCache", "FeatureSet", "LayerInfo", "LayerRef",
    "Preprocessing", "even_layers", "extract_features", "get_backbone_spec", "get_features",
    "list_backbones", "load_backbone", "register_backbone", "resolve_layer",
]
