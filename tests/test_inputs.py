"""One way in for data: both families read X and check y the same way."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fast_params, write_scans
from sklearn.exceptions import DataConversionWarning

from slicelearn import (
    SliceCNNRegressor,
    SliceLinearClassifier,
    SliceLinearRegressor,
    VoxelLinearRegressor,
)
from slicelearn.data import PreprocessedVolumes, VolumePreprocessor, check_targets, read_volumes
from slicelearn.inspection import slice_importance

SMALL = {"weights": None, "feature_layer": "blocks.1", "feature_grid": 2}


def test_arrays_stay_in_memory_and_refuse_a_preprocessor():
    volumes, preprocessor = read_volumes(np.ones((3, 4, 5, 6), dtype=np.float64))
    assert volumes.dtype == np.float32 and volumes.shape == (3, 4, 5, 6) and preprocessor is None
    with pytest.raises(ValueError, match="an array carries no affine"):
        read_volumes(np.ones((3, 4, 5, 6)), VolumePreprocessor(cache_dir=None))


def test_scans_stay_on_disk_behind_the_fitted_preprocessor(tmp_path):
    paths = write_scans(tmp_path, n=3)
    volumes, fitted = read_volumes(paths, VolumePreprocessor(target=None, cache_dir=None))
    assert isinstance(volumes, PreprocessedVolumes) and volumes.preprocessor is fitted
    # A fitted model's preprocessor reads new scans; nothing is fitted again.
    again, same = read_volumes(paths[:2], None, fitted)
    assert same is fitted and len(again) == 2
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        read_volumes([*paths, str(tmp_path / "missing.nii.gz")], None, fitted)


def test_targets_are_checked_against_the_volumes():
    with pytest.raises(ValueError, match="Model requires y to be passed"):
        check_targets(None, 3, "Model")
    with pytest.raises(ValueError, match="X has 3 volumes but y has 2 targets"):
        check_targets([1, 2], 3, "Model")
    with pytest.warns(DataConversionWarning):
        column = check_targets(np.arange(3.0)[:, None], 3, "Model")
    assert column.shape == (3,)
    with pytest.raises(ValueError, match="Model predicts one target: y must be 1D"):
        check_targets(np.ones((3, 2)), 3, "Model")
    assert check_targets(np.ones((3, 2)), 3, "Model", columns="any").shape == (3, 2)


@pytest.mark.parametrize("kind", [SliceLinearRegressor, VoxelLinearRegressor])
def test_readouts_take_a_column_of_targets_with_a_warning(kind):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 6, 32, 32)).astype(np.float32)
    y = rng.uniform(20, 80, size=12)
    params = SMALL if kind is SliceLinearRegressor else {}
    with pytest.warns(DataConversionWarning):
        column = kind(**params).fit(X, y[:, None])
    np.testing.assert_allclose(column.predict(X), kind(**params).fit(X, y).predict(X))


def test_both_families_see_the_same_volumes_of_the_same_scans(tmp_path):
    paths = write_scans(tmp_path, n=6, shape=(12, 34, 33))
    ages = np.linspace(20, 70, 6)
    prep = VolumePreprocessor(target=None, normalize="zscore", cache_dir=None)
    network = SliceCNNRegressor(**fast_params(preprocessing=prep, max_epochs=1, train_split=None))
    readout = VoxelLinearRegressor(preprocessing=prep)
    network.fit(paths, ages)
    readout.fit(paths, ages)
    seen = [list(model.iter_volumes(paths[:3])) for model in (network, readout)]
    assert len(seen[0]) == 3 and seen[0][0].shape == (12, 34, 33)
    for a, b in zip(*seen):
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def test_a_readout_refuses_volumes_of_another_grid():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 6, 32, 32)).astype(np.float32)
    model = SliceLinearRegressor(**SMALL).fit(X, np.arange(10.0))
    with pytest.raises(ValueError, match=r"shape \(7, 32, 32\); the model was fitted on"):
        model.predict(rng.normal(size=(2, 7, 32, 32)).astype(np.float32))


def test_slice_importance_of_a_readout_is_its_slice_contributions():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 6, 32, 32)).astype(np.float32)
    labels = np.array(["a", "b"] * 5)
    model = SliceLinearClassifier(**SMALL).fit(X, labels)
    terms = model.slice_contributions(X[:3])
    assert terms.shape == (3, 6)
    np.testing.assert_allclose(slice_importance(model, X[:3]), terms, rtol=1e-6)
    np.testing.assert_allclose(slice_importance(model, X[:3], "contribution"), terms, rtol=1e-6)
    with pytest.raises(ValueError, match="one method, 'contribution'; got 'occlusion'"):
        slice_importance(model, X[:3], "occlusion")
    with pytest.warns(FutureWarning, match="renamed slice_contributions"):
        np.testing.assert_array_equal(model.slice_importance(X[:3]), terms)
