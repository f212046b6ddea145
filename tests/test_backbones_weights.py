"""Weights: local files (--weights, the weights folder), provenance, and the immediate offline error."""

import pytest
import torch

import eegbench.backbones.weights as weights_module
from eegbench._check import DataError, MissingDataError
from eegbench.backbones import load_backbone, weights_home
from eegbench.backbones.weights import hub_reachable
from test_backbones import TINY_SPECS  # noqa: F401  (registers the tiny backbones)


def _clip_state(tmp_path, seed=1):
    """A full CLIP checkpoint of the tiny open_clip ViT, as open_clip saves one."""
    import open_clip

    spec = TINY_SPECS["test_clip_vit"]
    torch.manual_seed(seed)
    clip = open_clip.create_model(spec.model_id, pretrained=None, pretrained_text=False, **spec.model_kwargs)
    path = tmp_path / f"tiny-clip-{seed}.pt"
    torch.save(clip.state_dict(), path)
    return clip, path


def test_weights_file_loads_and_is_recorded(tmp_path):
    clip, path = _clip_state(tmp_path)
    backbone = load_backbone("test_clip_vit", weights=path)
    assert backbone.weights["file"] == path.name and len(backbone.weights["sha256"]) == 64
    x = torch.randn(2, 3, 32, 32)
    out = backbone.forward_layers(x, [backbone.resolve("final")])
    with torch.no_grad():
        torch.testing.assert_close(out["final"], clip.encode_image(x))


def test_weights_folder_is_searched(tmp_path):
    clip, path = _clip_state(tmp_path, seed=2)
    weights_home().mkdir(parents=True, exist_ok=True)
    stored = weights_home() / "test_clip_vit.pt"
    stored.write_bytes(path.read_bytes())
    try:
        backbone = load_backbone("test_clip_vit")  # pretrained=True: finds the file, downloads nothing
        assert backbone.weights["file"] == "test_clip_vit.pt"
        torch.testing.assert_close(backbone.model.proj, clip.visual.proj)
    finally:
        stored.unlink()


def test_wrong_or_missing_weights_files_are_clear(tmp_path, backbone):
    with pytest.raises(MissingDataError, match=r"Weights file .*nope\.pt not found"):
        load_backbone("vit_h", weights=tmp_path / "nope.pt")
    wrong = tmp_path / "lite0.pth"
    torch.save(backbone.model.state_dict(), wrong)
    with pytest.raises(DataError, match=r"lite0\.pth does not hold weights of open_clip ViT-B-16"):
        load_backbone("test_clip_vit", weights=wrong)


@pytest.fixture
def no_model_building(monkeypatch):
    """Fail the test if a model is built or a download starts: the error must come first."""
    import open_clip
    import timm
    import transformers

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was built or a download started before the missing-weights error")

    monkeypatch.setattr(open_clip, "create_model", forbidden)
    monkeypatch.setattr(timm, "create_model", forbidden)
    monkeypatch.setattr(transformers, "InternVLVisionModel", forbidden)
    monkeypatch.setattr(weights_module, "_download", forbidden)


@pytest.mark.parametrize("name, source", [
    ("vit_h", r"https://huggingface\.co/laion/CLIP-ViT-H-14-laion2B-s32B-b79K/resolve/main/open_clip_model\.safetensors"),
    ("dinov2_g", r"https://huggingface\.co/timm/vit_giant_patch14_dinov2\.lvd142m/resolve/main/model\.safetensors"),
    ("internvit_6b", r"https://huggingface\.co/OpenGVLab/InternViT-6B-448px-V1-5/resolve/main/model\.safetensors"),
])
def test_offline_error_says_how_to_provide_weights(name, source, no_model_building):
    with pytest.raises(MissingDataError) as err:
        load_backbone(name)
    message = str(err.value)
    assert f"No weights for backbone {name!r}" in message and "HF_HUB_OFFLINE is set" in message
    assert f"pass --weights FILE (Python: load_backbone({name!r}, weights=FILE))" in message
    assert str(weights_home() / f"{name}.<ext>") in message
    assert len(__import__("re").findall(source, message)) == 1


def test_unreachable_hub_fails_fast_without_the_offline_flag(monkeypatch, no_model_building):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    reachable, reason = hub_reachable()
    assert not reachable and reason.startswith("127.0.0.1 cannot be reached")
    with pytest.raises(MissingDataError, match=r"cannot be downloaded: 127\.0\.0\.1 cannot be reached.*--weights FILE"):
        load_backbone("vit_b")


class _Code:
    """A pickle that names a function to call when loaded (a harmless one here)."""

    def __reduce__(self):
        import os

        return os.getcwd, ()


@pytest.mark.parametrize("backbone_name", ["test_clip_vit", "test_vit_gap"])
@pytest.mark.parametrize("name, write, problem", [
    ("random.pt", lambda path: path.write_bytes(b"\x08z*\xa5" + bytes(range(256)) * 4),
     r"is not a torch\.save file: it is neither a zip archive nor a pickle \(it starts with b'\\x08z\*\\xa5'\)"),
    ("empty.pt", lambda path: path.write_bytes(b""), r"is empty \(0 bytes\)"),
    ("code.pt", lambda path: torch.save({"w": _Code()}, path),
     r"holds pickled code \(posix\.getcwd\), which eegbench never runs"),
    ("cut.pt", lambda path: (torch.save({"w": torch.zeros(4)}, path), path.write_bytes(path.read_bytes()[:100])),
     r"is not a valid torch\.save file \(PytorchStreamReader failed reading zip archive: failed finding central "
     r"directory\)"),
    ("cut.safetensors", lambda path: path.write_bytes(b"\xff" * 64),
     r"is not a valid safetensors file \(Error while deserializing header: header too large\)"),
])
def test_a_damaged_weights_file_is_named_before_a_model_is_built(tmp_path, no_model_building, backbone_name, name,
                                                                write, problem):
    path = tmp_path / name
    write(path)
    with pytest.raises(DataError, match=rf"^Weights file {path} {problem}\. Expected a safetensors file "
                                        r"\(\.safetensors\), or a state dict saved by torch\.save \(\.bin, \.pth, "
                                        r"\.pt: tensors only, pickled code is refused\)\. Replace or delete it .*, or "
                                        r"pass another file with --weights FILE\.$"):
        load_backbone(backbone_name, weights=path)


def test_a_damaged_file_in_the_weights_folder_is_named(tmp_path, no_model_building, monkeypatch):
    from eegbench.backbones import registry

    monkeypatch.setattr(registry, "_LOADED", {})  # not the backbone loaded by an earlier test
    weights_home().mkdir(parents=True, exist_ok=True)
    stored = weights_home() / "test_clip_vit.pt"
    stored.write_bytes(b"")
    try:
        with pytest.raises(DataError, match=rf"^Weights file {stored} is empty \(0 bytes\)\."):
            load_backbone("test_clip_vit")
    finally:
        stored.unlink()


def test_the_packaged_backbone_checks_a_given_weights_file(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=rf"^Weights file {empty} is empty \(0 bytes\)\."):
        load_backbone("efficientnet_lite0", weights=empty)
