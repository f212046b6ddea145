"""Retrieval metrics: N-way zero-shot identification of the seen image from brain embeddings.

The harness scores every method with these functions; methods may use them on their own
validation split. Ties are scored as expected under a uniformly random tie-break, so a method that
outputs identical embeddings scores exactly chance (a strict ">" rule would give it 100 %).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from eegbench._check import InvalidInputError

if TYPE_CHECKING:  # torch is imported where it computes, so that tasks and boards can name metrics without it
    import torch


def cosine_similarity(brain: np.ndarray | torch.Tensor, images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(n_brain, n_images)`` cosine similarities between two sets of embeddings."""
    import torch

    a = torch.as_tensor(np.ascontiguousarray(brain), dtype=torch.float64)
    b = torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float64)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return a @ b.T


@dataclass(frozen=True)
class RetrievalResult:
    """Per-trial retrieval outcome.

    Attributes
    ----------
    n_better : numpy.ndarray
        For each brain response, how many gallery images scored strictly higher than the true one.
    n_tied : numpy.ndarray
        How many other gallery images scored exactly the same as the true one.
    n_gallery : int
        Size of the gallery (chance top-k accuracy is ``k / n_gallery``).
    """

    n_better: np.ndarray
    n_tied: np.ndarray
    n_gallery: int

    def hits(self, k: int) -> np.ndarray:
        """Per-trial probability that the true image is in the top ``k`` (random tie-break)."""
        return np.clip((k - self.n_better) / (self.n_tied + 1.0), 0.0, 1.0)

    def top_k(self, k: int) -> float:
        """Top-``k`` accuracy in [0, 1]."""
        return float(self.hits(k).mean())

    @property
    def mean_rank(self) -> float:
        """Mean 1-based rank of the true image (ties counted half)."""
        return float((self.n_better + self.n_tied / 2.0).mean() + 1.0)


def retrieve(brain: np.ndarray | torch.Tensor, images: np.ndarray | torch.Tensor,
             targets: Sequence[int] | np.ndarray | None = None) -> RetrievalResult:
    """Rank the gallery ``images`` for each row of ``brain`` by cosine similarity.

    Parameters
    ----------
    brain : array, shape (n_trials, dim)
        Brain embeddings.
    images : array, shape (n_gallery, dim)
        Gallery image embeddings.
    targets : array of int, optional
        Gallery index of the true image of each trial; defaults to ``arange(n_trials)``
        (trial ``i`` saw gallery image ``i``).
    """
    import torch

    sims = cosine_similarity(brain, images)
    n_trials, n_gallery = sims.shape
    targets = torch.arange(n_trials) if targets is None else torch.as_tensor(np.asarray(targets), dtype=torch.long)
    if targets.shape != (n_trials,) or (targets < 0).any() or (targets >= n_gallery).any():
        raise ValueError(f"targets must be {n_trials} gallery indices in [0, {n_gallery}).")
    true = sims[torch.arange(n_trials), targets][:, None]
    better = (sims > true).sum(1)
    tied = (sims == true).sum(1) - 1
    return RetrievalResult(better.numpy().astype(np.int64), tied.numpy().astype(np.int64), n_gallery)


def top_k_accuracy(brain: np.ndarray | torch.Tensor, images: np.ndarray | torch.Tensor, k: int = 1) -> float:
    """Top-``k`` accuracy of retrieving image ``i`` for brain response ``i``."""
    return retrieve(brain, images).top_k(k)


_TOP_K = re.compile(r"top([1-9][0-9]*)")


@dataclass(frozen=True)
class Metric:
    """A retrieval metric: ``top<k>`` accuracy (``k`` set) or the mean rank (``k`` None). Get one with :func:`metric`."""

    name: str
    k: int | None

    @property
    def higher_is_better(self) -> bool:
        """Top-k accuracy is better higher, the mean rank lower."""
        return self.k is not None

    def score(self, result: RetrievalResult) -> float:
        """This metric of one retrieval."""
        return result.top_k(self.k) if self.k is not None else result.mean_rank

    def selection_score(self, result: RetrievalResult) -> float:
        """The score, negated where lower is better: for every metric higher is better (selection on validation)."""
        value = self.score(result)
        return value if self.higher_is_better else -value

    def chance(self, n_gallery: int) -> float:
        """The expected score of a random ranking of ``n_gallery`` images."""
        return min(self.k, n_gallery) / n_gallery if self.k is not None else (n_gallery + 1) / 2


def metric(name: str) -> Metric:
    """The metric called ``name``: ``top1``, ``top5``... (``top<k>`` for any ``k`` >= 1) or ``mean_rank``."""
    if name == "mean_rank":
        return Metric(name, None)
    match = _TOP_K.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise InvalidInputError(f"Unknown metric {name!r}: metrics are top<k> (top1, top5...) and mean_rank.")
    return Metric(name, int(match.group(1)))
