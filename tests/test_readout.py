"""Linear readouts of frozen slice features: what they compute, and their model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from slicelearn import SliceLinearClassifier, SliceLinearRegressor
from slicelearn.model_files import load_model, model_info, save_model
from slicelearn.nn import SliceNet
from slicelearn.readout import DEFAULT_ALPHAS

SMALL = {"weights": None, "feature_layer": "blocks.1", "feature_grid": 2}


def _task(n=24, seed=0):
    """Volumes (n, 10, 32, 28) whose target is the brightness of a blob."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10, 32, 28)).astype(np.float32)
    y = rng.uniform(20, 80, size=n)
    X[:, 3:7, 10:20, 8:18] += (y / 20)[:, None, None, None]
    return X, y


def _slice_means(X, axis):
    torch.manual_seed(0)
    net = SliceNet(
        "efficientnet_lite0",
        None,
        axis=axis,
        position_embedding=None,
        freeze_encoder=True,
        feature_layer="blocks.1",
        feature_grid=2,
    ).eval()
    with torch.inference_mode():
        return np.stack(
            [net.encode(torch.from_numpy(v[None]))[0].mean(0).double().numpy() for v in X]
        )


def test_regressor_is_ridge_on_slice_averaged_features():
    X, y = _task()
    est = SliceLinearRegressor(**SMALL).fit(X[:18], y[:18])
    reference = make_pipeline(StandardScaler(), RidgeCV(alphas=np.asarray(DEFAULT_ALPHAS)))
    reference.fit(_slice_means(X[:18], "sagittal"), y[:18])
    np.testing.assert_allclose(
        est.predict(X[18:]), reference.predict(_slice_means(X[18:], "sagittal")), rtol=1e-6
    )
    assert est.alpha_ == reference[-1].alpha_
    assert np.corrcoef(est.predict(X), y)[0, 1] > 0.9  # it learns the blob's brightness


def test_several_axes_join_their_features():
    X, y = _task(n=12)
    one = SliceLinearRegressor(**SMALL).fit(X, y)
    three = SliceLinearRegressor(**SMALL, axis=("sagittal", "coronal", "axial")).fit(X, y)
    assert three.n_features_ == 3 * one.n_features_
    with pytest.raises(ValueError, match="axis must be one of"):
        SliceLinearRegressor(**SMALL, axis=("sagittal", "sagittal")).fit(X, y)


def test_classifier_is_logistic_regression_on_the_same_features():
    X, y = _task(n=30)
    labels = np.where(y > 50, "old", "young")
    clf = SliceLinearClassifier(**SMALL).fit(X[:24], labels[:24])
    reference = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=np.asarray(clf.Cs), cv=5, scoring="neg_log_loss", max_iter=5000, tol=1e-6
        ),
    ).fit(_slice_means(X[:24], "sagittal"), labels[:24])
    features = _slice_means(X[24:], "sagittal")
    np.testing.assert_allclose(
        clf.predict_proba(X[24:]), reference.predict_proba(features), rtol=1e-4, atol=1e-6
    )
    assert list(clf.classes_) == ["old", "young"]
    assert set(clf.predict(X)) <= {"old", "young"}


def test_classifier_fits_a_class_with_one_member():
    X, _ = _task(n=8)
    labels = np.array(["a"] * 7 + ["b"])
    clf = SliceLinearClassifier(**SMALL).fit(X, labels)
    assert clf.predict_proba(X).shape == (8, 2)


def test_model_files_round_trip_and_check_the_encoder(tmp_path):
    X, y = _task(n=12)
    est = SliceLinearRegressor(**SMALL, axis=("sagittal", "axial")).fit(X, y)
    path = save_model(est, tmp_path / "age.slm", metadata={"target": "age"})
    assert model_info(path)["task"] == "regression"
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    clf = SliceLinearClassifier(**SMALL).fit(X, np.where(y > 50, "old", "young"))
    loaded_clf = load_model(save_model(clf, tmp_path / "group.slm"))
    np.testing.assert_array_equal(loaded_clf.predict_proba(X), clf.predict_proba(X))
    loaded.encoder_digest_ = "0" * 64  # as if the weights package had changed
    with pytest.raises(ValueError, match="weights found here differ"):
        loaded.predict(X)


def test_bad_input_names_the_problem():
    X, y = _task(n=6)
    with pytest.raises(ValueError, match="X has 6 volumes but y has 5"):
        SliceLinearRegressor(**SMALL).fit(X, y[:5])
    y[2] = np.nan
    with pytest.raises(ValueError, match=r"y\[2\] is NaN"):
        SliceLinearRegressor(**SMALL).fit(X, y)
    with pytest.raises(ValueError, match="two classes"):
        SliceLinearClassifier(**SMALL).fit(X, ["a"] * 6)


def test_input_smoothing_is_the_readout_of_smoothed_volumes():
    from slicelearn.data.transforms import smooth_volume

    X, y = _task(n=12)
    smoothed = np.stack([smooth_volume(v, 1.5) for v in X])
    est = SliceLinearRegressor(**SMALL, input_smoothing=1.5).fit(X, y)
    reference = SliceLinearRegressor(**SMALL).fit(smoothed, y)
    np.testing.assert_allclose(est.predict(X), reference.predict(smoothed), rtol=1e-6)
    assert est.alpha_ == reference.alpha_
    # Not the unsmoothed model: the option changes what the encoder sees.
    plain = SliceLinearRegressor(**SMALL).fit(X, y)
    assert not np.allclose(est.predict(X), plain.predict(X))
    np.testing.assert_allclose(
        est.slice_contributions(X), reference.slice_contributions(smoothed), rtol=1e-5, atol=1e-9
    )


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "1"])
def test_bad_input_smoothing_is_named(bad):
    X, y = _task(n=8)
    with pytest.raises((TypeError, ValueError), match="input_smoothing"):
        SliceLinearRegressor(**SMALL, input_smoothing=bad).fit(X, y)


def test_slice_scale_resizes_what_the_encoder_sees_and_keys_the_features(tmp_path):
    X, y = _task(n=12)
    seen = []
    torch.manual_seed(0)
    net = SliceNet(
        "efficientnet_lite0", None, position_embedding=None, freeze_encoder=True, slice_scale=2.0
    ).eval()
    net.encoder.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    with torch.inference_mode():
        net(torch.as_tensor(X[:1]))
    assert tuple(seen[-1][-2:]) == (64, 56)  # 32 x 28 sagittal slices, doubled
    plain = SliceLinearRegressor(**SMALL).fit(X, y)
    doubled = SliceLinearRegressor(**SMALL, slice_scale=2.0).fit(X, y)
    # Other features, not the plain readout's from the process's cache.
    assert not np.allclose(doubled.feature_mean_, plain.feature_mean_)
    loaded = load_model(save_model(doubled, tmp_path / "doubled.slm"))
    assert loaded.slice_scale == 2.0
    np.testing.assert_array_equal(loaded.predict(X), doubled.predict(X))
    with pytest.raises(ValueError, match="slice_scale"):
        SliceLinearRegressor(**SMALL, slice_scale=0.0).fit(X, y)
