"""Preprocessing one subject through the protocol: channel and time selection, repetition
averaging, z-scoring and the validation split (CPU work that precedes training on any device)."""

from __future__ import annotations

from bench_sizes import record_rate, rounds
from eegbench.data import load_dataset
from eegbench.protocols import plan_units, prepare_responses
from eegbench.tasks import load_task


def test_prepare_one_subject(benchmark, sizes):
    """One subject's training responses (memory-mapped, in the page cache after the warm-up round)."""
    benchmark.group = "preprocessing"
    task = load_task("synthetic-intra").with_overrides(dataset_options=sizes.full_subject)
    dataset = load_dataset("synthetic", options=task.dataset.options, variant=task.dataset.variant)
    unit = plan_units(task, dataset, seeds=[0])[0]
    benchmark.pedantic(prepare_responses, args=(task, dataset, unit), rounds=rounds(), iterations=1, warmup_rounds=1)
    record_rate(benchmark, len(dataset.train_images), "images")
