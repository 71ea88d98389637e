"""Named training recipes that the command line, the examples and the benchmarks share."""

from __future__ import annotations

from typing import Any

__all__ = ["FULL_FINE_TUNING", "full_fine_tuning"]

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
        ``max_epochs`` (``callbacks``, to which further callbacks may be added).

    Examples
    --------
    >>> from slicelearn import SliceCNNRegressor
    >>> from slicelearn.presets import full_fine_tuning
    >>> est = SliceCNNRegressor(**full_fine_tuning(max_epochs=3))
    >>> est.train_slices, est.callbacks[0][1].T_max
    (16, 3)
    """
    from skorch.callbacks import LRScheduler

    params = {**FULL_FINE_TUNING, **changes}
    schedule = LRScheduler(policy="CosineAnnealingLR", T_max=params["max_epochs"])
    return {**params, "train_split": None, "callbacks": [("lr_schedule", schedule)]}
