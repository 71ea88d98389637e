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
import scipy.sparse

__all__ = [
    "VolumeInput",
    "canonical_shape",
    "check_headers",
    "check_not_sparse",
    "check_volume_array",
    "check_voxels",
    "describe_item",
    "is_image_list",
    "load_image",
    "load_nifti",
    "load_volumes",
    "read_voxels",
]

VolumeInput = np.ndarray | Sequence[str | os.PathLike | nib.spatialimages.SpatialImage]


def describe_item(item: Any, index: int) -> str:
    """``X[i] (path)`` for error messages."""
    if isinstance(item, (str, os.PathLike)):
        return f"X[{index}] ({os.fspath(item)})"
    return f"X[{index}]"


def load_nifti(
    item: str | os.PathLike | nib.spatialimages.SpatialImage, index: int = 0
) -> nib.spatialimages.SpatialImage:
    """Open one NIfTI path or nibabel image as a 3D image, without reading its voxels.

    A 4D image whose fourth dimension holds a single volume is accepted.

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    ValueError
        If the file is not a readable NIfTI image, or the image is not 3D.
    TypeError
        If ``item`` is neither a path nor a nibabel image.
    """
    where = describe_item(item, index)
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
    return image


def canonical_shape(image: nib.spatialimages.SpatialImage) -> tuple[int, ...]:
    """Shape the image will have in RAS canonical orientation (read from the header)."""
    axes = nib.io_orientation(image.affine)[:, 0].astype(int)
    shape = [0, 0, 0]
    for stored_axis, ras_axis in enumerate(axes):
        shape[ras_axis] = image.shape[stored_axis]
    return tuple(shape)


def read_voxels(image: nib.spatialimages.SpatialImage, where: str) -> np.ndarray:
    """Read an image's voxels as float32, naming ``where`` on failure or bad values."""
    try:
        data = np.asarray(image.get_fdata(dtype=np.float32))
    except Exception as exc:
        raise ValueError(f"{where}: cannot read the voxel data: {exc}") from exc
    check_voxels(data, where)
    return data


def check_voxels(data: np.ndarray, where: str) -> None:
    """Reject NaN or infinite voxels and all-zero volumes, naming ``where``."""
    if not np.isfinite(data).all():
        raise ValueError(f"{where} contains NaN or infinite voxels.")
    if not data.any():
        raise ValueError(f"{where} is all zeros: an empty or failed scan.")


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
        If the file is not a readable NIfTI image, is not 3D, or holds NaN,
        infinite or only zero voxels.
    """
    image = nib.as_closest_canonical(load_nifti(item, index))
    return read_voxels(image, describe_item(item, index))


def check_volume_array(volumes: np.ndarray) -> np.ndarray:
    """Check a ``(n, X, Y, Z)`` or ``(n, 1, X, Y, Z)`` array; return float32 ``(n, X, Y, Z)``.

    Raises
    ------
    ValueError
        On a wrong number of dimensions, an empty batch, or non-finite voxels
        (naming the first bad index).
    """
    volumes = np.asarray(volumes)
    if np.issubdtype(volumes.dtype, np.complexfloating):
        raise ValueError(f"Complex data not supported: X has dtype {volumes.dtype}.")
    if volumes.dtype == object:
        # e.g. a column taken from a pandas table: numbers stored as objects.
        try:
            volumes = volumes.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"X must hold real numbers; converting it failed: {exc}") from exc
    if not (np.issubdtype(volumes.dtype, np.number) or volumes.dtype == bool):
        raise TypeError(f"X must hold real numbers, got dtype {volumes.dtype}.")
    if volumes.ndim == 5 and volumes.shape[1] == 1:
        volumes = volumes[:, 0]
    if volumes.ndim == 3:
        raise ValueError(
            f"X is one volume of shape {volumes.shape}, but X must be a 4D array "
            "(n_subjects, X, Y, Z). Reshape your data: X[np.newaxis] for a single volume."
        )
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
    flat = volumes.reshape(len(volumes), -1)
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"X[{bad}] contains NaN or infinite voxels.")
    empty = ~flat.any(axis=1)
    if empty.any():
        raise ValueError(
            f"X[{int(np.flatnonzero(empty)[0])}] is all zeros: an empty or failed scan."
        )
    return volumes


def check_not_sparse(X: Any) -> None:
    """TypeError for a sparse matrix: volumes are dense."""
    if scipy.sparse.issparse(X):
        raise TypeError("X is a sparse matrix; volumes must be dense arrays (n_subjects, X, Y, Z).")


def is_image_list(X: Any) -> bool:
    """Whether ``X`` is a sequence of NIfTI paths or nibabel images (not an array)."""
    if isinstance(X, (str, os.PathLike, np.ndarray)) or not isinstance(X, Sequence):
        return False
    return len(X) > 0 and isinstance(X[0], (str, os.PathLike, nib.spatialimages.SpatialImage))


def check_headers(items: Sequence[Any], same_shape: bool) -> None:
    """Open every scan's header (not its voxels): existence, NIfTI, 3D, and shape.

    With ``same_shape``, all scans must share the first scan's RAS shape,
    because nothing will resample them.
    """
    if len(items) == 0:
        raise ValueError("X is empty: no volumes were given.")
    first = None
    for index, item in enumerate(items):
        shape = canonical_shape(load_nifti(item, index))
        if first is None:
            first = shape
        elif same_shape and shape != first:
            raise ValueError(
                f"{describe_item(item, index)} has shape {shape} (RAS) but X[0] has {first}: "
                "resample the volumes to one grid first, e.g. with "
                "preprocessing=VolumePreprocessor(target='mni152')."
            )


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
    >>> load_volumes(np.ones((2, 1, 4, 5, 6))).shape
    (2, 4, 5, 6)
    """
    if isinstance(X, (str, os.PathLike)):
        raise TypeError("X must be a sequence of paths, not a single path: wrap it in a list.")
    check_not_sparse(X)
    if hasattr(X, "__array__") or isinstance(X, np.ndarray):
        return check_volume_array(np.asarray(X))
    if not isinstance(X, Sequence):
        raise TypeError(
            f"X must be a 4D array or a sequence of NIfTI paths or images, got {type(X).__name__}."
        )
    if len(X) == 0:
        raise ValueError("X is empty: no volumes were given.")
    if not is_image_list(X):
        shapes = [np.shape(volume) for volume in X]
        for index, shape in enumerate(shapes):
            if shape != shapes[0]:
                raise ValueError(
                    f"X[{index}] has shape {shape}, but X[0] has {shapes[0]}: volumes in one "
                    "array must share a shape. Resample them to one grid first (or pass NIfTI "
                    "paths with preprocessing=VolumePreprocessor(), which does)."
                )
        return check_volume_array(np.asarray(X))
    first = load_image(X[0], 0)
    volumes = np.empty((len(X), *first.shape), dtype=np.float32)
    volumes[0] = first
    for index in range(1, len(X)):
        data = load_image(X[index], index)
        if data.shape != first.shape:
            raise ValueError(
                f"{describe_item(X[index], index)} has shape {data.shape} but X[0] has "
                f"{first.shape}: resample the volumes to one grid first."
            )
        volumes[index] = data
    return check_volume_array(volumes)
