"""SAMGA (Jiang et al., 2026): a subject-aware router over several intermediate backbone layers, trained
coarse-to-fine (MMD with InfoNCE, then InfoNCE alone with the shared layer frozen).

Written from the paper and its published settings; no code of the authors' repository is used.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from eegbench.backbones import BackboneLayers, LayerRef
from eegbench.encoders import StackedLinear, encoders
from eegbench.submissions import Aligner, AlignerReport, LayerUse, Method, TrainingData, score_on_validation
from eegbench.training import info_nce, smooth_channels

#: SAMGA's InternViT-6B layers (1-based, of L = 46 counting the patch embedding) and the layer its depth
#: prior centres on
PAPER_LAYERS = (20, 24, 28, 32, 36)
PAPER_N_LAYERS = 46


class SamgaHyperparameters(BaseModel):
    """SAMGA's published intra-subject settings (see ``deviations`` in submission.yaml).

    ``depths`` are relative depths ``(l - 1) / (L - 1)``: the paper's layers land on exactly those
    layers of a 46-layer backbone and on the same relative depths of any other. The first
    ``stage1_fraction`` of the epochs (20 of 60) mixes MMD into the loss with a weight falling
    linearly from ``mmd_weight_start`` to ``mmd_weight_end``; the rest trains on InfoNCE alone at
    ``stage2_lr_factor`` times ``lr`` (the paper: 5e-5 after 1e-4) with a fresh optimiser and the
    shared layer frozen; a factor keeps the two stages in proportion when a task sets ``lr``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    depths: list[float] = Field(default_factory=lambda: [(l - 1) / (PAPER_N_LAYERS - 1) for l in PAPER_LAYERS],
                                min_length=1)
    encoder: str = "eegproject"
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(512, ge=2)
    lr: float = Field(1e-4, gt=0)
    stage2_lr_factor: float = Field(0.5, gt=0, le=1)
    weight_decay: float = Field(1e-4, ge=0)
    hidden_dim: int = Field(1024, ge=1)
    proj_dim: int = Field(512, ge=1)
    dropout: float = Field(0.3, ge=0, lt=1)
    temperature: float = Field(0.07, gt=0)
    stage1_fraction: float = Field(1 / 3, ge=0, le=1)
    mmd_weight_start: float = Field(0.9, ge=0, le=1)
    mmd_weight_end: float = Field(0.5, ge=0, le=1)
    mmd_sigmas: list[float] = Field(default_factory=lambda: [0.1, 0.2, 0.5, 1.0, 2.0], min_length=1)
    subject_dropout: float = Field(0.3, ge=0, le=1)
    smooth_kernel: int = Field(5, ge=1)
    smooth_probability: float = Field(0.3, ge=0, le=1)

    @field_validator("encoder")
    @classmethod
    def _registered_encoder(cls, name: str) -> str:
        encoders.get(name)  # fails early, listing the registered encoders
        return name

    @field_validator("depths")
    @classmethod
    def _depths_in_range(cls, depths: list[float]) -> list[float]:
        if not all(0.0 <= d <= 1.0 for d in depths):
            raise ValueError(f"depths must lie in [0, 1], got {depths}")
        return depths


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Unbiased MMD² between samples ``x`` (n, d) and ``y`` (m, d), clamped at 0.

    The kernel is the mean of Gaussian RBF kernels ``exp(-|a - b|² / (2 σ²))`` over ``sigmas``; the
    diagonals of the within-sample kernels are left out (the unbiased estimator), so the estimate is
    zero in expectation for samples of one distribution and can dip below it, hence the clamp.
    """
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"mmd_rbf needs at least 2 samples on each side, got {n} and {m}")
    z = torch.cat([x, y])
    norms = z.square().sum(1)
    squared = (norms[:, None] + norms[None] - 2 * z @ z.T).clamp(min=0)  # cdist's backward is slow on CPU
    kernel = torch.stack([torch.exp(-squared / (2 * s * s)) for s in sigmas]).mean(0)
    k_xx, k_yy, k_xy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return (within_x + within_y - 2 * k_xy.mean()).clamp(min=0)


def depth_prior(n_layers: int) -> torch.Tensor:
    """SAMGA's initial router logits ``-|i - centre|``, in steps of the layer list (peak at its middle)."""
    return -(torch.arange(n_layers, dtype=torch.float32) - (n_layers - 1) / 2).abs()


