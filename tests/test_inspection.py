"""Slice importance and NIfTI importance maps of fitted models."""

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import fast_params, write_scans

from slicelearn import SliceCNNClassifier, SliceCNNRegressor
from slicelearn.data import VolumePreprocessor
from slicelearn.inspection import importance_maps, mean_importance_map, slice_importance

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


def _fitted(pooling="attention", axis="sagittal", n=8, shape=(9, 10, 11), **extra):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, *shape)).astype(np.float32)
    y = np.linspace(-1, 1, n).astype(np.float32)  # small outputs: small float rounding
    params = fast_params(pooling=pooling, axis=axis, position_embedding=None, train_split=None)
    params.update(extra)
    return SliceCNNRegressor(**params).fit(X, y), X


def test_attention_is_the_pooling_weights():
    est, X = _fitted("attention")
    scores = slice_importance(est, X[:3], "attention")
    assert scores.shape == (3, 9)
    np.testing.assert_allclose(scores.sum(axis=1), 1, rtol=1e-5)
    est.module_.eval()
    with torch.no_grad():
        details = est.module_(torch.from_numpy(X[:3]), return_details=True)
    np.testing.assert_allclose(scores, details.attention.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_occlusion_is_the_change_without_that_slice(pooling):
    # Without a position embedding or whole-volume z-scoring, a volume lacking
    # the slice is exactly the set of slice tokens minus one.
    est, X = _fitted(pooling, standardize=False)
    scores = slice_importance(est, X[:2], "occlusion")
    assert scores.max() > 1e-3
    full = est.predict(X[:2])
    for slice_index in (0, 4, 8):
        without = est.predict(np.delete(X[:2], slice_index, axis=1))
        np.testing.assert_allclose(scores[:, slice_index], np.abs(full - without), atol=2e-5)


@pytest.mark.parametrize("axis, dim", [("sagittal", 0), ("coronal", 1), ("axial", 2)])
def test_gradient_map_is_voxelwise_and_follows_the_slicing_axis(axis, dim):
    est, X = _fitted("mean", axis=axis)
    volume = X[:1].copy()
    # Content in two slices only: gradient x input is zero everywhere else.
    kept = np.zeros(volume.shape[1:], dtype=bool)
    kept[(slice(None),) * dim + (slice(2, 4),)] = True
    volume[0][~kept] = 0.0
    (image,) = importance_maps(est, volume, "gradient", affine=AFFINE)
    values = image.get_fdata()
    assert values.shape == volume.shape[1:]
    assert not values[~kept].any() and values[kept].sum() > 0
    per_slice = slice_importance(est, volume, "gradient")[0]
    other = tuple(d for d in range(3) if d != dim)
    np.testing.assert_allclose(per_slice, values.sum(axis=other), rtol=1e-4)


def test_per_slice_maps_fill_their_slices_along_the_axis():
    est, X = _fitted("attention", axis="coronal")
    scores = slice_importance(est, X[:2], "attention")
    images = importance_maps(est, X[:2], "attention", affine=AFFINE)
    for image, row in zip(images, scores):
        values = image.get_fdata()
        np.testing.assert_array_equal(image.affine, AFFINE)
        np.testing.assert_allclose(values[3, :, 5], row, rtol=1e-6)
        np.testing.assert_allclose(values.std(axis=(0, 2)), 0, atol=1e-7)
    mean = mean_importance_map(est, X[:2], "attention", affine=AFFINE)
    np.testing.assert_allclose(mean.get_fdata()[0, :, 0], scores.mean(axis=0), rtol=1e-5)


def test_cropped_slices_score_zero():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(6, 12, 10, 11)).astype(np.float32)
    X[:, :2] = 0.0
    X[:, -3:] = 0.0
    est = SliceCNNRegressor(
        **fast_params(pooling="mean", crop_empty_slices=True, position_embedding=None)
    ).fit(X, np.arange(6.0))
    assert est.slice_range_ == (2, 9)
    scores = slice_importance(est, X[:2], "occlusion")
    assert scores.shape == (2, 12)
    assert not scores[:, :2].any() and not scores[:, 9:].any() and scores[:, 2:9].any()


