"""The registry of datasets by name: ``load_dataset("things-eeg2")`` looks its :class:`DatasetSpec` up here.

The built-in datasets are listed explicitly at the end of this module (rather than registering
themselves when imported), so the registry is complete as soon as this module is imported: a dataset
shipped with eegbench adds its spec there. Other code adds one with :func:`register_dataset`.
"""

from __future__ import annotations

from pathlib import Path

from eegbench.data import alljoined, synthetic, things_eeg1, things_eeg2, things_meg
from eegbench.data.base import Dataset
from eegbench.data.spec import DatasetSpec
from eegbench.registry import Registry

datasets: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry under ``spec.name``."""
    datasets.register(spec.name, spec)
    return spec


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; unknown names raise an error listing the registered ones."""
    return datasets.get(name)


def list_datasets(pattern: str | None = None) -> list[str]:
    """Registered dataset names, optionally filtered by a wildcard."""
    return datasets.names(pattern)


def load_dataset(name: str, *, options: dict | None = None, variant: str | None = None,
                 data_root: str | Path | None = None) -> Dataset:
    """Load dataset ``name`` (``"synthetic"``, ``"things-eeg2"``...) in canonical form.

    Parameters
    ----------
    name : str
        A registered dataset (:func:`list_datasets`).
    options : dict, optional
        Loader options, validated against the dataset's options model.
    variant : str, optional
        The preprocessing variant (default: the dataset's default; none for datasets without variants).
    data_root : path-like, optional
        Folder holding a real dataset's files (``eegbench data download`` writes it).
    """
    return get_dataset_spec(name).load(options=options, variant=variant, data_root=data_root)


for _spec in (synthetic.SPEC, things_eeg2.SPEC, things_meg.SPEC, things_eeg1.SPEC, alljoined.SPEC):
    register_dataset(_spec)
