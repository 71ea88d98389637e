"""scikit-learn estimators for the slice network, built on skorch.

:class:`SliceCNNRegressor` (brain age) and :class:`SliceCNNClassifier`
(diagnosis) subclass skorch's nets, as braindecode's ``EEGClassifier`` does:
the architecture choices are first-class parameters that build a
:class:`~slicelearn.nn.SliceNet` at every ``fit``, and skorch's own
parameters (``lr``, ``max_epochs``, ``callbacks``, ``optimizer__*`` ...)
keep their meaning.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, mean_absolute_error
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d
from skorch import NeuralNet, NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import EpochScoring
from skorch.dataset import ValidSplit
from skorch.utils import to_tensor
from torch import nn

from ._params import with_shared_parameters
from ._progress import progress
from ._runtime import cudnn_autotune, host_memory, seeded
from ._skorch_params import SkorchParamsMixin
from ._tags import volume_input_tags
from ._validation import BOOLEAN, RANDOM_STATE, Interval, Options, Satisfies, validate_estimator
from ._volume_routing import VolumeRoutingMixin
from .callbacks import RankZeroPrintLog, RestoreBestWeights, resume_training
from .data.dataset import VolumeLoadError
from .data.inputs import check_targets, class_encoder
from .data.preprocessing import VolumePreprocessor
from .data.slices import content_crop
from .distributed import (
    DataParallelMixin,
    process_group,
)
from .nn.slicenet import PARAMETER_CONSTRAINTS as SLICENET_CONSTRAINTS
from .nn.slicenet import SliceNet, slice_axis_dim
from .precision import PRECISIONS
from .precision import autocast as precision_autocast
from .splits import check_groups, grouped_validation_split

__all__ = ["SliceCNNClassifier", "SliceCNNRegressor"]


# skorch defaults that differ for this model, applied where skorch reads the
# routed parameters (get_params_for) so that __init__ stores only what the user
# gave; a user's own optimizer__weight_decay=... wins.
_ROUTED_DEFAULTS = {
    "optimizer": {"weight_decay": 1e-4},  # the paper's Adam weight decay
    "iterator_train": {"shuffle": True},
}


# Shuffled, seeded validation splits: skorch's default takes the first fifth of
# X in order, which for a cohort sorted by age or diagnosis is a biased split.
_REGRESSOR_SPLIT = ValidSplit(0.2, random_state=0)
_CLASSIFIER_SPLIT = ValidSplit(0.2, stratified=True, random_state=0)


def _valid_mae(net: NeuralNet, X: Any, y: Any) -> float:
    return mean_absolute_error(np.asarray(y).reshape(len(y), -1), net._predict_raw(X))


def _valid_accuracy(net: NeuralNet, X: Any, y: Any) -> float:
    # y holds the encoded labels that training sees; predict returns the originals.
    return accuracy_score(net.classes_[np.asarray(y)], net.predict(X))


def _binary_logit_to_proba(logits: torch.Tensor) -> torch.Tensor:
    positive = torch.sigmoid(logits.reshape(-1))
    return torch.stack([1 - positive, positive], dim=1)


def _architecture_constraints(init: Callable) -> dict[str, list]:
    """SliceNet's constraints of the parameters that ``init`` shares with it."""
    shared = inspect.signature(init).parameters
    return {name: rule for name, rule in SLICENET_CONSTRAINTS.items() if name in shared}


