"""The image sets whose backbone features ``eegbench features extract`` computes: a folder's, or a dataset's.

Backbones sit below datasets (the synthetic dataset simulates responses from a backbone's
features), so :mod:`eegbench.backbones` extracts features of any :class:`ImageSet` and this module,
on the dataset side, turns a dataset into its image sets.
"""

from __future__ import annotations

from pathlib import Path

from eegbench._check import InvalidInputError
from eegbench.backbones.features import ImageSet, folder_image_set
from eegbench.data.base import Dataset
from eegbench.data.registry import load_dataset


def dataset_image_sets(dataset: Dataset) -> list[ImageSet]:
    """The ``"train"`` and ``"test"`` image sets of a loaded dataset, in condition order."""
    return [ImageSet("train", dataset.image_root, tuple(dataset.train_images.files)),
            ImageSet("test", dataset.image_root, tuple(dataset.test_images.files))]


def image_sets(*, images: str | Path | None = None, dataset: str | None = None, data_root: str | Path | None = None,
               options: dict | None = None, variant: str | None = None) -> list[ImageSet]:
    """The image sets of a folder (``images``: every image under it) or of a dataset (its train and test images).

    ``dataset`` names a dataset, loaded with ``options``, ``variant`` and ``data_root`` as
    :func:`~eegbench.data.load_dataset` does.
    """
    if (images is None) == (dataset is None):
        raise InvalidInputError("Give either an image folder or a dataset (with its data root), not both or neither.")
    if images is not None:
        return [folder_image_set(images)]
    return dataset_image_sets(load_dataset(dataset, options=options, variant=variant, data_root=data_root))
