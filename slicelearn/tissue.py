"""Classic brain measures as features: tissue fractions (ANTs Atropos) and intracranial volume.

Brain-age studies used these long before deep networks: grey matter shrinks
with age, the ventricles and sulci (CSF) grow, and the intracranial volume
(TIV) sets the scale of all of them. :func:`tissue_fractions` segments a
registered, skull-stripped T1 volume into CSF, grey matter and white matter
with ANTs' Atropos (k-means initialisation, a Markov random field prior;
offline in antspyx) and returns each class's share of the brain.
:class:`TissueRegressor` (ridge) and :class:`TissueClassifier` (logistic
regression) read those fractions and, for scans preprocessed with a brain
mask, the brain volume in the scan's own space that the preprocessing
recorded (deepbet's intracranial volume). They are the classic baseline, and
ensemble members beside the slice models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ._params import with_shared_parameters
from ._tags import volume_input_tags
from ._validation import BOOLEAN, Interval, validate_estimator
from .data.preprocessing import PreprocessedVolumes, VolumePreprocessor
from .feature_cache import RowCache, volume_keys
from .readout import (
    DEFAULT_ALPHAS,
    DEFAULT_CS,
    _LogisticReadout,
    _RidgeReadout,
    _VolumeRowReadout,
)

__all__ = [
    "TISSUES",
    "TissueClassifier",
    "TissueFeatures",
    "TissueRegressor",
    "tissue_fractions",
]

#: The classes of :func:`tissue_fractions`, darkest first on T1.
TISSUES = ("csf", "grey_matter", "white_matter")

#: Each scan's fractions by (content key, MRF smoothing).
_FRACTIONS = RowCache()


def tissue_fractions(volume: np.ndarray, mrf: float = 0.2) -> np.ndarray:
    """CSF, grey-matter and white-matter shares of the brain in a skull-stripped T1 volume.

    Atropos (ANTs) segments the non-zero voxels into 3 classes, initialised
    by k-means on their intensities, with a Markov random field of weight
    ``mrf`` over each voxel's 26 neighbours; 5 iterations. The classes are
    ordered by mean intensity (T1: CSF darkest, white matter brightest). ITK
    runs on one thread and Atropos on its fixed seed, so the result repeats
    bit for bit, in any process.

    Parameters
    ----------
    volume : ndarray of shape (X, Y, Z)
        Zero outside the brain.
    mrf : float, default=0.2
        Weight of the spatial prior (0: intensities alone).

    Returns
    -------
    ndarray of shape (3,), float64
        Fractions in the order of :data:`TISSUES`, summing to 1.
    """
    from .data.registration import import_ants

    volume = np.asarray(volume, dtype=np.float32)
    brain = volume != 0
    if brain.sum() < 27:
        raise ValueError(
            f"The volume has {int(brain.sum())} non-zero voxels: tissue fractions need a "
            "skull-stripped brain (zero outside it)."
        )
    ants = import_ants("tissue_fractions")
    image = ants.from_numpy(volume)
    mask = ants.from_numpy(brain.astype(np.float32))
    # r=0: Atropos' fixed seed. Its default seeds the spatial prior's updates
    # at random, so two processes gave fractions differing by up to 0.01.
    segmentation = ants.atropos(
        a=image, x=mask, i="kmeans[3]", m=f"[{float(mrf)},1x1x1]", c="[5,0]", v=0, r=0
    )["segmentation"].numpy()
    labels = [label for label in (1, 2, 3) if (segmentation == label).any()]
    if len(labels) < 3:
        raise ValueError("Atropos found fewer than 3 tissue classes in this volume.")
    means = [float(volume[segmentation == label].mean()) for label in labels]
    counts = np.array([np.sum(segmentation == labels[i]) for i in np.argsort(means)], float)
    return counts / counts.sum()


class TissueFeatures(TransformerMixin, BaseEstimator):
    """Tissue fractions (and intracranial volume) of each volume, as a feature table.

    What the tissue readouts read, and what a slice readout joins to its
    slice features with ``covariates=TissueFeatures()``
    (:class:`~slicelearn.SliceLinearRegressor`). It learns nothing: ``fit``
    only checks the parameters.

    Parameters
    ----------
    intracranial_volume : bool, default=False
        Add the brain volume in each scan's own space (ml), as the
        preprocessing recorded it from the brain mask: needs NIfTI scans read
        through a :class:`~slicelearn.data.VolumePreprocessor` that
        skull-strips (or is given masks) and caches.
    mrf : float, default=0.2
        Weight of Atropos' spatial prior (:func:`tissue_fractions`).

    Examples
    --------
    >>> from slicelearn.tissue import TissueFeatures
    >>> from slicelearn.datasets import make_atrophy_cohort
    >>> X, _, _ = make_atrophy_cohort(4, voxel_size=4, return_arrays=True, random_state=0)
    >>> TissueFeatures().fit_transform(X).shape
    (4, 3)
    """

    def __init__(self, *, intracranial_volume: bool = False, mrf: float = 0.2) -> None:
        self.intracranial_volume = intracranial_volume
        self.mrf = mrf

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "intracranial_volume": [BOOLEAN],
        "mrf": [Interval("real", 0, 1)],
    }

    def __sklearn_tags__(self):
        tags = volume_input_tags(super().__sklearn_tags__())
        tags.requires_fit = False
        return tags

    def fit(self, X: Any = None, y: Any = None) -> TissueFeatures:
        """Check the parameters; nothing is learned."""
        validate_estimator(self)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``(n, 3)`` fractions in the order of :data:`TISSUES`, or ``(n, 4)`` with the ml.

        ``X`` holds registered, skull-stripped volumes: an array
        ``(n, X, Y, Z)``, or the volumes a
        :class:`~slicelearn.data.VolumePreprocessor` reads (the readouts
        pass theirs).
        """
        validate_estimator(self)
        volumes = X if isinstance(X, PreprocessedVolumes) else np.asarray(X)
        if getattr(volumes, "ndim", 4) != 4:
            raise ValueError(
                f"X has shape {volumes.shape}: TissueFeatures takes volumes of shape "
                "(n, X, Y, Z). For NIfTI scans use TissueRegressor or TissueClassifier with "
                "preprocessing=..., or a slice readout with covariates=TissueFeatures()."
            )
        rows = []
        for index, key in enumerate(volume_keys(volumes)):
            row = _FRACTIONS.get((key, float(self.mrf)))
            if row is None:
                try:
                    row = tissue_fractions(np.asarray(volumes[index]), self.mrf)
                except ValueError as exc:
                    raise ValueError(f"X[{index}]: {exc}") from None
                _FRACTIONS.put((key, float(self.mrf)), row)
            rows.append(row)
        features = np.stack(rows)
        if self.intracranial_volume:
            features = np.column_stack([features, _intracranial_ml(volumes)])
        return features

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The columns of :meth:`transform`."""
        names = [f"{tissue}_fraction" for tissue in TISSUES]
        return np.asarray(names + ["intracranial_ml"] * bool(self.intracranial_volume), object)


def _intracranial_ml(volumes: Any) -> np.ndarray:
    """The brain volume in each scan's own space, as its preprocessing recorded it."""
    if not isinstance(volumes, PreprocessedVolumes):
        raise ValueError(
            "intracranial_volume=True reads the brain volume that the preprocessing "
            "records in each scan's own space: give NIfTI scans with "
            "preprocessing=VolumePreprocessor(skull_strip='deepbet', cache_dir=...) "
            "(arrays on a template grid no longer hold it)."
        )
    values = []
    for index, item in enumerate(volumes.items):
        measure = volumes.preprocessor.native_measures(item).get("native_brain_ml")
        if measure is None:  # not preprocessed yet: its preprocessing records it
            volumes[index]
            measure = volumes.preprocessor.native_measures(item).get("native_brain_ml")
        if measure is None:
            raise ValueError(
                f"X[{index}] ({item}): no brain volume was recorded for this scan; it "
                "needs a brain mask (skull_strip='deepbet' or mask=...) and a cache_dir."
            )
        values.append(float(measure))
    return np.asarray(values)