class _SliceNeuralNet(VolumeRoutingMixin, DataParallelMixin, SkorchParamsMixin):
    """The network estimators' base class: a skorch net of a SliceNet, from fit to prediction.

    Reading X lives in :class:`~slicelearn._volume_routing.VolumeRoutingMixin`,
    data-parallel training in :class:`~slicelearn.distributed.DataParallelMixin`,
    skorch-as-scikit-learn plumbing in :class:`~slicelearn._skorch_params.SkorchParamsMixin`,
    and the context of each call (seeding, host memory, cuDNN) in :mod:`slicelearn._runtime`.
    """

    routed_defaults = _ROUTED_DEFAULTS

    def __init__(
        self,
        encoder: str | nn.Module | Callable[[], nn.Module] = "resnet18",
        weights: str | None = "imagenet",
        *,
        pooling: str = "attention",
        position_embedding: str | None = "learned",
        axis: str = "sagittal",
        embed_dim: int = 32,
        attention_heads: int = 4,
        head_hidden: int | None = 64,
        dropout: float = 0.0,
        freeze_encoder: bool | str = False,
        standardize: bool = True,
        feature_layer: str | None = None,
        feature_grid: int = 1,
        slice_scale: float = 1.0,
        train_slices: int | float | None = None,
        crop_empty_slices: bool = False,
        crop_to_content: bool = False,
        slice_chunk_size: int | None = None,
        checkpoint_slices: bool = False,
        channels_last: bool = True,
        precision: str = "auto",
        preprocessing: VolumePreprocessor | None = None,
        random_state: int | np.random.RandomState | None = None,
        criterion: type[nn.Module] | None = None,
        optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
        lr: float = 1e-4,
        max_epochs: int = 30,
        batch_size: int = 8,
        train_split: Any = None,
        callbacks: Any = None,
        device: str = "auto",
        verbose: int = 1,
        **kwargs: Any,
    ) -> None:
        # The one place the shared parameters are declared and stored; the
        # estimators declare only what differs (their criterion and split).
        super().__init__(
            SliceNet,
            criterion=criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            callbacks=callbacks,
            device=device,
            verbose=verbose,
            **kwargs,
        )
        self.encoder = encoder
        self.weights = weights
        self.pooling = pooling
        self.position_embedding = position_embedding
        self.axis = axis
        self.embed_dim = embed_dim
        self.attention_heads = attention_heads
        self.head_hidden = head_hidden
        self.dropout = dropout
        self.freeze_encoder = freeze_encoder
        self.standardize = standardize
        self.feature_layer = feature_layer
        self.feature_grid = feature_grid
        self.slice_scale = slice_scale
        self.train_slices = train_slices
        self.crop_empty_slices = crop_empty_slices
        self.crop_to_content = crop_to_content
        self.slice_chunk_size = slice_chunk_size
        self.checkpoint_slices = checkpoint_slices
        self.channels_last = channels_last
        self.precision = precision
        self.preprocessing = preprocessing
        self.random_state = random_state

    #: What each shared parameter accepts, checked at ``fit`` (slicelearn._validation):
    #: SliceNet's own rules for the architecture, then the training's.
    _parameter_constraints: ClassVar[dict[str, list]] = {
        **_architecture_constraints(__init__),
        "crop_empty_slices": [BOOLEAN],
        "crop_to_content": [BOOLEAN],
        "precision": [Options(*PRECISIONS)],
        "preprocessing": [VolumePreprocessor, None],
        "random_state": [RANDOM_STATE],
        "lr": [Interval("real", 0)],
        "max_epochs": [Interval("int", 0)],
        "batch_size": [Interval("int", 1)],
        "device": [str, torch.device],
        "verbose": [Interval("int", 0)],
        "warm_start": [BOOLEAN],
    }

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "encoder":
            # An encoder module is a parameter (a template deep-copied at each
            # fit), not a trained component for skorch to register.
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def __sklearn_tags__(self):
        return volume_input_tags(super().__sklearn_tags__())

    # -- training --------------------------------------------------------------
    def fit(self, X: Any, y: Any, groups: Any = None, **fit_params):
        """Fit the network on volumes ``X`` and targets ``y``.

        Parameters
        ----------
        X : array of shape (n_scans, X, Y, Z), or list of NIfTI paths or images
        y : array-like of shape (n_scans,)
        groups : array-like of shape (n_scans,), default=None
            The subject of each scan. The internal validation split
            (``train_split``) then keeps each subject's scans on one side
            (:func:`slicelearn.splits.grouped_validation_split`).
        **fit_params
            Passed to skorch's ``partial_fit``.

        Returns
        -------
        self
        """
        validate_estimator(self)
        _check_fit_params(type(self).__name__, fit_params)
        keep = self.warm_start and self.initialized_
        X = self._check_X(X, reset=not keep)
        y = self._check_y(
            check_targets(y, len(X), type(self).__name__, columns="any"), reset=not keep
        )
        self._split_groups = None if groups is None else check_groups(groups, len(X))
        if not keep:
            self.content_box_, self.slice_range_ = content_crop(
                X, slice_axis_dim(self.axis) - 1, self.crop_to_content, self.crop_empty_slices
            )
        process_group(self.device)  # joins torchrun's group, if launched by it
        try:
            with seeded(self.random_state, self.device), host_memory(self.device):
                if not keep:
                    self.initialize()
                    fit_params = resume_training(self, X, y, fit_params)
                self._train(self._training_data(X, y), y, **fit_params)
        finally:
            self.__dict__.pop("_split_groups", None)  # this fit's, not the model's
        return self

    def infer(self, x: Any, **fit_params):
        """skorch's forward pass: under ``precision``'s autocast, through DDP when training."""
        module = self.module_
        training = module.training and torch.is_grad_enabled()
        if training:
            module = self._data_parallel() or module
        x = to_tensor(x, device=self.device)
        if isinstance(x, Mapping):
            args, kwargs = (), self._merge_x_and_fit_params(x, fit_params)
        else:
            args, kwargs = (x,), fit_params
        autocast = precision_autocast(self.precision, str(self.device), training)
        if autocast is None:
            return module(*args, **kwargs)
        with autocast:
            return module(*args, **kwargs).float()

    def get_split_datasets(self, X: Any, y: Any = None, **fit_params):
        """skorch's train/validation split, by subject when ``fit`` was given groups."""
        groups = self.__dict__.get("_split_groups")
        split = self.train_split
        if groups is None or split is None:
            return super().get_split_datasets(X, y, **fit_params)
        dataset = self.get_dataset(X, y)
        if isinstance(split, ValidSplit):
            train, valid = grouped_validation_split(split, y, groups)
            subset = torch.utils.data.Subset
            return subset(dataset, train.tolist()), subset(dataset, valid.tolist())
        return split(dataset, y, groups=groups)  # a custom split must take groups

    def train_step(self, batch: Any, **fit_params):
        step = super().train_step(batch, **fit_params)
        if not torch.isfinite(step["loss"]).all():
            batch_index = len(self.history[-1]["batches"]) + 1
            raise FloatingPointError(
                f"The training loss became {step['loss'].item()} in epoch {len(self.history)}, "
                f"batch {batch_index}: training diverged. Lower lr, check the targets' "
                "scale, or use precision='fp32'."
            )
        return self._global_batch_loss(step)

    def evaluation_step(self, batch: Any, training: bool = False):
        if training:
            return super().evaluation_step(batch, training=True)
        # Inference mode skips autograd's version counters too: predictions only.
        with torch.inference_mode():
            return super().evaluation_step(batch, training=False)

    def _train(self, X: Any, y: Any, **fit_params) -> None:
        try:
            with cudnn_autotune(self.device):
                NeuralNet.partial_fit(self, X, y, **fit_params)
        except VolumeLoadError as exc:
            completed = max(len(self.history) - 1, 0)
            raise VolumeLoadError(
                f"{exc}\nTraining stopped in epoch {completed + 1}. The estimator keeps the "
                f"weights trained so far and the history of {completed} completed epoch(s); "
                "fix or drop that scan, then call partial_fit to continue."
            ) from exc
        finally:
            self._release_data_parallel()

    def partial_fit(
        self, X: Any, y: Any = None, classes: Any = None, groups: Any = None, **fit_params
    ):
        """Train further on ``X``, ``y`` (the first call behaves like ``fit``)."""
        if not self.initialized_ or not hasattr(self, "n_slices_"):
            return self.fit(X, y, groups=groups, **fit_params)
        _check_fit_params(type(self).__name__, fit_params)
        X = self._check_X(X, reset=False)
        y = self._check_y(check_targets(y, len(X), type(self).__name__, columns="any"), reset=False)
        self._split_groups = None if groups is None else check_groups(groups, len(X))
        try:
            with host_memory(self.device):
                self._train(self._training_data(X, y), y, **fit_params)
        finally:
            self.__dict__.pop("_split_groups", None)
        return self

    def initialize_module(self):
        if not hasattr(self, "n_slices_"):
            raise NotFittedError(
                f"{type(self).__name__} builds its network from the training data: call fit."
            )
        kwargs = {name: getattr(self, name) for name in _architecture_params()}
        box = getattr(self, "content_box_", None)
        slice_range = getattr(self, "slice_range_", None)
        crop = {"crop_box": box} if box is not None else {"slice_range": slice_range}
        self.module_ = SliceNet(
            n_outputs=self._n_outputs(), n_slices=self.n_slices_, **crop, **kwargs
        )
        return self

    @property
    def _default_callbacks(self) -> list[tuple[str, Any]]:
        # skorch's timer, losses and epoch table, plus a validation metric and
        # the best epoch's weights restored at the end, when there is a validation split.
        callbacks = NeuralNet._default_callbacks.fget(self)
        # One epoch table for a data-parallel run, not one per process.
        callbacks = [
            (name, RankZeroPrintLog() if name == "print_log" else callback)
            for name, callback in callbacks
        ]
        if self.train_split is not None:
            best = RestoreBestWeights(monitor="valid_loss")
            callbacks[-1:-1] = [self._validation_scoring(), ("restore_best", best)]
        return callbacks

    def _predict_raw(self, X: Any) -> np.ndarray:
        self.check_is_fitted()
        # get_dataset serves cached slice features when the encoder is frozen.
        with host_memory(self.device), cudnn_autotune(self.device):
            prediction = NeuralNet.predict_proba(self, X)
        finite = np.isfinite(prediction.reshape(len(prediction), -1)).all(axis=1)
        if not finite.all():
            raise FloatingPointError(
                f"The prediction for X[{int(np.flatnonzero(~finite)[0])}] is not finite: the "
                "model's weights or that volume's intensities overflow."
            )
        return prediction

    def forward_iter(self, X: Any, training: bool = False, device: str = "cpu"):
        """skorch's batches of outputs; inside ``slicelearn._progress.reporting``, counted."""
        counter = progress("predicting", len(X)) if not training and hasattr(X, "__len__") else None
        done = 0
        for output in super().forward_iter(X, training=training, device=device):
            if counter is not None:
                done += len(output[0] if isinstance(output, tuple) else output)
                counter.update(done, "scans")
            yield output
        if counter is not None:
            counter.close()


