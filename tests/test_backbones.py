"""The backbone registry, open_clip and timm towers (tiny random configs), layer addressing and pooling."""

import re
from typing import NamedTuple

import pytest
import torch

from eegbench._check import InvalidInputError, UnknownNameError
from eegbench.backbones import (
    BackboneSpec,
    describe_backbone,
    get_backbone_spec,
    list_backbones,
    load_backbone,
    output_shapes,
    register_backbone,
    register_backbone_alias,
)
from eegbench.backbones.open_clip_backbone import _load_open_clip
from eegbench.backbones.timm_backbone import _load_timm
from eegbench.backbones.transformers_backbone import INTERNVIT_6B_CONFIG, _load_internvl
from eegbench.identifiers import LAYER_SETTING_PATTERN
from helpers import isolated_registries

# Tiny versions of the real architectures, registered as any new backbone would be: one entry each.
_TEXT = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}
TINY_SPECS = {
    "test_clip_vit": BackboneSpec(
        "test_clip_vit", "open_clip", "ViT-B-16", None, None, "projected class token", "tiny open_clip ViT",
        _load_open_clip, model_kwargs={"embed_dim": 16, "text_cfg": _TEXT, "vision_cfg": {
            "image_size": 32, "layers": 3, "width": 32, "patch_size": 8, "head_width": 16}}),
    "test_clip_rn": BackboneSpec(
        "test_clip_rn", "open_clip", "RN50", None, None, "attention pool", "tiny open_clip ModifiedResNet",
        _load_open_clip, model_kwargs={"embed_dim": 16, "text_cfg": _TEXT, "vision_cfg": {
            "image_size": 64, "layers": [1, 1, 1, 1], "width": 8}}),
    "test_vit_reg": BackboneSpec(
        "test_vit_reg", "timm", "vit_small_patch14_reg4_dinov2", None, None, "pre-logits", "tiny DINOv2 with registers",
        _load_timm, model_kwargs={"img_size": 28, "depth": 3, "embed_dim": 32, "num_heads": 2}),
    "test_vit_gap": BackboneSpec(
        "test_vit_gap", "timm", "vit_tiny_patch16_224", None, None, "pre-logits", "tiny ViT without class token",
        _load_timm, model_kwargs={"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 16, "num_heads": 2,
                                  "class_token": False, "global_pool": "avg"}),
    "test_internvit": BackboneSpec(
        "test_internvit", "transformers", "tiny InternViT", None, None, "class token", "tiny InternViT", _load_internvl,
        model_kwargs={**INTERNVIT_6B_CONFIG, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "intermediate_size": 64, "image_size": 28, "patch_size": 14}),
}
for _spec in TINY_SPECS.values():
    register_backbone(_spec)



class Layout(NamedTuple):
    """What a registered backbone must build: its layers, their pooling, its final embedding and input size."""

    n_layers: int
    first: str
    last: str
    pooling: str
    final_dim: int
    image_size: int


#: Every registered backbone's layout; a backbone added to the registry adds its row here.
LAYOUTS = {
    "efficientnet_lite0": Layout(8, "stem", "blocks.6", "gap", 1280, 224),
    "rn50": Layout(4, "layer1", "layer4", "gap", 1024, 224),
    "rn101": Layout(4, "layer1", "layer4", "gap", 512, 224),
    "vit_b": Layout(12, "blocks.0", "blocks.11", "mean", 512, 224),
    "vit_l": Layout(24, "blocks.0", "blocks.23", "mean", 768, 224),
    "vit_h": Layout(32, "blocks.0", "blocks.31", "mean", 1024, 224),
    "vit_bigg": Layout(48, "blocks.0", "blocks.47", "mean", 1280, 224),
    "dinov2_g": Layout(40, "blocks.0", "blocks.39", "mean", 1536, 224),
    "eva02_e": Layout(64, "blocks.0", "blocks.63", "mean", 1024, 224),
    "internvit_6b": Layout(46, "embeddings", "blocks.44", "mean", 3200, 448),
    "test_clip_vit": Layout(3, "blocks.0", "blocks.2", "mean", 16, 32),
    "test_clip_rn": Layout(4, "layer1", "layer4", "gap", 16, 64),
    "test_vit_reg": Layout(3, "blocks.0", "blocks.2", "mean", 32, 28),
    "test_vit_gap": Layout(2, "blocks.0", "blocks.1", "mean", 16, 32),
    "test_internvit": Layout(3, "embeddings", "blocks.1", "mean", 32, 28),
}
PAPER_SWEEP = ("rn50", "rn101", "vit_b", "vit_l", "vit_h", "vit_bigg", "dinov2_g", "eva02_e")


