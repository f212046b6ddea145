import numpy as np
import pytest
from PIL import Image

from eegbench.backbones import FeatureCache, get_features, get_backbone_spec, list_backbones, load_backbone
from eegbench._check import MissingDataError, UnknownNameError


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(6):
        path = tmp_path / "img" / f"im{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        files.append(f"im{i}.png")
    return tmp_path / "img", files


def test_packaged_backbone_layers_and_weights(backbone):
    assert [layer.name for layer in backbone.layers] == ["stem"] + [f"blocks.{i}" for i in range(7)]
    assert backbone.weights["file"] == "efficientnet-lite0-57934424.pth"
    assert len(backbone.weights["sha256"]) == 64
    assert backbone.preprocessing.mean == (0.5, 0.5, 0.5)  # timm's config for these weights
    assert get_backbone_spec("efficientnet_lite0").embedded
    assert "efficientnet_lite0" in list_backbones("eff*")
    with pytest.raises(UnknownNameError, match="Unknown backbone 'resnet9000'"):
        get_backbone_spec("resnet9000")


def test_forward_layers_shapes_and_early_stop(backbone):
    import torch

    small = backbone.at_size(64)
    x = torch.randn(2, 3, 64, 64)
    refs = [small.resolve("stem"), small.resolve("blocks.3"), small.resolve("final")]
    out = small.forward_layers(x, refs)
    assert [out[r.key].shape for r in refs] == [(2, 32), (2, 80), (2, 1280)]
    only_early = small.forward_layers(x, [small.resolve("blocks.3")])
    torch.testing.assert_close(only_early["blocks.3"], out["blocks.3"])


def test_feature_cache_hits_and_invalidation(backbone, images, tmp_path):
    root, files = images
    small = backbone.at_size(32)
    cache = FeatureCache(tmp_path / "cache")
    refs = [small.resolve("blocks.2"), small.resolve("final")]
    first = get_features(small, root, files, refs, cache=cache)
    assert first["blocks.2"].shape == (6, 40) and first["final"].dtype == np.float32
    assert len(cache.entries()) == 2
    again = get_features(small, root, files, refs, cache=cache)
    assert again.cache_keys == first.cache_keys
    np.testing.assert_array_equal(again["final"], first["final"])  # first run returns the cached values

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(root / files[3])  # change one image
    changed = get_features(small, root, files, refs, cache=cache)
    assert changed.cache_keys["final"] != first.cache_keys["final"]
    assert not np.array_equal(changed["final"][3], first["final"][3])
    np.testing.assert_array_equal(changed["final"][0], first["final"][0])

    other_layer = get_features(small, root, files, [small.resolve("blocks.3")], cache=cache)
    assert other_layer.cache_keys["blocks.3"] not in first.cache_keys.values()
    other_size = get_features(backbone.at_size(48), root, files, refs[:1], cache=cache)
    assert other_size.cache_keys["blocks.2"] != first.cache_keys["blocks.2"]
    assert len(cache.entries()) == 6


def test_weights_file_is_part_of_the_key(images, tmp_path):
    import torch

    root, files = images
    random_init = load_backbone("efficientnet_lite0", pretrained=False).at_size(32)
    weights = tmp_path / "w.pth"
    torch.save(random_init.model.state_dict(), weights)
    from_file = load_backbone("efficientnet_lite0", weights=weights).at_size(32)
    cache = FeatureCache(tmp_path / "cache")
    a = get_features(random_init, root, files, [random_init.resolve("final")], cache=cache)
    b = get_features(from_file, root, files, [from_file.resolve("final")], cache=cache)
    assert a.cache_keys != b.cache_keys
    np.testing.assert_array_equal(a["final"], b["final"])  # same numbers, different provenance


def test_corrupt_cache_entry_is_rebuilt(backbone, images, tmp_path):
    root, files = images
    small = backbone.at_size(32)
    cache = FeatureCache(tmp_path / "cache")
    first = get_features(small, root, files, [small.resolve("final")], cache=cache)
    path = cache.root / small.name / f"{first.cache_keys['final']}.npy"
    path.write_bytes(b"garbage")
    again = get_features(small, root, files, [small.resolve("final")], cache=cache)
    np.testing.assert_array_equal(again["final"], first["final"])


def test_missing_images_are_reported(backbone, images):
    root, files = images
    with pytest.raises(MissingDataError, match=r"1 image files are missing under .*img, e\.g\. nope\.png"):
        get_features(backbone, root, [*files, "nope.png"], [backbone.resolve("final")])
