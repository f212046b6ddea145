"""Helpers shared by tests (import as ``from helpers import ...``)."""

from __future__ import annotations

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
