import pytest
import torch

from eegbench._check import InvalidInputError
from eegbench.backbones import LayerInfo, even_layers, resolve_layer
from eegbench.backbones.base import pool

LAYERS = [LayerInfo(f"blocks.{i}", f"blocks.{i}", "cls") for i in range(12)]


@pytest.mark.parametrize("request_, name, index, depth", [
    (1, "blocks.0", 1, 0.0),
    ("12", "blocks.11", 12, 1.0),
    (-1, "blocks.11", 12, 1.0),
    ("-12", "blocks.0", 1, 0.0),
    (0.5, "blocks.6", 7, 6 / 11),      # (l-1)/(L-1) nearest to 0.5: 5.5 -> ties go deeper -> l = 7
    ("0.0", "blocks.0", 1, 0.0),
    ("1.0", "blocks.11", 12, 1.0),
    ("blocks.4", "blocks.4", 5, 4 / 11),
])
def test_resolve_every_addressing_form(request_, name, index, depth):
    ref = resolve_layer(request_, LAYERS, backbone="toy")
    assert (ref.name, ref.index, ref.n_layers) == (name, index, 12)
    assert ref.relative_depth == pytest.approx(depth, abs=1e-6)
    assert ref.pooling == "cls" and ref.key == name


def test_resolve_final_and_pooling_override():
    final = resolve_layer("final", LAYERS)
    assert final.is_final and final.index is None and final.key == "final"
    mean = resolve_layer(3, LAYERS, pooling="mean")
    assert mean.pooling == "mean" and mean.key == "blocks.2:mean"


@pytest.mark.parametrize("bad", [0, 13, -13, 1.5, -0.1, "nope", "3.x", True])
def test_invalid_layers_list_the_valid_ones(bad):
    with pytest.raises(InvalidInputError, match=r"Valid layers: an index 1\.\.12 or -12\.\.-1, a relative depth "
                                                r"in \[0, 1\] such as 0\.5, 'final', or a name: blocks\.0, "):
        resolve_layer(bad, LAYERS, backbone="toy")


def test_even_layers_spans_first_to_last():
    assert even_layers(LAYERS, 10) == [1, 2, 3, 5, 6, 7, 8, 10, 11, 12]
    assert even_layers(LAYERS[:4], 10) == [1, 2, 3, 4]
    assert even_layers([LayerInfo(f"b{i}", f"b{i}") for i in range(32)], 10)[:3] == [1, 4, 8]


def test_pooling_of_maps_and_tokens():
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(pool(maps, "gap"), maps.mean(dim=(2, 3)))
    tokens = torch.arange(2 * 5 * 4, dtype=torch.float32).reshape(2, 5, 4)
    assert torch.equal(pool(tokens, "cls"), tokens[:, 0])
    assert torch.equal(pool(tokens, "mean"), tokens[:, 1:].mean(1))
    assert torch.equal(pool((tokens, None), "cls"), tokens[:, 0])