def test_maps_come_back_in_each_scans_own_space(tmp_path):
    # A left-right and anterior-posterior flipped scan: the model sees it in RAS.
    flipped = np.array([[-2.0, 0, 0, 30], [0, -2.0, 0, 40], [0, 0, 2.0, -20], [0, 0, 0, 1]])
    paths = write_scans(tmp_path, n=6, shape=(12, 14, 10), affine=flipped)
    est = SliceCNNRegressor(**fast_params(pooling="mean", position_embedding=None))
    est.fit(paths, np.linspace(20, 70, 6))
    maps = importance_maps(est, paths[:2], "gradient")
    model_maps = importance_maps(est, paths[:2], "gradient", space="model")
    for path, image, model_image in zip(paths, maps, model_maps):
        scan = nib.load(path)
        assert image.shape == scan.shape
        np.testing.assert_allclose(image.affine, scan.affine)
        # Same world positions, same values: the map was only flipped back.
        np.testing.assert_allclose(
            image.get_fdata()[::-1, ::-1], model_image.get_fdata(), atol=1e-5
        )
        assert model_image.affine[0, 0] > 0  # RAS, as the model saw it


def test_maps_of_resampled_scans_return_to_the_scan_grid(tmp_path):
    paths = write_scans(tmp_path, n=6, shape=(12, 14, 10))
    prep = VolumePreprocessor(target=None, target_shape=(10, 12, 8), voxel_size=3.0, cache_dir=None)
    est = SliceCNNRegressor(
        **fast_params(pooling="mean", position_embedding=None, preprocessing=prep)
    ).fit(paths, np.linspace(20, 70, 6))
    (model_map,) = importance_maps(est, paths[:1], "occlusion", space="model")
    (scan_map,) = importance_maps(est, paths[:1], "occlusion")
    assert model_map.shape == (10, 12, 8)
    np.testing.assert_allclose(model_map.affine[:3, :3], 3 * np.eye(3))
    assert scan_map.shape == (12, 14, 10)
    np.testing.assert_allclose(scan_map.affine, nib.load(paths[0]).affine)
    # The model's grid is centred on the scan, so the scan's centre gets the central score.
    centre_world = model_map.affine @ np.array([4.5, 5.5, 3.5, 1.0])
    centre_voxel = np.linalg.solve(scan_map.affine, centre_world)[:3].round().astype(int)
    model_values = model_map.get_fdata()
    assert scan_map.get_fdata()[tuple(centre_voxel)] == pytest.approx(
        model_values[4:6, 5:7, 3:5].mean(), rel=0.5
    )


def test_classifier_explains_a_chosen_output():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, 8, 10, 9)).astype(np.float32)
    y = np.array(["a", "b", "c"] * 3)
    params = fast_params(pooling="mean", position_embedding=None, train_split=None)
    est = SliceCNNClassifier(**params).fit(X, y)
    first = slice_importance(est, X[:1], "gradient", output=0)
    second = slice_importance(est, X[:1], "gradient", output=2)
    assert first.shape == (1, 8) and not np.allclose(first, second)
    with pytest.raises(ValueError, match="output=3 is not an output index"):
        slice_importance(est, X[:1], "occlusion", output=3)


def test_errors_name_the_fix():
    est, X = _fitted("mean")
    with pytest.raises(ValueError, match="needs pooling='attention'"):
        slice_importance(est, X, "attention")
    with pytest.raises(ValueError, match="method must be one of"):
        slice_importance(est, X, "saliency")
    with pytest.raises(ValueError, match="pass affine="):
        importance_maps(est, X[:1])
    with pytest.raises(ValueError, match="4x4"):
        importance_maps(est, X[:1], affine=np.eye(3))
    with pytest.raises(ValueError, match="space must be"):
        importance_maps(est, X[:1], affine=AFFINE, space="template")
    with pytest.raises(ValueError, match="not fitted"):
        slice_importance(SliceCNNRegressor(), X)
