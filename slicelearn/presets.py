"""The recommended configuration and named training recipes, declared once.

The command line's defaults, the examples and the benchmarks read them from
here:

- :data:`RECOMMENDED_PREPROCESSING` and :func:`recommended_preprocessing`:
  from a raw T1 scan to the volume the models read;
- :data:`RECOMMENDED_MODEL` and :func:`recommended_model`: the model that
  ``slicelearn fit`` trains by default for each task;
- :data:`FULL_FINE_TUNING` and :func:`full_fine_tuning`: Gupta et al.'s
  network trained end to end on a CPU, in the brain-age default;
- :data:`RECOMMENDED_READOUT` and :func:`recommended_readout`: the ridge
  (logistic) readout of frozen ImageNet slice features, the other member
  of the brain-age default.

Where the estimators' own defaults differ from these, their docstrings say
why (the readouts' ``input_smoothing`` is in voxels, so its recommended value
belongs to the recommended 2 mm grid; the networks' ``pooling`` and
``position_embedding`` defaults are the paper's model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

    from .data import VolumePreprocessor
    from .readout import SliceLinearClassifier, SliceLinearRegressor

__all__ = [
    "FULL_FINE_TUNING",
    "RECOMMENDED_MODEL",
    "RECOMMENDED_PREPROCESSING",
    "RECOMMENDED_READOUT",
    "full_fine_tuning",
    "recommended_model",
    "recommended_preprocessing",
    "recommended_readout",
]

#: From a raw T1 scan (native space, skull on) to the models' volume: the
#: brain extracted offline (deepbet), an affine registration to the 2 mm
#: MNI152 template (ANTs, reproducible bit for bit), the volume z-scored in
#: the brain. Chosen by repeated CV on 136 IXI scans (``docs/results.md``,
#: ``docs/registration_choice.md``).
RECOMMENDED_PREPROCESSING: dict[str, Any] = {
    "target": "mni152",
    "registration": "affine",
    "registration_backend": "ants",
    "skull_strip": "deepbet",
    "normalize": "zscore_brain",
}

#: The command line's default model for each task, as its ``--readout``
#: models; several are averaged with equal weights (:mod:`slicelearn.ensemble`).
#: For regression, Gupta et al.'s network fine-tuned end to end
#: (:data:`FULL_FINE_TUNING`) averaged with the ridge readout
#: (:data:`RECOMMENDED_READOUT`): on 136 IXI scans, 5 folds x 3 seeds, brain-age
#: MAE 5.64 years (seed SD 0.07) against 5.96 for the network alone and 6.34
#: for the readout alone (``docs/results.md``). For classification a logistic
#: regression on the brain's voxels averaged to 4 mm
#: (:class:`~slicelearn.VoxelLinearClassifier`, its defaults): sex ROC-AUC
#: 0.944 on the same 5 folds x 3 splits (0.947, 0.948, 0.938), against 0.900
#: (SD 0.029) for the fine-tuned network and 0.808 for the logistic readout of
#: slice features.
RECOMMENDED_MODEL: dict[str, tuple[str, ...]] = {
    "regression": ("network", "ridge"),
    "classification": ("voxels",),
}

#: The slice readout: a ridge readout (logistic regression for classes) of a
#: frozen ImageNet EfficientNet-Lite0's ``blocks.3`` features, pooled 2 x 2 on
#: each sagittal slice of the volume smoothed by 1 voxel (2 mm on the
#: recommended grid), averaged over the slices. No network is trained; the
#: penalty is chosen by internal CV. For regression, a member of
#: :data:`RECOMMENDED_MODEL`; alone, seconds to fit where minutes of
#: fine-tuning are too many.
RECOMMENDED_READOUT: dict[str, Any] = {
    "encoder": "efficientnet_lite0",
    "weights": "imagenet",
    "feature_layer": "blocks.3",
    "feature_grid": 2,
    "axis": "sagittal",
    "input_smoothing": 1.0,
}


def recommended_preprocessing(**changes: Any) -> VolumePreprocessor:
    """A :class:`~slicelearn.data.VolumePreprocessor` of :data:`RECOMMENDED_PREPROCESSING`.

    Parameters
    ----------
    **changes
        Further or different ``VolumePreprocessor`` parameters, e.g.
        ``cache_dir=None`` or ``mask=...`` (given brain masks instead of
        deepbet's).

    Returns
    -------
    VolumePreprocessor
        Unfitted.

    Examples
    --------
    >>> from slicelearn.presets import recommended_preprocessing
    >>> prep = recommended_preprocessing(cache_dir=None)
    >>> prep.registration_backend, prep.skull_strip
    ('ants', 'deepbet')
    """
    from .data import VolumePreprocessor

    return VolumePreprocessor(**{**RECOMMENDED_PREPROCESSING, **changes})


def recommended_readout(
    task: str = "regression", **changes: Any
) -> SliceLinearRegressor | SliceLinearClassifier:
    """The slice readout of :data:`RECOMMENDED_READOUT` as an estimator.

    Parameters
    ----------
    task : {"regression", "classification"}, default="regression"
        :class:`~slicelearn.SliceLinearRegressor` (ridge) or
        :class:`~slicelearn.SliceLinearClassifier` (logistic regression).
    **changes
        Further or different parameters of the readout, e.g.
        ``preprocessing=recommended_preprocessing()`` for raw scans.

    Returns
    -------
    SliceLinearRegressor or SliceLinearClassifier
        Unfitted.

    Examples
    --------
    >>> from slicelearn.presets import recommended_readout
    >>> model = recommended_readout("classification", axis=("sagittal", "axial"))
    >>> type(model).__name__, model.feature_layer, model.axis
    ('SliceLinearClassifier', 'blocks.3', ('sagittal', 'axial'))
    """
    from .readout import SliceLinearClassifier, SliceLinearRegressor

    kinds = {"regression": SliceLinearRegressor, "classification": SliceLinearClassifier}
    if task not in kinds:
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}.")
    return kinds[task](**{**RECOMMENDED_READOUT, **changes})


def recommended_model(
    task: str = "regression", *, preprocessing: Any = None, random_state: int | None = 0
) -> BaseEstimator:
    """The command line's default model for ``task``, :data:`RECOMMENDED_MODEL`, as an estimator.

    Parameters
    ----------
    task : {"regression", "classification"}, default="regression"
        Regression: an :class:`~slicelearn.EnsembleRegressor` averaging the
        fine-tuned :class:`~slicelearn.SliceCNNRegressor`
        (:func:`full_fine_tuning`) and the ridge readout
        (:func:`recommended_readout`). Classification: a
        :class:`~slicelearn.VoxelLinearClassifier` alone.
    preprocessing : VolumePreprocessor, optional
        Given to every member, for NIfTI inputs (e.g.
        :func:`recommended_preprocessing`).
    random_state : int or None, default=0
        The network's seed (weights' initialisation, slice sampling, batches).

    Returns
    -------
    estimator
        Unfitted.

    Examples
    --------
    >>> from slicelearn.presets import recommended_model
    >>> model = recommended_model("regression")
    >>> [name for name, _ in model.estimators], model.combine
    (['network', 'ridge'], 'mean')
    >>> model.estimators[0][1].freeze_encoder, model.estimators[0][1].train_slices
    (False, 16)
    >>> type(recommended_model("classification")).__name__
    'VoxelLinearClassifier'
    """
    if task not in RECOMMENDED_MODEL:
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}.")
    members = [
        (name, _member(name, task, preprocessing, random_state)) for name in RECOMMENDED_MODEL[task]
    ]
    if len(members) == 1:
        return members[0][1]
    from .ensemble import EnsembleClassifier, EnsembleRegressor

    kind = EnsembleRegressor if task == "regression" else EnsembleClassifier
    return kind(members, combine="mean")


def _member(name: str, task: str, preprocessing: Any, random_state: int | None) -> BaseEstimator:
    """One member of :data:`RECOMMENDED_MODEL`: the fine-tuned network, a readout or voxels."""
    if name == "ridge":
        return recommended_readout(task, preprocessing=preprocessing)
    if name == "voxels":
        from .voxels import VoxelLinearClassifier, VoxelLinearRegressor

        kind = VoxelLinearRegressor if task == "regression" else VoxelLinearClassifier
        return kind(preprocessing=preprocessing)
    from .estimators import SliceCNNClassifier, SliceCNNRegressor

    kind = SliceCNNRegressor if task == "regression" else SliceCNNClassifier
    return kind(
        **full_fine_tuning(),
        axis=RECOMMENDED_READOUT["axis"],
        preprocessing=preprocessing,
        random_state=random_state,
        verbose=0,
    )


#: Gupta et al.'s model trained end to end on 2 CPU cores: every encoder weight
#: of ImageNet EfficientNet-Lite0 trains, each step encodes 16 random slices
#: of each volume (prediction uses all), volumes are cut to the box that
#: holds the brain, and a cosine learning-rate schedule runs a fixed number of
#: epochs on every training scan (no validation split). Speed and accuracy:
#: ``docs/performance.md`` and ``docs/results.md``.
FULL_FINE_TUNING: dict[str, Any] = {
    "encoder": "efficientnet_lite0",
    "weights": "imagenet",
    "freeze_encoder": False,
    "feature_layer": None,
    "feature_grid": 1,
    "pooling": "mean",
    "position_embedding": "sinusoidal",
    "train_slices": 16,
    "crop_to_content": True,
    "lr": 3e-4,
    "max_epochs": 12,
    "batch_size": 4,
}


def full_fine_tuning(**changes: Any) -> dict[str, Any]:
    """Estimator parameters of :data:`FULL_FINE_TUNING`, with its schedule and ``changes``.

    Returns
    -------
    dict
        Keyword arguments for :class:`~slicelearn.SliceCNNRegressor` or
        :class:`~slicelearn.SliceCNNClassifier`: the recipe, ``changes``
        applied, no validation split, and a cosine learning-rate schedule over
        ``max_epochs`` (:class:`~slicelearn.callbacks.CosineLRSchedule` in
        ``callbacks``, to which further callbacks may be added).

    Examples
    --------
    >>> from slicelearn import SliceCNNRegressor
    >>> from slicelearn.presets import full_fine_tuning
    >>> est = SliceCNNRegressor(**full_fine_tuning(max_epochs=3))
    >>> est.train_slices, est.max_epochs, type(est.callbacks[0][1]).__name__
    (16, 3, 'CosineLRSchedule')
    """
    from .callbacks import CosineLRSchedule

    params = {**FULL_FINE_TUNING, **changes}
    return {**params, "train_split": None, "callbacks": [("lr_schedule", CosineLRSchedule())]}
