import re

import numpy as np
import pytest
import torch
from PIL import Image

from eegbench.backbones import FeatureCache, get_features, get_backbone_spec, list_backbones, load_backbone
from eegbench._check import DataError, MissingDataError, UnknownNameError
from test_backbones import TINY_SPECS  # noqa: F401  (registers the tiny backbones)


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


@pytest.mark.parametrize("damage, error, num_workers", [
    (lambda data: data[: len(data) // 2], "OSError: ", 0),  # "image file is truncated", "Truncated File Read"
    (lambda data: data[: len(data) // 2], "OSError: ", 1),  # decoded in a worker process
    (lambda data: b"", "UnidentifiedImageError: cannot identify image file", 0),
    (lambda data: b"<html>not found</html>", "UnidentifiedImageError: cannot identify image file", 0),
])
def test_an_image_that_cannot_be_decoded_is_named(backbone, tmp_path, damage, error, num_workers):
    from things_files import write_things_images

    files = [f"acorn/acorn_{i:02d}s.jpg" for i in range(1, 4)]  # THINGS JPEGs
    write_things_images(tmp_path, files)
    path = tmp_path / "object_images" / files[1]
    path.write_bytes(damage(path.read_bytes()))
    small = backbone.at_size(32)
    with pytest.raises(DataError, match=rf"^Image {re.escape(str(path))} cannot be decoded \({error}.*\): the file "
                                        rf"is truncated or corrupt. Replace it with an intact copy \(for a dataset's "
                                        rf"images, unpack its image archive again\).$"):
        get_features(small, tmp_path / "object_images", files, [small.resolve("final")], num_workers=num_workers,
                     cache=FeatureCache(tmp_path / "cache"))


def test_sidecar_records_the_resolved_layer_and_pooling_is_in_the_key(images, tmp_path):
    root, files = images
    vit = load_backbone("test_vit_reg", pretrained=False)
    cache = FeatureCache(tmp_path / "cache")
    refs = [*vit.resolve_layers([2, "final"]), vit.resolve(2, "cls"), vit.resolve(2, "mean_all")]
    first = get_features(vit, root, files, refs, cache=cache)
    assert set(first.arrays) == {"blocks.1", "final", "blocks.1:cls", "blocks.1:mean_all"}
    assert len(set(first.cache_keys.values())) == 4  # same layer, other pooling: another entry
    assert first.layers["blocks.1:mean_all"]["pooling"] == "mean_all"
    layer = first.layers["blocks.1"]
    assert (layer["module"], layer["index"], layer["relative_depth"], layer["pooling"]) == ("blocks.1", 2, 0.5, "mean")
    assert layer["output_shape"] == [9, 32] and layer["dim"] == 32 and not layer["cached"]  # 5 prefix + 2x2 patches
    again = get_features(vit, root, files, refs, cache=cache)
    assert again.layers["blocks.1"] == {**layer, "cached": True}
    sidecar = {e["key"]: e for e in cache.entries()}[first.cache_keys["blocks.1"]]
    assert sidecar["layer"]["output_shape"] == [9, 32] and sidecar["n_images"] == 6 and sidecar["bytes"] > 0
    assert sidecar["backbone"]["weights"]["tag"] == "random-init" and len(sidecar["backbone"]["weights"]["sha256"]) == 64


def test_extraction_matches_a_direct_forward_pass(backbone, images):
    from eegbench.backbones import extract_features, image_batches

    root, files = images
    small = backbone.at_size(32)
    refs = small.resolve_layers(["stem", "final"])
    paths = [root / f for f in files]
    extraction = extract_features(small, paths, refs, batch_size=4)  # two batches, the second one short
    batch = torch.cat(list(image_batches(small, paths, batch_size=6)))
    direct = small.forward_layers(batch, refs)
    for ref in refs:
        np.testing.assert_allclose(extraction.arrays[ref.key], direct[ref.key].numpy(), rtol=1e-4, atol=1e-5)
    assert extraction.output_shapes == {"stem": (32, 16, 16), "final": (1280,)} and extraction.precision == "fp32"


def test_extraction_options_are_checked(backbone, images):
    from eegbench._check import InvalidInputError
    from eegbench.backbones import extract_features

    root, files = images
    with pytest.raises(InvalidInputError, match="Precision 'bf16' is for CUDA devices; on cpu use fp32 or auto"):
        extract_features(backbone, [root / files[0]], [backbone.resolve("final")], precision="bf16")
    with pytest.raises(InvalidInputError, match="Invalid value 'half' for precision"):
        extract_features(backbone, [root / files[0]], [backbone.resolve("final")], precision="half")
    with pytest.raises(InvalidInputError, match="batch_size must be at least 1"):
        extract_features(backbone, [root / files[0]], [backbone.resolve("final")], batch_size=0)