def _images(backbone, n=3, seed=0):
    size = backbone.preprocessing.size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _hooked(module, images, forward):
    """What ``module`` outputs when ``forward(images)`` runs (a reference independent of eegbench's hooks)."""
    seen = []
    handle = module.register_forward_hook(lambda _m, _i, output: seen.append(output))
    try:
        with torch.no_grad():
            forward(images)
    finally:
        handle.remove()
    return seen[0]


def test_registry_has_the_shallow_alignment_sweep():
    assert set(PAPER_SWEEP) | {"efficientnet_lite0"} <= set(list_backbones())
    for name in PAPER_SWEEP:
        spec = get_backbone_spec(name)
        assert spec.library in ("open_clip", "timm") and spec.pretrained and spec.final
        assert spec.params_millions > 30
    assert get_backbone_spec("vit_h").pretrained == "laion2b_s32b_b79k"
    assert get_backbone_spec("rn50").pretrained == get_backbone_spec("rn101").pretrained == "openai"
    assert list_backbones("vit_*") == ["vit_b", "vit_bigg", "vit_h", "vit_l"]


@pytest.mark.parametrize("name, dim, params", [("rn50", 1024, 38.32), ("vit_h", 1024, 632.08)])
def test_registered_structure_matches_the_paper(name, dim, params):
    info = describe_backbone(name)  # built on the meta device: no weights, no values
    assert info["n_layers"] == LAYOUTS[name].n_layers
    assert info["params_millions"] == pytest.approx(params, abs=0.01) == get_backbone_spec(name).params_millions
    final = info["layers"][-1]
    assert final["name"] == "final" and final["dim"] == dim
    if name == "rn50":
        assert [layer["output_shape"] for layer in info["layers"][:4]] == [
            [256, 56, 56], [512, 28, 28], [1024, 14, 14], [2048, 7, 7]]
    else:
        assert info["layers"][10]["module"] == "transformer.resblocks.10"
        assert info["layers"][10]["output_shape"] == [257, 1280] and info["layers"][10]["dim"] == 1280
        assert info["layers"][10]["relative_depth"] == pytest.approx(10 / 31, abs=1e-6)
        assert info["gflops_per_image"] == pytest.approx(334.6, rel=0.01)  # 2 x 167 GMACs at 224 px


@pytest.mark.parametrize("name", list_backbones())
def test_every_registered_backbone_builds_its_layout(name):
    assert name in LAYOUTS, f"Backbone {name!r} is registered without a row in LAYOUTS."
    expected, spec = LAYOUTS[name], get_backbone_spec(name)
    backbone = load_backbone(name, pretrained=False, device="meta")  # the structure only: no weights, no values
    layout = backbone.layout()
    names = [layer.name for layer in layout.layers]
    assert (len(names), names[0], names[-1]) == (expected.n_layers, expected.first, expected.last)
    assert len(set(names)) == len(names) and {layer.pooling for layer in layout.layers} == {expected.pooling}
    modules = dict(backbone.model.named_modules())
    assert all(layer.module in modules for layer in layout.layers)
    # layer requests resolve on the weightless layout exactly as on the backbone
    requests = [1, -1, 0.0, 0.5, 1.0, expected.first, "final"]
    assert layout.resolve_layers(requests) == backbone.resolve_layers(requests)
    assert [ref.key for ref in layout.resolve_layers(["all"])] == [*names, "final"]
    middle = layout.resolve(0.5)
    assert abs(middle.relative_depth - 0.5) <= 0.5 / max(len(names) - 1, 1) + 1e-6  # the nearest layer
    assert layout.resolve(0.0).name == expected.first and layout.resolve(-1).name == expected.last
    # the final embedding has the width the registry describes, at the declared input size
    assert output_shapes(backbone, [layout.resolve("final")])["final"] == (expected.final_dim,)
    declared = re.match(r"(\d+)-d ", spec.final)
    assert declared is None or int(declared[1]) == expected.final_dim
    assert backbone.preprocessing.size == expected.image_size
    if spec.params_millions is not None:
        assert backbone.n_params / 1e6 == pytest.approx(spec.params_millions, abs=0.01)


def test_open_clip_vit_tower_layers_and_final_embedding():
    backbone = load_backbone("test_clip_vit", pretrained=False)
    assert [layer.name for layer in backbone.layers] == ["blocks.0", "blocks.1", "blocks.2"]
    assert backbone.layers[2].module == "transformer.resblocks.2" and backbone.layers[2].pooling == "mean"
    assert backbone.preprocessing.size == 32 and backbone.preprocessing.crop_pct == 1.0
    x = _images(backbone)
    refs = [backbone.resolve(-1), backbone.resolve(-1, "cls"), backbone.resolve("final")]
    shapes = {}
    out = backbone.forward_layers(x, refs, shapes)
    visual = backbone.model
    tokens = _hooked(visual.transformer.resblocks[2], x, visual)
    assert shapes == {"blocks.2": (17, 32), "blocks.2:cls": (17, 32), "final": (16,)}  # class + 4x4 patches
    torch.testing.assert_close(out["blocks.2"], tokens[:, 1:].mean(1))
    torch.testing.assert_close(out["blocks.2:cls"], tokens[:, 0])
    # the final embedding is the class token of the last block, normalised and projected
    torch.testing.assert_close(out["final"], visual.ln_post(tokens[:, 0]) @ visual.proj)


