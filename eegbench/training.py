"""Contrastive alignment training, many small models at once.

:func:`fit_contrastive` trains K independent (brain encoder, brain projector, image projector)
models with the symmetric InfoNCE loss of CLIP. The K models are one batched computation: their
training data stays resident on the device, batches are drawn by index (no per-sample Python, no
``DataLoader``), and parameters are stacked so one optimiser step updates all of them. Each model
draws its initialisation, batch order and dropout masks from its own seeded generators, so its
result does not depend on which other models were trained beside it.

A model may align to one backbone layer (a linear image projector) or to several (one linear
head per layer, each L2-normalised, mixed by learned softmax weights). Optionally the epoch is
selected on a validation split; the last epoch is then kept as well, so both can be reported.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from eegbench._check import InvalidInputError
from eegbench.provenance import compile_requested
from eegbench._progress import logger, progress
from eegbench.backbones.base import LayerRef
from eegbench.encoders import StackedLinear, count_parameters, encoders
from eegbench.metrics import metric, retrieve
from eegbench.reports import AlignerReport, LayerUse
from eegbench.submissions import Aligner, Split, TrainingData


class TrainingConfig(BaseModel):
    """Hyperparameters of contrastive alignment; every field is recorded with each result.

    Defaults follow the Shallow Alignment protocol (50 epochs, batch 1024, AdamW, lr 1e-4,
    weight decay 1e-4). Task files override them for their data size (the synthetic tasks train
    20 epochs at lr 1e-3 with a narrower encoder), and the command line overrides both.
    ``encoder`` names a registered brain encoder (``eegbench list encoders``); ``hidden_dim`` is
    its output width.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # lr=inf would train to NaN

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
    select_epoch: bool = False

    @field_validator("encoder")
    @classmethod
    def _registered_encoder(cls, name: str) -> str:
        encoders.get(name)  # fails early, listing the registered encoders
        return name


@dataclass
class ValidationSet:
    """Held-out responses to score after every epoch (for epoch selection).

    ``targets`` are the validation images' features per layer; ``image_index`` gives the row of
    each response's image.
    """

    brain: np.ndarray
    targets: Sequence[np.ndarray]
    image_index: np.ndarray
    metric: str


@dataclass
class ContrastiveProblem:
    """One model to train: brain responses paired with target image features.

    Attributes
    ----------
    brain : numpy.ndarray
        ``(n_samples, channels, times)`` float32 responses.
    targets : numpy.ndarray or sequence of numpy.ndarray
        ``(n_images, dim)`` image features, or one such array per layer for multi-layer alignment.
    image_index : numpy.ndarray
        ``(n_samples,)`` row of ``targets`` paired with each response.
    seed : int
        Seeds this model's initialisation, batch order and dropout.
    validation : ValidationSet, optional
        Scored after every epoch when ``TrainingConfig.select_epoch`` is set.
    """

    brain: np.ndarray
    targets: np.ndarray | Sequence[np.ndarray]
    image_index: np.ndarray
    seed: int
    validation: ValidationSet | None = None

    def __post_init__(self) -> None:
        if isinstance(self.targets, np.ndarray):
            self.targets = (self.targets,)
        self.targets = tuple(self.targets)


@dataclass
class TrainedStack:
    """K trained models; :meth:`member` gives one of them."""

    model: AlignmentStack
    config: TrainingConfig
    target_dims: list[list[int]]
    loss_history: np.ndarray  # (epochs, K) mean training loss
    seconds: float
    device: torch.device
    validation_history: np.ndarray | None = None  # (epochs, K) validation score, if tracked
    best_epoch: list[int] | None = None  # 1-based epoch kept per model, if selected
    last: TrainedStack | None = None  # the last epoch's weights, when the best epoch was selected

    def member(self, k: int) -> TrainedModel:
        return TrainedModel(self, k)


