"""Brain encoders, built as *stacks*: K independent models that run as one batched computation.

Every encoder maps responses ``(K, batch, channels, times)`` to features ``(K, batch, hidden)``,
and every one is batched: linear layers are batched matrix products (:class:`StackedLinear`),
convolutional feature extractors run as one grouped convolution whose groups are the K models
(:class:`GroupedConvStack`), and ATM's transformer as batched projections and attention
(:class:`StackedChannelTransformer`). One computation per layer, however many models, is what
keeps a GPU busy with these small encoders (a loop over K copies launches K times the kernels).

The convolutional and transformer encoders are first defined for one model (:class:`TSConvEmbedding`,
:class:`ChannelTransformer`, :class:`EEGNet`); those definitions give each model its initial
weights and serve as the reference the stacked forms are tested against. Each model of a stack
owns a random generator for its initialisation and another for its dropout masks, so a model's
training does not depend on which other models share its stack (nor on the global RNG).

Deviations from the published encoders, the same for all: every dropout uses the one ``dropout``
hyperparameter (NICE and ATM used 0.5, ATM's transformer 0.25, EEGNet 0.5 or 0.25), weights start
from PyTorch's default initialisation (NICE drew them from N(0, 0.02)), and BatchNorm keeps
PyTorch's defaults (EEGNet's Keras BatchNorm used momentum 0.99, epsilon 1e-3).
:func:`encoder_parameters` gives the size of one encoder for a response shape.
"""

from __future__ import annotations

import copy
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

    @classmethod
    def from_weights(cls, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> StackedLinear:
        """Stack K single-model layers given as ``nn.Linear``-style ``(out, in)`` weights and ``(out,)`` biases."""
        out_features, in_features = weights[0].shape
        stacked = cls(len(weights), in_features, out_features, generators=[])
        with torch.no_grad():
            stacked.weight.copy_(torch.stack([w.T for w in weights]))
            stacked.bias.copy_(torch.stack(list(biases))[:, None])
        return stacked

    @classmethod
    def from_modules(cls, linears: Sequence[nn.Linear]) -> StackedLinear:
        return cls.from_weights([m.weight for m in linears], [m.bias for m in linears])

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        weight, bias = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        return torch.baddbmm(bias, x, weight)


class StackedLayerNorm(nn.Module):
    """K independent ``nn.LayerNorm`` layers over the last dimension."""

    def __init__(self, n_models: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_models, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n_models, 1, dim))

    @classmethod
    def from_modules(cls, norms: Sequence[nn.LayerNorm]) -> StackedLayerNorm:
        stacked = cls(len(norms), norms[0].normalized_shape[-1])
        with torch.no_grad():
            stacked.weight.copy_(torch.stack([m.weight for m in norms])[:, None])
            stacked.bias.copy_(torch.stack([m.bias for m in norms])[:, None])
        return stacked

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


def seeded_copies(factory: Callable[[torch.Generator], nn.Module], generators: Sequence[torch.Generator],
                  dropout_generators: Sequence[torch.Generator]) -> list[nn.Module]:
    """``factory(dropout_generators[k])`` for each model k: single-model modules to stack.

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
    return copies


# --- grouped convolution: K models as the groups of one convolution --------------------------------
# Activations are laid out (batch, K * channels, H, W), model k owning channels [k*C, (k+1)*C) and
# row b holding model k's own b-th sample. Convolutions get groups multiplied by K, BatchNorm
# statistics are per channel and so per model, and pointwise or per-channel layers (ELU, pooling,
# padding) apply unchanged. Parameters keep a leading model axis, like every stacked parameter.

class _PerFilter(nn.Module):
    """Applies a single-model weight parametrisation (which sees ``(out, ...)``) to a ``(K, out, ...)`` stack."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.inner(weight.flatten(0, 1)).view_as(weight)


class GroupedConv2d(nn.Module):
    """K ``nn.Conv2d`` of the same shape as one convolution with K times the groups."""

    def __init__(self, convs: Sequence[nn.Conv2d]) -> None:
        super().__init__()
        first = convs[0]
        if first.padding_mode != "zeros" or isinstance(first.padding, str):
            raise ValueError("GroupedConv2d stacks convolutions with explicit zero padding only.")
        parametrized = nn.utils.parametrize.is_parametrized(first, "weight")
        raw = [c.parametrizations.weight.original if parametrized else c.weight for c in convs]
        self.weight = nn.Parameter(torch.stack([w.detach() for w in raw]))
        self.bias = nn.Parameter(torch.stack([c.bias.detach() for c in convs])) if first.bias is not None else None
        self.stride, self.padding, self.dilation, self.groups = first.stride, first.padding, first.dilation, first.groups
        if parametrized:
            for parametrization in first.parametrizations.weight:
                nn.utils.parametrize.register_parametrization(self, "weight", _PerFilter(copy.deepcopy(parametrization)))

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if members is not None:
            weight, bias = weight[members], (None if bias is None else bias[members])
        return F.conv2d(x, weight.flatten(0, 1), None if bias is None else bias.flatten(), self.stride,
                        self.padding, self.dilation, self.groups * len(weight))


