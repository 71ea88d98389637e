"""Frozen-encoder features, computed once and reused.

With ``freeze_encoder=True`` the encoder is a fixed function, so a volume's
slice features ``(S, F)`` never change. This module owns their in-memory
store: one entry per (encoder weights, volume), shared by every epoch, CV
fold and grid-search candidate in the process, so only the projection,
position embedding, pooling and head are trained each epoch.
:class:`RowCache` holds the readouts' one-row-per-volume features (voxel
blocks, a 3D encoder's pooled maps) the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ._progress import progress
from .data.dataset import VolumeDataset
from .data.preprocessing import PreprocessedVolumes, file_digest

__all__ = ["RowCache", "SliceFeatureCache", "shared_feature_cache"]


def encoder_fingerprint(module: torch.nn.Module) -> str:
    """Identity of what a SliceNet caches: fixed encoder weights, axis, input scaling."""
    digest = hashlib.sha256()
    digest.update(f"{type(module.encoder).__name__}:{module.axis}:{module.standardize}".encode())
    digest.update(f"slice_scale={getattr(module, 'slice_scale', 1.0)!r}".encode())
    # Pooling layers hold no weights: their settings must enter the key too.
    digest.update(module.encoder.extra_repr().encode())
    digest.update(repr(getattr(module, "slice_range", None)).encode())
    # With partial freezing only the fixed trunk defines what is cached (its maps).
    stages = getattr(module, "frozen_stages", 0)
    digest.update(f"frozen_stages={stages}".encode())
    fixed = module.frozen_part if stages else module.encoder
    for name, tensor in fixed.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def volume_keys(volumes: Any) -> list[str]:
    """One content key per volume (array bytes, or file digest plus preprocessing recipe).

    A sequence with a ``cache_keys()`` method (augmented copies) names its own keys.
    """
    if hasattr(volumes, "cache_keys"):
        return list(volumes.cache_keys())
    if isinstance(volumes, PreprocessedVolumes):
        recipe = volumes.preprocessor.fingerprint_
        keys = []
        for item in volumes.items:
            if isinstance(item, (str, os.PathLike)):
                source = file_digest(item)
            else:  # a nibabel image in memory
                source = hashlib.sha256(np.asarray(item.dataobj).tobytes()).hexdigest()
            keys.append(hashlib.sha256(json.dumps([source, recipe]).encode()).hexdigest())
        return keys
    return [
        hashlib.sha256(
            np.ascontiguousarray(volume).tobytes() + str(volume.shape).encode()
        ).hexdigest()
        for volume in volumes
    ]


class SliceFeatureCache:
    """An LRU store of per-volume slice features, bounded in bytes.

    Parameters
    ----------
    max_bytes : int, default=4 GiB
    """

    def __init__(self, max_bytes: int = 4 << 30) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self.computed = 0  # volumes encoded so far, for tests and benchmarks

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def features(
        self,
        module: torch.nn.Module,
        volumes: Any,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
        num_workers: int = 0,
        group: Any = None,
    ) -> torch.Tensor:
        """Slice features ``(n, S, F)`` of ``volumes`` (frozen-trunk maps ``(n, S, C, h, w)``
        with partial freezing), encoding only the missing ones.

        With ``group`` (a :class:`slicelearn.distributed.ProcessGroup` of several
        processes), each process encodes every ``world_size``-th volume and the
        processes exchange their features: the one-off encoding is shared out.
        """
        encoder_key = encoder_fingerprint(module)
        keys = [f"{encoder_key}:{key}" for key in volume_keys(volumes)]
        loading = (batch_size, device, num_workers)
        if group is not None and group.world_size > 1:
            return self._shared_out(module, volumes, keys, loading, group)
        return self._stored_or_encoded(module, volumes, keys, loading)

    def _stored_or_encoded(self, module, volumes, keys, loading) -> torch.Tensor:
        """Features of ``volumes`` (keyed ``keys``): from the store, or encoded and stored."""
        # Collected here rather than read back from the store: a call whose
        # features exceed max_bytes evicts some of its own entries.
        found: dict[int, torch.Tensor] = {}
        for index, key in enumerate(keys):
            if key in self._entries:
                self._entries.move_to_end(key)
                found[index] = self._entries[key]
        missing = [i for i in range(len(keys)) if i not in found]
        if missing:
            subset = (
                volumes[missing]
                if isinstance(volumes, PreprocessedVolumes)
                else [volumes[i] for i in missing]
            )
            encoded = self._encode(module, subset, *loading)
            for index, features in zip(missing, encoded):
                found[index] = features.clone()  # not a view that keeps the whole batch
                self._store(keys[index], found[index])
        return torch.stack([found[i] for i in range(len(keys))])

    def _shared_out(self, module, volumes, keys, loading, group) -> torch.Tensor:
        """Each process encodes every ``world_size``-th volume; all exchange their features."""
        import torch.distributed as dist

        mine = list(range(group.rank, len(volumes), group.world_size))
        subset = volumes[mine]  # an array or lazy scans: both take a list of indices
        local = self._stored_or_encoded(module, subset, [keys[i] for i in mine], loading).cpu()
        parts: list[torch.Tensor | None] = [None] * group.world_size
        dist.all_gather_object(parts, local)
        features = torch.empty((len(volumes), *local.shape[1:]), dtype=local.dtype)
        for rank, part in enumerate(parts):
            features[rank :: group.world_size] = part
        for key, volume_features in zip(keys, features):
            self._store(key, volume_features.clone())
        return features

    def _encode(self, module, volumes, batch_size, device, num_workers) -> torch.Tensor:
        # Its own generator: encoding must not shift the training shuffle's RNG stream.
        loader = DataLoader(
            VolumeDataset(volumes),
            batch_size=batch_size,
            num_workers=num_workers,
            generator=torch.Generator(),
        )
        was_training = module.training
        module.eval()
        chunks = []
        counter = progress("encoding slice features", len(volumes))
        try:
            with torch.inference_mode():
                for batch, _ in loader:
                    chunks.append(module.encode_frozen(batch.to(device)).float().cpu())
                    counter.update(sum(len(chunk) for chunk in chunks), "scans")
        finally:
            module.train(was_training)
            counter.close()
        self.computed += sum(len(chunk) for chunk in chunks)
        return torch.cat(chunks)

    def _store(self, key: str, features: torch.Tensor) -> None:
        if key in self._entries:  # the same volume twice in one call
            return
        self._entries[key] = features
        self._bytes += features.numel() * features.element_size()
        while self._bytes > self.max_bytes and len(self._entries) > 1:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.numel() * evicted.element_size()


_SHARED = SliceFeatureCache()


class RowCache:
    """Feature rows by key, least recently used first out past a byte budget.

    A readout that computes one row per volume (voxel blocks, a 3D encoder's
    pooled maps) keeps them here under (the volume's content key, its
    recipe): cross-validation, stacking and grid searches then compute each
    scan's row once per recipe.

    Parameters
    ----------
    max_bytes : int, default=1 GiB
        The rows kept together; past it the least recently used go first.
    """

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._rows: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                self._rows.move_to_end(key)
            return row

    def put(self, key: tuple, row: np.ndarray) -> None:
        row.setflags(write=False)  # shared between fits: nobody may change it
        with self._lock:
            if key in self._rows:
                return
            self._rows[key] = row
            self._bytes += row.nbytes
            while self._bytes > self.max_bytes and len(self._rows) > 1:
                _, dropped = self._rows.popitem(last=False)
                self._bytes -= dropped.nbytes


def shared_feature_cache() -> SliceFeatureCache:
    """The process-wide cache the estimators use."""
    return _SHARED
