"""How a slice network's X becomes the dataset it iterates: one router for every entry point.

:class:`VolumeRoutingMixin` gives the network estimators ``get_dataset``
(skorch's hook), ``volume_dataset`` and ``iter_volumes`` (the public views
of the volumes), all through one private router: X is read once by
:func:`slicelearn.data.inputs.read_volumes`, then served as volumes (scans
read lazily, arrays as they are) or, for a frozen encoder, as the slice
features computed once per volume (:mod:`slicelearn.feature_cache`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from skorch.dataset import Dataset
from skorch.utils import is_dataset

from .data.dataset import VolumeDataset
from .data.inputs import read_volumes
from .data.preprocessing import PreprocessedVolumes
from .distributed import process_group
from .feature_cache import shared_feature_cache
from .nn.slicenet import slice_axis_dim

__all__ = ["VolumeRoutingMixin"]


class VolumeRoutingMixin:
    """X read and routed for a skorch net whose module is a :class:`~slicelearn.nn.SliceNet`."""

    def _check_X(self, X: Any, reset: bool) -> np.ndarray | PreprocessedVolumes:
        """Validate X: an in-memory float32 array, or lazy volumes for scans."""
        fitted = None if reset else getattr(self, "preprocessor_", None)
        volumes, preprocessor = read_volumes(X, self.preprocessing, fitted)
        shape = volumes.shape[1:]
        slice_dim = slice_axis_dim(self.axis)
        if reset:
            self.preprocessor_ = preprocessor
            self.volume_shape_ = tuple(shape)
            self.n_slices_ = int(shape[slice_dim - 1])
        elif self.position_embedding == "learned" and shape[slice_dim - 1] != self.n_slices_:
            raise ValueError(
                f"The model was trained on {self.n_slices_} {self.axis} slices per volume "
                f"and its learned position embedding needs that count; X has "
                f"{shape[slice_dim - 1]}. Resample X to the training grid "
                f"{self.volume_shape_}, or train with position_embedding='sinusoidal'."
            )
        return volumes

    def get_dataset(self, X: Any, y: Any = None):
        """The dataset skorch iterates; frozen encoders serve cached slice features.

        Predictions (and grid-search scoring) of a frozen-encoder model then reuse
        the features of volumes seen before instead of running the encoder again.
        """
        return self._dataset(X, y, encoded=bool(self.freeze_encoder) and self.initialized_)

    def volume_dataset(self, X: Any, y: Any = None):
        """The volumes of ``X`` as a dataset, read as the network reads them."""
        return self._dataset(X, y, encoded=False)

    def iter_volumes(self, X: Any) -> Iterator[np.ndarray]:
        """The volumes of ``X``, one at a time, as this fitted model reads them.

        Scans are preprocessed as the training scans were; the network's
        own steps (z-scoring each volume, cutting it to the content box)
        happen inside the module and are not applied. Every family of
        estimators has this method (:meth:`SliceLinearRegressor.iter_volumes`).

        Yields
        ------
        ndarray of shape (X, Y, Z), float32
        """
        self.check_is_fitted()
        dataset = self.volume_dataset(X)
        for index in range(len(dataset)):
            yield np.asarray(dataset[index][0], dtype=np.float32)

    def _training_data(self, X: Any, y: Any) -> Any:
        """The training data of ``fit``/``partial_fit``, from an ``X`` they validated."""
        encoded = bool(self.freeze_encoder)
        return self._dataset(X, y, encoded=encoded, checked=True, share_out=True)

    def _dataset(
        self,
        X: Any,
        y: Any = None,
        *,
        encoded: bool,
        checked: bool = False,
        share_out: bool = False,
    ) -> Any:
        """The one data router: ``X`` as the dataset the network iterates.

        A dataset is used as is. Otherwise ``X`` is validated (unless
        ``checked``: ``fit`` has done it) and served as its volumes (lazy
        scans read one at a time, arrays as they are) or, with ``encoded``
        (a frozen encoder), as its slice features (trunk maps with partial
        freezing), computed once per volume and reused by every epoch, fold
        and grid-search candidate in this process. With ``share_out`` (``fit``
        in a data-parallel run, which every process reaches together), the
        processes encode a share each and exchange them; prediction never
        does, as one process may predict alone.
        """
        if is_dataset(X):
            return X
        if not (checked or isinstance(X, PreprocessedVolumes)):
            X = self._check_X(X, reset=False)
        if not encoded:
            if isinstance(X, PreprocessedVolumes):
                return VolumeDataset(X, y)
            return super().get_dataset(X, y)
        features = shared_feature_cache().features(
            self.module_,
            X,
            batch_size=self.batch_size,
            device=self.device,
            num_workers=self.get_params_for("iterator_valid").get("num_workers", 0),
            group=process_group(self.device) if share_out else None,
        )
        if self.module_.frozen_stages:
            return Dataset({"trunk_maps": features}, y)
        return Dataset(features, y)
