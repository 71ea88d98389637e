"""Volume augmentation: reproducible draws, the promised perturbations, use in the readouts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import RidgeCV

from slicelearn import SliceLinearClassifier, SliceLinearRegressor
from slicelearn.data import AugmentedVolumes, VolumeAugmenter
from slicelearn.feature_cache import shared_feature_cache, volume_keys
from slicelearn.splits import grouped_folds

SMALL = {"weights": None, "feature_layer": "blocks.1", "feature_grid": 2}
STILL = {"max_rotation": 0.0, "max_shift": 0.0, "intensity": 0.0}


def _volume(seed=0, shape=(12, 16, 10)):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _task(n=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10, 24, 20)).astype(np.float32)
    y = rng.uniform(20, 80, size=n)
    X[:, 3:7, 6:16, 6:14] += (y / 20)[:, None, None, None]
    return X, y


def test_a_copy_is_reproducible_and_copies_differ():
    volume = _volume()
    augmenter = VolumeAugmenter()
    first = augmenter.transform_one(volume, copy=1)
    np.testing.assert_array_equal(first, VolumeAugmenter().transform_one(volume.copy(), copy=1))
    assert not np.allclose(first, augmenter.transform_one(volume, copy=2))
    assert not np.allclose(first, VolumeAugmenter(random_state=1).transform_one(volume, copy=1))
    assert first.shape == volume.shape and first.dtype == np.float32


def test_nothing_to_draw_is_the_identity_and_a_flip_is_an_exact_mirror():
    volume = _volume()
    still = VolumeAugmenter(flip=False, **STILL)
    np.testing.assert_array_equal(still.transform_one(volume, copy=3), volume)
    flipper = VolumeAugmenter(flip=True, **STILL)
    outcomes = set()
    for copy in range(1, 17):
        out = flipper.transform_one(volume, copy=copy)
        if np.array_equal(out, volume):
            outcomes.add("kept")
        else:
            np.testing.assert_allclose(out, volume[::-1], atol=1e-6)
            outcomes.add("mirrored")
    assert outcomes == {"kept", "mirrored"}


def test_the_intensity_field_stays_within_its_bounds_and_is_smooth():
    volume = np.ones((20, 24, 18), np.float32)
    out = VolumeAugmenter(flip=False, max_rotation=0, max_shift=0, intensity=0.2).transform_one(
        volume, copy=1
    )
    assert np.exp(-0.2) - 1e-5 <= out.min() and out.max() <= np.exp(0.2) + 1e-5
    assert out.max() - out.min() > 0.1  # it does vary
    assert np.abs(np.diff(out, axis=0)).max() < 0.05  # and smoothly


def test_a_shift_moves_a_blob_by_at_most_max_shift():
    volume = np.zeros((30, 30, 30), np.float32)
    volume[13:17, 13:17, 13:17] = 1
    augmenter = VolumeAugmenter(flip=False, max_rotation=0, max_shift=4, intensity=0)
    centres = []
    for copy in range(1, 9):
        out = augmenter.transform_one(volume, copy=copy)
        grid = np.indices(out.shape).reshape(3, -1)
        centre = (grid * out.ravel()).sum(1) / out.sum()
        centres.append(centre)
        assert np.abs(centre - 14.5).max() <= 4 + 1e-3
    assert np.ptp(np.array(centres), axis=0).max() > 1  # the draws differ


@pytest.mark.parametrize("name", ["max_rotation", "max_shift", "intensity"])
def test_bad_settings_are_named(name):
    with pytest.raises(ValueError, match=name):
        VolumeAugmenter(**{name: -1.0}).transform_one(_volume(), copy=1)


def test_augmented_volumes_key_each_copy_by_source_copy_and_recipe():
    X = np.stack([_volume(0), _volume(1)])
    keys = volume_keys(X)
    one = AugmentedVolumes(X, VolumeAugmenter(), 1, keys)
    assert len(set(one.cache_keys())) == 2
    assert one.cache_keys() != AugmentedVolumes(X, VolumeAugmenter(), 2, keys).cache_keys()
    assert (
        one.cache_keys()
        != AugmentedVolumes(X, VolumeAugmenter(intensity=0.2), 1, keys).cache_keys()
    )
    assert volume_keys(one) == one.cache_keys()
    np.testing.assert_array_equal(one[1], VolumeAugmenter().transform_one(X[1], 1, key=keys[1]))


def test_training_copies_are_extra_rows_grouped_with_their_scan():
    X, y = _task()
    augmenter = VolumeAugmenter(max_rotation=10, intensity=0.2)
    est = SliceLinearRegressor(**SMALL, augmentation=augmenter, augment_copies=2).fit(X, y)
    # Reference: ridge on the originals' and copies' features, penalty by grouped 5-fold CV.
    plain = SliceLinearRegressor(**SMALL).fit(X, y)
    keys = volume_keys(X)
    copies = [AugmentedVolumes(X, augmenter, c, keys) for c in (1, 2)]
    rows = np.concatenate(
        [plain._pooled_features(X, reset=False)]
        + [plain._pooled_features(c, reset=False) for c in copies]
    )
    groups = np.tile(np.arange(len(X)), 3)
    mean, scale = rows.mean(0), rows.std(0)
    scale[scale == 0] = 1
    assert est.feature_mean_.shape == mean.shape
    np.testing.assert_allclose(est.feature_mean_, mean, rtol=1e-6)
    # The penalty is chosen by folds that never split a scan from its copies.
    folds = grouped_folds(5, np.tile(y, 3), groups.astype(str), stratified=False, random_state=0)
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
    reference = RidgeCV(alphas=np.asarray(est.alphas), cv=folds, scoring="neg_mean_squared_error")
    reference.fit((rows - mean) / scale, np.tile(y, 3))
    assert est.alpha_ == reference.alpha_
    np.testing.assert_allclose(est.coef_, reference.coef_, rtol=1e-6, atol=1e-9)


def test_test_time_augmentation_averages_the_copies_predictions():
    X, y = _task()
    augmenter = VolumeAugmenter(max_rotation=10, intensity=0.2)
    est = SliceLinearRegressor(**SMALL, augmentation=augmenter, augment_copies=1).fit(X, y)
    tta = clone(est).set_params(test_time_augmentation=2).fit(X, y)
    keys = volume_keys(X)
    each = [est.predict(X)] + [
        est.predict(np.stack(AugmentedVolumes(X, augmenter, c, keys)[list(range(len(X)))]))
        for c in (1, 2)
    ]
    np.testing.assert_allclose(tta.predict(X), np.mean(each, axis=0), rtol=1e-5)


def test_copies_are_encoded_once_and_reused_across_fits():
    X, y = _task(seed=11)  # volumes no other test has encoded
    augmenter = VolumeAugmenter(random_state=7)
    cache = shared_feature_cache()
    before = cache.computed
    SliceLinearRegressor(**SMALL, augmentation=augmenter, augment_copies=2).fit(X, y)
    assert cache.computed - before == 3 * len(X)
    middle = cache.computed
    SliceLinearClassifier(**SMALL, augmentation=augmenter, augment_copies=2).fit(X, y > 50)
    assert cache.computed == middle


def test_augmentation_settings_are_checked_in_fit():
    X, y = _task(n=8)
    with pytest.raises(ValueError, match="needs an augmentation"):
        SliceLinearRegressor(**SMALL, test_time_augmentation=2).fit(X, y)
    with pytest.raises(ValueError, match="needs training copies"):
        SliceLinearRegressor(
            **SMALL, augmentation=VolumeAugmenter(), augment_copies=0, test_time_augmentation=2
        ).fit(X, y)
    with pytest.raises(ValueError, match="augment_copies"):
        SliceLinearRegressor(**SMALL, augmentation=VolumeAugmenter(), augment_copies=-1).fit(X, y)
    with pytest.raises(TypeError, match="VolumeAugmenter"):
        SliceLinearRegressor(**SMALL, augmentation="flip").fit(X, y)


def test_an_augmented_readout_round_trips_through_a_model_file(tmp_path):
    from slicelearn.model_files import load_model, save_model

    X, y = _task(n=12)
    augmenter = VolumeAugmenter(max_rotation=8, intensity=0.15, random_state=3)
    est = SliceLinearRegressor(
        **SMALL, augmentation=augmenter, augment_copies=1, test_time_augmentation=1
    ).fit(X, y)
    loaded = load_model(save_model(est, tmp_path / "age.slm"))
    assert loaded.augmentation.get_params() == augmenter.get_params()
    np.testing.assert_allclose(loaded.predict(X), est.predict(X), rtol=1e-6)
