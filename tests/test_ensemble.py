"""Ensembles: what averaging and stacking compute, their folds, errors and model files."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, KFold, cross_val_predict

from slicelearn import (
    EnsembleClassifier,
    EnsembleRegressor,
    SliceCNNRegressor,
    SliceLinearClassifier,
    SliceLinearRegressor,
    VoxelLinearClassifier,
    VoxelLinearRegressor,
)
from slicelearn.model_files import load_model, model_info, save_model

SLICES = {"weights": None, "feature_layer": "blocks.1", "feature_grid": 2}


def _task(n=30, seed=0, shape=(10, 32, 28)):
    """Volumes (n, *shape) whose target is the brightness of a blob."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, *shape)).astype(np.float32)
    y = rng.uniform(20, 80, size=n)
    X[:, 3:7, 10:20, 8:18] += (y / 20)[:, None, None, None]
    return X, y


def _regressors():
    return [("slices", SliceLinearRegressor(**SLICES)), ("voxels", VoxelLinearRegressor())]


def _classifiers():
    return [("slices", SliceLinearClassifier(**SLICES)), ("voxels", VoxelLinearClassifier())]


def test_mean_averages_the_members_fitted_alone():
    X, y = _task()
    ensemble = EnsembleRegressor(_regressors()).fit(X[:24], y[:24])
    alone = [clone(member).fit(X[:24], y[:24]).predict(X[24:]) for _, member in _regressors()]
    np.testing.assert_allclose(ensemble.predict(X[24:]), np.mean(alone, axis=0), rtol=1e-12)
    assert ensemble.weights_.tolist() == [0.5, 0.5] and ensemble.intercept_ == 0.0
    assert set(ensemble.named_estimators_) == {"slices", "voxels"}
    labels = np.where(y > 50, "old", "young")
    classifier = EnsembleClassifier(_classifiers()).fit(X[:24], labels[:24])
    alone = [
        clone(member).fit(X[:24], labels[:24]).predict_proba(X[24:]) for _, member in _classifiers()
    ]
    np.testing.assert_allclose(classifier.predict_proba(X[24:]), np.mean(alone, axis=0))
    assert list(classifier.classes_) == ["old", "young"]


def test_stack_weights_come_from_out_of_fold_predictions_inside_the_training_data():
    X, y = _task()
    ensemble = EnsembleRegressor(_regressors(), combine="stack", cv=3).fit(X, y)
    folds = KFold(3, shuffle=True, random_state=0)
    out_of_fold = np.column_stack(
        [cross_val_predict(clone(member), X, y, cv=folds) for _, member in _regressors()]
    )
    line = LinearRegression(positive=True).fit(out_of_fold, y)
    np.testing.assert_allclose(ensemble.weights_, line.coef_, rtol=1e-8, atol=1e-10)
    assert ensemble.intercept_ == pytest.approx(line.intercept_)
    assert (ensemble.weights_ >= 0).all()
    refit = [clone(member).fit(X, y).predict(X[:5]) for _, member in _regressors()]
    np.testing.assert_allclose(
        ensemble.predict(X[:5]), np.column_stack(refit) @ line.coef_ + line.intercept_
    )


def test_stacking_with_groups_keeps_each_subjects_scans_in_one_fold():
    X, y = _task(n=24)
    groups = np.repeat([f"sub-{i:02d}" for i in range(12)], 2)  # two scans per subject
    ensemble = EnsembleRegressor(_regressors(), combine="stack", cv=3).fit(X, y, groups=groups)
    out_of_fold = np.zeros((24, 2))
    for train, test in GroupKFold(3).split(X, y, groups):
        assert not set(groups[train]) & set(groups[test])
        for column, (_, member) in enumerate(_regressors()):
            # The members choose their penalties over subjects too.
            fitted = clone(member).fit(X[train], y[train], groups=groups[train])
            out_of_fold[test, column] = fitted.predict(X[test])
    line = LinearRegression(positive=True).fit(out_of_fold, y)
    np.testing.assert_allclose(ensemble.weights_, line.coef_, rtol=1e-8, atol=1e-10)


