"""Brain encoders, built as *stacks*: K independent models that run as one batched computation.

Every encoder maps responses ``(K, batch, channels, times)`` to features ``(K, batch, hidden)``.
Encoders made of linear layers (EEGProject) are implemented with batched matrix products
(:class:`StackedLinear`); any other ``nn.Module`` can be stacked with :class:`LoopStack`, which
simply runs K copies. The convolutional and transformer encoders (TSConv, ATM, EEGNet) loop over
their feature extractors and share one batched residual projection head. Each model of a stack owns a random
generator for its initialisation and another for its dropout masks, so a model's training does not
depend on which other models share its stack (nor on the global RNG).

Deviations from the published encoders, the same for all: every dropout uses the one ``dropout``
hyperparameter (NICE and ATM used 0.5, ATM's transformer 0.25, EEGNet 0.5 or 0.25), weights start
from PyTorch's default initialisation (NICE drew them from N(0, 0.02)), and BatchNorm keeps
PyTorch's defaults (EEGNet's Keras BatchNorm used momentum 0.99, epsilon 1e-3).
:func:`encoder_parameters` gives the size of one encoder for a response shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from eegbench._check import InvalidInputError
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


class StackedResidualProjection(nn.Module):
    """flatten -> Linear(in, h) -> x + Dropout(Linear(GELU(x))) -> LayerNorm, for K models.

    On raw responses this is EEGProject (UBP, NeuroBridge, Shallow Alignment); on convolutional
    features it is NICE's ``Proj_eeg`` (also used by ATM).
    """

    def __init__(self, n_models: int, in_features: int, hidden_dim: int, dropout: float,
                 generators: Sequence[torch.Generator], dropout_generators: Sequence[torch.Generator]) -> None:
        super().__init__()
        self.inp = StackedLinear(n_models, in_features, hidden_dim, generators)
        self.res = StackedLinear(n_models, hidden_dim, hidden_dim, generators)
        self.norm = StackedLayerNorm(n_models, hidden_dim)
        self.dropout = dropout
        self.dropout_generators = list(dropout_generators)

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        h = self.inp(x.flatten(2), members)
        r = self.res(F.gelu(h), members)
        r = stacked_dropout(r, self.dropout, self.dropout_generators, self.training, members)
        return self.norm(h + r, members)


def build_eegproject(n_models: int, n_channels: int, n_times: int, hidden_dim: int, dropout: float,
                     generators: Sequence[torch.Generator],
                     dropout_generators: Sequence[torch.Generator]) -> StackedResidualProjection:
    """EEGProject for K models: the residual projection applied to the flattened responses."""
    return StackedResidualProjection(n_models, n_channels * n_times, hidden_dim, dropout, generators,
                                     dropout_generators)


class LoopStack(nn.Module):
    """Stack K copies of any single-model encoder ``(batch, C, T) -> (batch, features)`` by looping."""

    def __init__(self, encoders: Sequence[nn.Module]) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(encoders)

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        members = range(len(self.encoders)) if members is None else members
        return torch.stack([self.encoders[m](x[i]) for i, m in enumerate(members)])


def seeded_copies(factory: Callable[[torch.Generator], nn.Module], generators: Sequence[torch.Generator],
                  dropout_generators: Sequence[torch.Generator]) -> LoopStack:
    """A :class:`LoopStack` of ``factory(dropout_generators[k])``, one copy per model.

    Copy k is initialised by PyTorch's default initialisers under a seed drawn from
    ``generators[k]``, inside :func:`torch.random.fork_rng` so the caller's global RNG is left as
    it was: a model's initial weights depend only on its own generator, not on K or on its position
    in the stack.
    """
    copies = []
    for init, drop in zip(generators, dropout_generators, strict=True):
        seed = int(torch.randint(2**63 - 1, (), generator=init, device="cpu"))
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            copies.append(factory(drop))
    return LoopStack(copies)


class StackedChain(nn.Module):
    """Stacked stages applied in turn, each called as ``stage(x, members)``."""

    def __init__(self, *stages: nn.Module) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x, members)
        return x


class SeededDropout(nn.Module):
    """``nn.Dropout`` for one model whose masks come from that model's own generator."""

    def __init__(self, p: float, generator: torch.Generator) -> None:
        super().__init__()
        self.p = p
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stacked_dropout(x[None], self.p, [self.generator], self.training)[0]

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _check_length(encoder: str, n_times: int, minimum: int, why: str) -> None:
    if n_times < minimum:
        raise InvalidInputError(
            f"The {encoder!r} encoder needs at least {minimum} time samples ({why}); the responses have "
            f"{n_times}. Use a longer time window or a higher sampling rate, or choose another encoder "
            "(eegproject accepts any length)."
        )