@dataclass
class TrainedModel:
    """One trained model of a stack: embeds brain responses and image features."""

    stack: TrainedStack
    index: int

    @torch.no_grad()
    def embed_brain(self, responses: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """``(n, channels, times)`` responses -> ``(n, proj_dim)`` embeddings."""
        model = self.stack.model.eval()
        out = []
        for start in range(0, len(responses), batch_size):
            with _read_only_arrays_ok():  # only read
                x = torch.as_tensor(np.asarray(responses[start:start + batch_size], dtype=np.float32),
                                    device=self.stack.device)
            out.append(model.embed_brain(x[None], [self.index])[0].float().cpu())
        return torch.cat(out).numpy()

    @torch.no_grad()
    def embed_images(self, features: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Image features (one ``(n, dim)`` array per aligned layer) -> ``(n, proj_dim)`` embeddings."""
        model = self.stack.model.eval()
        layers = (features,) if isinstance(features, np.ndarray) else tuple(features)
        with _read_only_arrays_ok():  # only read (padded into a new tensor)
            ys = [F.pad(torch.as_tensor(np.asarray(y, dtype=np.float32), device=self.stack.device),
                        (0, width - y.shape[1]))[None] for y, width in zip(layers, model.image_widths)]
        return model.embed_images(ys, [self.index])[0].float().cpu().numpy()

    @property
    def n_encoder_parameters(self) -> int:
        """Trainable parameters of this model's brain encoder alone."""
        return count_parameters(self.stack.model.encoder, self.stack.model.n_models)

    @property
    def n_parameters(self) -> int:
        """Trainable parameters of this one model (brain encoder, projectors, mixing, temperature)."""
        p = self.stack.config.proj_dim
        dims = self.stack.target_dims[self.index]
        extra = (1 if self.stack.config.learnable_temperature else 0) + (len(dims) if len(dims) > 1 else 0)
        projectors = (self.stack.model.hidden_dim + 1) * p + sum((d + 1) * p for d in dims)
        return self.n_encoder_parameters + projectors + extra

    @property
    def final_loss(self) -> float:
        return float(self.stack.loss_history[-1, self.index])

    @property
    def layer_weights(self) -> list[float] | None:
        """Learned softmax weights of the aligned layers (multi-layer models only)."""
        logits = self.stack.model.mix_logits
        if logits is None:
            return None
        return torch.softmax(logits[self.index].detach().float(), -1).cpu().tolist()


class AlignmentStack(nn.Module):
    """Brain encoder + linear projectors on both sides, for K models.

    With several target layers, the image side has one linear head per layer; each head's output
    is L2-normalised and the heads are mixed with learned, softmax-normalised weights.
    """

    def __init__(self, config: TrainingConfig, n_models: int, n_channels: int, n_times: int,
                 target_dims: Sequence[Sequence[int]], seeds: Sequence[int], device: torch.device) -> None:
        super().__init__()
        self._arguments = (config, n_models, n_channels, n_times, [list(dims) for dims in target_dims], list(seeds))
        init_gens = [torch.Generator().manual_seed(s) for s in seeds]
        dropout_gens = [torch.Generator(device=device).manual_seed(s + 1) for s in seeds]
        spec = encoders.get(config.encoder)
        self.encoder = spec.build(n_models, n_channels, n_times, config.hidden_dim, config.dropout,
                                  init_gens, dropout_gens)
        self.brain_proj = StackedLinear(n_models, config.hidden_dim, config.proj_dim, init_gens)
        n_layers = len(target_dims[0])
        self.image_widths = [max(dims[j] for dims in target_dims) for j in range(n_layers)]
        self.image_heads = nn.ModuleList([
            StackedLinear(n_models, self.image_widths[j], config.proj_dim, init_gens,
                          fan_in=[dims[j] for dims in target_dims]) for j in range(n_layers)])
        self.mix_logits = nn.Parameter(torch.zeros(n_models, n_layers)) if n_layers > 1 else None
        log_scale = torch.full((n_models,), math.log(1.0 / config.temperature))
        if config.learnable_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.n_models = n_models
        self.hidden_dim = config.hidden_dim
        self.normalize_brain = config.normalize_brain
        self.normalize_image = config.normalize_image

    def __reduce__(self):
        """Pickled as its constructor's arguments and its state dict: fitted models travel from the fit
        worker to the embedding workers this way (parametrized encoders cannot be pickled whole)."""
        device = str(next(self.parameters()).device)
        state = {name: value.detach().cpu() for name, value in self.state_dict().items()}
        return _rebuild_stack, (self._arguments, state, device)

    def embed_brain(self, x: torch.Tensor, members=None) -> torch.Tensor:
        z = self.brain_proj(self.encoder(x, members), members)
        return F.normalize(z, dim=-1) if self.normalize_brain else z

    def embed_images(self, ys: Sequence[torch.Tensor], members=None) -> torch.Tensor:
        if self.mix_logits is None:
            z = self.image_heads[0](ys[0], members)
        else:
            logits = self.mix_logits if members is None else self.mix_logits[members]
            weights = torch.softmax(logits, -1)
            parts = [F.normalize(head(y, members), dim=-1) for head, y in zip(self.image_heads, ys)]
            z = sum(weights[:, j, None, None] * part for j, part in enumerate(parts))
        return F.normalize(z, dim=-1) if self.normalize_image else z

    def loss(self, x: torch.Tensor, ys: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-model symmetric InfoNCE, shape (K,)."""
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        return info_nce(self.embed_brain(x), self.embed_images(ys), scale)


def info_nce(brain: torch.Tensor, images: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """CLIP's symmetric InfoNCE of paired embeddings: row ``i`` of ``brain`` belongs with row ``i`` of ``images``.

    ``brain`` and ``images`` are ``(B, D)``, or ``(K, B, D)`` for K models at once with ``scale`` of
    shape ``(K,)``; the embeddings are used as given (normalise them first for cosine logits).
    Returns the loss, a scalar or one per model.
    """
    single = brain.ndim == 2
    if single:
        brain, images = brain[None], images[None]
    scale = torch.as_tensor(scale, dtype=brain.dtype, device=brain.device).reshape(-1)
    logits = scale[:, None, None] * brain @ images.transpose(1, 2)
    k, b, _ = logits.shape
    labels = torch.arange(b, device=logits.device).repeat(k)
    rows = F.cross_entropy(logits.reshape(k * b, b), labels, reduction="none").view(k, b).mean(1)
    cols = F.cross_entropy(logits.transpose(1, 2).reshape(k * b, b), labels, reduction="none").view(k, b).mean(1)
    loss = (rows + cols) / 2
    return loss[0] if single else loss


def _rebuild_stack(arguments: tuple, state: dict[str, torch.Tensor], device: str) -> AlignmentStack:
    """Unpickle an :class:`AlignmentStack` (see its ``__reduce__``), on its device where there is one."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    model = AlignmentStack(*arguments, torch.device("cpu"))
    model.load_state_dict(state)
    return model.to(device).eval()


@contextlib.contextmanager
def _read_only_arrays_ok() -> Iterator[None]:
    """Silences PyTorch's warning on tensors made from read-only arrays (the shared training
    responses), where the tensor is only read."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        yield


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


def _resident(arrays: Sequence[np.ndarray], device: torch.device, width: int | None = None,
              dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct arrays stacked on the device (zero-padded to ``width``) and each input's row in it."""
    distinct, index = _unique(arrays)
    with _read_only_arrays_ok():  # stacked into a new tensor below, so never written through
        tensors = [torch.as_tensor(np.asarray(a), dtype=dtype) for a in distinct]
    if width is not None:
        tensors = [F.pad(t, (0, width - t.shape[1])) for t in tensors]
    return torch.stack(tensors).to(device), torch.tensor(index, device=device)[:, None]


def _copy_member(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], k: int) -> None:
    """Copy model ``k``'s tensors of a stack state dict into another (stacked tensors lead with the model axis)."""
    for name, value in source.items():
        if value.ndim:
            target[name][k].copy_(value[k])


def fit_contrastive(problems: Sequence[ContrastiveProblem], config: TrainingConfig, *,
                    device: str | torch.device = "cpu", description: str = "Training") -> TrainedStack:
    """Train one model per problem, all in one batched computation.

    All problems must have the same number of samples, response shape and number of target layers
    (true for the models of one protocol run). Inputs shared between problems (the same array
    object) are stored on the device once. With ``config.select_epoch``, every problem needs a
    ``validation`` set; the returned stack holds each model's best-validation epoch and
    :func:`last_epoch` of the result gives the final epoch's weights.
    """
    device = torch.device(device)
    if len({(len(p.brain), p.brain.shape[1:], len(p.targets)) for p in problems}) != 1:
        raise InvalidInputError("fit_contrastive needs problems with equal sample counts, response shapes "
                                "and numbers of target layers.")
    if config.select_epoch and any(p.validation is None for p in problems):
        raise InvalidInputError("select_epoch needs a validation set for every problem.")
    n, (n_channels, n_times), n_layers = len(problems[0].brain), problems[0].brain.shape[1:], len(problems[0].targets)
    k = len(problems)
    dims = [[t.shape[1] for t in p.targets] for p in problems]

    x_all, brain_src = _resident([p.brain for p in problems], device)
    i_all, index_src = _resident([p.image_index for p in problems], device, dtype=torch.int64)
    seeds = [p.seed for p in problems]
    model = AlignmentStack(config, k, n_channels, n_times, dims, seeds, device).to(device)
    logger.info("Encoder %s on %d channels x %d samples: %s trainable parameters per model.", config.encoder,
                n_channels, n_times, f"{count_parameters(model.encoder, k):,}")
    targets = [_resident([p.targets[j] for p in problems], device, model.image_widths[j]) for j in range(n_layers)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  **({"fused": True} if device.type == "cuda" else {"foreach": True}))
    order_gens = [torch.Generator().manual_seed(s + 2) for s in seeds]
    batch = min(config.batch_size, n)
    steps = math.ceil(n / batch)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    loss_fn = torch.compile(model.loss, dynamic=False) if compile_requested() else model.loss
    history = np.zeros((config.epochs, k))
    val_history = np.full((config.epochs, k), -np.inf) if config.select_epoch else None
    best_state = copy.deepcopy(model.state_dict()) if config.select_epoch else None
    best_epoch = [0] * k
    start = time.perf_counter()
    with progress(f"{description} ({k} model{'s' * (k > 1)})", total=config.epochs) as advance:
        for epoch in range(config.epochs):
            model.train()
            order = torch.stack([torch.randperm(n, generator=g) for g in order_gens]).to(device)
            total = torch.zeros(k, device=device)
            for step in range(steps):
                idx = order[:, step * batch:(step + 1) * batch]
                if idx.shape[1] < 2:  # a one-sample batch has no negatives
                    continue
                xb = x_all[brain_src, idx]
                rows = i_all[index_src, idx]
                ybs = [y_all[src, rows] for y_all, src in targets]
                with autocast:
                    losses = loss_fn(xb, ybs)
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()
                optimizer.step()
                total += losses.detach().float()
            history[epoch] = (total / steps).cpu().numpy()
            if config.select_epoch:
                _track_best(model, problems, val_history, best_state, best_epoch, epoch, device, config, dims)
            advance(1)
    model.eval()
    stack = TrainedStack(model, config, dims, history, time.perf_counter() - start, device, val_history)
    if not config.select_epoch:
        return stack
    last = copy.deepcopy(model)
    model.load_state_dict(best_state)
    stack.best_epoch = [e + 1 for e in best_epoch]
    stack.last = TrainedStack(last, config, dims, history, stack.seconds, device, val_history)
    return stack


def _track_best(model: AlignmentStack, problems: Sequence[ContrastiveProblem], val_history: np.ndarray,
                best_state: dict, best_epoch: list[int], epoch: int, device: torch.device,
                config: TrainingConfig, dims: list[list[int]]) -> None:
    """Score every model on its validation set and snapshot those that improved."""
    model.eval()
    probe = TrainedStack(model, config, dims, np.zeros((1, len(problems))), 0.0, device)
    current = model.state_dict()
    for k, problem in enumerate(problems):
        val = problem.validation
        member = probe.member(k)
        gallery, targets = np.unique(val.image_index, return_inverse=True)
        result = retrieve(member.embed_brain(val.brain), member.embed_images([t[gallery] for t in val.targets]),
                          targets)
        score = metric(val.metric).selection_score(result)
        val_history[epoch, k] = score
        if score > val_history[:epoch, k].max(initial=-np.inf):
            _copy_member(current, best_state, k)
            best_epoch[k] = epoch


def smooth_channels(responses: np.ndarray, kernel: int, probability: float, seed: int) -> np.ndarray:
    """A copy of ``(n, channels, times)`` responses where each (response, channel) is, with ``probability``,
    replaced by its moving average over ``kernel`` samples (zero-padded at the ends, same length).

    The EEG augmentation of NeuroBridge and SAMGA, drawn once from ``seed`` (they draw it once when
    the training data is loaded and keep it for every epoch).
    """
    if kernel < 1 or not 0.0 <= probability <= 1.0:
        raise InvalidInputError(f"smooth_channels needs kernel >= 1 and probability in [0, 1], got {kernel}, "
                                f"{probability}.")
    out = np.array(responses, dtype=np.float32)
    chosen = np.random.default_rng([seed, 0x5300]).random(out.shape[:2]) < probability
    if chosen.any():
        window = np.ones(kernel, dtype=np.float64) / kernel
        rows = out[chosen]
        out[chosen] = np.apply_along_axis(lambda row: np.convolve(row, window, mode="same"), -1, rows)
    return out


class ContrastiveAligner(Aligner):
    """A trained contrastive model aligned to one backbone layer, or to several mixed layers.

    ``selection`` holds what the method that trained it selected on validation (curve, chosen
    parameters); :meth:`report` adds the layers, epochs and sizes the model knows itself.
    """

    def __init__(self, model: TrainedModel, layers: Sequence[LayerRef],
                 alternatives: dict[str, Aligner] | None = None) -> None:
        self.model = model
        self.layers = list(layers)
        self.selection = AlignerReport()
        self._alternatives = dict(alternatives or {})

    def embed_brain(self, responses: np.ndarray) -> np.ndarray:
        return self.model.embed_brain(responses)

    def embed_images(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.model.embed_images([features[ref.key] for ref in self.layers])

    def alternatives(self) -> dict[str, Aligner]:
        return self._alternatives

    def report(self) -> AlignerReport:
        mixed = len(self.layers) > 1
        weights = [round(w, 6) for w in self.model.layer_weights] if mixed else [None]
        stack = self.model.stack
        update: dict[str, object] = {
            "layers": [LayerUse.of(ref, w) for ref, w in zip(self.layers, weights)],
            "n_parameters": self.model.n_parameters,
            "details": {"encoder": stack.config.encoder, "encoder_parameters": self.model.n_encoder_parameters,
                        "final_train_loss": round(self.model.final_loss, 6), "train_seconds": round(stack.seconds, 3)}
            | self.selection.details,
        }
        if stack.best_epoch is not None:
            update["selected_epoch"] = stack.best_epoch[self.model.index]
            update["validation_by_epoch"] = [round(float(v), 6) for v in stack.validation_history[:, self.model.index]]
        return self.selection.model_copy(update=update)


@dataclass(frozen=True)
class AlignmentJob:
    """One contrastive model to train: a unit's data aligned to one layer, or to several mixed layers.

    ``targets`` replaces the image features trained against (per layer key, rows as in
    ``unit.features``), e.g. features of views of the training images (:mod:`eegbench.views`);
    validation always scores against ``unit.features``, the images as shown, as the test does.
    """

    unit: TrainingData
    layers: Sequence[LayerRef]
    targets: Mapping[str, np.ndarray] | None = None


def _validation_set(unit: TrainingData, layers: Sequence[LayerRef]) -> ValidationSet:
    return ValidationSet(unit.val.responses, [unit.features[ref.key] for ref in layers], unit.val.image_index,
                         unit.validation_metric)


def fit_alignments(jobs: Sequence[AlignmentJob], config: TrainingConfig, *, use_validation: bool = True,
                   description: str = "Training") -> list[ContrastiveAligner]:
    """Train one contrastive model per job, batched into as few stacks as possible.

    Parameters
    ----------
    jobs : sequence of AlignmentJob
        What to train: each job's unit, aligned to its layer (or to its several layers, mixed).
        Jobs of several units, and several jobs of one unit, train together.
    config : TrainingConfig
        Hyperparameters. With ``select_epoch``, models train on the training part only, the epoch
        with the best validation score is kept, and the last epoch is offered as the alternative
        ``"last_epoch"`` (the harness scores both).
    use_validation : bool
        If True (and no epoch is selected), train on training + validation responses, e.g. after a
        selection is made or when nothing is selected; if False, train on the training part only
        (to score on validation).

    Returns
    -------
    list of ContrastiveAligner
        One per job, in order.
    """
    problems = []
    combined: dict[tuple[int, int], Split] = {}  # units sharing their responses share the concatenation too
    for job in jobs:
        unit, part = job.unit, job.unit.train
        if use_validation and not config.select_epoch:
            key = (id(unit.train), id(unit.val))
            if key not in combined:
                combined[key] = unit.all()
            part = combined[key]
        val = _validation_set(unit, job.layers) if config.select_epoch else None
        targets = job.targets if job.targets is not None else unit.features
        problems.append(ContrastiveProblem(part.responses, [targets[r.key] for r in job.layers],
                                           part.image_index, unit.seed, val))
    out: list[ContrastiveAligner | None] = [None] * len(jobs)
    groups: dict[tuple, list[int]] = {}
    for i, problem in enumerate(problems):  # one stack per sample count, response shape and layer count
        groups.setdefault((len(problem.brain), problem.brain.shape[1:], len(problem.targets)), []).append(i)
    for members in groups.values():
        stack = fit_contrastive([problems[i] for i in members], config, device=jobs[0].unit.device,
                                description=description)
        for k, i in enumerate(members):
            refs = jobs[i].layers
            alternatives = {"last_epoch": ContrastiveAligner(stack.last.member(k), refs)} if config.select_epoch else {}
            out[i] = ContrastiveAligner(stack.member(k), refs, alternatives=alternatives)
    return out  # type: ignore[return-value]