def _check_fit_params(owner: str, fit_params: dict[str, Any]) -> None:
    """Reject fit parameters early: skorch would pass them to the network's forward."""
    accepted = set(inspect.signature(SliceNet.forward).parameters) - {"self", "volumes"}
    unknown = sorted(set(fit_params) - accepted - {"epochs"})
    if unknown:
        hint = ""
        if "sample_weight" in unknown:
            hint = (
                " The slice networks take no sample_weight; for class imbalance, "
                "weight the loss with criterion__pos_weight (two classes) or "
                "criterion__weight."
            )
        raise TypeError(
            f"{owner}.fit got unexpected keyword argument(s) {unknown}; "
            f"it takes 'epochs' and the network's {sorted(accepted)}.{hint}"
        )


def _architecture_params() -> tuple[str, ...]:
    """Estimator parameters that are SliceNet's too, in SliceNet's order."""
    shared = inspect.signature(_SliceNeuralNet.__init__).parameters
    return tuple(name for name in inspect.signature(SliceNet).parameters if name in shared)


_COMMON_PARAMS_DOC = """
    encoder : str, nn.Module or module class, default="resnet18"
        Slice encoder: ``"resnet18"``, ``"resnet34"``, ``"resnet50"``,
        ``"efficientnet_lite0"``, ``"cnn2d"``, ``"timm:<model>"``, an
        ``nn.Module`` mapping ``(N, C, H, W)`` to ``(N, F)`` (deep-copied at
        each fit), or a module class (instantiated without arguments at each fit).
    weights : {"imagenet", None} or path, default="imagenet"
        Encoder initialisation. ResNet ImageNet weights come through
        torchvision's cache (downloaded once); ``efficientnet_lite0``'s ship
        with the package and work offline. A path loads a state dict.
    pooling : {"mean", "max", "attention"}, default="attention"
        Permutation-invariant pooling over slices. The defaults of ``pooling``
        and ``position_embedding`` are the paper's model; the command line's
        network routes (and :data:`slicelearn.presets.FULL_FINE_TUNING`) use
        mean pooling, which beat attention pooling in all six cells of
        ``docs/results.md``'s pooling x position-embedding table (frozen
        encoder, IXI brain age).
    position_embedding : {None, "learned", "sinusoidal"}, default="learned"
        Slice-index embedding. ``"learned"`` fixes the slice count;
        ``"sinusoidal"`` works for any slice count.
    axis : {"sagittal", "coronal", "axial"}, default="sagittal"
        Slicing axis of RAS-canonical volumes.
    embed_dim : int, default=32
        Size of the slice embeddings.
    attention_heads : int, default=4
        Heads of the attention pooling.
    head_hidden : int or None, default=64
        Hidden units of the MLP head.
    dropout : float, default=0.0
        Dropout in the slice mixer and the head.
    freeze_encoder : bool or str, default=False
        ``True`` keeps the encoder fixed and trains only the rest; its slice
        features are computed once per volume and cached. A layer name (e.g.
        ``"layer3"`` of a ResNet, ``"blocks.2"`` of ``efficientnet_lite0``)
        fixes the encoder up to that layer and fine-tunes the layers after it,
        caching the fixed trunk's feature maps per slice (partial fine-tuning).
    standardize : bool, default=True
        z-score every volume as a whole before slicing.
    feature_layer : str or None, default=None
        Slice features from an earlier layer of a named pretrained encoder,
        e.g. ``"blocks.3"`` of ``efficientnet_lite0`` or ``"layer3"`` of a
        ResNet (:data:`slicelearn.nn.FEATURE_LAYERS`). ``None`` takes the last.
    feature_grid : int, default=1
        Average-pool each slice's feature map to a ``feature_grid`` x
        ``feature_grid`` grid, keeping coarse in-slice position.
    slice_scale : float, default=1.0
        Resize every slice by this factor (bilinear) before the encoder
        (:class:`~slicelearn.nn.SliceNet`'s ``slice_scale``).
    train_slices : int, float or None, default=None
        Stochastic slice sampling: each training step encodes only a random
        subset of every volume's slices (this many, or this fraction);
        prediction uses all. Changes the algorithm; its accuracy cost is in
        ``docs/performance.md``.
    crop_empty_slices : bool, default=False
        Drop the border slices that are empty (a single value) in every
        training volume, at fit and predict; ``slice_range_`` records the kept
        range. Changes the algorithm only where a test volume has content in
        those slices.
    crop_to_content : bool, default=False
        Cut every volume, at fit and predict, to the box that holds content
        (values not all equal) in any training volume, along all three axes:
        on registered, skull-stripped scans, the brain's bounding box, so each
        step encodes fewer slices of fewer pixels. ``content_box_`` records
        the box; position indices stay those of the full volume. Changes the
        algorithm only where a test volume has content outside the box.
    slice_chunk_size : int or None, default=None
        Encode at most this many slices at a time (bounds memory).
    checkpoint_slices : bool, default=False
        With ``slice_chunk_size``, recompute each chunk's encoder activations
        in the backward pass instead of storing them.
    channels_last : bool, default=True
        Channels-last convolutions (exact; faster on CPU and GPU).
    precision : {"auto", "fp32", "bf16", "fp16"}, default="auto"
        Autocast of the forward pass: "auto" is bfloat16 on CUDA, bfloat16
        for prediction and validation on CPUs with native bfloat16 (their
        training steps measured faster in float32), and float32 elsewhere
        (:func:`slicelearn.precision.resolve_precision`). Weights, optimiser
        and loss stay float32.
    preprocessing : VolumePreprocessor or None, default=None
        Applied to NIfTI paths or images, lazily in the DataLoader and cached
        on disk (see :class:`slicelearn.data.VolumePreprocessor`). ``None``
        only reorients scans to RAS; they must then share one shape.
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation and batch order, so a CPU fit is
        reproducible; the caller's global torch RNG is left untouched.
    optimizer : torch optimizer class, default=torch.optim.Adam
    lr : float, default=1e-4
    max_epochs : int, default=30
    batch_size : int, default=8
    train_split : callable or None, default=ValidSplit(0.2, random_state=0)
        Validation split; the best validation epoch's weights are restored
        at the end of training (:class:`slicelearn.callbacks.RestoreBestWeights`,
        routed as ``callbacks__restore_best__*``). Training runs all
        ``max_epochs``; add skorch's ``EarlyStopping`` to ``callbacks`` to
        stop early. ``None`` trains on all data.
    callbacks : list or None, default=None
        Extra skorch callbacks.
    device : str, default="auto"
        ``"auto"`` takes a GPU when one is present.
    verbose : int, default=1
        1 prints skorch's epoch table.
    **kwargs
        Routed skorch parameters such as ``optimizer__weight_decay``
        (default 1e-4, the paper's) or ``iterator_train__num_workers``.
"""


