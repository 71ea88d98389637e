"""Slice geometry of volumes: which slices along an axis, and which box, hold content."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["content_crop", "occupied_box", "occupied_slice_range"]


def occupied_slice_range(volumes: Any, dim: int) -> tuple[int, int] | None:
    """``(first, stop)``: the slices along ``dim`` that hold content in any volume.

    A slice holds content when its values are not all equal (up to 1e-6 of
    the volume's range); volumes are read one at a time, so lazy scans are
    fine. ``None`` when no slice of any volume holds content.

    Parameters
    ----------
    volumes : sequence of arrays of shape (X, Y, Z)
        Indexing with an integer returns one volume.
    dim : int
        The slicing dimension of a volume (0, 1 or 2).

    Examples
    --------
    >>> import numpy as np
    >>> volume = np.zeros((6, 4, 4), np.float32)
    >>> volume[2:4, 1, 1] = 1
    >>> occupied_slice_range([volume], dim=0)
    (2, 4)
    """
    first, last = None, None
    for index in range(len(volumes)):
        volume = np.asarray(volumes[index], dtype=np.float32)
        occupied = _occupied(volume, dim, 1e-6 * max(float(np.ptp(volume)), 1e-12))
        if len(occupied):
            first = occupied[0] if first is None else min(first, occupied[0])
            last = occupied[-1] if last is None else max(last, occupied[-1])
    if first is None:
        return None
    return int(first), int(last) + 1


def _occupied(volume: np.ndarray, dim: int, threshold: float) -> np.ndarray:
    """Indices of the slices along ``dim`` whose values spread by more than ``threshold``."""
    per_slice = np.moveaxis(volume, dim, 0).reshape(volume.shape[dim], -1)
    return np.flatnonzero(per_slice.max(axis=1) - per_slice.min(axis=1) > threshold)


def occupied_box(volumes: Any) -> tuple[tuple[int, int], ...] | None:
    """``((x0, x1), (y0, y1), (z0, z1))``: the box that holds content in any volume.

    Along each axis, the range of the slices that hold content (see
    :func:`occupied_slice_range`); volumes are read one at a time. ``None``
    when no volume holds content.

    Parameters
    ----------
    volumes : sequence of arrays of shape (X, Y, Z)
        Indexing with an integer returns one volume.

    Examples
    --------
    >>> import numpy as np
    >>> volume = np.zeros((6, 5, 4), np.float32)
    >>> volume[2:4, 1:3, 1] = 1
    >>> occupied_box([volume])
    ((2, 4), (1, 3), (1, 2))
    """
    first: list[int | None] = []
    last: list[int | None] = []
    for index in range(len(volumes)):
        volume = np.asarray(volumes[index], dtype=np.float32)
        if not first:
            first, last = [None] * volume.ndim, [None] * volume.ndim
        threshold = 1e-6 * max(float(np.ptp(volume)), 1e-12)
        for dim in range(volume.ndim):
            occupied = _occupied(volume, dim, threshold)
            if len(occupied):
                low, high = first[dim], last[dim]
                first[dim] = occupied[0] if low is None else min(low, occupied[0])
                last[dim] = occupied[-1] if high is None else max(high, occupied[-1])
    if not first or any(a is None for a in first):
        return None
    return tuple((int(a), int(b) + 1) for a, b in zip(first, last))


def content_crop(
    volumes: Any, dim: int, crop_to_content: bool, crop_empty_slices: bool
) -> tuple[tuple[tuple[int, int], ...] | None, tuple[int, int] | None]:
    """What a slice network keeps of every volume: ``(content_box, slice_range)``.

    ``crop_to_content``: the box holding content in any volume
    (:func:`occupied_box`), and its range along ``dim``. Otherwise (or when
    no box is found), with ``crop_empty_slices``, the occupied slice range
    along ``dim`` (:func:`occupied_slice_range`). Neither: ``(None, None)``.

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn.data.slices import content_crop
    >>> volumes = np.zeros((2, 6, 5, 4), np.float32)
    >>> volumes[:, 1:4, 2, 1] = 1
    >>> content_crop(volumes, 0, crop_to_content=False, crop_empty_slices=True)
    (None, (1, 4))
    """
    box = occupied_box(volumes) if crop_to_content else None
    if box is not None:
        return box, box[dim]
    if crop_empty_slices:
        return None, occupied_slice_range(volumes, dim)
    return None, None
