"""InternViT-6B (transformers-native, meta device), its checkpoint naming, and the registry's depth table."""

import pytest
import torch
from safetensors.torch import save_file

from eegbench._check import DataError
from eegbench.backbones import describe_backbone, get_backbone_spec, list_backbones, load_backbone
from eegbench.backbones.transformers_backbone import native_state_dict
from test_backbones import TINY_SPECS  # noqa: F401  (registers the tiny backbones)

#: Shallow Alignment (arXiv 2601.21948), Table 4: backbone -> (L, best layer l, relative depth of l in %).
PAPER_TABLE_4 = {
    "rn50": (4, 3, 66.7),
    "rn101": (4, 3, 66.7),
    "vit_b": (12, 6, 45.5),
    "vit_h": (32, 11, 32.3),
    "dinov2_g": (40, 16, 38.5),
    "vit_bigg": (48, 27, 55.3),
    "eva02_e": (64, 35, 54.0),
    "internvit_6b": (46, 28, 60.0),
}


def test_internvit_6b_structure_on_the_meta_device():
    info = describe_backbone("internvit_6b")  # no weights, no values
    spec = get_backbone_spec("internvit_6b")
    assert (spec.library, spec.model_id) == ("transformers", "OpenGVLab/InternViT-6B-448px-V1-5")
    assert info["n_layers"] == 46
    assert info["params_millions"] == pytest.approx(5536.5, abs=0.01) == spec.params_millions  # Table 4: 5.54B
    layers = info["layers"]
    assert [layer["name"] for layer in layers[:2]] == ["embeddings", "blocks.0"] and layers[45]["name"] == "blocks.44"
    assert layers[45]["module"] == "encoder.layer.44"
    assert all(layer["output_shape"] == [1025, 3200] and layer["dim"] == 3200 for layer in layers[:46])  # 32x32 + cls
    best = layers[27]  # the paper's layer 28 of 46
    assert (best["name"], best["relative_depth"]) == ("blocks.26", pytest.approx(0.6))
    assert layers[-1]["name"] == "final" and layers[-1]["dim"] == 3200


def test_the_depth_table_matches_the_shallow_alignment_paper():
    assert {name for name in list_backbones() if get_backbone_spec(name).paper_best_layer} == set(PAPER_TABLE_4)
    for name, (n_layers, best, depth_percent) in PAPER_TABLE_4.items():
        layout = load_backbone(name, pretrained=False, device="meta").layout()
        assert layout.n_layers == n_layers, name
        assert get_backbone_spec(name).paper_best_layer == best, name
        assert 100 * layout.resolve(best).relative_depth == pytest.approx(depth_percent, abs=0.05), name


def _original_names(native: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tiny model's state dict under the names of the published InternViT checkpoints (qkv fused)."""
    original = {"embeddings.class_embedding": native["embeddings.cls_token"],
                "embeddings.position_embedding": native["embeddings.position_embeddings"]}
    for kind in ("weight", "bias"):
        original[f"embeddings.patch_embedding.{kind}"] = native[f"embeddings.patch_embeddings.projection.{kind}"]
    for i in range(2):
        new, old = f"encoder.layer.{i}.", f"encoder.layers.{i}."
        original[old + "attn.qkv.weight"] = torch.cat([native[new + f"attention.{p}_proj.weight"] for p in "qkv"])
        pairs = {"attn.proj.weight": "attention.projection_layer.weight", "attn.proj.bias": "attention.projection_layer.bias",
                 "attn.q_norm.weight": "attention.q_norm.weight", "attn.k_norm.weight": "attention.k_norm.weight",
                 "norm1.weight": "layernorm_before.weight", "norm2.weight": "layernorm_after.weight",
                 "ls1": "lambda_1", "ls2": "lambda_2", "mlp.fc1.weight": "mlp.fc1.weight",
                 "mlp.fc1.bias": "mlp.fc1.bias", "mlp.fc2.weight": "mlp.fc2.weight", "mlp.fc2.bias": "mlp.fc2.bias"}
        original.update({old + o: native[new + n] for o, n in pairs.items()})
    return {name: tensor.clone().contiguous() for name, tensor in original.items()}


def test_a_checkpoint_in_the_original_naming_loads_into_the_native_model(tmp_path):
    reference = load_backbone("test_internvit", pretrained=False)
    state = {name: torch.randn_like(tensor) for name, tensor in reference.model.state_dict().items()}
    assert native_state_dict(_original_names(state)).keys() == state.keys()
    path = tmp_path / "internvit.safetensors"
    save_file(_original_names(state), path)
    loaded = load_backbone("test_internvit", weights=path)
    assert loaded.weights["file"] == "internvit.safetensors" and len(loaded.weights["sha256"]) == 64
    for name, tensor in loaded.model.state_dict().items():
        torch.testing.assert_close(tensor, state[name])
    images = torch.randn(2, 3, 28, 28)
    out = loaded.forward_layers(images, loaded.resolve_layers(["final"]))
    torch.testing.assert_close(out["final"], loaded.model(images).last_hidden_state[:, 0])


def test_a_checkpoint_of_another_model_is_a_data_error(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"head.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(DataError, match=rf"^{path} does not hold weights of tiny InternViT: Error\(s\) in loading"):
        load_backbone("test_internvit", weights=path)
