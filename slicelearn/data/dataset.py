"""Torch datasets over volumes: in-memory arrays or lazily read, cached scans.

:class:`VolumeDataset` reads one preprocessed volume per item, so a cohort of
file paths is never in memory at once and loading runs in DataLoader workers
(``iterator_train__num_workers``). A scan that fails to load raises
:class:`VolumeLoadError`, which names the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["VolumeDataset", "VolumeLoadError"]


class VolumeLoadError(ValueError):
    """A scan could not be read or preprocessed; the message names the file."""


class VolumeDataset(Dataset):
    """``(volume, target)`` pairs read one at a time from lazy volumes.

    Parameters
    ----------
    volumes : PreprocessedVolumes or sequence of arrays
        Anything whose integer indexing returns one float32 ``(X, Y, Z)`` volume.
    y : array-like or None
        Targets; ``None`` (prediction) yields NaN placeholders, as skorch does.
    """

    def __init__(self, volumes: Any, y: Any = None) -> None:
        self.volumes = volumes
        self.y = None if y is None else np.asarray(y)
        if self.y is not None and len(self.y) != len(volumes):
            raise ValueError(f"{len(volumes)} volumes but {len(self.y)} targets.")

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        try:
            volume = self.volumes[index]
        except VolumeLoadError:
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise VolumeLoadError(str(exc)) from exc
        target = torch.tensor(float("nan")) if self.y is None else self.y[index]
        return torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32)), target
