"""Contrastive alignment training, many small models at once.

:func:`fit_contrastive` trains K independent (brain encoder, brain projector, image projector)
models with the symmetric InfoNCE loss of CLIP. The K models are one batched computation: their
training data stays resident on the device, batches are drawn by index (no per-sample Python, no
``DataLoader``), and parameters are stacked so one optimiser step updates all of them. Each model
draws its initialisation, batch order and dropout masks from its own seeded generators, so its
result does not depend on which other models were trained beside it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from eegbench._check import InvalidInputError
from eegbench._progress import progress
from eegbench.backbones.base import LayerRef
from eegbench.encoders import StackedLinear, encoders
from eegbench.submissions import Aligner, TrainingData


class TrainingConfig(BaseModel):
    """Hyperparameters of contrastive alignment; every field is recorded with each result.

    Defaults follow the Shallow Alignment protocol (50 epochs, batch 1024, AdamW, lr 1e-4,
    weight decay 1e-4). Task files override them for their data size (the synthetic tasks train
    20 epochs at lr 1e-3 with a narrower encoder), and the command line overrides both.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(1024, ge=2)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    temperature: float = Field(0.07, gt=0)
    learnable_temperature: bool = False
    normalize_brain: bool = True
    normalize_image: bool = True
    encoder: str = "eegproject"
    hidden_dim: int = Field(1024, ge=1)
    proj_dim: int = Field(512, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)


@dataclass
class ContrastiveProblem:
    """One model to train: brain responses paired with target image features.

    Attributes
    ----------
    brain : numpy.ndarray
        ``(n_samples, channels, times)`` float32 responses.
    targets : numpy.ndarray
        ``(n_images, dim)`` image features.
    image_index : numpy.ndarray
        ``(n_samples,)`` row of ``targets`` paired with each response.
    seed : int
        Seeds this model's initialisation, batch order and dropout.
    """

    brain: np.ndarray
    targets: np.ndarray
    image_index: np.ndarray
    seed: int


@dataclass
class TrainedStack:
    """K trained models; :meth:`member` gives one of them."""

    model: AlignmentStack
    config: TrainingConfig
    target_dims: list[int]
    loss_history: np.ndarray  # (epochs, K) mean training loss
    seconds: float
    device: torch.device

    def member(self, k: int) -> TrainedModel:
        return TrainedModel(self, k)


