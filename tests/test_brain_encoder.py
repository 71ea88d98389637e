"""Readouts of deepbet's brain-trained 3D encoder: features, learning, model files, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from slicelearn import (
    BrainEncoderClassifier,
    BrainEncoderRegressor,
    EnsembleRegressor,
    VoxelLinearRegressor,
)
from slicelearn.brain_encoder import brain_encoder_features
from slicelearn.model_files import load_model, model_info, save_model
from slicelearn.nn import DEEPBET_LAYERS, deepbet_input, load_deepbet_encoder

#: Small volumes at the encoder's own scale: quick, and every stage has a grid.
FAST = {"feature_layers": ("down2", "down3"), "feature_grid": 2, "input_zoom": 1.0}


def _brains(n: int, seed: int = 0, shape=(32, 36, 32)) -> tuple[np.ndarray, np.ndarray]:
    """Ellipsoid "brains" (zero outside) whose radius is the target, with texture."""
    rng = np.random.default_rng(seed)
    radius = rng.uniform(7, 14, n)
    grid = np.stack(np.meshgrid(*[np.arange(s) - s / 2 for s in shape], indexing="ij"))
    distance = np.sqrt((grid**2).sum(axis=0))
    volumes = np.zeros((n, *shape), np.float32)
    for i, r in enumerate(radius):
        inside = distance < r
        tissue = 1.0 + 0.5 * (distance < 0.6 * r) + 0.2 * rng.normal(size=shape)
        volumes[i][inside] = tissue[inside]
    return volumes, radius


def test_deepbet_input_reads_a_stripped_brain_as_deepbet_reads_a_scan():
    volume, _ = _brains(1)
    x = deepbet_input(volume[0], zoom=1.0)[0, 0].numpy()
    brain = volume[0] != 0
    # deepbet's scale: mean 0.449 and SD 0.226 over the volume, the background darkest.
    assert x.mean() == pytest.approx(0.449, abs=1e-3) and x.std() == pytest.approx(0.226, abs=1e-3)
    assert np.allclose(x[~brain], x.min()) and x[brain].mean() > x[~brain].mean()
    assert deepbet_input(volume[0], zoom=2.0).shape[2:] == tuple(2 * s for s in volume.shape[1:])


def test_features_have_the_documented_size_and_tell_volumes_apart():
    volumes, _ = _brains(2)
    features = brain_encoder_features(volumes[0], ("down1", "down3"), grid=2, zoom=1.0)
    assert features.shape == (32 * 9 + 128 * 9,) and features.dtype == np.float32
    assert np.isfinite(features).all()
    np.testing.assert_array_equal(
        features, brain_encoder_features(volumes[0], ("down1", "down3"), grid=2, zoom=1.0)
    )
    other = brain_encoder_features(volumes[1], ("down1", "down3"), grid=2, zoom=1.0)
    assert not np.allclose(features, other)
    only_global = brain_encoder_features(volumes[0], ("down3",), grid=1, zoom=1.0)
    np.testing.assert_allclose(only_global, features[32 * 9 : 32 * 9 + 128], rtol=1e-5)


def test_the_regressor_learns_brain_size_and_its_model_file_predicts_the_same(tmp_path):
    X, radius = _brains(40)
    model = BrainEncoderRegressor(**FAST).fit(X[:30], radius[:30])
    predicted = model.predict(X[30:])
    assert model.n_features_ == 64 * 9 + 128 * 9
    # Held-out brains: the size is read from the encoder's maps, far better than the mean.
    error = np.abs(predicted - radius[30:]).mean()
    assert error < 0.5 * np.abs(radius[30:] - radius[:30].mean()).mean(), error
    assert np.corrcoef(predicted, radius[30:])[0, 1] > 0.8
    path = save_model(model, tmp_path / "brain.slm")
    assert model_info(path)["class"] == "slicelearn.brain_encoder.BrainEncoderRegressor"
    loaded = load_model(path)
    assert loaded.encoder_digest_ == load_deepbet_encoder().digest
    np.testing.assert_array_equal(loaded.predict(X[30:]), predicted)


def test_the_classifier_and_an_ensemble_with_voxels(tmp_path):
    X, radius = _brains(30, seed=1)
    labels = np.where(radius > np.median(radius), "large", "small")
    clf = BrainEncoderClassifier(**FAST).fit(X[:22], labels[:22])
    assert list(clf.classes_) == ["large", "small"]
    assert (clf.predict(X[22:]) == labels[22:]).mean() >= 0.75
    path = save_model(clf, tmp_path / "clf.slm")
    np.testing.assert_array_equal(load_model(path).predict_proba(X[22:]), clf.predict_proba(X[22:]))
    ensemble = EnsembleRegressor(
        [("brain", BrainEncoderRegressor(**FAST)), ("voxels", VoxelLinearRegressor())]
    ).fit(X[:22], radius[:22])
    members = [m.predict(X[22:]) for m in ensemble.estimators_]
    np.testing.assert_allclose(ensemble.predict(X[22:]), np.mean(members, axis=0), rtol=1e-6)
    loaded = load_model(save_model(ensemble, tmp_path / "ensemble.slm"))
    np.testing.assert_allclose(loaded.predict(X[22:]), ensemble.predict(X[22:]), rtol=1e-9)


def test_each_scan_is_encoded_once_per_grid(monkeypatch):
    import slicelearn.brain_encoder as brain_encoder
    from slicelearn.feature_cache import RowCache

    calls = []
    real = brain_encoder._pooled_stages
    monkeypatch.setattr(brain_encoder, "_FEATURE_ROWS", RowCache())
    monkeypatch.setattr(
        brain_encoder,
        "_pooled_stages",
        lambda volume, *args: calls.append(args) or real(volume, *args),
    )
    X, radius = _brains(10)
    first = BrainEncoderRegressor(**FAST).fit(X[:8], radius[:8]).predict(X[8:])
    assert len(calls) == 10
    again = BrainEncoderRegressor(**FAST).fit(X[:8], radius[:8]).predict(X[8:])
    assert len(calls) == 10  # every scan's features came from the cache
    np.testing.assert_array_equal(again, first)
    # Other stages, and the volume averages alone (grid 1), come from that one pass.
    for params in ({"feature_layers": ("down0", "down3")}, {"feature_grid": 1}):
        other = BrainEncoderRegressor(**{**FAST, **params}).fit(X[:8], radius[:8])
        assert len(calls) == 10
    assert other.n_features_ == 64 + 128
    # Features from the cache are those computed directly.
    cached = other._feature_matrix(X[:2], reset=False)
    direct = np.stack([brain_encoder_features(x, ("down2", "down3"), 1, 1.0) for x in X[:2]])
    np.testing.assert_array_equal(cached, direct)
    before = len(calls)
    BrainEncoderRegressor(**{**FAST, "feature_grid": 3}).fit(X[:8], radius[:8])
    assert len(calls) == before + 8  # another grid: one more pass for each training scan


def test_another_network_shapes_and_parameters_are_refused(monkeypatch):
    X, radius = _brains(8)
    model = BrainEncoderRegressor(**FAST).fit(X, radius)
    with pytest.raises(ValueError, match=r"shape \(32, 36, 30\).*fitted on \(32, 36, 32\)"):
        model.predict(X[:, :, :, :30])
    encoder = load_deepbet_encoder()
    monkeypatch.setattr(encoder, "digest", "0" * 64)
    with pytest.raises(ValueError, match="deepbet's network found here differs"):
        model.predict(X)
    for layers in (("up0",), "down3", (), ("down3", "down3")):
        with pytest.raises(ValueError, match="feature_layers") as error:
            BrainEncoderRegressor(feature_layers=layers).fit(X, radius)
        assert all(name in str(error.value) for name in DEEPBET_LAYERS)
