"""Multivariate noise normalisation (MVNN): whitening channels by their noise covariance.

EEG and MEG channels share noise (volume conduction, the reference); whitening the channels by the
inverse square root of the noise covariance gives every direction of noise the same variance, which
helps linear and contrastive decoders (Guggenmos et al. 2018). The covariance here is the one of
Gifford et al.'s THINGS-EEG2 pipeline: for every epoch, the Ledoit-Wolf shrunk covariance of its
channels over its time points (channels standardised first, then rescaled), averaged over epochs.

Which epochs enter the covariance is a protocol choice: eegbench's tasks use a subject's training
epochs only. Gifford's official preprocessing also averages in the test epochs, which leaks test data
into the normalisation; :mod:`eegbench.pitfalls` measures what that does to scores.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from eegbench._check import InvalidInputError
from eegbench._progress import progress


def _ledoit_wolf():
    try:
        from sklearn.covariance import ledoit_wolf
    except ImportError:
        raise InvalidInputError("Multivariate noise normalisation needs scikit-learn (Ledoit-Wolf shrinkage): "
                                "pip install scikit-learn, or install eegbench[raw].") from None
    return ledoit_wolf


def shrunk_covariance(epoch: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf covariance of one ``(channels, times)`` epoch, on standardised channels, rescaled."""
    samples = epoch.T.astype(np.float64)
    scale = samples.std(0)
    scale[scale == 0] = 1.0
    covariance = _ledoit_wolf()((samples - samples.mean(0)) / scale)[0]
    return scale[:, None] * covariance * scale[None, :]


def noise_covariance(chunks: Iterable[np.ndarray], total: int | None = None,
                     description: str = "Noise covariance") -> np.ndarray:
    """The mean per-epoch shrunk covariance of epochs given in chunks of ``(epochs, channels, times)``.

    ``total`` (the number of epochs, when known) sizes the progress bar.
    """
    _ledoit_wolf()  # fail before the first chunk is read
    sigma, count = None, 0
    with progress(description, total=total) as advance:
        for chunk in chunks:
            for epoch in chunk:
                covariance = shrunk_covariance(epoch)
                sigma = covariance if sigma is None else sigma + covariance
                count += 1
            advance(len(chunk))
    if sigma is None:
        raise InvalidInputError("A noise covariance needs at least one epoch.")
    return sigma / count


def whitening_matrix(covariance: np.ndarray) -> np.ndarray:
    """The inverse square root of a symmetric positive-definite ``(channels, channels)`` covariance."""
    import scipy.linalg

    eigenvalues, vectors = scipy.linalg.eigh(covariance)
    if eigenvalues.min() <= 0:
        raise InvalidInputError("The noise covariance is not positive definite (a flat or duplicated channel?); "
                                "drop such channels from the task's channel list.")
    return (vectors * eigenvalues ** -0.5) @ vectors.T


def noise_whitener(train_epochs: np.ndarray) -> np.ndarray:
    """The whitening matrix of ``(epochs, channels, times)`` training epochs (MVNN over epochs)."""
    return whitening_matrix(noise_covariance([train_epochs], total=len(train_epochs)))


def whiten(responses: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``(n, channels, times)`` responses with their channels whitened by ``matrix``, as float32."""
    return np.einsum("ij,njt->nit", matrix.astype(np.float32), responses, dtype=np.float32)
