"""Brain-response datasets in eegbench's canonical form, and the registry of datasets.

Each dataset declares itself in one :class:`DatasetSpec` (:mod:`eegbench.data.spec`): its
variants, subjects, options and loader. :func:`load_dataset` finds it by name in the registry
(:mod:`eegbench.data.registry`).
"""

from __future__ import annotations

from eegbench.data.base import Dataset, ImageTable, RecordingInfo, SubjectData
from eegbench.data.canonical import CanonicalWriter, open_canonical
from eegbench.data.montages import POSTERIOR_17
from eegbench.data.registry import datasets, get_dataset_spec, list_datasets, load_dataset, register_dataset
from eegbench.data.spec import DatasetSpec, RecordingLayout
from eegbench.data.synthetic import SyntheticConfig, synthetic_dataset

__all__ = ["POSTERIOR_17", "CanonicalWriter", "Dataset", "DatasetSpec", "ImageTable", "RecordingInfo", "RecordingLayout",
           "SubjectData",
           "SyntheticConfig", "datasets", "get_dataset_spec", "list_datasets", "load_dataset", "open_canonical",
           "register_dataset", "synthetic_dataset"]
