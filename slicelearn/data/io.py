"""Reading volumes: arrays, NIfTI paths and nibabel images into one float32 batch.

This module owns the contract on ``X``: what counts as a volume, how images
are reoriented (RAS canonical, so the slicing axes mean what they say), and
the errors that name the offending file or index.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

__all__ = ["VolumeInput", "check_volume_array", "load_image", "load_volumes"]

VolumeInput = np.ndarray | Sequence[str | os.PathLike | nib.spatialimages.SpatialImage]


def _describe(item: Any, index: int) -> str:
    if isinstance(item, (str, os.PathLike)):
        return f"X[{index}] ({os.fspath(item)})"
    return f"X[{index}]"


def load_image(
    item: str | os.PathLike | nib.spatialimages.SpatialImage, index: int = 0
) -> np.ndarray:
    """Load one NIfTI path or nibabel image as a RAS-canonical float32 3D array.

    Parameters
    ----------
    item : path or nibabel image
    index : int, default=0
        Position of ``item`` in ``X``, used in error messages.

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    ValueError
        If the file is not a readable NIfTI image, or the image is not 3D.
    """
    where = _describe(item, index)
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"{where}: no such file.")
        try:
            image = nib.load(path)
        except Exception as exc:
            raise ValueError(f"{where} is not a readable NIfTI image: {exc}") from exc
    elif isinstance(item, nib.spatialimages.SpatialImage):
        image = item
    else:
        raise TypeError(
            f"{where} is a {type(item).__name__}; expected a NIfTI path or a nibabel image."
        )
    if len(image.shape) == 4 and image.shape[3] == 1:
        image = image.slicer[..., 0]
    if len(image.shape) != 3:
        raise ValueError(
            f"{where} has shape {image.shape}; expected a 3D volume (or 4D with a single volume)."
        )
    try:
        image = nib.as_closest_canonical(image)
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as exc:
        raise ValueError(f"{where}: cannot read the voxel data: {exc}") from exc
    return data


def check_volume_array(volumes: np.ndarray) -> np.ndarray:
    """Check a ``(n, X, Y, Z)`` or ``(n, 1, X, Y, Z)`` array; return float32 ``(n, X, Y, Z)``.

    Raises
    ------
    ValueError
        On a wrong number of dimensions, an empty batch, or non-finite voxels
        (naming the first bad index).
    """
    volumes = np.asarray(volumes)
    if volumes.dtype == object or not (
        np.issubdtype(volumes.dtype, np.number) or volumes.dtype == bool
    ):
        raise TypeError(f"X must hold numbers, got dtype {volumes.dtype}.")
    if volumes.ndim == 5 and volumes.shape[1] == 1:
        volumes = volumes[:, 0]
    if volumes.ndim != 4:
        raise ValueError(
            f"X must be a 4D array (n_subjects, X, Y, Z) or 5D with one channel, "
            f"or a list of NIfTI paths or images; got an array of shape {volumes.shape}."
        )
    if volumes.shape[0] == 0:
        raise ValueError("X is empty: no volumes were given.")
    if min(volumes.shape[1:]) == 0:
        raise ValueError(f"X holds empty volumes of shape {volumes.shape[1:]}.")
    volumes = volumes.astype(np.float32, copy=False)
    finite = np.isfinite(volumes.reshape(len(volumes), -1)).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"X[{bad}] contains NaN or infinite voxels.")
    return volumes


def load_volumes(X: VolumeInput) -> np.ndarray:
    """Turn ``X`` into a float32 array ``(n_subjects, X, Y, Z)``.

    Parameters
    ----------
    X : array-like, or sequence of paths or nibabel images
        A 4D array ``(n, X, Y, Z)`` (or 5D with one channel), taken to be in
        RAS orientation already, or a sequence of NIfTI file paths or nibabel
        images, which are reoriented to RAS canonical.

    Returns
    -------
    ndarray of shape (n_subjects, X, Y, Z), float32

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn.data import load_volumes
    >>> load_volumes(np.zeros((2, 1, 4, 5, 6))).shape
    (2, 4, 5, 6)
    """
    if isinstance(X, (str, os.PathLike)):
        raise TypeError("X must be a sequence of paths, not a single path: wrap it in a list.")
    if hasattr(X, "__array__") or isinstance(X, np.ndarray):
        return check_volume_array(np.asarray(X))
    if not isinstance(X, Sequence):
        raise TypeError(
            f"X must be a 4D array or a sequence of NIfTI paths or images, got {type(X).__name__}."
        )
    if len(X) == 0:
        raise ValueError("X is empty: no volumes were given.")
    if not any(isinstance(item, (str, os.PathLike, nib.spatialimages.SpatialImage)) for item in X):
        return check_volume_array(np.asarray(X))
    first = load_image(X[0], 0)
    volumes = np.empty((len(X), *first.shape), dtype=np.float32)
    volumes[0] = first
    for index in range(1, len(X)):
        data = load_image(X[index], index)
        if data.shape != first.shape:
            raise ValueError(
                f"{_describe(X[index], index)} has shape {data.shape} but X[0] has "
                f"{first.shape}: resample the volumes to one grid first."
            )
        volumes[index] = data
    return check_volume_array(volumes)
