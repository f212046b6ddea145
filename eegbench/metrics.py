"""Retrieval metrics: N-way zero-shot identification of the seen image from brain embeddings.

The harness scores every method with these functions; methods may use them on their own
validation split. Ties are scored as expected under a uniformly random tie-break, so a method that
outputs identical embeddings scores exactly chance (a strict ">" rule would give it 100 %).

Every embedding scored here, by the harness or by a method, honours one contract, checked by
:func:`check_embeddings`: a numpy array (or torch tensor) of real floating-point numbers, of shape
``(n, dim)`` with ``n, dim >= 1``, and finite. Nothing else is cast into it: integer, boolean and
complex values are refused, since casting them would hide a bug (a complex embedding would lose its
imaginary part), and a NaN would otherwise tie with nothing and score as a hit.
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


#: how many row indices an error message lists
_ROWS_SHOWN = 5
_AS_NUMBERS = " (cast them with .astype(np.float32) if they are meant as numbers)"
#: how to fix embeddings of a refused dtype kind
_DTYPE_HINTS = {"c": " (complex values are never cast: return their real part or magnitude yourself)",
                "b": _AS_NUMBERS, "i": _AS_NUMBERS, "u": _AS_NUMBERS,
                "O": " (Python objects: return one numeric array)"}


def check_embeddings(embeddings: object, what: str, n_rows: int | None = None) -> np.ndarray:
    """``embeddings`` as a float64 array, after checking the embedding contract (module docstring).

    Parameters
    ----------
    embeddings : object
        What should be embeddings: a numpy array or a torch tensor.
    what : str
        What they are, to start the error message (``"brain embeddings"``,
        ``"Method 'x': the output of embed_brain"``).
    n_rows : int, optional
        The number of rows they must have (one per embedded input).

    Raises
    ------
    InvalidInputError
        Naming ``what``, the contract it breaks and what was found instead.
    """
    array = _as_numpy(embeddings, what)
    expected = f"({n_rows if n_rows is not None else 'n'}, dim)"
    if array.dtype.kind != "f":
        raise InvalidInputError(f"{what} must be real floating-point numbers; found dtype {array.dtype}"
                                f"{_DTYPE_HINTS.get(array.dtype.kind, '')}.")
    if array.ndim != 2:
        raise InvalidInputError(f"{what} must be a 2-d {expected} array; found shape {array.shape}.")
    if n_rows is not None and array.shape[0] != n_rows:
        raise InvalidInputError(f"{what} must have one row per input, {expected}; found shape {array.shape}.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidInputError(f"{what} must have at least one row and one column, {expected}; "
                                f"found shape {array.shape}.")
    if not np.isfinite(array).all():
        raise InvalidInputError(f"{what} must be finite; found {_non_finite_rows(array)} of the {len(array)} rows "
                                "(training that diverged gives these: try a smaller learning rate).")
    return np.asarray(array, dtype=np.float64)


def _as_numpy(embeddings: object, what: str) -> np.ndarray:
    """A numpy array or torch tensor as a numpy array (a bfloat16 tensor as float32, which numpy has)."""
    if isinstance(embeddings, np.ndarray):
        return embeddings
    import torch

    if isinstance(embeddings, torch.Tensor):
        tensor = embeddings.detach().cpu()
        return (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    raise InvalidInputError(f"{what} must be a numpy array or a torch tensor; found {type(embeddings).__name__}.")


def _non_finite_rows(array: np.ndarray) -> str:
    """Which rows hold NaN and which infinity, e.g. ``NaN in 2 rows (3, 7) and inf in 1 row (9)``."""
    found = []
    for name, test in (("NaN", np.isnan), ("inf", np.isinf)):
        rows = np.flatnonzero(test(array).any(axis=1))
        if len(rows):
            shown = ", ".join(map(str, rows[:_ROWS_SHOWN])) + (", ..." if len(rows) > _ROWS_SHOWN else "")
            found.append(f"{name} in {len(rows)} row{'s' if len(rows) > 1 else ''} ({shown})")
    return " and ".join(found)


def _checked_pair(brain: object, images: object) -> tuple[np.ndarray, np.ndarray]:
    """Brain and image embeddings that honour the contract and have the same width."""
    brain = check_embeddings(brain, "brain embeddings")
    images = check_embeddings(images, "image embeddings")
    if brain.shape[1] != images.shape[1]:
        raise InvalidInputError(f"brain and image embeddings must have the same width (dim); found shapes "
                                f"{brain.shape} and {images.shape}.")
    return brain, images


def cosine_similarity(brain: np.ndarray | torch.Tensor, images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(n_brain, n_images)`` cosine similarities between two sets of embeddings (see :func:`check_embeddings`)."""
    import torch

    brain, images = _checked_pair(brain, images)
    a = torch.as_tensor(np.ascontiguousarray(brain))
    b = torch.as_tensor(np.ascontiguousarray(images))
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
    def ranks(self) -> np.ndarray:
        """Per-trial 1-based rank of the true image, ties counted half (the expected rank under a random tie-break)."""
        return self.n_better + self.n_tied / 2.0 + 1.0

    @property
    def mean_rank(self) -> float:
        """Mean 1-based rank of the true image (ties counted half)."""
        return float(self.ranks.mean())

    @property
    def median_rank(self) -> float:
        """Median 1-based rank of the true image (ties counted half)."""
        return float(np.median(self.ranks))


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

    Raises
    ------
    InvalidInputError
        If the embeddings break the contract of :func:`check_embeddings`, differ in width, or the
        targets are not one gallery index per trial.
    """
    return rank_similarities(cosine_similarity(brain, images), targets)


def rank_similarities(similarities: np.ndarray | torch.Tensor,
                      targets: Sequence[int] | np.ndarray | None = None) -> RetrievalResult:
    """Rank the gallery by an ``(n_trials, n_gallery)`` similarity matrix (higher is more similar), e.g. the
    similarities of several subjects averaged; ``targets`` as in :func:`retrieve`."""
    import torch

    sims = torch.as_tensor(similarities)
    if sims.ndim != 2 or not bool(torch.isfinite(sims).all()):
        raise InvalidInputError(f"Similarities must be a finite 2-d (n_trials, n_gallery) matrix; found shape "
                                f"{tuple(sims.shape)}.")
    n_trials, n_gallery = sims.shape
    if targets is None and n_trials > n_gallery:
        raise InvalidInputError(f"{n_trials} brain embeddings but {n_gallery} image embeddings: pass targets (the "
                                "gallery index of each trial) unless trial i saw gallery image i.")
    targets = torch.arange(n_trials) if targets is None else torch.as_tensor(np.asarray(targets), dtype=torch.long)
    if targets.shape != (n_trials,) or (targets < 0).any() or (targets >= n_gallery).any():
        raise InvalidInputError(f"targets must be {n_trials} gallery indices in [0, {n_gallery}).")
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
    """A retrieval metric: ``top<k>`` accuracy (``k`` set) or the mean or median rank (``k`` None). Get one with
    :func:`metric`."""

    name: str
    k: int | None

    @property
    def higher_is_better(self) -> bool:
        """Top-k accuracy is better higher, ranks lower."""
        return self.k is not None

    def score(self, result: RetrievalResult) -> float:
        """This metric of one retrieval."""
        if self.k is not None:
            return result.top_k(self.k)
        return result.median_rank if self.name == "median_rank" else result.mean_rank

    def selection_score(self, result: RetrievalResult) -> float:
        """The score, negated where lower is better: for every metric higher is better (selection on validation)."""
        value = self.score(result)
        return value if self.higher_is_better else -value

    def chance(self, n_gallery: int) -> float:
        """The expected score of a random ranking of ``n_gallery`` images (for ranks, the middle rank)."""
        return min(self.k, n_gallery) / n_gallery if self.k is not None else (n_gallery + 1) / 2


#: the rank metrics (lower is better)
RANK_METRICS = ("mean_rank", "median_rank")


def metric(name: str) -> Metric:
    """The metric called ``name``: ``top1``, ``top5``... (``top<k>`` for any ``k`` >= 1), ``mean_rank`` or
    ``median_rank``."""
    if name in RANK_METRICS:
        return Metric(name, None)
    match = _TOP_K.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise InvalidInputError(f"Unknown metric {name!r}: metrics are top<k> (top1, top5...), mean_rank and "
                                "median_rank.")
    return Metric(name, int(match.group(1)))
