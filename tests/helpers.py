"""Helpers shared by tests (import as ``from helpers import ...``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

#: A small synthetic dataset (2 subjects, 100 x 4 training images, 50-way test) for fast tests.
TINY = {"n_subjects": 2, "n_train_concepts": 100, "images_per_concept": 4, "n_test_concepts": 50,
        "test_repetitions": 40}
TINY_CHANCE = {"top1": 0.02, "top5": 0.1}


def tiny_task(base: str = "synthetic-intra", **dataset_options):
    """A task file's settings on the tiny synthetic dataset (chance adjusted to its 50-way gallery)."""
    from eegbench.tasks import load_task

    return load_task(base).with_overrides(dataset_options={**TINY, **dataset_options}, chance=TINY_CHANCE)


def write_tiny_task_file(folder, base: str = "synthetic-intra", **dataset_options):
    """Write :func:`tiny_task` as a task file (named after its id, as task files must be); return its path."""
    import yaml

    path = folder / f"{base}.yaml"
    path.write_text(yaml.safe_dump(tiny_task(base, **dataset_options).model_dump(mode="json")))
    return path


@contextlib.contextmanager
def isolated_registries() -> Iterator[None]:
    """Forget, on exit, every dataset and backbone registered (and backbone loaded) inside the block."""
    from eegbench.backbones import registry as backbones
    from eegbench.data import registry as datasets

    saved = {(datasets.datasets, "_entries"): dict(datasets.datasets._entries),
             (backbones.backbones, "_entries"): dict(backbones.backbones._entries),
             (backbones, "_LOADED"): dict(backbones._LOADED), (backbones, "_DIRECT"): dict(backbones._DIRECT)}
    try:
        yield
    finally:
        for (owner, attribute), value in saved.items():
            setattr(owner, attribute, value)
