"""Linear readouts of the voxels themselves: the baseline, and an ensemble member.

:class:`VoxelLinearRegressor` (ridge) and :class:`VoxelLinearClassifier`
(logistic regression) read the same inputs as the slice readouts (arrays,
NIfTI paths or images with a :class:`~slicelearn.data.VolumePreprocessor`),
smooth each volume, average it over blocks of voxels (2 x 2 x 2: 4 mm on the
2 mm template grid), keep the voxels that are non-zero in some training
volume, and fit a linear model with its penalty chosen by internal
cross-validation. The voxels are not standardised one by one: near-constant
voxels at the brain's border would get weights that blow up on new scans.

On IXI brain age this baseline scored 6.47 years MAE on 45 held-out subjects,
against 7.64 for the slice readout chosen by cross-validation on the training
subjects, and the two averaged beat either (:class:`slicelearn.ensemble.EnsembleRegressor`;
``docs/results.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage
from sklearn.utils.validation import check_is_fitted

from ._params import with_shared_parameters
from ._validation import BOOLEAN, Interval
from .data.inputs import check_targets
from .data.preprocessing import VolumePreprocessor
from .feature_cache import RowCache, volume_keys
from .readout import (
    _LinearReadout,
    _LogisticReadout,
    _RidgeReadout,
)
from .splits import check_groups

__all__ = ["VoxelLinearClassifier", "VoxelLinearRegressor", "voxel_blocks"]

#: Ridge penalties for voxels: the features are many and unscaled, so the
#: useful penalties sit higher than the slice readout's.
DEFAULT_VOXEL_ALPHAS = tuple(float(a) for a in np.logspace(0, 7, 29))
#: Inverse penalties for the voxel logistic readout.
DEFAULT_VOXEL_CS = tuple(float(c) for c in np.logspace(-7, 0, 15))


def voxel_blocks(volume: np.ndarray, smoothing: float = 1.0, block: int = 2) -> np.ndarray:
    """One volume smoothed, then averaged over ``block``-voxel cubes.

    Parameters
    ----------
    volume : ndarray of shape (X, Y, Z)
    smoothing : float, default=1.0
        Gaussian sigma in voxels, applied first (0: none).
    block : int, default=2
        Side of the cubes averaged; voxels beyond the last whole cube are dropped.

    Returns
    -------
    ndarray of shape (X // block, Y // block, Z // block), float32

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn.voxels import voxel_blocks
    >>> voxel_blocks(np.ones((9, 8, 6)), smoothing=0, block=2).shape
    (4, 4, 3)
    """
    volume = np.asarray(volume, dtype=np.float32)
    if smoothing:
        volume = ndimage.gaussian_filter(volume, float(smoothing))
    x, y, z = (size // block for size in volume.shape)
    cubes = volume[: x * block, : y * block, : z * block].reshape(x, block, y, block, z, block)
    return cubes.mean(axis=(1, 3, 5), dtype=np.float32)


def _zscore_in_brain(volume: np.ndarray) -> np.ndarray:
    """z-score over the non-zero voxels (all voxels when none is zero)."""
    volume = np.asarray(volume, dtype=np.float64)
    inside = volume != 0
    values = volume[inside] if inside.any() else volume.ravel()
    scale = values.std()
    return np.where(inside, (volume - values.mean()) / (scale if scale > 0 else 1.0), 0.0)


#: Each volume's blocks by (content key, recipe): cross-validation, stacking and
#: grid searches fit the readout many times on the same scans.
_BLOCK_CACHE = RowCache()


class _VoxelLinearReadout(_LinearReadout):
    """Smoothed, block-averaged voxels in the training cohort's support: both voxel readouts."""

    _scale_features = False

    def __init__(
        self,
        *,
        smoothing: float = 1.0,
        block: int = 2,
        standardize: bool = True,
        preprocessing: Any = None,
    ) -> None:
        self.smoothing = smoothing
        self.block = block
        self.standardize = standardize
        self.preprocessing = preprocessing

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "smoothing": [Interval("real", 0)],
        "block": [Interval("int", 1)],
        "standardize": [BOOLEAN],
        "preprocessing": [VolumePreprocessor, None],
    }

    def _voxel_matrix(self, X: Any, reset: bool) -> np.ndarray:
        """``(n, cubes)`` float32: every volume's blocks, in the order of ``X``."""
        self._validate_params()
        volumes = self._volumes(X, reset)
        shape = tuple(volumes.shape[1:])
        if reset:
            self.volume_shape_ = shape
        elif shape != tuple(self.volume_shape_):
            raise ValueError(
                f"X holds volumes of shape {shape}; the model was fitted on {self.volume_shape_}."
            )
        recipe = (float(self.smoothing), int(self.block), bool(self.standardize))
        rows = []
        for index, key in enumerate(volume_keys(volumes)):
            row = _BLOCK_CACHE.get((key, recipe))
            if row is None:
                volume = np.asarray(volumes[index])
                if self.standardize:
                    volume = _zscore_in_brain(volume)
                row = voxel_blocks(volume, self.smoothing, self.block).ravel()
                _BLOCK_CACHE.put((key, recipe), row)
            rows.append(row)
        return np.stack(rows)

    def _training_rows(self, X: Any, y: Any, groups: Any) -> tuple:
        matrix = self._voxel_matrix(X, reset=True)
        y = check_targets(y, len(matrix), type(self).__name__)
        if groups is not None:
            groups = check_groups(groups, len(matrix))
        self.voxel_mask_ = (matrix != 0).any(axis=0)
        if not self.voxel_mask_.any():
            raise ValueError(
                "Every training volume is zero everywhere: there are no voxels to fit."
            )
        return matrix[:, self.voxel_mask_], y, groups

    def _test_features(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "voxel_mask_")
        return self._voxel_matrix(X, reset=False)[:, self.voxel_mask_]