class TSConvEmbedding(nn.Module):
    """NICE's temporal-spatial convolution (patch embedding) for one model.

    ``(batch, C, T)`` -> Conv2d(1, 40, (1, 25)) -> AvgPool2d((1, 51), (1, 5)) -> BatchNorm -> ELU
    -> Conv2d(40, 40, (C, 1)) -> BatchNorm -> ELU -> Dropout -> Conv2d(40, 40, 1) -> flatten to
    ``(batch, 40 * n_patches)`` with ``n_patches = (T - 75) // 5 + 1`` (36 for T = 250).
    """

    n_filters, temporal_kernel, pool_kernel, pool_stride = 40, 25, 51, 5
    min_times = temporal_kernel + pool_kernel - 1

    def __init__(self, n_channels: int, n_times: int, dropout: float, dropout_generator: torch.Generator,
                 encoder: str = "tsconv") -> None:
        super().__init__()
        _check_length(encoder, n_times, self.min_times,
                      f"a (1, {self.temporal_kernel}) convolution, then a (1, {self.pool_kernel}) pooling")
        f = self.n_filters
        self.layers = nn.Sequential(
            nn.Conv2d(1, f, (1, self.temporal_kernel)),
            nn.AvgPool2d((1, self.pool_kernel), (1, self.pool_stride)),
            nn.BatchNorm2d(f),
            nn.ELU(),
            nn.Conv2d(f, f, (n_channels, 1)),
            nn.BatchNorm2d(f),
            nn.ELU(),
            SeededDropout(dropout, dropout_generator),
            nn.Conv2d(f, f, 1),
            nn.Flatten(),
        )
        self.out_features = f * ((n_times - self.min_times) // self.pool_stride + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.unsqueeze(1))


class ChannelTransformer(nn.Module):
    """ATM-S's channel-token transformer followed by the TSConv patch embedding, for one model.

    Each channel's time series is a token, embedded by Linear(T, d_model) with
    ``d_model = T`` rounded up to a multiple of the 4 heads (ATM uses d_model = T = 250); one
    post-norm transformer encoder layer (4 heads, feed-forward 256, GELU) and a final LayerNorm
    (as in iTransformer); then :class:`TSConvEmbedding` over the ``(C, d_model)`` map.
    Differences from ATM: no subject token, and no dropout on the attention weights (so that every
    dropout mask comes from the model's own generator).
    """

    n_heads, d_ff = 4, 256

    def __init__(self, n_channels: int, n_times: int, dropout: float, dropout_generator: torch.Generator) -> None:
        super().__init__()
        d_model = self.n_heads * math.ceil(n_times / self.n_heads)
        minimum = self.n_heads * math.ceil(TSConvEmbedding.min_times / self.n_heads) - self.n_heads + 1
        _check_length("atm", n_times, minimum, f"its TSConv embedding runs over d_model, T rounded up to a multiple "
                                               f"of {self.n_heads}, which must be >= {TSConvEmbedding.min_times}")
        self.embed = nn.Sequential(nn.Linear(n_times, d_model), SeededDropout(dropout, dropout_generator))
        self.attention = nn.MultiheadAttention(d_model, self.n_heads, batch_first=True)
        self.attention_dropout = SeededDropout(dropout, dropout_generator)
        self.norm1 = nn.LayerNorm(d_model)
        self.feedforward = nn.Sequential(
            nn.Linear(d_model, self.d_ff),
            nn.GELU(),
            SeededDropout(dropout, dropout_generator),
            nn.Linear(self.d_ff, d_model),
            SeededDropout(dropout, dropout_generator),
        )
        self.norm2 = nn.LayerNorm(d_model)
        self.norm_out = nn.LayerNorm(d_model)
        self.patches = TSConvEmbedding(n_channels, d_model, dropout, dropout_generator, encoder="atm")
        self.out_features = self.patches.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x)
        attended = self.attention(tokens, tokens, tokens, need_weights=False)[0]
        tokens = self.norm1(tokens + self.attention_dropout(attended))
        tokens = self.norm2(tokens + self.feedforward(tokens))
        return self.patches(self.norm_out(tokens))