def test_open_clip_resnet_stages_and_attention_pool():
    backbone = load_backbone("test_clip_rn", pretrained=False)
    assert [(layer.name, layer.pooling) for layer in backbone.layers] == [
        ("layer1", "gap"), ("layer2", "gap"), ("layer3", "gap"), ("layer4", "gap")]
    x = _images(backbone, n=2)
    out = backbone.forward_layers(x, backbone.resolve_layers(["layer3", -1, "final"]))
    stage4 = _hooked(backbone.model.layer4, x, backbone.model)
    torch.testing.assert_close(out["layer4"], stage4.mean(dim=(2, 3)))
    torch.testing.assert_close(out["final"], backbone.model.attnpool(stage4))
    with pytest.raises(InvalidInputError, match=r"Layer 'layer3' of 'test_clip_rn' outputs a feature map; pool it "
                                                r"with 'gap', not 'cls'"):
        backbone.resolve(3, "cls")


def test_timm_register_tokens_are_excluded_from_mean_pooling():
    backbone = load_backbone("test_vit_reg", pretrained=False)
    assert backbone.n_prefix_tokens == 5 and backbone.preprocessing.size == 28  # class + 4 registers
    x = _images(backbone)
    out = backbone.forward_layers(x, backbone.resolve_layers([2, 0.0, "final"], pooling="mean"))
    # timm's own intermediate API drops the prefix tokens; its mean must match eegbench's pooling
    patches = backbone.model.forward_intermediates(x, indices=[1], output_fmt="NLC", intermediates_only=True)[0]
    torch.testing.assert_close(out["blocks.1"], patches.mean(1))
    assert set(out) == {"blocks.1", "blocks.0", "final"}
    torch.testing.assert_close(out["final"], backbone.model.forward_head(backbone.model.forward_features(x),
                                                                         pre_logits=True))


@pytest.mark.parametrize("name", ["test_vit_reg", "test_clip_vit", "test_internvit"])
def test_token_poolings_of_a_vit_layer(name):
    backbone = load_backbone(name, pretrained=False)
    x = _images(backbone)
    layer = backbone.layers[1]
    tokens = _hooked(dict(backbone.model.named_modules())[layer.module], x, backbone.model)
    tokens = backbone._layer_output(tokens)  # (B, N, D)
    refs = [backbone.resolve(2, pooling) for pooling in ("cls", "mean", "mean_all")]
    assert [ref.key for ref in refs] == [f"{layer.name}:cls", layer.name, f"{layer.name}:mean_all"]
    out = backbone.forward_layers(x, refs)
    prefix = backbone.n_prefix_tokens
    torch.testing.assert_close(out[f"{layer.name}:cls"], tokens[:, 0])
    torch.testing.assert_close(out[layer.name], tokens[:, prefix:].mean(1))  # patch tokens only
    torch.testing.assert_close(out[f"{layer.name}:mean_all"], tokens.mean(1))  # class (and register) tokens too
    assert not torch.allclose(out[layer.name], out[f"{layer.name}:mean_all"])
    assert all(re.match(LAYER_SETTING_PATTERN, ref.key) for ref in refs)  # records accept every pooled layer key


def test_a_feature_map_takes_no_token_pooling(backbone):
    with pytest.raises(InvalidInputError, match=r"Layer 'stem' of 'efficientnet_lite0' outputs a feature map; pool it "
                                                r"with 'gap', not 'mean_all'\."):
        backbone.resolve(1, "mean_all")


def test_class_token_pooling_needs_a_class_token():
    backbone = load_backbone("test_vit_gap", pretrained=False)
    assert not backbone.has_class_token and backbone.n_prefix_tokens == 0
    with pytest.raises(InvalidInputError, match="has no class token; use pooling 'mean'"):
        backbone.resolve(1, "cls")
    out = backbone.forward_layers(_images(backbone), [backbone.resolve(-1)])
    assert out["blocks.1"].shape == (3, 16)