_VOXEL_PARAMS_DOC = """    smoothing : float, default=1.0
        Gaussian smoothing (sigma, in voxels) of every volume before its
        blocks are averaged.
    block : int, default=2
        Side of the voxel cubes averaged into one feature (2: 4 mm features
        from 2 mm volumes).
    standardize : bool, default=True
        z-score every volume over its non-zero (brain) voxels first, over all
        voxels if none is zero.
    preprocessing : VolumePreprocessor or None, default=None
        Applied to NIfTI paths or images (see :class:`~slicelearn.SliceCNNRegressor`).
"""


class VoxelLinearRegressor(_RidgeReadout, _VoxelLinearReadout):
    __doc__ = (
        """Ridge regression on smoothed, block-averaged voxels: the baseline for brain age.

    Parameters
    ----------
    alphas : tuple of float, default=10**0 ... 10**7 (29 values)
        Ridge penalties; the one with the best leave-one-out error is kept
        (5-fold CV over subjects with ``groups``).
"""
        + _VOXEL_PARAMS_DOC
        + """
    Attributes
    ----------
    alpha_ : float
        The chosen penalty.
    voxel_mask_ : ndarray of bool
        The blocks (flattened) that are non-zero in some training volume: the features.
    coef_ : ndarray of shape (n_features,)
        Weights on the centred voxel blocks.
    intercept_ : float
    volume_shape_ : tuple of int

    Examples
    --------
    >>> from slicelearn import VoxelLinearRegressor
    >>> from slicelearn.datasets import make_slice_position_task
    >>> X, y = make_slice_position_task(n_subjects=20, random_state=0)
    >>> VoxelLinearRegressor().fit(X, y).predict(X[:3]).shape
    (3,)
    """
    )

    def __init__(self, *, alphas: Sequence[float] = DEFAULT_VOXEL_ALPHAS, **params: Any) -> None:
        super().__init__(**params)
        self.alphas = alphas

    __init__.__signature__ = with_shared_parameters(__init__, _VoxelLinearReadout.__init__)


class VoxelLinearClassifier(_LogisticReadout, _VoxelLinearReadout):
    __doc__ = (
        """Logistic regression on smoothed, block-averaged voxels: the baseline for diagnosis.

    Parameters
    ----------
    Cs : tuple of float, default=10**-7 ... 10**0 (15 values)
        Inverse penalties, chosen by stratified internal cross-validation
        (log loss).
"""
        + _VOXEL_PARAMS_DOC
        + """
    Attributes
    ----------
    classes_ : ndarray
    C_ : float
    voxel_mask_ : ndarray of bool
    coef_ : ndarray of shape (n_classes or 1, n_features)
    intercept_ : ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn import VoxelLinearClassifier
    >>> from slicelearn.datasets import make_slice_position_task
    >>> X, k = make_slice_position_task(n_subjects=20, random_state=0)
    >>> clf = VoxelLinearClassifier().fit(X, np.where(k < 20, "early", "late"))
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """
    )

    def __init__(self, *, Cs: Sequence[float] = DEFAULT_VOXEL_CS, **params: Any) -> None:
        super().__init__(**params)
        self.Cs = Cs

    __init__.__signature__ = with_shared_parameters(__init__, _VoxelLinearReadout.__init__)