class _MaxNorm(nn.Module):
    """Weight parametrisation: each output filter's L2 norm is at most ``max_norm`` (Keras max_norm)."""

    def __init__(self, max_norm: float) -> None:
        super().__init__()
        self.max_norm = max_norm

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return torch.renorm(weight, p=2, dim=0, maxnorm=self.max_norm)


class EEGNet(nn.Module):
    """EEGNet-8,2 (Lawhern et al. 2018) feature extractor for one model.

    ``(batch, C, T)`` -> Conv2d(1, 8, (1, 64), "same") -> BatchNorm -> depthwise Conv2d(8, 16, (C, 1))
    (depth multiplier 2, filter norm <= 1) -> BatchNorm -> ELU -> AvgPool(1, 4) -> Dropout ->
    separable Conv2d (depthwise (1, 16) "same", then pointwise 16 -> 16) -> BatchNorm -> ELU ->
    AvgPool(1, 8) -> Dropout -> flatten to ``(batch, 16 * (T // 4 // 8))``. Convolutions have no
    bias, as in the original. The original projects the depthwise filters back to norm <= 1 after
    each update; here a reparametrisation caps their norm (the shared optimiser has no projection
    step). Its max-norm 0.25 on the classifier does not apply (the flattened features feed the
    residual projection head instead of a classifier).
    """

    f1, depth, f2, temporal_kernel, separable_kernel, pool1, pool2 = 8, 2, 16, 64, 16, 4, 8

    def __init__(self, n_channels: int, n_times: int, dropout: float, dropout_generator: torch.Generator) -> None:
        super().__init__()
        _check_length("eegnet", n_times, self.pool1 * self.pool2,
                      f"poolings of {self.pool1} and {self.pool2} samples")
        spatial = self.f1 * self.depth
        depthwise = nn.Conv2d(self.f1, spatial, (n_channels, 1), groups=self.f1, bias=False)
        nn.utils.parametrize.register_parametrization(depthwise, "weight", _MaxNorm(1.0))
        self.layers = nn.Sequential(
            _same_padding(self.temporal_kernel),
            nn.Conv2d(1, self.f1, (1, self.temporal_kernel), bias=False),
            nn.BatchNorm2d(self.f1),
            depthwise,
            nn.BatchNorm2d(spatial),
            nn.ELU(),
            nn.AvgPool2d((1, self.pool1)),
            SeededDropout(dropout, dropout_generator),
            _same_padding(self.separable_kernel),
            nn.Conv2d(spatial, spatial, (1, self.separable_kernel), groups=spatial, bias=False),
            nn.Conv2d(spatial, self.f2, 1, bias=False),
            nn.BatchNorm2d(self.f2),
            nn.ELU(),
            nn.AvgPool2d((1, self.pool2)),
            SeededDropout(dropout, dropout_generator),
            nn.Flatten(),
        )
        self.out_features = self.f2 * (n_times // self.pool1 // self.pool2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.unsqueeze(1))


def _same_padding(kernel: int) -> nn.ZeroPad2d:
    """Keras "same" padding along time for an even or odd kernel (the extra sample goes right)."""
    return nn.ZeroPad2d(((kernel - 1) // 2, kernel // 2, 0, 0))


def looped_encoder(extractor: Callable[[int, int, float, torch.Generator], nn.Module]) -> Callable[..., StackedChain]:
    """An :attr:`EncoderSpec.build`: a single-model feature extractor, looped, then a batched head.

    The head is the residual projection (:class:`StackedResidualProjection`) from the flattened
    features to ``hidden_dim``: NICE's ``Proj_eeg``, which ATM reuses and UBP puts after each of
    its convolutional encoders (EEGNet included).

    Parameters
    ----------
    extractor : callable
        ``extractor(n_channels, n_times, dropout, dropout_generator)`` returns a module mapping
        ``(batch, C, T)`` to ``(batch, out_features)`` and exposing ``out_features``; it is stacked
        with :func:`seeded_copies`.
    """

    def build(n_models: int, n_channels: int, n_times: int, hidden_dim: int, dropout: float,
              generators: Sequence[torch.Generator], dropout_generators: Sequence[torch.Generator]) -> StackedChain:
        features = seeded_copies(lambda drop: extractor(n_channels, n_times, dropout, drop), generators,
                                 dropout_generators)
        width = features.encoders[0].out_features
        return StackedChain(features, StackedResidualProjection(n_models, width, hidden_dim, dropout, generators,
                                                                dropout_generators))

    return build


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
    build=build_eegproject,
    batched=True,
    citation="Wu et al., CVPR 2025 (UBP); Du et al., arXiv 2601.21948",
))

encoders.register("tsconv", EncoderSpec(
    name="tsconv",
    description="NICE's temporal-spatial conv (1x25, pool 1x51/5, Cx1) -> Proj_eeg residual head; >= 75 samples",
    build=looped_encoder(TSConvEmbedding),
    batched=False,
    citation="Song et al., ICLR 2024 (NICE)",
))

encoders.register("atm", EncoderSpec(
    name="atm",
    description="ATM-S style channel-token transformer (1 layer, 4 heads) -> TSConv -> Proj_eeg; no subject "
                "token; >= 73 samples",
    build=looped_encoder(ChannelTransformer),
    batched=False,
    citation="Li et al., NeurIPS 2024 (ATM)",
))

encoders.register("eegnet", EncoderSpec(
    name="eegnet",
    description="EEGNet-8,2 (temporal 1x64, depthwise Cx1, separable 1x16, pools 4 and 8) -> residual head; "
                ">= 32 samples",
    build=looped_encoder(EEGNet),
    batched=False,
    citation="Lawhern et al., J. Neural Eng. 2018 (EEGNet)",
))


def count_parameters(module: nn.Module, n_models: int = 1) -> int:
    """Trainable parameters of one model of a stack of ``n_models``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad) // n_models


def encoder_parameters(name: str, n_channels: int, n_times: int, hidden_dim: int) -> int:
    """Trainable parameters of one encoder ``name`` for ``(n_channels, n_times)`` responses.

    The encoder is built on PyTorch's meta device, so no memory is allocated even for the large
    ones (EEGProject on 271 MEG sensors x 201 samples has 56.8 M parameters).

    Raises
    ------
    UnknownNameError
        If no encoder is registered as ``name``.
    InvalidInputError
        If the encoder cannot take responses of that shape (e.g. too few time samples).
    """
    spec = encoders.get(name)
    with torch.device("meta"):
        module = spec.build(1, n_channels, n_times, hidden_dim, 0.0, [torch.Generator()], [torch.Generator()])
    return count_parameters(module)
