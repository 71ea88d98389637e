"""Lazy per-volume transforms with their own cache keys, and input smoothing.

:class:`TransformedVolumes` applies a function to each volume of a sequence
when it is read, and names each result by its source's content key and the
transform's recipe, so frozen features of transformed volumes are cached
like those of any volume (:mod:`slicelearn.feature_cache`).
:func:`smooth_volume` is the Gaussian smoothing the linear readouts apply
to every input (``input_smoothing``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["TransformedVolumes", "smooth_volume"]


def smooth_volume(volume: np.ndarray, sigma: float) -> np.ndarray:
    """``volume`` smoothed with an isotropic Gaussian of ``sigma`` voxels, as float32.

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn.data.transforms import smooth_volume
    >>> spike = np.zeros((9, 9, 9), np.float32)
    >>> spike[4, 4, 4] = 1
    >>> smoothed = smooth_volume(spike, 1.0)
    >>> bool(np.isclose(smoothed.sum(), 1.0, atol=1e-4)), bool(smoothed.max() < 0.1)
    (True, True)
    """
    from scipy import ndimage

    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"the smoothing sigma must be a finite number >= 0, got {sigma!r}.")
    volume = np.asarray(volume, dtype=np.float32)
    if sigma == 0:
        return volume
    return ndimage.gaussian_filter(volume, sigma, mode="constant", cval=0.0)


class TransformedVolumes(Sequence):
    """``transform(volume, key)`` of every volume in ``volumes``, computed on access.

    Parameters
    ----------
    volumes : sequence of arrays or PreprocessedVolumes
    transform : callable
        ``transform(volume, key)`` returns the transformed ``(X, Y, Z)`` array;
        ``key`` is the source volume's content key.
    recipe : str
        What identifies the transform (its name and settings), for cache keys.
    keys : list of str
        One content key per volume (:func:`slicelearn.feature_cache.volume_keys`).
    """

    def __init__(
        self,
        volumes: Any,
        transform: Callable[[np.ndarray, str], np.ndarray],
        recipe: str,
        keys: Sequence[str],
    ) -> None:
        if len(keys) != len(volumes):
            raise ValueError(f"{len(volumes)} volumes but {len(keys)} keys.")
        self.volumes = volumes
        self.transform = transform
        self.recipe = recipe
        self.keys = list(keys)

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, (list, np.ndarray, slice)):
            picked = range(len(self))[index] if isinstance(index, slice) else index
            return [self[int(i)] for i in picked]
        return self.transform(self.volumes[index], self.keys[index])

    def cache_keys(self) -> list[str]:
        """Content keys of the results: the source's key and the recipe."""
        return [hashlib.sha256(f"{key}:{self.recipe}".encode()).hexdigest() for key in self.keys]
