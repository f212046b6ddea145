"""The dataset contract: every registered dataset's spec is complete, and every packaged manifest matches its spec."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from pydantic import BaseModel

from eegbench._check import DataError, InvalidInputError, UnknownNameError
from eegbench.data import DatasetSpec, get_dataset_spec, list_datasets
from eegbench.data import download as dl


@pytest.mark.parametrize("name", list_datasets())
def test_every_dataset_declares_the_contract(name):
    spec = get_dataset_spec(name)
    assert isinstance(spec, DatasetSpec) and spec.name == name and spec.description
    assert issubclass(spec.options, BaseModel) and spec.options.model_config.get("extra") == "forbid"
    spec.parse_options({})  # every option has a default
    assert spec.variant(None) is (spec.variants[spec.default_variant] if spec.variants else None)
    for variant_name, variant in spec.variants.items():
        assert spec.variant(variant_name) is variant and variant.description


@pytest.mark.parametrize("name", list_datasets())
def test_unknown_variants_and_options_are_refused(name):
    spec = get_dataset_spec(name)
    with pytest.raises(InvalidInputError, match="variant" if spec.variants else "has no variants"):
        spec.variant("no-such-variant")
    with pytest.raises(InvalidInputError, match=rf"(?i){name} dataset options is invalid: no_such_option: unknown"):
        spec.parse_options({"no_such_option": 1})


def test_packaged_manifests_belong_to_downloadable_datasets():
    files = sorted(path.stem for path in dl.MANIFEST_DIR.glob("*.json"))
    assert files == dl.list_manifests() == [n for n in list_datasets() if get_dataset_spec(n).manifest]


@pytest.mark.parametrize("name", dl.list_manifests())
def test_every_manifest_matches_its_spec(name):
    spec = get_dataset_spec(name)
    manifest = dl.load_manifest(name)  # refuses a manifest that disagrees with the spec
    raw = json.loads((dl.MANIFEST_DIR / f"{name}.json").read_text())
    assert dl.manifest_problems(manifest, raw) == []
    assert manifest.variants == tuple(spec.variants) and manifest.default_variant == spec.default_variant
    assert manifest.subjects == spec.subjects
    for variant in spec.variants:  # every variant can be fetched for every subject
        assert {f.subject for f in manifest.select(variant, images=False)} - {None} == set(spec.subjects)


def test_a_manifest_that_disagrees_with_its_spec_is_named():
    manifest = dl.load_manifest("things-meg")
    raw = json.loads((dl.MANIFEST_DIR / "things-meg.json").read_text())
    first = manifest.files[0]
    bad = replace(manifest, files=(replace(first, variants=("raw",), subject=9), *manifest.files[1:]))
    problems = dl.manifest_problems(bad, {**raw, "variants": ["official-271ch-200hz"]})
    assert "it declares 'variants', which belongs to the dataset's spec" in problems
    assert f"{first.path} names unknown variants ['raw']" in problems
    assert f"{first.path} belongs to subject 9, not one of [1, 2, 3, 4]" in problems


def test_download_hints_name_the_variant_only_where_there_is_a_choice():
    assert get_dataset_spec("things-eeg2").download_hint("/d", "63ch-250hz") == \
        "Get it with `eegbench data download things-eeg2 --root /d --variant 63ch-250hz`."
    assert get_dataset_spec("things-meg").download_hint("/d") == \
        "Get it with `eegbench data download things-meg --root /d --variant official-271ch-200hz`."
    single = DatasetSpec("d", "a dataset with one variant", get_dataset_spec("synthetic").options,
                         get_dataset_spec("synthetic").loader)
    assert single.download_hint("/d", subject=2) == "Get it with `eegbench data download d --root /d --subjects 2`."


def test_a_spec_with_a_wrong_default_variant_is_refused():
    synthetic = get_dataset_spec("synthetic")
    with pytest.raises(InvalidInputError, match="default variant 'x' must be one of"):
        DatasetSpec("d", "a dataset", synthetic.options, synthetic.loader, default_variant="x")
    with pytest.raises(UnknownNameError, match="Unknown dataset 'nope'"):
        get_dataset_spec("nope")


def test_a_damaged_manifest_is_refused(monkeypatch, tmp_path):
    raw = json.loads((dl.MANIFEST_DIR / "things-meg.json").read_text())
    (tmp_path / "things-meg.json").write_text(json.dumps({**raw, "subjects": [1, 2, 3, 4]}))
    monkeypatch.setattr(dl, "MANIFEST_DIR", tmp_path)
    with pytest.raises(DataError, match="does not match the things-meg dataset: it declares 'subjects'"):
        dl.load_manifest("things-meg")