def stage1_epochs(epochs: int, fraction: float) -> int:
    """Epochs of the coarse stage: the paper's 20 of 60."""
    return min(epochs, round(epochs * fraction))


def mmd_weight(epoch: int, n_stage1: int, start: float, end: float) -> float:
    """MMD's weight in stage 1 at 0-based ``epoch``, linear from ``start`` (first epoch) to ``end`` (last); 0 after."""
    if epoch >= n_stage1:
        return 0.0
    return start if n_stage1 == 1 else start + (end - start) * epoch / (n_stage1 - 1)


class SamgaNet(nn.Module):
    """Brain encoder and the router-mixed image path, meeting in one shared linear layer.

    Brain: encoder (``hidden_dim``) -> Linear(hidden_dim, proj_dim) -> shared. Images: each layer's
    features (zero-padded to the widest) -> one pre-projector Linear(width, hidden_dim) shared by the
    layers -> a per-layer Linear(hidden_dim, proj_dim) -> weighted by the router -> shared. The
    router's logits are the global ``q`` plus, in training, the sample's subject bias.
    """

    def __init__(self, n_channels: int, n_times: int, widths: Sequence[int], n_subjects: int,
                 hp: SamgaHyperparameters, seed: int, device: str) -> None:
        super().__init__()
        self._arguments = (n_channels, n_times, list(widths), n_subjects, hp, seed)
        init = torch.Generator().manual_seed(seed)
        self.dropout_generator = torch.Generator(device=device).manual_seed(seed + 1)
        n_layers, width = len(widths), max(widths)
        self.encoder = encoders.get(hp.encoder).build(1, n_channels, n_times, hp.hidden_dim, hp.dropout, [init],
                                                      [self.dropout_generator])
        self.brain_proj = StackedLinear(1, hp.hidden_dim, hp.proj_dim, [init])
        self.image_pre = StackedLinear(1, width, hp.hidden_dim, [init])
        self.image_heads = StackedLinear(n_layers, hp.hidden_dim, hp.proj_dim, [init] * n_layers)
        self.shared = StackedLinear(1, hp.proj_dim, hp.proj_dim, [init])
        self.router_logits = nn.Parameter(depth_prior(n_layers))
        self.subject_bias = nn.Parameter(torch.zeros(n_subjects, n_layers))
        self.width = width

    def __reduce__(self):
        """Pickled as constructor arguments and state dict (encoders may hold parametrizations and generators)."""
        state = {name: value.detach().cpu() for name, value in self.state_dict().items()}
        return _rebuild_net, (self._arguments, state, str(self.router_logits.device))

    def layer_weights(self) -> torch.Tensor:
        """The test-time routing weights: softmax of the global logits (no subject)."""
        return torch.softmax(self.router_logits, -1)

    def embed_brain(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` responses -> ``(B, proj_dim)``, unnormalised."""
        return self.shared(self.brain_proj(self.encoder(x[None])))[0]

    def embed_images(self, ys: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``(n_layers, B, width)`` features mixed with ``(B, n_layers)`` or ``(n_layers,)`` weights -> ``(B, proj_dim)``."""
        n_layers, batch, width = ys.shape
        pre = self.image_pre(ys.reshape(1, n_layers * batch, width)).reshape(n_layers, batch, -1)
        per_layer = self.image_heads(pre)  # (n_layers, B, proj_dim)
        weights = weights.expand(batch, n_layers) if weights.ndim == 1 else weights
        mixed = torch.einsum("lbp,bl->bp", per_layer, weights)
        return self.shared(mixed[None])[0]

    def training_weights(self, subjects: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Per-sample routing weights: global logits plus the subject's bias where ``keep`` is set."""
        logits = self.router_logits[None] + keep[:, None] * self.subject_bias[subjects]
        return torch.softmax(logits, -1)


def _rebuild_net(arguments: tuple, state: dict[str, torch.Tensor], device: str) -> SamgaNet:
    """Unpickle a :class:`SamgaNet` (see its ``__reduce__``), on its device where there is one."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    net = SamgaNet(*arguments, device="cpu")
    net.load_state_dict(state)
    return net.to(device).eval()


def _stacked_features(features: Mapping[str, np.ndarray], keys: Sequence[str], width: int,
                      device: torch.device) -> torch.Tensor:
    """Per-layer ``(n, d_l)`` features zero-padded to ``width`` and stacked: ``(n_layers, n, width)``."""
    return torch.stack([F.pad(torch.tensor(np.asarray(features[key]), dtype=torch.float32),
                              (0, width - features[key].shape[1])) for key in keys]).to(device)


class SamgaAligner(Aligner):
    """A trained SAMGA model: brain responses and globally routed image features in one space.

    The gallery is embedded with the global routing weights alone, as SAMGA does at test time, so
    neither side depends on a subject.
    """

    def __init__(self, net: SamgaNet, layers: Sequence[LayerRef], report: AlignerReport | None = None,
                 alternatives: dict[str, Aligner] | None = None) -> None:
        self.net = net
        self.layers = list(layers)
        self._report = report or AlignerReport()
        self._alternatives = dict(alternatives or {})

    @property
    def _device(self) -> torch.device:
        return self.net.router_logits.device

    @torch.no_grad()
    def embed_brain(self, responses: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        self.net.eval()
        out = [self.net.embed_brain(torch.tensor(np.asarray(responses[i:i + batch_size]), dtype=torch.float32,
                                                 device=self._device)).cpu()
               for i in range(0, len(responses), batch_size)]
        return torch.cat(out).numpy()

    @torch.no_grad()
    def embed_images(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        self.net.eval()
        ys = _stacked_features(features, [ref.key for ref in self.layers], self.net.width, self._device)
        return F.normalize(self.net.embed_images(ys, self.net.layer_weights()), dim=-1).cpu().numpy()

    def alternatives(self) -> dict[str, Aligner]:
        return self._alternatives

    def report(self) -> AlignerReport:
        weights = self.net.layer_weights().detach().cpu().tolist()
        n_parameters = sum(p.numel() for p in self.net.parameters())
        return self._report.model_copy(update={
            "layers": [LayerUse.of(ref, round(w, 6)) for ref, w in zip(self.layers, weights)],
            "n_parameters": n_parameters})


class Samga(Method):
    """SAMGA: EEGProject + subject-aware multi-layer router + shared layer, MMD-then-InfoNCE.

    Trains one unit at a time (``fit``): the two-stage schedule rebuilds the optimiser and freezes
    the shared layer halfway, and the router's subject table is the unit's own, so units do not
    batch into one computation as in :func:`eegbench.training.fit_alignments`. The epoch is
    selected on the validation split; the last epoch is the alternative ``"last_epoch"``.
    """

    Hyperparameters = SamgaHyperparameters

    def feature_layers(self, backbone: BackboneLayers) -> list[LayerRef]:
        refs = []
        for depth in self.hp.depths:
            ref = backbone.resolve(float(depth))
            token_layer = "mean_all" in backbone.layers[ref.index - 1].poolings
            refs.append(backbone.resolve(float(depth), "mean_all") if token_layer else ref)
        return list({ref.key: ref for ref in refs}.values())  # depths may share a layer on shallow backbones

    def layer_setting(self, layers: Sequence[LayerRef]) -> str:
        return "samga:" + "+".join(ref.key for ref in layers)

    def fit(self, data: TrainingData) -> Aligner:
        return train_samga(data, self.hp)


def train_samga(data: TrainingData, hp: SamgaHyperparameters) -> SamgaAligner:
    """Train SAMGA on ``data.train``, keep the epoch best on ``data.val`` and the last one as an alternative."""
    device = torch.device(data.device)
    keys = [ref.key for ref in data.layers]
    subject_names = sorted(set(data.train.subjects.tolist()))
    widths = [data.features[key].shape[1] for key in keys]
    net = SamgaNet(*data.train.responses.shape[1:], widths, len(subject_names), hp, data.seed, str(device)).to(device)
    x_all = torch.tensor(smooth_channels(data.train.responses, hp.smooth_kernel, hp.smooth_probability, data.seed),
                         device=device)
    image_index = torch.tensor(np.asarray(data.train.image_index), dtype=torch.int64, device=device)
    rows = {name: i for i, name in enumerate(subject_names)}
    subjects = torch.tensor([rows[s] for s in data.train.subjects.tolist()], dtype=torch.int64, device=device)
    targets = _stacked_features(data.features, keys, net.width, device)
    scale = F.softplus(torch.tensor(math.log(1 / hp.temperature))).item()  # SAMGA's fixed logit scale, about 2.73
    order_generator = torch.Generator().manual_seed(data.seed + 2)
    subject_generator = torch.Generator(device=device).manual_seed(data.seed + 3)
    n, batch = len(x_all), min(hp.batch_size, len(x_all))
    n_stage1 = stage1_epochs(hp.epochs, hp.stage1_fraction)
    optimizer = torch.optim.AdamW(net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
    validation, losses, best_state, best_epoch = [], [], None, 0
    for epoch in range(hp.epochs):
        if epoch == n_stage1 and epoch > 0:  # fine stage: shared layer frozen, fresh optimiser
            net.shared.requires_grad_(False)
            optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad],
                                          lr=hp.stage2_lr_factor * hp.lr, weight_decay=hp.weight_decay)
        w = mmd_weight(epoch, n_stage1, hp.mmd_weight_start, hp.mmd_weight_end)
        net.train()
        order, total, steps = torch.randperm(n, generator=order_generator).to(device), 0.0, 0
        for start in range(0, n, batch):
            idx = order[start:start + batch]
            if len(idx) < 2:  # a one-sample batch has no negatives
                continue
            keep = (torch.rand(len(idx), generator=subject_generator, device=device) >= hp.subject_dropout).float()
            brain = net.embed_brain(x_all[idx])
            images = net.embed_images(targets[:, image_index[idx]], net.training_weights(subjects[idx], keep))
            loss = info_nce(brain, F.normalize(images, dim=-1), scale)
            if w > 0:
                loss = w * mmd_rbf(brain, images, hp.mmd_sigmas) + (1 - w) * loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
        validation.append(score_on_validation(SamgaAligner(net, data.layers), data))
        if validation[-1] > max(validation[:-1], default=-math.inf):
            best_state, best_epoch = copy.deepcopy(net.state_dict()), epoch
    net.eval()
    details = {"encoder": hp.encoder, "stage1_epochs": n_stage1, "subjects": subject_names,
               "train_loss_by_epoch": [round(v, 6) for v in losses]}
    last = SamgaAligner(copy.deepcopy(net), data.layers, _report(validation, hp.epochs - 1, data, details))
    net.load_state_dict(best_state)
    return SamgaAligner(net, data.layers, _report(validation, best_epoch, data, details),
                        alternatives={"last_epoch": last})


def _report(validation: list[float], epoch: int, data: TrainingData, details: dict) -> AlignerReport:
    """The epoch kept (0-based ``epoch``), the validation curve and training details."""
    return AlignerReport(validation_metric=data.validation_metric, selected_epoch=epoch + 1,
                         validation_by_epoch=[round(float(v), 6) for v in validation], details=details)