class _TissueReadout(_VolumeRowReadout):
    """Tissue fractions (and intracranial volume) of each volume: both tissue readouts."""

    def __init__(
        self,
        *,
        intracranial_volume: bool = False,
        mrf: float = 0.2,
        preprocessing: Any = None,
    ) -> None:
        self.intracranial_volume = intracranial_volume
        self.mrf = mrf
        self.preprocessing = preprocessing

    _parameter_constraints: ClassVar[dict[str, list]] = {
        **TissueFeatures._parameter_constraints,
        "preprocessing": [VolumePreprocessor, None],
    }

    def _feature_matrix(self, X: Any, reset: bool) -> np.ndarray:
        """``(n, 3)`` fractions, or ``(n, 4)`` with the intracranial volume in ml."""
        self._validate_params()
        features = TissueFeatures(intracranial_volume=self.intracranial_volume, mrf=self.mrf)
        return features.transform(self._volumes(X, reset))


_TISSUE_PARAMS_DOC = """    intracranial_volume : bool, default=False
        Add the brain volume in each scan's own space (ml), as the
        preprocessing recorded it from the brain mask: needs NIfTI scans with
        a :class:`~slicelearn.data.VolumePreprocessor` that skull-strips (or
        is given masks) and caches.
    mrf : float, default=0.2
        Weight of Atropos' spatial prior (:func:`tissue_fractions`).
    preprocessing : VolumePreprocessor or None, default=None
        Applied to NIfTI paths or images (see :class:`~slicelearn.SliceCNNRegressor`);
        the segmentation expects registered, skull-stripped volumes
        (:func:`slicelearn.presets.recommended_preprocessing`).
"""


