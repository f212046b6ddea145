"""Brain encoders, built as *stacks*: K independent models that run as one batched computation.

Every encoder maps responses ``(K, batch, channels, times)`` to features ``(K, batch, hidden)``.
Encoders made of linear layers (EEGProject) are implemented with batched matrix products
(:class:`StackedLinear`); any other ``nn.Module`` can be stacked with :class:`LoopStack`, which
simply runs K copies. Each model of a stack owns a random generator, used for its initialisation
and dropout masks, so a model's training does not depend on which other models share its stack.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from eegbench.registry import Registry

Members = Sequence[int] | None


class StackedLinear(nn.Module):
    """K independent ``nn.Linear`` layers applied with one batched matrix product.

    Parameters
    ----------
    n_models : int
        K.
    in_features, out_features : int
        Sizes shared by the stack (inputs narrower than ``in_features`` are zero-padded).
    generators : sequence of torch.Generator
        One per model, for ``nn.Linear``'s default initialisation U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    fan_in : sequence of int, optional
        Each model's true input width (default ``in_features``); only that many input rows are
        initialised, the padding rows stay zero.
    """

    def __init__(self, n_models: int, in_features: int, out_features: int, generators: Sequence[torch.Generator],
                 fan_in: Sequence[int] | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_models, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(n_models, 1, out_features))
        fan_in = list(fan_in) if fan_in is not None else [in_features] * n_models
        with torch.no_grad():
            for k, generator in enumerate(generators):
                bound = 1.0 / math.sqrt(fan_in[k])
                self.weight[k, : fan_in[k]].uniform_(-bound, bound, generator=generator)
                self.bias[k].uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        weight, bias = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        return torch.baddbmm(bias, x, weight)


class StackedLayerNorm(nn.Module):
    """K independent ``nn.LayerNorm`` layers over the last dimension."""

    def __init__(self, n_models: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_models, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n_models, 1, dim))

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        weight, bias = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        return F.layer_norm(x, x.shape[-1:]) * weight + bias


def stacked_dropout(x: torch.Tensor, p: float, generators: Sequence[torch.Generator], training: bool,
                    members: Members = None) -> torch.Tensor:
    """Dropout on ``(K, ...)`` with each model's mask drawn from its own generator."""
    if not training or p == 0.0:
        return x
    gens = generators if members is None else [generators[m] for m in members]
    keep = torch.stack([torch.rand(x.shape[1:], generator=g, device=x.device) for g in gens]) >= p
    return x * keep / (1.0 - p)


class StackedEEGProject(nn.Module):
    """EEGProject (UBP, NeuroBridge, Shallow Alignment) for K models.

    flatten -> Linear(C*T, h) -> x + Dropout(Linear(GELU(x))) -> LayerNorm.
    """

    def __init__(self, n_models: int, n_channels: int, n_times: int, hidden_dim: int, dropout: float,
                 generators: Sequence[torch.Generator], dropout_generators: Sequence[torch.Generator]) -> None:
        super().__init__()
        self.inp = StackedLinear(n_models, n_channels * n_times, hidden_dim, generators)
        self.res = StackedLinear(n_models, hidden_dim, hidden_dim, generators)
        self.norm = StackedLayerNorm(n_models, hidden_dim)
        self.dropout = dropout
        self.dropout_generators = list(dropout_generators)

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        h = self.inp(x.flatten(2), members)
        r = self.res(F.gelu(h), members)
        r = stacked_dropout(r, self.dropout, self.dropout_generators, self.training, members)
        return self.norm(h + r, members)


class LoopStack(nn.Module):
    """Stack K copies of any single-model encoder ``(batch, C, T) -> (batch, hidden)`` by looping."""

    def __init__(self, encoders: Sequence[nn.Module]) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(encoders)

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        members = range(len(self.encoders)) if members is None else members
        return torch.stack([self.encoders[m](x[i]) for i, m in enumerate(members)])


@dataclass(frozen=True)
class EncoderSpec:
    """A registered brain encoder.

    ``build(n_models, n_channels, n_times, hidden_dim, dropout, generators, dropout_generators)``
    returns a module mapping ``(K, batch, C, T)`` to ``(K, batch, hidden_dim)``.
    """

    name: str
    description: str
    build: Callable[..., nn.Module]
    batched: bool
    citation: str = ""


encoders: Registry[EncoderSpec] = Registry("encoder", hint="Run `eegbench list encoders`.")

encoders.register("eegproject", EncoderSpec(
    name="eegproject",
    description="flatten -> Linear -> residual GELU block -> LayerNorm (UBP / Shallow Alignment default)",
    build=StackedEEGProject,
    batched=True,
    citation="Wu et al., CVPR 2025 (UBP); Du et al., arXiv 2601.21948",
))


def count_parameters(module: nn.Module, n_models: int = 1) -> int:
    """Trainable parameters of one model of a stack of ``n_models``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad) // n_models
