"""Training throughput: eegbench's device-resident batched trainer against a per-sample DataLoader
loop on the same model, K models of one run at once, and a shallow sweep of many layers.

Each training benchmark also reports its achieved GFLOP/s (FLOPs of one optimisation step counted
with ``torch.utils.flop_counter``), to compare with ``test_matmul_reference``: the rate of one
large float32 matrix product on the same device, about the most this hardware can do.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_baseline import dataloader, fit_with_dataloader
from bench_sizes import mode, record_rate, rounds
from eegbench.encoders import encoders
from eegbench.training import AlignmentStack, ContrastiveProblem, TrainingConfig, fit_contrastive

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


def _epoch_flops(sizes, config: TrainingConfig, n_models: int, device, drop_last: bool = False) -> int:
    """FLOPs of one epoch of ``n_models`` models: each optimisation step (forward and backward)
    counted once per batch size that occurs, as the trainer batches ``sizes.n_samples``."""
    model = AlignmentStack(config, n_models, sizes.n_channels, sizes.n_times, [[sizes.feature_dim]] * n_models,
                           list(range(n_models)), device).to(device)

    def step(batch: int) -> int:
        x = torch.randn(n_models, batch, sizes.n_channels, sizes.n_times, device=device)
        y = torch.randn(n_models, batch, sizes.feature_dim, device=device)
        with FlopCounterMode(display=False) as counter:
            model.loss(x, [y]).sum().backward()
        return counter.get_total_flops()

    full, rest = divmod(sizes.n_samples, sizes.batch_size)
    last = step(rest) if rest >= 2 and not drop_last else 0  # the trainer skips one-sample batches
    return EPOCHS * (full * step(sizes.batch_size) + last)


def test_matmul_reference(benchmark, sizes, device):
    """One 4096 x 4096 float32 matrix product: the device's practical FLOP rate, for reference."""
    benchmark.group = "reference"
    a, b = (torch.randn(4096, 4096, device=device) for _ in range(2))

    def product():
        out = a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    benchmark.pedantic(product, rounds=max(rounds(), 5), iterations=1, warmup_rounds=1)
    record_rate(benchmark, 1, "products", flops=lambda: 2 * 4096**3)


def _problems(arrays, n_models: int, layers: bool = False) -> list[ContrastiveProblem]:
    brain, targets, index, per_layer = arrays
    return [ContrastiveProblem(brain, per_layer[k] if layers else targets, index, seed=k) for k in range(n_models)]


@pytest.mark.parametrize("encoder", encoders.names())
def test_batched_trainer(benchmark, arrays, sizes, device, encoder):
    benchmark.group = f"training: {encoder}"
    problems = _problems(arrays, 1)
    benchmark.pedantic(fit_contrastive, args=(problems, _config(sizes, encoder)), kwargs={"device": device},
                       rounds=rounds(), iterations=1, warmup_rounds=1)
    record_rate(benchmark, EPOCHS * sizes.n_samples, "samples",
                lambda: _epoch_flops(sizes, _config(sizes, encoder), 1, device))


@pytest.mark.parametrize("encoder", encoders.names())
def test_dataloader_baseline(benchmark, arrays, sizes, device, encoder):
    benchmark.group = f"training: {encoder}"
    brain, targets, index, _ = arrays
    benchmark.pedantic(fit_with_dataloader, args=(brain, targets, index, _config(sizes, encoder)),
                       kwargs={"seed": 0, "device": device}, rounds=rounds(), iterations=1, warmup_rounds=1)
    steps = sizes.n_samples // sizes.batch_size  # the loader drops the last partial batch
    record_rate(benchmark, EPOCHS * steps * sizes.batch_size, "samples",
                lambda: _epoch_flops(sizes, _config(sizes, encoder), 1, device, drop_last=True))


def test_models_of_one_run_at_once(benchmark, arrays, sizes, device):
    """The subjects x seeds of one run as one stacked computation (compare with test_batched_trainer)."""
    benchmark.group = "training: eegproject"
    problems = _problems(arrays, sizes.n_models)
    benchmark.pedantic(fit_contrastive, args=(problems, _config(sizes)), kwargs={"device": device},
                       rounds=rounds(), iterations=1, warmup_rounds=1)
    record_rate(benchmark, EPOCHS * sizes.n_samples * sizes.n_models, "samples",
                lambda: _epoch_flops(sizes, _config(sizes), sizes.n_models, device))


def test_leaderboard_row(benchmark, arrays, sizes, device):
    """One things-eeg-intra row with EEGProject: subjects x seeds models, all epochs (GPU target: <= 60 s).

    In full mode this is 50 models x 50 epochs of 16540 samples: hours on a CPU, so it runs on a GPU only.
    """
    if mode() == "full" and device.type != "cuda":
        pytest.skip("a full row (50 models x 50 epochs) takes hours on a CPU; run it on a GPU")
    benchmark.group = "leaderboard row"
    n_models, epochs = sizes.row
    config = _config(sizes).model_copy(update={"epochs": epochs})
    benchmark.pedantic(fit_contrastive, args=(_problems(arrays, n_models), config), kwargs={"device": device},
                       rounds=1, iterations=1)  # wall time of a real row, start-up included
    record_rate(benchmark, epochs * sizes.n_samples * n_models, "samples",
                lambda: epochs * _epoch_flops(sizes, _config(sizes), n_models, device))


@pytest.mark.parametrize("n_layers", ["one", "sweep"])
def test_shallow_sweep(benchmark, arrays, sizes, device, n_layers):
    """A sweep over ``sizes.n_layers`` layers (one model per layer, trained together) against one layer."""
    benchmark.group = "shallow sweep"
    problems = _problems(arrays, sizes.n_layers if n_layers == "sweep" else 1, layers=True)
    benchmark.pedantic(fit_contrastive, args=(problems, _config(sizes)), kwargs={"device": device},
                       rounds=rounds(), iterations=1, warmup_rounds=1)
    record_rate(benchmark, EPOCHS * sizes.n_samples * len(problems), "samples",
                lambda: _epoch_flops(sizes, _config(sizes), len(problems), device))


def _epoch_of_batches_from_loader(arrays, sizes, device) -> None:
    brain, targets, index, _ = arrays
    for x, y in dataloader(brain, targets, index, sizes.batch_size, seed=0):
        x.to(device), y.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize()


def _epoch_of_batches_by_index(resident, sizes, device) -> None:
    brain, targets, index = resident
    order = torch.randperm(len(index), generator=torch.Generator().manual_seed(0)).to(device)
    for start in range(0, len(order) - sizes.batch_size + 1, sizes.batch_size):
        rows = order[start:start + sizes.batch_size]
        brain[rows], targets[index[rows]]
    if device.type == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("path", ["dataloader", "by_index"])
def test_data_path(benchmark, arrays, sizes, device, path):
    """One epoch of batches and nothing else: the part of training the two loops do differently."""
    benchmark.group = "data path"
    if path == "dataloader":
        benchmark.pedantic(_epoch_of_batches_from_loader, args=(arrays, sizes, device), rounds=max(rounds(), 5),
                           iterations=1, warmup_rounds=1)
    else:
        brain, targets, index, _ = arrays
        resident = tuple(torch.as_tensor(a).to(device) for a in (brain, targets, index))
        benchmark.pedantic(_epoch_of_batches_by_index, args=(resident, sizes, device), rounds=max(rounds(), 5),
                           iterations=1, warmup_rounds=1)
    record_rate(benchmark, sizes.n_samples // sizes.batch_size * sizes.batch_size, "samples")