class TissueRegressor(_RidgeReadout, _TissueReadout):
    __doc__ = (
        """Ridge regression on tissue fractions (and intracranial volume): the classic baseline.

    Parameters
    ----------
    alphas : tuple of float, default=10**-1 ... 10**7 (17 values)
        Ridge penalties; the one with the best leave-one-out error is kept
        (5-fold CV over subjects with ``groups``).
"""
        + _TISSUE_PARAMS_DOC
        + """
    Attributes
    ----------
    alpha_ : float
    coef_ : ndarray of shape (3,) or (4,)
        Weights on the standardised CSF, grey- and white-matter fractions
        (and intracranial volume).
    intercept_ : float
    feature_mean_, feature_scale_ : ndarray
        The training features' means and SDs.

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn import TissueRegressor
    >>> from slicelearn.datasets import make_atrophy_cohort
    >>> X, _, labels = make_atrophy_cohort(12, voxel_size=4, return_arrays=True, random_state=0)
    >>> model = TissueRegressor().fit(X, labels["age"].to_numpy())
    >>> model.coef_.shape
    (3,)
    """
    )

    def __init__(self, *, alphas: Sequence[float] = DEFAULT_ALPHAS, **params: Any) -> None:
        super().__init__(**params)
        self.alphas = alphas

    __init__.__signature__ = with_shared_parameters(__init__, _TissueReadout.__init__)


class TissueClassifier(_LogisticReadout, _TissueReadout):
    __doc__ = (
        """Logistic regression on tissue fractions (and intracranial volume).

    Parameters
    ----------
    Cs : tuple of float, default=10**-5 ... 10**1 (7 values)
        Inverse penalties, chosen by stratified internal cross-validation
        (log loss).
"""
        + _TISSUE_PARAMS_DOC
        + """
    Attributes
    ----------
    classes_ : ndarray
    C_ : float
    coef_ : ndarray of shape (n_classes or 1, 3 or 4)
    intercept_ : ndarray
    feature_mean_, feature_scale_ : ndarray

    Examples
    --------
    >>> from slicelearn import TissueClassifier
    >>> from slicelearn.datasets import make_atrophy_cohort
    >>> X, _, labels = make_atrophy_cohort(12, voxel_size=4, return_arrays=True, random_state=0)
    >>> clf = TissueClassifier().fit(X, labels["diagnosis"].to_numpy())
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """
    )

    def __init__(self, *, Cs: Sequence[float] = DEFAULT_CS, **params: Any) -> None:
        super().__init__(**params)
        self.Cs = Cs

    __init__.__signature__ = with_shared_parameters(__init__, _TissueReadout.__init__)
