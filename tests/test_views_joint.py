"""Image views of the training images, the joint protocol, and subjects passed to methods."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eegbench.errors import InvalidInputError
from eegbench.protocols import plan_units
from eegbench.records import SCHEMA_VERSION, ResultRecord
from eegbench.runner import run
from eegbench.views import MAX_VIEWS, Downscale, GaussianBlur, GaussianNoise, Mosaic, check_views
from helpers import tiny_task

#: a fast method (ridge in its dual form) that reports what it was given into a probe file
METHOD = '''
import json
import numpy as np
from eegbench.submissions import Aligner, GaussianBlur, GaussianNoise, Method, Mosaic

PROBE = {probe!r}
VIEWS = {views}


def write_probe(**found):
    with open(PROBE, "a") as probe:
        probe.write(json.dumps(found) + "\\n")


class Linear(Aligner):
    def __init__(self, weights, key):
        self.weights, self.key = weights, key

    def embed_brain(self, responses):
        return np.asarray(responses).reshape(len(responses), -1) @ self.weights

    def embed_brain_of(self, responses, subject):
        write_probe(embedded_subject=subject, rows=len(responses))
        return self.embed_brain(responses)

    def embed_images(self, features):
        return np.asarray(features[self.key])


class Probe(Method):
    def feature_layers(self, backbone):
        return [backbone.resolve("final")]

    def image_views(self):
        return VIEWS

    def fit(self, data):
        key = data.layers[0].key
        original = data.features[key]
        write_probe(train_subjects=sorted(set(data.train.subjects.tolist())), unit=data.unit,
                    views={{name: {{"keys": sorted(layers), "shape": list(layers[key].shape),
                                    "differs": float(np.abs(layers[key] - original).max())}}
                           for name, layers in data.views.items()}})
        x = np.asarray(data.train.responses).reshape(len(data.train), -1)
        y = original[data.train.image_index]
        return Linear((x.T @ np.linalg.solve(x @ x.T + 10.0 * np.eye(len(x)), y)).astype(np.float32), key)
'''


def probe_submission(root: Path, name: str, views: str = "[]") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "submission.yaml").write_text(textwrap.dedent(f"""\
        id: {name}
        name: {name}
        authors: [Tester]
        description: test submission
        citation: none
        license: MIT
        features: final
        entrypoint: "method:Probe"
    """))
    (folder / "method.py").write_text(METHOD.format(probe=str(root / f"{name}.probe"), views=views))
    return folder


def probes(folder: Path) -> list[dict]:
    path = folder.parent / f"{folder.name}.probe"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- views ---------------------------------------------------------------------------------------

@pytest.fixture()
def picture() -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_a_blur_view_removes_detail_in_proportion_to_the_image_size(picture):
    blurred = np.asarray(GaussianBlur(sigma=4).apply(picture, 0), dtype=float)
    assert blurred.std() < 0.5 * np.asarray(picture, dtype=float).std()
    # sigma is in pixels of a 224-pixel image: a twice larger image gets a twice wider blur, so the
    # same view leaves the same share of the variance
    large = picture.resize((256, 192), Image.NEAREST)
    ratio_small = blurred.std() / np.asarray(picture, dtype=float).std()
    ratio_large = np.asarray(GaussianBlur(sigma=4).apply(large, 0), dtype=float).std() / \
        np.asarray(large, dtype=float).std()
    assert ratio_large == pytest.approx(ratio_small, rel=0.35)


def test_a_foveated_blur_keeps_the_centre_sharper_than_the_periphery(picture):
    pixels = np.asarray(picture, dtype=float)
    uniform = np.asarray(GaussianBlur(sigma=4).apply(picture, 0), dtype=float)
    foveated = np.asarray(GaussianBlur(sigma=4, fovea=3).apply(picture, 0), dtype=float)
    centre, corner = (slice(40, 56), slice(56, 72)), (slice(0, 16), slice(0, 16))
    # at the centre half of the image is kept; in the corners almost none of it
    assert np.abs(foveated - uniform)[centre].mean() > 4 * np.abs(foveated - uniform)[corner].mean()
    assert np.abs(foveated - pixels)[centre].mean() < np.abs(uniform - pixels)[centre].mean()


def test_noise_is_fixed_by_its_seed_and_the_image_row(picture):
    view = GaussianNoise(std=25, seed=3)
    first = np.asarray(view.apply(picture, 5))
    assert first.shape == np.asarray(picture).shape
    np.testing.assert_array_equal(first, np.asarray(GaussianNoise(std=25, seed=3).apply(picture, 5)))
    assert not np.array_equal(first, np.asarray(view.apply(picture, 6)))
    assert not np.array_equal(first, np.asarray(GaussianNoise(std=25, seed=4).apply(picture, 5)))


@pytest.mark.parametrize("view", [Downscale(factor=0.1), Mosaic(block=5)])
def test_downscaling_and_mosaic_lose_detail_and_keep_the_size(picture, view):
    out = np.asarray(view.apply(picture, 0), dtype=float)
    assert out.shape == np.asarray(picture).shape
    assert np.abs(np.diff(out, axis=1)).mean() < 0.6 * np.abs(np.diff(np.asarray(picture, dtype=float), axis=1)).mean()


def test_view_keys_name_every_parameter():
    assert GaussianBlur(sigma=2).key == "blur:sigma=2,fovea=None"
    assert GaussianNoise(std=25).key == "noise:std=25,seed=0"
    assert Mosaic(block=5.0).key == "mosaic:block=5"


@pytest.mark.parametrize(("views", "message"), [
    ([{"kind": "blur", "sigma": -1}], "sigma"),
    ([{"kind": "sharpen"}], "kind"),
    ([{"kind": "downscale", "factor": 1.5}], "factor"),
    ([{"kind": "blur", "sigma": float("nan")}], "sigma"),
    ([GaussianBlur(sigma=1), GaussianBlur(sigma=1.0)], "twice"),
    ([GaussianBlur(sigma=1 + i) for i in range(MAX_VIEWS + 1)], f"at most {MAX_VIEWS}"),
])
def test_bad_views_are_refused_in_one_line(views, message):
    with pytest.raises(InvalidInputError, match=message) as error:
        check_views(views, "mine")
    assert "\n" not in str(error.value) and "image_views()" in str(error.value)


def test_view_features_are_cached_apart_from_the_images(tmp_path, backbone, tiny_dataset):
    from eegbench.backbones import FeatureCache, get_features

    cache = FeatureCache(tmp_path)
    refs = [backbone.resolve("final")]
    files = tiny_dataset.train_images.files[:8]
    plain = get_features(backbone, tiny_dataset.image_root, files, refs, cache=cache)
    blurred = get_features(backbone, tiny_dataset.image_root, files, refs, cache=cache, view=GaussianBlur(sigma=6))
    again = get_features(backbone, tiny_dataset.image_root, files, refs, cache=cache, view=GaussianBlur(sigma=6))
    key = refs[0].key
    assert blurred.cache_keys[key] != plain.cache_keys[key]
    assert not np.allclose(blurred[key], plain[key])
    np.testing.assert_array_equal(again[key], blurred[key])
    assert again.layers[key]["cached"] and not blurred.layers[key]["cached"]


def test_a_method_trains_against_the_views_it_declares_and_the_record_lists_them(tmp_path):
    folder = probe_submission(tmp_path, "viewer", "[GaussianBlur(sigma=4, fovea=3), Mosaic(block=8)]")
    result = run(tiny_task(), str(folder), subjects=[1], seeds=[0], results_dir=tmp_path / "results")
    (fitted,) = [p for p in probes(folder) if "views" in p]
    blur, augment = "blur:sigma=4,fovea=3", "mosaic:block=8"
    assert set(fitted["views"]) == {blur, augment}
    for found in fitted["views"].values():
        assert found["keys"] == ["final"] and found["shape"] == [400, 1280] and found["differs"] > 0.01
    (record,) = result.records
    assert [view.key for view in record.backbone.views] == [blur, augment]
    assert set(record.backbone.feature_cache_keys) == {"train", "test", f"train@{blur}", f"train@{augment}"}
    assert record.scores["top1"] > 3 * 0.02  # the gallery is the original images: views do not hurt


def test_a_method_without_views_keeps_its_configuration_hash(tmp_path):
    folder = probe_submission(tmp_path, "plain")
    result = run(tiny_task(), str(folder), subjects=[1], seeds=[0], results_dir=tmp_path / "results")
    (record,) = result.records
    assert record.backbone.views == [] and set(record.backbone.feature_cache_keys) == {"train", "test"}


def test_a_method_declaring_a_bad_view_fails_before_any_feature_is_extracted(tmp_path):
    folder = probe_submission(tmp_path, "badview", '[{"kind": "blur", "sigma": 0}]')
    with pytest.raises(InvalidInputError, match=r"Method 'badview': image_views\(\).*sigma"):
        run(tiny_task(), str(folder), subjects=[1], seeds=[0], results_dir=tmp_path / "results")
    assert probes(folder) == []


# --- joint protocol and subjects -----------------------------------------------------------------

def test_joint_units_train_on_every_subject_and_share_one_fit_per_seed(tiny_dataset):
    units = plan_units(tiny_task("synthetic-joint").with_overrides(seeds=[0, 1]), tiny_dataset)
    assert {u.train_subjects for u in units} == {("sub-01", "sub-02")}
    assert [(u.subject, u.seed) for u in units] == [("sub-01", 0), ("sub-01", 1), ("sub-02", 0), ("sub-02", 1)]
    assert len({u.fit_key for u in units}) == 2


def test_a_joint_run_fits_once_and_scores_each_subject_with_its_label(tmp_path):
    folder = probe_submission(tmp_path, "joint")
    result = run(tiny_task("synthetic-joint"), str(folder), seeds=[0], results_dir=tmp_path / "results")
    found = probes(folder)
    fits = [p for p in found if "train_subjects" in p]
    assert len(fits) == 1 and fits[0]["train_subjects"] == ["sub-01", "sub-02"]
    assert fits[0]["unit"]["protocol"] == "joint" and "subject" not in fits[0]["unit"]
    assert {p["embedded_subject"] for p in found if "embedded_subject" in p} == {"sub-01", "sub-02"}
    assert sorted(r.subject for r in result.records) == ["sub-01", "sub-02"]
    assert all(r.train_subjects == ["sub-01", "sub-02"] and r.task.protocol == "joint" for r in result.records)
    assert all(r.scores["top1"] > 3 * 0.02 for r in result.records)
    assert len({r.config_hash for r in result.records}) == 1


def test_inter_subject_training_labels_each_response_with_its_subject(tmp_path):
    folder = probe_submission(tmp_path, "inter")
    run(tiny_task("synthetic-inter"), str(folder), subjects=[1], seeds=[0], results_dir=tmp_path / "results")
    found = probes(folder)
    assert [p["train_subjects"] for p in found if "train_subjects" in p] == [["sub-02"]]
    assert {p["embedded_subject"] for p in found if "embedded_subject" in p} == {"sub-01"}


def test_version_2_records_read_with_no_views():
    path = next(Path(__file__).parents[1].glob("leaderboard/results/synthetic-intra/v1/final/**/*.json"))
    data = json.loads(path.read_text())
    data["schema_version"] = 2
    data["backbone"].pop("views", None)
    record = ResultRecord.from_disk(data)
    assert record.schema_version == SCHEMA_VERSION and record.backbone.views == []