@dataclass
class TrainedModel:
    """One trained model of a stack: embeds brain responses and image features."""

    stack: TrainedStack
    index: int
    extra: dict = field(default_factory=dict)

    @torch.no_grad()
    def embed_brain(self, responses: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """``(n, channels, times)`` responses -> ``(n, proj_dim)`` embeddings."""
        model = self.stack.model.eval()
        out = []
        for start in range(0, len(responses), batch_size):
            x = torch.as_tensor(np.asarray(responses[start:start + batch_size], dtype=np.float32),
                                device=self.stack.device)
            out.append(model.embed_brain(x[None], [self.index])[0].float().cpu())
        return torch.cat(out).numpy()

    @torch.no_grad()
    def embed_images(self, features: np.ndarray) -> np.ndarray:
        """``(n, dim)`` image features -> ``(n, proj_dim)`` embeddings."""
        model = self.stack.model.eval()
        y = torch.as_tensor(np.asarray(features, dtype=np.float32), device=self.stack.device)
        y = F.pad(y, (0, model.image_dim - y.shape[1]))
        return model.embed_images(y[None], [self.index])[0].float().cpu().numpy()

    @property
    def n_parameters(self) -> int:
        """Trainable parameters of this one model (brain encoder, both projectors, temperature)."""
        model = self.stack.model
        encoder = sum(p.numel() for p in model.encoder.parameters()) // model.n_models
        p = self.stack.config.proj_dim
        learnable = 1 if self.stack.config.learnable_temperature else 0
        return encoder + (model.hidden_dim + 1) * p + (self.stack.target_dims[self.index] + 1) * p + learnable

    @property
    def final_loss(self) -> float:
        return float(self.stack.loss_history[-1, self.index])


class AlignmentStack(nn.Module):
    """Brain encoder + linear projectors on both sides, for K models."""

    def __init__(self, config: TrainingConfig, n_models: int, n_channels: int, n_times: int,
                 target_dims: Sequence[int], seeds: Sequence[int], device: torch.device) -> None:
        super().__init__()
        init_gens = [torch.Generator().manual_seed(s) for s in seeds]
        dropout_gens = [torch.Generator(device=device).manual_seed(s + 1) for s in seeds]
        spec = encoders.get(config.encoder)
        self.encoder = spec.build(n_models, n_channels, n_times, config.hidden_dim, config.dropout,
                                  init_gens, dropout_gens)
        self.brain_proj = StackedLinear(n_models, config.hidden_dim, config.proj_dim, init_gens)
        self.image_dim = max(target_dims)
        self.image_proj = StackedLinear(n_models, self.image_dim, config.proj_dim, init_gens, fan_in=target_dims)
        log_scale = torch.full((n_models,), math.log(1.0 / config.temperature))
        if config.learnable_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.n_models = n_models
        self.hidden_dim = config.hidden_dim
        self.normalize_brain = config.normalize_brain
        self.normalize_image = config.normalize_image

    def embed_brain(self, x: torch.Tensor, members=None) -> torch.Tensor:
        z = self.brain_proj(self.encoder(x, members), members)
        return F.normalize(z, dim=-1) if self.normalize_brain else z

    def embed_images(self, y: torch.Tensor, members=None) -> torch.Tensor:
        z = self.image_proj(y, members)
        return F.normalize(z, dim=-1) if self.normalize_image else z

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-model symmetric InfoNCE, shape (K,)."""
        brain, images = self.embed_brain(x), self.embed_images(y)
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        logits = scale[:, None, None] * brain @ images.transpose(1, 2)
        k, b, _ = logits.shape
        labels = torch.arange(b, device=logits.device).repeat(k)
        rows = F.cross_entropy(logits.reshape(k * b, b), labels, reduction="none").view(k, b).mean(1)
        cols = F.cross_entropy(logits.transpose(1, 2).reshape(k * b, b), labels, reduction="none").view(k, b).mean(1)
        return (rows + cols) / 2


def _unique(arrays: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """Distinct arrays (by identity) and, per input, the index of its distinct array."""
    seen: dict[int, int] = {}
    distinct, index = [], []
    for array in arrays:
        if id(array) not in seen:
            seen[id(array)] = len(distinct)
            distinct.append(array)
        index.append(seen[id(array)])
    return distinct, index


def fit_contrastive(problems: Sequence[ContrastiveProblem], config: TrainingConfig, *,
                    device: str | torch.device = "cpu", description: str = "Training") -> TrainedStack:
    """Train one model per problem, all in one batched computation.

    All problems must have the same number of samples and the same response shape (true for the
    models of one protocol run). Inputs shared between problems (the same array object) are stored
    on the device once.
    """
    device = torch.device(device)
    n_samples = {len(p.brain) for p in problems}
    shapes = {p.brain.shape[1:] for p in problems}
    if len(n_samples) != 1 or len(shapes) != 1:
        raise InvalidInputError("fit_contrastive needs problems with equal sample counts and response shapes.")
    (n,), ((n_channels, n_times),) = n_samples, shapes
    k = len(problems)
    dims = [p.targets.shape[1] for p in problems]

    brains, brain_src = _unique([p.brain for p in problems])
    targets, target_src = _unique([p.targets for p in problems])
    indices, index_src = _unique([p.image_index for p in problems])
    width = max(dims)
    x_all = torch.stack([torch.as_tensor(np.asarray(b, dtype=np.float32)) for b in brains]).to(device)
    y_all = torch.stack([F.pad(torch.as_tensor(np.asarray(t, dtype=np.float32)), (0, width - t.shape[1]))
                         for t in targets]).to(device)
    i_all = torch.stack([torch.as_tensor(np.asarray(i, dtype=np.int64)) for i in indices]).to(device)
    brain_src_t = torch.tensor(brain_src, device=device)[:, None]
    target_src_t = torch.tensor(target_src, device=device)[:, None]
    index_src_t = torch.tensor(index_src, device=device)[:, None]

    seeds = [p.seed for p in problems]
    model = AlignmentStack(config, k, n_channels, n_times, dims, seeds, device).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    order_gens = [torch.Generator().manual_seed(s + 2) for s in seeds]
    batch = min(config.batch_size, n)
    steps = math.ceil(n / batch)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    history = np.zeros((config.epochs, k))
    start = time.perf_counter()
    model.train()
    with progress(f"{description} ({k} model{'s' * (k > 1)})", total=config.epochs) as advance:
        for epoch in range(config.epochs):
            order = torch.stack([torch.randperm(n, generator=g) for g in order_gens]).to(device)
            total = torch.zeros(k, device=device)
            for step in range(steps):
                idx = order[:, step * batch:(step + 1) * batch]
                if idx.shape[1] < 2:  # a one-sample batch has no negatives
                    continue
                xb = x_all[brain_src_t, idx]
                yb = y_all[target_src_t, i_all[index_src_t, idx]]
                with autocast:
                    losses = model.loss(xb, yb)
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()
                optimizer.step()
                total += losses.detach().float()
            history[epoch] = (total / steps).cpu().numpy()
            advance(1)
    model.eval()
    return TrainedStack(model, config, dims, history, time.perf_counter() - start, device)


class ContrastiveAligner(Aligner):
    """A trained contrastive model aligned to one backbone layer."""

    def __init__(self, model: TrainedModel, layer: LayerRef, details: dict | None = None) -> None:
        self.model = model
        self.layer = layer
        self.details = dict(details or {})

    def embed_brain(self, responses: np.ndarray) -> np.ndarray:
        return self.model.embed_brain(responses)

    def embed_images(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.model.embed_images(features[self.layer.key])

    def report(self) -> dict:
        return {"layer": self.layer.to_dict(), "n_parameters": self.model.n_parameters,
                "final_train_loss": round(self.model.final_loss, 6),
                "train_seconds": round(self.model.stack.seconds, 3), **self.details}


def fit_alignments(units: Sequence[TrainingData], layers: Sequence[Sequence[LayerRef]], config: TrainingConfig,
                   *, use_validation: bool = True, description: str = "Training") -> list[list[ContrastiveAligner]]:
    """Train one contrastive model per (unit, layer), batched into as few stacks as possible.

    Parameters
    ----------
    units : sequence of TrainingData
        The units to fit.
    layers : sequence of sequences of LayerRef
        For each unit, the layers to align to (one model each).
    config : TrainingConfig
        Hyperparameters.
    use_validation : bool
        Train on training + validation responses (after a selection is made, or when nothing is
        selected); if False, train on the training part only (to score on validation).
    """
    problems, owners = [], []
    for u, (unit, unit_layers) in enumerate(zip(units, layers)):
        part = unit.all() if use_validation else unit.train
        for j, ref in enumerate(unit_layers):
            problems.append(ContrastiveProblem(part.responses, unit.features[ref.key], part.image_index, unit.seed))
            owners.append((u, j, ref))
    out: list[list[ContrastiveAligner | None]] = [[None] * len(ls) for ls in layers]
    groups: dict[tuple, list[int]] = {}
    for i, problem in enumerate(problems):  # one stack per sample count and response shape
        groups.setdefault((len(problem.brain), problem.brain.shape[1:]), []).append(i)
    for members in groups.values():
        stack = fit_contrastive([problems[i] for i in members], config, device=units[0].device,
                                description=description)
        for k, i in enumerate(members):
            u, j, ref = owners[i]
            out[u][j] = ContrastiveAligner(stack.member(k), ref)
    return out  # type: ignore[return-value]
