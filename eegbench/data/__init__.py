"""Brain-response datasets in eegbench's canonical form, and the registry of dataset loaders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from eegbench._check import InvalidInputError
from eegbench._guard import refuse_in_submission_worker
from eegbench.data.base import Dataset, ImageTable, RecordingInfo, SubjectData
from eegbench.data.canonical import CanonicalWriter, open_canonical
from eegbench.data.montages import POSTERIOR_17
from eegbench.data.synthetic import SyntheticConfig, synthetic_dataset
from eegbench.registry import Registry

#: ``loader(options: dict, variant: str | None, data_root: Path | None) -> Dataset``
dataset_loaders: Registry[Callable[..., Dataset]] = Registry("dataset")


@dataset_loaders.register("synthetic")
def _load_synthetic(options: dict, variant: str | None, data_root: Path | None) -> Dataset:
    if variant is not None:
        raise InvalidInputError("The synthetic dataset has no variants; set dataset.options instead.")
    try:
        config = SyntheticConfig(**options)
    except Exception as err:  # pydantic ValidationError -> a clear message
        from pydantic import ValidationError

        from eegbench._check import describe_validation_error

        if isinstance(err, ValidationError):
            raise InvalidInputError(describe_validation_error(err, "Synthetic dataset options")) from None
        raise
    return synthetic_dataset(config)


@dataset_loaders.register("things-eeg2")
def _load_things_eeg2(options: dict, variant: str | None, data_root: Path | None) -> Dataset:
    from eegbench.data.things_eeg2 import load_things_eeg2

    return load_things_eeg2(data_root, variant, **options)


@dataset_loaders.register("things-meg")
def _load_things_meg(options: dict, variant: str | None, data_root: Path | None) -> Dataset:
    from eegbench.data.things_meg import load_things_meg

    return load_things_meg(data_root, variant, **options)


def load_dataset(name: str, *, options: dict | None = None, variant: str | None = None,
                 data_root: str | Path | None = None) -> Dataset:
    """Load dataset ``name`` (``"synthetic"``, ``"things-eeg2"``...) in canonical form."""
    refuse_in_submission_worker("load datasets")
    loader = dataset_loaders.get(name)
    return loader(dict(options or {}), variant, Path(data_root).expanduser() if data_root else None)


__all__ = ["POSTERIOR_17", "CanonicalWriter", "Dataset", "ImageTable", "RecordingInfo", "SubjectData",
           "SyntheticConfig", "dataset_loaders", "load_dataset", "open_canonical", "synthetic_dataset"]
