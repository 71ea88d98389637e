"""On-disk cache of preprocessed volumes: atomic writes, verified reads.

Each entry is ``<key>.npy`` (the volume, float16 or float32, memory-mappable)
plus ``<key>.json`` (shape, dtype, CRC-32 of the array bytes, source file).
Both are written to temporary files and renamed into place, the ``.npy``
first, so a reader that finds the ``.json`` finds a complete array. An entry
whose metadata is missing or whose array does not match it (truncated,
corrupted, half-written) is rebuilt, never returned.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np

from .._files import data_home, write_atomic

__all__ = ["VolumeCache"]


def resolve_cache_dir(setting: str | os.PathLike | None) -> Path | None:
    """The cache folder for a ``cache_dir`` setting (``"auto"``: the data home)."""
    if setting is None:
        return None
    if isinstance(setting, str) and setting == "auto":
        return data_home() / "cache"
    return Path(setting).expanduser()


class VolumeCache:
    """A folder of preprocessed volumes keyed by content and recipe.

    Parameters
    ----------
    directory : path
        The cache folder; created on first write. It survives restarts.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self._verified: set[str] = set()

    @classmethod
    def from_setting(cls, setting: str | os.PathLike | None) -> VolumeCache | None:
        """A cache for an estimator's ``cache_dir`` setting (``None``: no cache)."""
        directory = resolve_cache_dir(setting)
        return None if directory is None else cls(directory)

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.directory / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.json"

    def get(self, key: str) -> np.ndarray | None:
        """The cached float32 volume for ``key``, or ``None`` when absent or invalid."""
        array_path, meta_path = self._paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            array = np.load(array_path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):
            return None
        if list(array.shape) != meta.get("shape") or str(array.dtype) != meta.get("dtype"):
            return None
        if key not in self._verified:
            if zlib.crc32(np.ascontiguousarray(array).tobytes()) != meta.get("crc32"):
                return None
            self._verified.add(key)
        return np.asarray(array, dtype=np.float32)

    def put(
        self,
        key: str,
        volume: np.ndarray,
        dtype: str = "float16",
        source: str = "",
        measures: dict[str, float] | None = None,
    ) -> None:
        """Store ``volume`` under ``key`` atomically, with ``measures`` of its source."""
        array_path, meta_path = self._paths(key)
        array_path.parent.mkdir(parents=True, exist_ok=True)
        stored = np.ascontiguousarray(volume, dtype=dtype)
        meta = {
            "shape": list(stored.shape),
            "dtype": str(stored.dtype),
            "crc32": zlib.crc32(stored.tobytes()),
            "source": source,
            "measures": dict(measures or {}),
        }
        write_atomic(array_path, lambda handle: np.save(handle, stored, allow_pickle=False))
        write_atomic(meta_path, lambda handle: handle.write(json.dumps(meta).encode()))
        self._verified.add(key)

    def measures(self, key: str) -> dict[str, float]:
        """The measures stored with ``key``'s volume (empty when none or absent)."""
        try:
            meta = json.loads(self._paths(key)[1].read_text())
        except (OSError, ValueError):
            return {}
        return dict(meta.get("measures") or {})

    def __contains__(self, key: str) -> bool:
        """Whether an entry for ``key`` is written (:meth:`get` still verifies it)."""
        array_path, meta_path = self._paths(key)
        return meta_path.is_file() and array_path.is_file()

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*/*.json")) if self.directory.is_dir() else 0