class GroupedBatchNorm2d(nn.Module):
    """K ``nn.BatchNorm2d`` over the fused channels (running statistics update when all K run)."""

    def __init__(self, norms: Sequence[nn.BatchNorm2d]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in norms]))
        self.bias = nn.Parameter(torch.stack([m.bias.detach() for m in norms]))
        self.register_buffer("running_mean", torch.stack([m.running_mean for m in norms]))
        self.register_buffer("running_var", torch.stack([m.running_var for m in norms]))
        self.momentum, self.eps = norms[0].momentum, norms[0].eps

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        tensors = (self.running_mean, self.running_var, self.weight, self.bias)
        if members is not None:
            tensors = tuple(t[members] for t in tensors)  # running statistics of a subset are not updated
        mean, var, weight, bias = (t.flatten() for t in tensors)
        return F.batch_norm(x, mean, var, weight, bias, self.training, self.momentum, self.eps)


class GroupedDropout(nn.Module):
    """Dropout on the fused channels, each model's mask drawn from its own generator."""

    def __init__(self, p: float, generators: Sequence[torch.Generator]) -> None:
        super().__init__()
        self.p = p
        self.generators = list(generators)

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        batch, channels, *rest = x.shape
        n = len(self.generators) if members is None else len(members)
        per_model = x.view(batch, n, channels // n, *rest).transpose(0, 1)
        dropped = stacked_dropout(per_model, self.p, self.generators, self.training, members)
        return dropped.transpose(0, 1).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _PerChannel(nn.Module):
    """A pointwise or per-channel layer, which applies to the fused channels as it is."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        return self.layer(x)


def _grouped_layer(layers: Sequence[nn.Module]) -> nn.Module:
    """The grouped form of the same layer of K single-model ``nn.Sequential`` extractors."""
    first = layers[0]
    if isinstance(first, nn.Conv2d):
        return GroupedConv2d(layers)
    if isinstance(first, nn.BatchNorm2d):
        return GroupedBatchNorm2d(layers)
    if isinstance(first, SeededDropout):
        return GroupedDropout(first.p, [layer.generator for layer in layers])
    if isinstance(first, (nn.ELU, nn.AvgPool2d, nn.ZeroPad2d)):
        return _PerChannel(first)
    raise TypeError(f"No grouped form of {type(first).__name__}; add one to eegbench.encoders._grouped_layer.")


class GroupedConvStack(nn.Module):
    """K single-model convolutional extractors ``(batch, 1, C, T) -> ... -> Flatten`` as one grouped network.

    Maps ``(K, batch, C, T)`` to ``(K, batch, features)``, as each model's own ``nn.Sequential``
    would map its ``(batch, 1, C, T)`` input, flattening ``(filters, H, W)`` in the same order.
    """

    def __init__(self, extractors: Sequence[nn.Sequential]) -> None:
        super().__init__()
        *body, last = zip(*extractors, strict=True)
        if not isinstance(last[0], nn.Flatten):
            raise TypeError("GroupedConvStack expects extractors that end with nn.Flatten.")
        self.layers = nn.ModuleList(_grouped_layer(layers) for layers in body)

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        n, batch = x.shape[:2]
        h = x.transpose(0, 1)  # (batch, K, C, T): model k's input is channel k
        for layer in self.layers:
            h = layer(h, members)
        return h.reshape(batch, n, -1).transpose(0, 1)


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

    @staticmethod
    def stack(copies: Sequence[TSConvEmbedding]) -> GroupedConvStack:
        return GroupedConvStack([c.layers for c in copies])


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

    @staticmethod
    def stack(copies: Sequence[ChannelTransformer]) -> StackedChannelTransformer:
        return StackedChannelTransformer(copies)


class StackedAttention(nn.Module):
    """K ``nn.MultiheadAttention`` (self-attention, no attention dropout) as batched products.

    Takes ``(K, batch * tokens, d)``; attention runs within each sample's ``tokens`` rows.
    """

    def __init__(self, attentions: Sequence[nn.MultiheadAttention]) -> None:
        super().__init__()
        self.n_heads = attentions[0].num_heads
        self.in_proj = StackedLinear.from_weights([a.in_proj_weight for a in attentions],
                                                  [a.in_proj_bias for a in attentions])
        self.out_proj = StackedLinear.from_modules([a.out_proj for a in attentions])

    def forward(self, tokens: torch.Tensor, n_tokens: int, members: Members = None) -> torch.Tensor:
        k, rows, d = tokens.shape
        qkv = self.in_proj(tokens, members).view(k * rows // n_tokens, n_tokens, 3, self.n_heads, d // self.n_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # each (K * batch, heads, tokens, d / heads)
        attended = F.scaled_dot_product_attention(query, key, value)  # 4-d, as the fused GPU kernels want
        return self.out_proj(attended.transpose(1, 2).reshape(k, rows, d), members)


class StackedChannelTransformer(nn.Module):
    """K :class:`ChannelTransformer` models as one batched computation (same weights, same masks)."""

    def __init__(self, copies: Sequence[ChannelTransformer]) -> None:
        super().__init__()
        self.embed = StackedLinear.from_modules([c.embed[0] for c in copies])
        self.attention = StackedAttention([c.attention for c in copies])
        self.norm1, self.norm2, self.norm_out = (StackedLayerNorm.from_modules([getattr(c, name) for c in copies])
                                                 for name in ("norm1", "norm2", "norm_out"))
        self.feedforward_in = StackedLinear.from_modules([c.feedforward[0] for c in copies])
        self.feedforward_out = StackedLinear.from_modules([c.feedforward[3] for c in copies])
        self.patches = TSConvEmbedding.stack([c.patches for c in copies])
        self.dropout = copies[0].embed[1].p
        self.dropout_generators = [c.embed[1].generator for c in copies]

    def forward(self, x: torch.Tensor, members: Members = None) -> torch.Tensor:
        def drop(h: torch.Tensor) -> torch.Tensor:  # the single model's dropouts, in the same order
            return stacked_dropout(h, self.dropout, self.dropout_generators, self.training, members)

        k, batch, n_channels, n_times = x.shape
        tokens = drop(self.embed(x.reshape(k, batch * n_channels, n_times), members))
        tokens = self.norm1(tokens + drop(self.attention(tokens, n_channels, members)), members)
        hidden = drop(F.gelu(self.feedforward_in(tokens, members)))
        tokens = self.norm2(tokens + drop(self.feedforward_out(hidden, members)), members)
        return self.patches(self.norm_out(tokens, members).view(k, batch, n_channels, -1), members)


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

    @staticmethod
    def stack(copies: Sequence[EEGNet]) -> GroupedConvStack:
        return GroupedConvStack([c.layers for c in copies])


def _same_padding(kernel: int) -> nn.ZeroPad2d:
    """Keras "same" padding along time for an even or odd kernel (the extra sample goes right)."""
    return nn.ZeroPad2d(((kernel - 1) // 2, kernel // 2, 0, 0))


def stacked_encoder(extractor: Callable[[int, int, float, torch.Generator], nn.Module]) -> Callable[..., StackedChain]:
    """An :attr:`EncoderSpec.build`: a single-model feature extractor, stacked, then the residual head.

    The head is the residual projection (:class:`StackedResidualProjection`) from the flattened
    features to ``hidden_dim``: NICE's ``Proj_eeg``, which ATM reuses and UBP puts after each of
    its convolutional encoders (EEGNet included).

    Parameters
    ----------
    extractor : type
        ``extractor(n_channels, n_times, dropout, dropout_generator)`` builds one model's module
        mapping ``(batch, C, T)`` to ``(batch, out_features)``; ``extractor.stack(copies)`` turns
        K of them (from :func:`seeded_copies`) into one batched module.
    """

    def build(n_models: int, n_channels: int, n_times: int, hidden_dim: int, dropout: float,
              generators: Sequence[torch.Generator], dropout_generators: Sequence[torch.Generator]) -> StackedChain:
        copies = seeded_copies(lambda drop: extractor(n_channels, n_times, dropout, drop), generators,
                               dropout_generators)
        return StackedChain(extractor.stack(copies),
                            StackedResidualProjection(n_models, copies[0].out_features, hidden_dim, dropout,
                                                      generators, dropout_generators))

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
    citation: str = ""


encoders: Registry[EncoderSpec] = Registry("encoder", hint="Run `eegbench list encoders`.")

encoders.register("eegproject", EncoderSpec(
    name="eegproject",
    description="flatten -> Linear -> residual GELU block -> LayerNorm (UBP / Shallow Alignment default)",
    build=build_eegproject,
    citation="Wu et al., CVPR 2025 (UBP); Du et al., arXiv 2601.21948",
))

encoders.register("tsconv", EncoderSpec(
    name="tsconv",
    description="NICE's temporal-spatial conv (1x25, pool 1x51/5, Cx1) -> Proj_eeg residual head; >= 75 samples",
    build=stacked_encoder(TSConvEmbedding),
    citation="Song et al., ICLR 2024 (NICE)",
))

encoders.register("atm", EncoderSpec(
    name="atm",
    description="ATM-S style channel-token transformer (1 layer, 4 heads) -> TSConv -> Proj_eeg; no subject "
                "token; >= 73 samples",
    build=stacked_encoder(ChannelTransformer),
    citation="Li et al., NeurIPS 2024 (ATM)",
))

encoders.register("eegnet", EncoderSpec(
    name="eegnet",
    description="EEGNet-8,2 (temporal 1x64, depthwise Cx1, separable 1x16, pools 4 and 8) -> residual head; "
                ">= 32 samples",
    build=stacked_encoder(EEGNet),
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
