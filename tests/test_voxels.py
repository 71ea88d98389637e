"""Linear readouts of the voxels: what they compute, their errors and their model files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from sklearn.linear_model import LogisticRegressionCV, RidgeCV

from slicelearn import VoxelLinearClassifier, VoxelLinearRegressor
from slicelearn.model_files import load_model, model_info, save_model
from slicelearn.voxels import DEFAULT_VOXEL_ALPHAS, voxel_blocks


def _task(n=30, seed=0):
    """Volumes (n, 20, 20, 18), a head in a wide empty border, the target a blob's brightness."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, 20, 20, 18), dtype=np.float32)
    X[:, 6:14, 6:14, 5:13] = rng.normal(size=(n, 8, 8, 8)) + 3
    y = rng.uniform(20, 80, size=n)
    X[:, 8:12, 8:12, 7:11] += (y / 20)[:, None, None, None]
    return X, y


def _reference_features(X, smoothing=1.0, block=2):
    """What the readouts' docs say they compute, written out with numpy and scipy."""
    rows = []
    for volume in X.astype(np.float64):
        brain = volume != 0
        z = np.where(brain, (volume - volume[brain].mean()) / volume[brain].std(), 0.0)
        smooth = ndimage.gaussian_filter(z.astype(np.float32), smoothing)
        x, y, w = (s // block for s in smooth.shape)
        cubes = smooth[: x * block, : y * block, : w * block]
        rows.append(cubes.reshape(x, block, y, block, w, block).mean(axis=(1, 3, 5)).ravel())
    return np.stack(rows)


def test_regressor_is_ridge_on_smoothed_block_averaged_brain_voxels():
    X, y = _task()
    est = VoxelLinearRegressor().fit(X[:24], y[:24])
    train = _reference_features(X[:24])
    support = (train != 0).any(axis=0)
    reference = RidgeCV(alphas=np.asarray(DEFAULT_VOXEL_ALPHAS)).fit(train[:, support], y[:24])
    np.testing.assert_allclose(
        est.predict(X[24:]),
        reference.predict(_reference_features(X[24:])[:, support]),
        rtol=1e-4,
    )
    assert est.alpha_ == reference.alpha_
    np.testing.assert_array_equal(est.voxel_mask_, support)
    assert est.n_features_ == support.sum() < support.size  # the empty border is dropped
    assert np.corrcoef(est.predict(X[24:]), y[24:])[0, 1] > 0.9


@pytest.mark.filterwarnings("ignore::FutureWarning")  # the reference LogisticRegressionCV
def test_classifier_is_logistic_regression_on_the_same_voxels():
    X, y = _task(n=40)
    labels = np.where(y > 50, "old", "young")
    clf = VoxelLinearClassifier().fit(X[:32], labels[:32])
    train = _reference_features(X[:32])
    support = (train != 0).any(axis=0)
    reference = LogisticRegressionCV(
        Cs=np.asarray(clf.Cs), cv=5, scoring="neg_log_loss", max_iter=5000, tol=1e-6
    ).fit(train[:, support] - train[:, support].mean(axis=0), labels[:32])
    test = _reference_features(X[32:])[:, support] - train[:, support].mean(axis=0)
    np.testing.assert_allclose(
        clf.predict_proba(X[32:]), reference.predict_proba(test), rtol=1e-4, atol=1e-6
    )
    assert list(clf.classes_) == ["old", "young"]


def test_block_and_smoothing_change_the_features():
    volume = np.random.default_rng(0).normal(size=(9, 8, 6))
    assert voxel_blocks(volume, smoothing=0, block=1).shape == (9, 8, 6)
    np.testing.assert_allclose(voxel_blocks(volume, smoothing=0, block=1), volume, rtol=1e-6)
    np.testing.assert_allclose(
        voxel_blocks(volume, smoothing=0, block=2)[0, 0, 0], volume[:2, :2, :2].mean(), rtol=1e-6
    )
    assert voxel_blocks(volume, smoothing=0, block=3).shape == (3, 2, 2)
    X, y = _task(n=12)
    assert VoxelLinearRegressor(block=1).fit(X, y).n_features_ > (
        VoxelLinearRegressor(block=2).fit(X, y).n_features_
    )


def test_nifti_images_are_read_like_arrays():
    X, y = _task(n=12)
    images = [nib.Nifti1Image(volume, np.eye(4)) for volume in X]
    from_images = VoxelLinearRegressor().fit(images, y)
    from_arrays = VoxelLinearRegressor().fit(X, y)
    np.testing.assert_allclose(from_images.predict(images), from_arrays.predict(X), rtol=1e-6)


def test_bad_input_names_the_problem():
    X, y = _task(n=8)
    with pytest.raises(ValueError, match="X has 8 volumes but y has 7"):
        VoxelLinearRegressor().fit(X, y[:7])
    y_bad = y.copy()
    y_bad[3] = np.inf
    with pytest.raises(ValueError, match=r"y\[3\] is NaN or infinite"):
        VoxelLinearRegressor().fit(X, y_bad)
    with pytest.raises(ValueError, match="smoothing must be a number >= 0"):
        VoxelLinearRegressor(smoothing=-1).fit(X, y)
    with pytest.raises(ValueError, match="block must be an int >= 1"):
        VoxelLinearRegressor(block=0).fit(X, y)
    empty = X.copy()
    empty[5] = 0
    with pytest.raises(ValueError, match=r"X\[5\] is all zeros"):
        VoxelLinearRegressor().fit(empty, y)
    fitted = VoxelLinearRegressor().fit(X, y)
    with pytest.raises(ValueError, match=r"\(20, 20, 12\); the model was fitted on \(20, 20, 18\)"):
        fitted.predict(X[:, :, :, :12])
    with pytest.raises(ValueError, match="two classes"):
        VoxelLinearClassifier().fit(X, ["a"] * 8)


def test_model_files_round_trip_bit_for_bit(tmp_path):
    X, y = _task(n=16)
    est = VoxelLinearRegressor(block=1, smoothing=0.5).fit(X, y)
    loaded = load_model(save_model(est, tmp_path / "age.slm"))
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    assert loaded.get_params() == est.get_params()
    assert loaded.voxel_mask_.dtype == bool
    clf = VoxelLinearClassifier().fit(X, np.where(y > 50, "old", "young"))
    path = save_model(clf, tmp_path / "group.slm")
    assert model_info(path)["classes"] == ["old", "young"]
    np.testing.assert_array_equal(load_model(path).predict_proba(X), clf.predict_proba(X))


def test_each_scan_is_smoothed_once_per_recipe(monkeypatch):
    import slicelearn.voxels as voxels
    from slicelearn.feature_cache import RowCache

    calls = []
    real = voxels.voxel_blocks
    monkeypatch.setattr(voxels, "_BLOCK_CACHE", RowCache())
    monkeypatch.setattr(
        voxels, "voxel_blocks", lambda volume, *args: calls.append(args) or real(volume, *args)
    )
    X, y = _task(n=12)
    first = VoxelLinearRegressor().fit(X[:8], y[:8]).predict(X[8:])
    assert len(calls) == 12
    again = VoxelLinearRegressor().fit(X[:8], y[:8]).predict(X[8:])
    assert len(calls) == 12  # every scan's blocks came from the cache
    np.testing.assert_array_equal(again, first)
    sharper = VoxelLinearRegressor(smoothing=0.5).fit(X[:8], y[:8]).predict(X[8:])
    assert len(calls) == 24 and not np.allclose(sharper, first)  # another recipe, computed anew
    # A budget of one row keeps only the last one.
    small = RowCache(max_bytes=1)
    small.put(("a",), np.zeros(4))
    small.put(("b",), np.ones(4))
    assert small.get(("a",)) is None and small.get(("b",)) is not None
