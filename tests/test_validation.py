"""Parameter constraints: one table per class, checked at fit, messages that name the value."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fast_params

from slicelearn import (
    EnsembleRegressor,
    SliceCNNClassifier,
    SliceCNNRegressor,
    SliceLinearClassifier,
    SliceLinearRegressor,
    VoxelLinearClassifier,
    VoxelLinearRegressor,
)
from slicelearn._validation import (
    Interval,
    InvalidParameterError,
    Options,
    parameter_constraints,
    validate_estimator,
    validate_params,
)

#: skorch's own parameters of the networks: skorch checks them (an unknown
#: callback, criterion or optimizer fails where skorch builds it).
SKORCH_OWN = {
    "callbacks",
    "compile",
    "criterion",
    "dataset",
    "iterator_train",
    "iterator_valid",
    "optimizer",
    "predict_nonlinearity",
    "torch_load_kwargs",
    "train_split",
    "use_caching",
}

ESTIMATORS = [
    SliceCNNRegressor,
    SliceCNNClassifier,
    SliceLinearRegressor,
    SliceLinearClassifier,
    VoxelLinearRegressor,
    VoxelLinearClassifier,
]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_every_parameter_has_its_constraints(cls):
    params = set(cls().get_params(deep=False)) - SKORCH_OWN
    assert set(parameter_constraints(cls)) == params


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_the_defaults_meet_the_constraints(cls):
    validate_estimator(cls())


def test_intervals_and_options_say_what_they_take():
    train_slices = [Interval("int", 1), Interval("real", 0, 1, closed="right"), None]
    for good in (1, 16, 0.5, 1.0, None, np.int64(3)):
        validate_params("M", {"train_slices": good}, {"train_slices": train_slices})
    for bad in (0, -2, 1.5, True, "half", float("nan")):
        with pytest.raises(InvalidParameterError) as error:
            validate_params("M", {"train_slices": bad}, {"train_slices": train_slices})
        assert str(error.value) == (
            f"M: train_slices must be an int >= 1, a number in (0, 1] or None, got {bad!r}."
        )
    assert isinstance(error.value, ValueError) and isinstance(error.value, TypeError)
    pooling = {"pooling": [Options("mean", "max")]}
    validate_params("M", {"pooling": np.str_("mean")}, pooling)
    with pytest.raises(InvalidParameterError, match="pooling must be one of 'mean', 'max'"):
        validate_params("M", {"pooling": "median"}, pooling)


@pytest.mark.parametrize(
    "estimator, message",
    [
        (SliceCNNRegressor(**fast_params(train_slices=0)), "train_slices must be an int >= 1"),
        (SliceCNNRegressor(**fast_params(embed_dim=0)), "embed_dim must be an int >= 1"),
        (SliceCNNRegressor(**fast_params(lr=-1.0)), "lr must be a number >= 0"),
        (SliceCNNClassifier(**fast_params(classes=["AD"])), "classes must be None or two labels"),
        (SliceLinearRegressor(encoder=object()), "encoder must be an encoder name"),
        (SliceLinearRegressor(alphas=[1.0, -1.0]), "alphas must be a non-empty sequence"),
        (SliceLinearClassifier(axis=("axial", "axial")), "a tuple of distinct ones"),
        (VoxelLinearRegressor(block=2.5), "block must be an int >= 1, got 2.5"),
        (EnsembleRegressor([("v", VoxelLinearRegressor())], cv=1), "cv must be an int >= 2"),
    ],
)
def test_a_bad_parameter_is_refused_at_fit_before_the_data_is_read(estimator, message):
    # X names a scan that does not exist: the table is checked before X is read.
    with pytest.raises(InvalidParameterError, match=message):
        estimator.fit(["/nonexistent/scan.nii.gz"] * 4, [0, 1, 0, 1])