def test_stacked_classifier_folds_keep_subjects_and_classes_together():
    X, y = _task(n=24)
    labels = np.where(y > 50, "old", "young")
    groups = np.repeat([f"sub-{i:02d}" for i in range(12)], 2)
    labels = labels[::2].repeat(2)  # a subject's two scans share a label
    classifier = EnsembleClassifier(_classifiers(), combine="stack", cv=3)
    proba = classifier.fit(X, labels, groups=groups).predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    folds = classifier._folds(24, classifier.label_encoder_.transform(labels), groups)
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        assert set(labels[train]) == {"old", "young"}


def test_stacked_classifier_learns_from_log_probabilities():
    X, y = _task(n=40)
    labels = np.where(y > 50, "old", "young")
    classifier = EnsembleClassifier(_classifiers(), combine="stack", cv=3).fit(X[:32], labels[:32])
    proba = classifier.predict_proba(X[32:])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert classifier.stacker_coef_.shape == (1, 4)  # two members, two classes each
    assert (classifier.predict(X[32:]) == labels[32:]).mean() >= 0.75


def test_a_grid_search_chooses_the_combination_inside_its_folds():
    X, y = _task(n=24)
    search = GridSearchCV(
        EnsembleRegressor(_regressors()), {"combine": ["mean", "stack"], "cv": [3]}, cv=2
    ).fit(X, y)
    assert search.best_params_["combine"] in ("mean", "stack")
    assert clone(search.best_estimator_).get_params()["combine"] == search.best_params_["combine"]


def test_bad_ensembles_are_named():
    X, y = _task(n=12)
    with pytest.raises(ValueError, match="distinct names"):
        EnsembleRegressor([("a", VoxelLinearRegressor()), ("a", VoxelLinearRegressor())]).fit(X, y)
    with pytest.raises(ValueError, match="non-empty list of \\(name, estimator\\) pairs"):
        EnsembleRegressor([VoxelLinearRegressor()]).fit(X, y)
    with pytest.raises(ValueError, match="combine must be one of"):
        EnsembleRegressor(_regressors(), combine="median").fit(X, y)
    with pytest.raises(ValueError, match="cv must be an int >= 2"):
        EnsembleRegressor(_regressors(), combine="stack", cv=1).fit(X, y)
    with pytest.raises(ValueError, match="two classes"):
        EnsembleClassifier(_classifiers()).fit(X, ["a"] * 12)
    with pytest.raises(ValueError, match="at least 2 scans of every class"):
        EnsembleClassifier(_classifiers(), combine="stack").fit(X, ["a"] * 11 + ["b"])


def test_model_files_store_every_member_and_the_weights(tmp_path):
    X, y = _task(n=20, shape=(8, 32, 32))
    network = SliceCNNRegressor(
        encoder="cnn2d", weights=None, max_epochs=2, train_split=None, verbose=0, random_state=0
    )
    members = [*_regressors(), ("network", network)]
    for combine in ("mean", "stack"):
        ensemble = EnsembleRegressor(members, combine=combine, cv=2).fit(X, y)
        path = save_model(ensemble, tmp_path / f"{combine}.slm")
        loaded = load_model(path)
        np.testing.assert_array_equal(loaded.predict(X), ensemble.predict(X))
        np.testing.assert_array_equal(loaded.weights_, ensemble.weights_)
        assert [name for name, _ in loaded.estimators] == ["slices", "voxels", "network"]
        assert model_info(path)["task"] == "regression"
    labels = np.where(y > 50, "old", "young")
    classifier = EnsembleClassifier(_classifiers(), combine="stack", cv=2).fit(X, labels)
    path = save_model(classifier, tmp_path / "group.slm")
    assert model_info(path)["classes"] == ["old", "young"]
    np.testing.assert_array_equal(load_model(path).predict_proba(X), classifier.predict_proba(X))


def test_a_member_that_cannot_be_stored_is_named(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 3)), rng.normal(size=12)
    ensemble = EnsembleRegressor([("line", LinearRegression())]).fit(X, y)
    with pytest.raises(TypeError, match="LinearRegression \\(the ensemble's member 'line'\\)"):
        save_model(ensemble, tmp_path / "line.slm")
    assert not (tmp_path / "line.slm").exists()


