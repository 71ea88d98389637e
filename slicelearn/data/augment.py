"""Random perturbations of preprocessed volumes, for training and test-time augmentation.

:class:`VolumeAugmenter` draws a left-right flip, a small rotation and shift
and a smooth multiplicative intensity field (the shape of a scanner's bias
field) and applies them to one volume. Each draw is seeded by the volume's
content and a copy number, so a volume's ``k``-th copy is the same in every
CV fold and process: its frozen features are computed once and cached.
:class:`AugmentedVolumes` is the lazy sequence of those copies.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from .transforms import TransformedVolumes

__all__ = ["AugmentedVolumes", "VolumeAugmenter"]


class VolumeAugmenter(BaseEstimator):
    """Random flips, rotations, shifts and intensity fields of ``(X, Y, Z)`` volumes.

    Axis 0 is left-right, as in the package's RAS volumes.

    Parameters
    ----------
    flip : bool, default=True
        Mirror left-right with probability one half.
    max_rotation : float, default=5.0
        Degrees; each of the three rotation angles is uniform in ``±max_rotation``.
    max_shift : float, default=3.0
        Voxels; each axis's shift is uniform in ``±max_shift``.
    intensity : float, default=0.1
        Strength of the smooth multiplicative intensity field: a random
        second-order polynomial over the volume scaled so that the field
        lies within ``exp(±intensity)``. ``0`` leaves intensities alone.
    random_state : int, default=0
        Mixed into every copy's seed.

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn.data import VolumeAugmenter
    >>> volume = np.random.default_rng(0).random((12, 14, 10), dtype=np.float32)
    >>> copy = VolumeAugmenter().transform_one(volume, copy=1)
    >>> copy.shape, copy.dtype
    ((12, 14, 10), dtype('float32'))
    >>> bool(np.array_equal(copy, VolumeAugmenter().transform_one(volume, copy=1)))
    True
    """

    def __init__(
        self,
        flip: bool = True,
        max_rotation: float = 5.0,
        max_shift: float = 3.0,
        intensity: float = 0.1,
        random_state: int = 0,
    ) -> None:
        self.flip = flip
        self.max_rotation = max_rotation
        self.max_shift = max_shift
        self.intensity = intensity
        self.random_state = random_state

    def _check(self) -> None:
        for name in ("max_rotation", "max_shift", "intensity"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")

    def recipe(self) -> str:
        """What identifies this augmenter's copies (its parameters), for cache keys."""
        return repr(sorted(self.get_params().items()))

    def transform_one(self, volume: np.ndarray, copy: int, key: str | None = None) -> np.ndarray:
        """The ``copy``-th perturbed version of one volume, as float32.

        ``key`` identifies the volume (a content digest); without it the
        volume's bytes are hashed. The same key, copy and parameters always
        give the same perturbation.
        """
        from scipy import ndimage

        self._check()
        volume = np.asarray(volume, dtype=np.float32)
        if volume.ndim != 3:
            raise ValueError(f"expected one (X, Y, Z) volume, got shape {volume.shape}.")
        if key is None:
            key = hashlib.sha256(volume.tobytes() + str(volume.shape).encode()).hexdigest()
        seed = hashlib.sha256(f"{key}:{copy}:{self.random_state}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(seed[:8], "little"))

        angles = np.deg2rad(rng.uniform(-self.max_rotation, self.max_rotation, 3))
        shift = rng.uniform(-self.max_shift, self.max_shift, 3)
        mirror = bool(self.flip and rng.random() < 0.5)
        linear = _rotation(angles)
        if mirror:
            linear = linear @ np.diag([-1.0, 1.0, 1.0])
        # affine_transform maps output coordinates to input ones: rotate about the centre.
        centre = (np.asarray(volume.shape, dtype=np.float64) - 1) / 2
        offset = centre - linear @ centre - shift
        out = volume
        if mirror or self.max_rotation > 0 or self.max_shift > 0:
            out = ndimage.affine_transform(
                volume, linear, offset=offset, order=1, mode="constant", cval=0.0
            )
        if self.intensity > 0:
            out = out * _smooth_field(volume.shape, self.intensity, rng)
        return np.ascontiguousarray(out, dtype=np.float32)


def _rotation(angles: np.ndarray) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _smooth_field(shape: tuple[int, ...], strength: float, rng: np.random.Generator) -> np.ndarray:
    """``exp`` of a random second-order polynomial in [-1, 1]^3, its peak at ``strength``."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij")
    x, y, z = grids
    terms = (x, y, z, x * y, x * z, y * z, x * x - 1 / 3, y * y - 1 / 3, z * z - 1 / 3)
    log_field = sum(float(w) * t for w, t in zip(rng.normal(size=len(terms)), terms))
    peak = float(np.abs(log_field).max())
    if peak > 0:
        log_field = log_field * (strength / peak)
    return np.exp(log_field).astype(np.float32)


class AugmentedVolumes(TransformedVolumes):
    """The ``copy``-th perturbation of every volume in ``volumes``, computed on access.

    Parameters
    ----------
    volumes : sequence of arrays or PreprocessedVolumes
    augmenter : VolumeAugmenter
    copy : int
        Which copy (1, 2, ...); each is a different draw.
    keys : list of str
        One content key per volume (:func:`slicelearn.feature_cache.volume_keys`).
    """

    def __init__(
        self, volumes: Any, augmenter: VolumeAugmenter, copy: int, keys: Sequence[str]
    ) -> None:
        self.augmenter = augmenter
        self.copy = copy
        super().__init__(
            volumes,
            lambda volume, key: augmenter.transform_one(volume, copy, key=key),
            f"augment:{copy}:{augmenter.recipe()}",
            keys,
        )
