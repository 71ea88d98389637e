"""Small synthetic volumes with a known answer, for examples, tests and the demo.

:func:`make_slice_position_task` puts one bright blob into one sagittal
slice of a noisy volume; the target is that slice's index. A slice model
can only solve it if position information reaches its prediction.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

__all__ = ["make_slice_position_task"]


def make_slice_position_task(
    n_subjects: int = 100,
    shape: tuple[int, int, int] = (40, 32, 32),
    *,
    blob_amplitude: float = 4.0,
    blob_sigma: float = 2.0,
    noise: float = 1.0,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Volumes with a blob in one sagittal slice; the target is that slice index.

    Parameters
    ----------
    n_subjects : int, default=100
        Number of volumes.
    shape : tuple of int, default=(40, 32, 32)
        Volume shape ``(X, Y, Z)``; the blob sits in slice ``X[k]``.
    blob_amplitude : float, default=4.0
        Peak intensity added by the blob, in units of the noise.
    blob_sigma : float, default=2.0
        In-slice Gaussian width of the blob, in voxels.
    noise : float, default=1.0
        Standard deviation of the Gaussian background noise.
    random_state : int, RandomState or None, default=None

    Returns
    -------
    X : ndarray of shape ``(n_subjects,) + shape``, float32
    y : ndarray of shape (n_subjects,), float32
        The index ``k`` of the slice that holds the blob.

    Examples
    --------
    >>> from slicelearn.datasets import make_slice_position_task
    >>> X, y = make_slice_position_task(n_subjects=3, random_state=0)
    >>> X.shape, y.shape
    ((3, 40, 32, 32), (3,))
    >>> int(X[0].max(axis=(1, 2)).argmax()) == int(y[0])
    True
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be positive, got {n_subjects}.")
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive sizes, got {shape}.")
    rng = check_random_state(random_state)
    n_slices, height, width = shape
    X = rng.normal(0.0, noise, size=(n_subjects, *shape)).astype(np.float32)
    k = rng.randint(0, n_slices, size=n_subjects)
    rows, cols = np.mgrid[:height, :width]
    margin = min(height, width) / 4
    for i in range(n_subjects):
        centre_row = rng.uniform(margin, height - margin)
        centre_col = rng.uniform(margin, width - margin)
        blob = np.exp(-((rows - centre_row) ** 2 + (cols - centre_col) ** 2) / (2 * blob_sigma**2))
        X[i, k[i]] += blob_amplitude * blob.astype(np.float32)
    return X, k.astype(np.float32)