class SliceCNNRegressor(_SliceNeuralNet, NeuralNetRegressor):
    __doc__ = (
        """2D-slice set network regressor for 3D MRI, e.g. brain age.

    Every slice along ``axis`` goes through one shared 2D encoder (optionally
    ImageNet-pretrained), a slice-index embedding is added, the slices are
    pooled and a small head predicts the target (Gupta et al., ISBI 2023).
    The head predicts in standard units of the training targets (see
    ``scale_target``); the loss is MSE in the target's own units.

    Parameters
    ----------"""
        + _COMMON_PARAMS_DOC
        + """    criterion : loss class, default=torch.nn.MSELoss
        The training loss (``criterion__*`` routes its arguments).
    scale_target : bool, default=True
        The network's head predicts each target in units of its training
        standard deviation around its training mean (``SliceNet``'s
        ``output_scale`` and ``output_shift``), so that a target in years is
        reachable in a few hundred optimiser steps. ``False``: the head
        predicts the target itself, its output bias starting at the mean.

    Attributes
    ----------
    module_ : SliceNet
        The trained network.
    n_slices_ : int
        Slices per training volume along ``axis``.
    volume_shape_ : tuple of int
        Shape of the training volumes.
    n_outputs_ : int
        Number of regression targets.
    history_ : skorch.History
        Per-epoch losses and metrics.

    Examples
    --------
    >>> from slicelearn import SliceCNNRegressor
    >>> from slicelearn.datasets import make_slice_position_task
    >>> X, y = make_slice_position_task(n_subjects=24, random_state=0)
    >>> est = SliceCNNRegressor(encoder="cnn2d", weights=None, max_epochs=2,
    ...                         verbose=0, random_state=0).fit(X, y)
    >>> est.predict(X[:3]).shape
    (3,)
    """
    )

    def __init__(
        self,
        encoder: str | nn.Module | Callable[[], nn.Module] = "resnet18",
        weights: str | None = "imagenet",
        *,
        criterion: type[nn.Module] = nn.MSELoss,
        train_split: Any = _REGRESSOR_SPLIT,
        scale_target: bool = True,
        **params: Any,
    ) -> None:
        super().__init__(encoder, weights, criterion=criterion, train_split=train_split, **params)
        self.scale_target = scale_target

    __init__.__signature__ = with_shared_parameters(__init__, _SliceNeuralNet.__init__)

    _parameter_constraints: ClassVar[dict[str, list]] = {"scale_target": [BOOLEAN]}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # a 2D y trains one output per column
        return tags

    def _validation_scoring(self) -> tuple[str, EpochScoring]:
        return "valid_mae", EpochScoring(_valid_mae, name="valid_mae", lower_is_better=True)

    def _check_y(self, y: np.ndarray, reset: bool) -> np.ndarray:
        try:
            y = y.astype(np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Regression targets must be numbers: {exc}") from exc
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1D or 2D, got shape {y.shape}.")
        finite = np.isfinite(y.reshape(len(y), -1)).all(axis=1)
        if not finite.all():
            raise ValueError(f"y[{int(np.flatnonzero(~finite)[0])}] is NaN or infinite.")
        y2d = y.reshape(len(y), -1)
        if reset:
            self.n_outputs_ = y2d.shape[1]
            self.target_ndim_ = y.ndim
            self.target_mean_ = y2d.mean(axis=0)
            spread = y2d.std(axis=0)
            self.target_scale_ = np.where(spread > 0, spread, 1.0).astype(np.float32)
        elif y2d.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y2d.shape[1]} outputs; the model predicts {self.n_outputs_}.")
        return y2d

    def _n_outputs(self) -> int:
        return self.n_outputs_

    def initialize_module(self):
        super().initialize_module()
        # The prediction starts at the training mean through the bias alone:
        # zeroed output weights as well (a constant start) left the ReLU head
        # dead under Adam on the simulated atrophy task (every hidden unit
        # inactive, the mean predicted after 100 epochs).
        mean = torch.as_tensor(self.target_mean_)
        with torch.no_grad():
            if self.scale_target:
                self.module_.output_shift.copy_(mean)
                self.module_.output_scale.copy_(torch.as_tensor(self.target_scale_))
                self.module_.output_layer.bias.zero_()
            else:
                self.module_.output_layer.bias.copy_(mean)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predict targets for volumes ``X``.

        Returns
        -------
        ndarray of shape (n_subjects,) (or (n_subjects, n_outputs) for 2D y)
        """
        # float64, as scikit-learn's regressors return (the network computes in float32).
        prediction = self._predict_raw(X).astype(np.float64)
        return prediction.ravel() if self.target_ndim_ == 1 else prediction

    @property
    def predict_proba(self):
        # skorch's regressor inherits predict_proba (the raw outputs); a
        # regressor has no probabilities, and scikit-learn tells regressors
        # apart by this method's absence.
        raise AttributeError(f"{type(self).__name__} has no predict_proba: use predict.")


class SliceCNNClassifier(_SliceNeuralNet, NeuralNetClassifier):
    __doc__ = (
        """2D-slice set network classifier for 3D MRI, e.g. AD vs CN.

    The same network as :class:`SliceCNNRegressor`. Labels may be any
    hashable values (``"AD"``/``"CN"``); two classes use one logit with
    ``BCEWithLogitsLoss`` (the paper's), more classes use ``CrossEntropyLoss``.
    The output bias starts at the class prior of the training labels (the
    log-odds, or the log priors). The default validation split
    is stratified; a cohort too small for it (fewer validation subjects than
    classes, a class with one subject) trains on all subjects, with a warning.

    Parameters
    ----------"""
        + _COMMON_PARAMS_DOC
        + """    classes : array-like or None, default=None
        All class labels, when a training set may miss some; inferred from
        ``y`` otherwise.
    criterion : loss class or None, default=None
        ``None`` picks ``BCEWithLogitsLoss`` for two classes and
        ``CrossEntropyLoss`` for more.

    Attributes
    ----------
    classes_ : ndarray
        The class labels, in the column order of ``predict_proba``.
    module_ : SliceNet
        The trained network.
    n_slices_ : int
        Slices per training volume along ``axis``.
    volume_shape_ : tuple of int
        Shape of the training volumes.

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn import SliceCNNClassifier
    >>> from slicelearn.datasets import make_slice_position_task
    >>> X, k = make_slice_position_task(n_subjects=24, random_state=0)
    >>> y = np.where(k < 20, "early", "late")
    >>> clf = SliceCNNClassifier(encoder="cnn2d", weights=None, max_epochs=2,
    ...                          verbose=0, random_state=0).fit(X, y)
    >>> set(clf.predict(X)) <= {"early", "late"}
    True
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """
    )

    def __init__(
        self,
        encoder: str | nn.Module | Callable[[], nn.Module] = "resnet18",
        weights: str | None = "imagenet",
        *,
        classes: Any = None,
        criterion: type[nn.Module] | None = None,
        train_split: Any = _CLASSIFIER_SPLIT,
        **params: Any,
    ) -> None:
        super().__init__(
            encoder,
            weights,
            classes=classes,
            criterion=criterion,
            train_split=train_split,
            **params,
        )

    __init__.__signature__ = with_shared_parameters(__init__, _SliceNeuralNet.__init__)

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "classes": [
            None,
            Satisfies(lambda value: len(np.unique(np.asarray(value))) >= 2, "two labels or more"),
        ],
    }

    def _validation_scoring(self) -> tuple[str, EpochScoring]:
        return "valid_acc", EpochScoring(_valid_accuracy, name="valid_acc", lower_is_better=False)

    def get_split_datasets(self, X: Any, y: Any = None, **fit_params):
        """skorch's train/validation split; all data when a stratified split cannot be made.

        A stratified ``ValidSplit`` (the default) needs every class in both
        parts and two subjects per class. A cohort too small for that trains
        on all its subjects, with a ``UserWarning`` that says what to set.
        """
        split = self.train_split
        if not (isinstance(split, ValidSplit) and split.stratified and y is not None):
            return super().get_split_datasets(X, y, **fit_params)
        try:
            return super().get_split_datasets(X, y, **fit_params)
        except ValueError as exc:
            warnings.warn(self._unsplittable_message(split, np.asarray(y), exc), stacklevel=2)
            return self.get_dataset(X, y), None

    def _unsplittable_message(self, split: ValidSplit, y: np.ndarray, exc: Exception) -> str:
        n_subjects = len(y)
        counts = np.bincount(y, minlength=len(self.classes_))
        described = ", ".join(f"{label}: {n}" for label, n in zip(self.classes_, counts))
        if isinstance(split.cv, float) and not float(split.cv).is_integer():
            size = f"validation fraction {split.cv}: {math.ceil(split.cv * n_subjects)} subjects"
        else:
            size = f"cv={split.cv!r}"
        # sklearn's reason ends with the encoded labels (0, 1, ...), not the user's.
        reason = str(exc).split(". Classes with too few members")[0].rstrip(".")
        return (
            f"The stratified validation split cannot be made for {n_subjects} subjects "
            f"({described}; {size}): {reason}. Training on all {n_subjects} subjects "
            "without a validation set, so no best epoch is chosen or restored. Set "
            "train_split=None to train on all data without this warning, or pass a "
            "train_split=ValidSplit(...) that the cohort can hold (or a "
            "fixed validation set, skorch.helper.predefined_split)."
        )

    @property
    def classes_(self) -> np.ndarray:
        try:
            return self.label_encoder_.classes_
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__} is not fitted yet: it has no classes_."
            ) from None

    def check_data(self, X: Any, y: Any) -> None:
        # The labels were encoded and checked in fit; skorch's inference of
        # classes from the encoded y would shadow the original labels.
        return None

    def _check_y(self, y: np.ndarray, reset: bool) -> np.ndarray:
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim != 1:
            raise ValueError(f"Class labels y must be 1D, got shape {y.shape}.")
        missing = [i for i, label in enumerate(y) if label is None or label != label]
        if missing:
            raise ValueError(f"y[{missing[0]}] is missing (None or NaN).")
        # Ages passed to the classifier by mistake: say so instead of
        # training one class per distinct value.
        check_classification_targets(y)
        if reset:
            labels = y if self.classes is None else np.asarray(self.classes)
            self.label_encoder_ = class_encoder(labels, type(self).__name__)
        unknown = np.setdiff1d(np.unique(y), self.label_encoder_.classes_)
        if len(unknown):
            raise ValueError(
                f"y holds labels {unknown.tolist()} that are not among the classes "
                f"{self.label_encoder_.classes_.tolist()}."
            )
        encoded = self.label_encoder_.transform(y).astype(np.int64)
        if reset:
            # Class frequencies for the output bias (add-one smoothed: a class
            # named in ``classes`` but absent from y gets a finite logit).
            counts = np.bincount(encoded, minlength=len(self.label_encoder_.classes_))
            self._class_prior = (counts + 1.0) / (counts.sum() + len(counts))
        return encoded

    def _n_outputs(self) -> int:
        n_classes = len(self.classes_)
        return 1 if n_classes == 2 else n_classes

    def initialize_module(self):
        super().initialize_module()
        prior = getattr(self, "_class_prior", None)
        if prior is not None and len(prior) == len(self.classes_):
            # Start at the class prior: the log-odds of the positive class for
            # one logit, the log priors for several (softmax gives the prior back).
            if len(prior) == 2:
                bias = np.log(prior[1:] / prior[:1])
            else:
                bias = np.log(prior)
            with torch.no_grad():
                self.module_.output_layer.bias.copy_(torch.as_tensor(bias))
        return self

    def initialize_criterion(self):
        criterion = self.criterion
        if criterion is None:
            binary = len(self.classes_) == 2
            criterion = nn.BCEWithLogitsLoss if binary else nn.CrossEntropyLoss
        self.criterion_ = self.initialized_instance(criterion, self.get_params_for("criterion"))
        return self

    def get_loss(self, y_pred, y_true, *args, **kwargs):
        if isinstance(self.criterion_, nn.BCEWithLogitsLoss):
            y_pred = y_pred.reshape(-1)
            y_true = y_true.to(y_pred.dtype).reshape(-1)
        return NeuralNet.get_loss(self, y_pred, y_true, *args, **kwargs)

    def _get_predict_nonlinearity(self):
        if self.predict_nonlinearity == "auto" and isinstance(
            self.criterion_, nn.BCEWithLogitsLoss
        ):
            return _binary_logit_to_proba
        return super()._get_predict_nonlinearity()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``.

        Returns
        -------
        ndarray of shape (n_subjects, n_classes)
        """
        return self._predict_raw(X)

    def predict(self, X: Any) -> np.ndarray:
        """Predict class labels (the original labels, e.g. ``"AD"``/``"CN"``).

        Returns
        -------
        ndarray of shape (n_subjects,)
        """
        proba = self.predict_proba(X)  # first: it raises NotFittedError before fit
        return self.classes_[proba.argmax(axis=1)]
