"""One way in for data: every estimator reads X and checks y here before it learns.

``X`` is an array of volumes ``(n, X, Y, Z)``, a list of NIfTI paths or
nibabel images, or :class:`~slicelearn.data.PreprocessedVolumes`. Arrays
are read into memory as they are (taken to be on one grid, in RAS order);
scans stay on disk behind a fitted :class:`~slicelearn.data.VolumePreprocessor`
and are read one at a time when a model needs their voxels. The networks
(:mod:`slicelearn.estimators`), the linear readouts
(:mod:`slicelearn.readout`, :mod:`slicelearn.voxels`) and the ensembles all
call :func:`read_volumes` and :func:`check_targets`, so the same input gets
the same checks and the same error wherever it goes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from .io import check_headers, is_image_list, load_volumes
from .preprocessing import PreprocessedVolumes, VolumePreprocessor

__all__ = ["check_targets", "class_encoder", "read_volumes"]


def read_volumes(
    X: Any,
    preprocessing: VolumePreprocessor | None = None,
    fitted: VolumePreprocessor | None = None,
) -> tuple[np.ndarray | PreprocessedVolumes, VolumePreprocessor | None]:
    """``X`` as volumes, and the preprocessor that reads its scans.

    Parameters
    ----------
    X : array of shape (n, X, Y, Z), list of NIfTI paths or images, or PreprocessedVolumes
    preprocessing : VolumePreprocessor, optional
        The estimator's ``preprocessing`` parameter: a template fitted on the
        scans when ``fitted`` is None. Arrays carry no affine, so an array
        with ``preprocessing`` set is an error.
    fitted : VolumePreprocessor, optional
        A fitted model's ``preprocessor_``: scans given to a fitted model
        are read as its training scans were. Without it (in ``fit``, or for
        a model fitted on arrays) scans are only reoriented to RAS.

    Returns
    -------
    volumes : ndarray of shape (n, X, Y, Z), float32, or PreprocessedVolumes
        Arrays in memory; scans as lazy volumes (headers checked here,
        voxels read on access).
    preprocessor : VolumePreprocessor or None
        What reads the scans (None for arrays): ``fit`` stores it as
        ``preprocessor_``.

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn.data.inputs import read_volumes
    >>> volumes, preprocessor = read_volumes(np.ones((2, 4, 5, 6)))
    >>> volumes.shape, volumes.dtype, preprocessor
    ((2, 4, 5, 6), dtype('float32'), None)
    """
    if isinstance(X, PreprocessedVolumes):
        check_headers(X.items, same_shape=X.preprocessor.keeps_native_grid)
        return X, X.preprocessor
    if is_image_list(X):
        items = list(X)
        preprocessor = fitted
        if preprocessor is None:
            # Reorientation only: the network z-scores each volume itself.
            template = preprocessing or VolumePreprocessor(
                target=None, normalize=None, cache_dir=None
            )
            preprocessor = clone(template).fit(items)
        check_headers(items, same_shape=preprocessor.keeps_native_grid)
        return PreprocessedVolumes(items, preprocessor), preprocessor
    if preprocessing is not None:
        raise ValueError(
            "preprocessing applies to NIfTI paths or images; an array carries no affine. "
            "Pass the scans, or preprocess the array yourself."
        )
    return load_volumes(X), None


def check_targets(y: Any, n_volumes: int, owner: str, *, columns: str = "one") -> np.ndarray:
    """``y`` checked against ``n_volumes`` volumes, as ``owner`` (a class name) will use it.

    Parameters
    ----------
    y : array-like of shape (n_volumes,) or (n_volumes, n_outputs)
    n_volumes : int
        How many volumes X holds.
    owner : str
        The estimator's name, for the messages.
    columns : {"one", "any"}, default="one"
        ``"one"``: a single target; a column vector ``(n, 1)`` is taken
        with a ``DataConversionWarning``, as scikit-learn's estimators do,
        and more columns are refused. ``"any"``: 1D or 2D (multi-output
        regression).

    Returns
    -------
    ndarray
        ``y`` as an array: 1D with ``columns="one"``.

    Examples
    --------
    >>> from slicelearn.data.inputs import check_targets
    >>> check_targets([31.0, 45.0], 2, "SliceLinearRegressor")
    array([31., 45.])
    """
    if y is None:
        raise ValueError(f"{owner} requires y to be passed, but the target y is None.")
    y = np.asarray(y)
    if y.ndim == 0 or len(y) != n_volumes:
        count = "no" if y.ndim == 0 else len(y)
        raise ValueError(f"X has {n_volumes} volumes but y has {count} targets.")
    if columns == "any":
        if y.ndim > 2:
            raise ValueError(f"y must be 1D or 2D, got shape {y.shape}.")
        return y
    if y.ndim == 2 and y.shape[1] == 1:
        return column_or_1d(y, warn=True)
    if y.ndim != 1:
        raise ValueError(f"{owner} predicts one target: y must be 1D, got shape {y.shape}.")
    return y


def class_encoder(labels: Any, owner: str) -> LabelEncoder:
    """A ``LabelEncoder`` fitted on class ``labels``, which must name two classes or more.

    Continuous values (ages given to a classifier by mistake) are refused by
    scikit-learn's ``check_classification_targets``.

    Examples
    --------
    >>> from slicelearn.data.inputs import class_encoder
    >>> class_encoder(["CN", "AD", "CN"], "Model").classes_.tolist()
    ['AD', 'CN']
    """
    check_classification_targets(labels)
    encoder = LabelEncoder().fit(labels)
    if len(encoder.classes_) < 2:
        raise ValueError(
            f"{owner} needs at least two classes; y holds one class: {encoder.classes_.tolist()}."
        )
    return encoder