def test_members_parameters_are_routed_by_name_and_a_grid_search_tunes_them():
    X, y = _task(n=24)
    ensemble = EnsembleRegressor(_regressors())
    params = ensemble.get_params()
    assert params["slices__feature_grid"] == 2 and params["voxels__block"] == 2
    assert set(ensemble.get_params(deep=False)) == {"estimators", "combine", "cv", "random_state"}
    ensemble.set_params(slices__feature_grid=1, voxels=VoxelLinearRegressor(block=3), cv=3)
    members = dict(ensemble.estimators)
    assert members["slices"].feature_grid == 1 and members["voxels"].block == 3
    assert ensemble.cv == 3 and clone(ensemble).get_params()["voxels__block"] == 3
    with pytest.raises(ValueError, match="'nothing'"):
        ensemble.set_params(nothing__alpha=1.0)
    search = GridSearchCV(
        EnsembleRegressor(_regressors()),
        {"voxels__smoothing": [0.0, 2.0]},
        cv=KFold(3),
        scoring="neg_mean_absolute_error",
    ).fit(X, y)
    assert set(search.cv_results_["param_voxels__smoothing"]) == {0.0, 2.0}
    assert dict(search.best_estimator_.estimators)["voxels"].smoothing in (0.0, 2.0)


def test_the_recommended_model_trains_saves_and_predicts_the_same(tmp_path):
    from slicelearn.callbacks import CosineLRSchedule
    from slicelearn.presets import recommended_model

    X, y = _task(n=16, shape=(8, 32, 32))
    model = recommended_model("regression").set_params(
        network__encoder="cnn2d",
        network__weights=None,
        network__max_epochs=3,
        network__precision="fp32",
        ridge__weights=None,
        ridge__feature_layer="blocks.1",
    )
    model.fit(X, y)
    network = model.named_estimators_["network"]
    # The schedule follows max_epochs as set: from lr down, over 3 epochs.
    assert isinstance(dict(network.callbacks)["lr_schedule"], CosineLRSchedule)
    rates = network.history[:, "event_lr"]
    assert len(rates) == 3 and rates[0] == pytest.approx(network.lr) and rates[2] < rates[1]
    loaded = load_model(save_model(model, tmp_path / "default.slm"))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert isinstance(dict(loaded.estimators_[0].callbacks)["lr_schedule"], CosineLRSchedule)


def test_a_report_says_which_member_its_slice_importance_is_of(tmp_path, monkeypatch):
    import slicelearn.report as report

    drawn = []
    monkeypatch.setattr(report, "_importance_map", lambda *args: drawn.append(args[3]))
    X, y = _task(n=12)
    ensemble = EnsembleRegressor([("voxels", VoxelLinearRegressor()), *_regressors()[:1]])
    ensemble.fit(X, y)
    prediction = ensemble.predict(X)
    report.write_report(tmp_path, ensemble, X, y, prediction, {"mae": 1.0, "pearson_r": 0.5})
    assert drawn and drawn[0].endswith("(the ensemble's 'slices' member alone)")
    # A model of its own needs no such note.
    alone = ensemble.named_estimators_["slices"]
    report.write_report(tmp_path, alone, X, y, alone.predict(X), {"mae": 1.0, "pearson_r": 0.5})
    assert "member" not in drawn[1]


def test_the_ensemble_refuses_sparse_input_and_counts_array_likes():
    import scipy.sparse

    from slicelearn import EnsembleClassifier, VoxelLinearClassifier

    ensemble = EnsembleClassifier(
        [("a", VoxelLinearClassifier(smoothing=0)), ("b", VoxelLinearClassifier(block=1))]
    )
    with pytest.raises(TypeError, match="volumes must be dense arrays"):
        ensemble.fit(scipy.sparse.random(6, 8, format="csr"), np.arange(6) % 2)

    class NoLength:  # an array-like without len(), as sklearn's _NotAnArray
        def __init__(self, data):
            self.data = data

        def __array__(self, dtype=None, copy=None):
            return self.data

    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 4, 4, 4)).astype(np.float32) + 5
    labels = np.arange(12) % 2
    X[labels == 1, :2] += 1
    fitted = ensemble.fit(NoLength(X), labels)
    np.testing.assert_array_equal(fitted.predict(NoLength(X)), fitted.predict(X))
