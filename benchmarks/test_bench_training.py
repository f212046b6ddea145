"""Training throughput: eegbench's device-resident batched trainer against a per-sample DataLoader
loop on the same model, K models of one run at once, and a shallow sweep of many layers."""

from __future__ import annotations

import numpy as np
import pytest

from bench_baseline import fit_with_dataloader
from bench_sizes import record_rate, rounds
from eegbench.encoders import encoders
from eegbench.training import ContrastiveProblem, TrainingConfig, fit_contrastive

EPOCHS = 1


def _config(sizes, encoder: str = "eegproject") -> TrainingConfig:
    return TrainingConfig(epochs=EPOCHS, batch_size=sizes.batch_size, encoder=encoder, hidden_dim=sizes.hidden_dim,
                          proj_dim=sizes.proj_dim, lr=1e-4)


@pytest.fixture(scope="module")
def arrays(sizes):
    rng = np.random.default_rng(0)
    brain = rng.standard_normal((sizes.n_samples, sizes.n_channels, sizes.n_times), dtype=np.float32)
    targets = rng.standard_normal((sizes.n_samples, sizes.feature_dim), dtype=np.float32)
    layers = [rng.standard_normal((sizes.n_samples, sizes.feature_dim), dtype=np.float32)
              for _ in range(sizes.n_layers)]
    return brain, targets, np.arange(sizes.n_samples), layers


def _problems(arrays, n_models: int, layers: bool = False) -> list[ContrastiveProblem]:
    brain, targets, index, per_layer = arrays
    return [ContrastiveProblem(brain, per_layer[k] if layers else targets, index, seed=k) for k in range(n_models)]


@pytest.mark.parametrize("encoder", encoders.names())
def test_batched_trainer(benchmark, arrays, sizes, device, encoder):
    benchmark.group = f"training: {encoder}"
    problems = _problems(arrays, 1)
    benchmark.pedantic(fit_contrastive, args=(problems, _config(sizes, encoder)), kwargs={"device": device},
                       rounds=rounds(), iterations=1, warmup_rounds=1)
    record_rate(benchmark, EPOCHS * sizes.n_samples, "samples")


@pytest.mark.parametrize("encoder", encoders.names())
def test_dataloader_baseline(benchmark, arrays, sizes, device, encoder):
    benchmark.group = f"training: {encoder}"
    brain, targets, index, _ = arrays
    benchmark.pedantic(fit_with_dataloader, args=(brain, targets, index, _config(sizes, encoder)),
                       kwargs={"seed": 0, "device": device}, rounds=rounds(), iterations=1, warmup_rounds=1)
    record_rate(benchmark, EPOCHS * (sizes.n_samples // sizes.batch_size) * sizes.batch_size, "samples")


def test_models_of_one_run_at_once(benchmark, arrays, sizes, device):
    """The subjects x seeds of one run as one stacked computation (compare with test_batched_trainer)."""
    benchmark.group = "training: eegproject"
    problems = _problems(arrays, sizes.n_models)
    benchmark.pedantic(fit_contrastive, args=(problems, _config(sizes)), kwargs={"device": device},
                       rounds=rounds(), iterations=1, warmup_rounds=1)
    record_rate(benchmark, EPOCHS * sizes.n_samples * sizes.n_models, "samples")


@pytest.mark.parametrize("n_layers", ["one", "sweep"])
def test_shallow_sweep(benchmark, arrays, sizes, device, n_layers):
    """A sweep over ``sizes.n_layers`` layers (one model per layer, trained together) against one layer."""
    benchmark.group = "shallow sweep"
    problems = _problems(arrays, sizes.n_layers if n_layers == "sweep" else 1, layers=True)
    benchmark.pedantic(fit_contrastive, args=(problems, _config(sizes)), kwargs={"device": device},
                       rounds=rounds(), iterations=1, warmup_rounds=1)
    record_rate(benchmark, EPOCHS * sizes.n_samples * len(problems), "samples")