def test_resolve_layers_shorthands_and_pooling(backbone):
    keys = [ref.key for ref in backbone.resolve_layers(["all"])]
    assert keys == ["stem", *[f"blocks.{i}" for i in range(7)], "final"]
    assert [ref.key for ref in backbone.resolve_layers(["sweep"])] == keys  # 8 layers: all of them
    vit = load_backbone("test_vit_reg", pretrained=False)
    refs = vit.resolve_layers(["final", 1, "blocks.0", "0.5", "-1"], pooling="cls")
    assert [ref.key for ref in refs] == ["final", "blocks.0:cls", "blocks.1:cls", "blocks.2:cls"]
    assert [ref.relative_depth for ref in refs] == [None, 0.0, 0.5, 1.0]
    with pytest.raises(InvalidInputError, match="pooling 'mean' applies to intermediate layers only"):
        vit.resolve("final", "mean")
    with pytest.raises(InvalidInputError, match=r"Unknown pooling 'max'; use one of gap, cls, mean, mean_all\."):
        vit.resolve(1, "max")
    with pytest.raises(InvalidInputError, match=r"Invalid layer 'stem' for backbone 'test_vit_reg'\. Valid layers: "
                                                r"an index 1\.\.3 or -3\.\.-1, .* blocks\.0, blocks\.1, blocks\.2\."):
        vit.resolve("stem")


def test_any_timm_or_open_clip_model_can_be_named():
    spec = get_backbone_spec("timm:resnet18.a1_in1k")
    assert (spec.library, spec.model_id, spec.pretrained) == ("timm", "resnet18", "a1_in1k")
    assert spec.params_millions == pytest.approx(11.69, abs=0.01)  # counted from the structure
    assert get_backbone_spec("timm:resnet18").pretrained == "a1_in1k"  # timm's default tag
    clip = get_backbone_spec("open_clip:RN50/openai")
    assert (clip.model_id, clip.pretrained, clip.params_millions) == ("RN50", "openai", 38.32)
    twin = load_backbone("timm:resnet18", pretrained=False, device="meta")
    assert [layer.name for layer in twin.layers] == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert twin.flexible_input and twin.channels_last


@pytest.mark.parametrize("name, message", [
    ("timm:resnet5O", r"Unknown timm model 'resnet5O'\. Did you mean 'resnet50'"),
    ("timm:resnet18.nope", r"Unknown pretrained tag 'nope' for timm model 'resnet18'.* Valid tags: .*a1_in1k"),
    ("open_clip:ViT-B-61", r"Unknown open_clip architecture 'ViT-B-61'"),
    ("open_clip:RN50/laion", r"Unknown pretrained tag 'laion' for open_clip 'RN50'.* Valid tags: openai"),
    ("keras:resnet50", r"Unknown backbone library 'keras'.* timm:<model>\[\.<tag>\] or open_clip:<arch>"),
    ("vit_hh", r"Unknown backbone 'vit_hh'.*vit_h"),
])
def test_unknown_names_say_what_is_valid(name, message):
    with pytest.raises(UnknownNameError, match=message):
        get_backbone_spec(name)


def test_registry_rejects_bad_entries():
    with pytest.raises(InvalidInputError, match="registered twice"):
        register_backbone(TINY_SPECS["test_clip_vit"])
    with pytest.raises(InvalidInputError, match="may not contain ':'"):
        register_backbone(BackboneSpec("a:b", "timm", "resnet18", None, None, "", "", _load_timm))
    with pytest.raises(InvalidInputError, match="meta device holds no values"):
        load_backbone("rn50", device="meta")


def test_a_short_name_for_any_library_model():
    with isolated_registries():
        tiny = register_backbone_alias("tiny_vit", "timm:vit_tiny_patch16_224", description="a 2-block ViT",
                                       model_kwargs={"img_size": 32, "patch_size": 8, "depth": 2})
        direct = get_backbone_spec("timm:vit_tiny_patch16_224")
        assert get_backbone_spec("tiny_vit") is tiny and "tiny_vit" in list_backbones()
        assert (tiny.library, tiny.model_id, tiny.pretrained) == ("timm", direct.model_id, direct.pretrained)
        assert tiny.params_millions < direct.params_millions  # counted again for the other structure
        backbone = load_backbone("tiny_vit", pretrained=False, device="meta")
        assert backbone.name == "tiny_vit" and backbone.n_layers == 2 and backbone.preprocessing.size == 32
        assert tiny.params_millions == pytest.approx(backbone.n_params / 1e6, abs=0.01)
        with pytest.raises(InvalidInputError, match="registered twice"):
            register_backbone_alias("tiny_vit", "timm:not-even-checked")
        with pytest.raises(InvalidInputError, match="may not contain ':'"):
            register_backbone_alias("timm:vit", "timm:vit_tiny_patch16_224")
        with pytest.raises(UnknownNameError, match="Unknown timm model 'resnet5O'"):
            register_backbone_alias("resnet", "timm:resnet5O")
        assert "resnet" not in list_backbones()
    assert "tiny_vit" not in list_backbones()
