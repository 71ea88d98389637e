"""Bias-corrected brain age: no age dependence left in held-out gaps, no leakage."""

import numpy as np
import pytest
from conftest import fast_params
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.utils.estimator_checks import check_estimator

from slicelearn import SliceCNNRegressor
from slicelearn.brain_age import BiasCorrectedRegressor


def _shrinking_cohort(n=600, seed=0):
    """Noisy features of age: least squares then regresses toward the mean."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 85, n)
    X = age[:, None] + rng.normal(scale=30, size=(n, 8))
    return X, age


def test_held_out_gap_no_longer_correlates_with_age():
    X, age = _shrinking_cohort()
    train, test = np.arange(300), np.arange(300, 600)
    cv = KFold(5, shuffle=True, random_state=0)
    model = BiasCorrectedRegressor(LinearRegression(), cv=cv).fit(X[train], age[train])
    raw_gap = model.estimator_.predict(X[test]) - age[test]
    gap = model.gap(X[test], age[test])
    assert np.corrcoef(raw_gap, age[test])[0, 1] < -0.4  # the bias is there to correct
    assert abs(np.corrcoef(gap, age[test])[0, 1]) < 0.1
    # Only the scale of the predictions changes: they stay perfectly correlated.
    corrected = model.predict(X[test])
    np.testing.assert_allclose(np.corrcoef(corrected, model.estimator_.predict(X[test]))[0, 1], 1)
    assert model.slope_ < 1


def test_correction_is_fitted_on_out_of_fold_predictions_only():
    X, age = _shrinking_cohort(n=120)
    cv = KFold(4, shuffle=True, random_state=1)
    model = BiasCorrectedRegressor(Ridge(alpha=2e4), cv=cv).fit(X, age)
    expected = cross_val_predict(Ridge(alpha=2e4), X, age, cv=cv)
    np.testing.assert_allclose(model.oof_predictions_, expected)
    slope, intercept = np.polyfit(age, expected, 1)
    assert model.slope_ == pytest.approx(slope)
    assert model.intercept_ == pytest.approx(intercept)


def test_inside_outer_cross_validation_the_test_fold_takes_no_part():
    X, age = _shrinking_cohort(n=200)
    outer = KFold(5, shuffle=True, random_state=2)
    corrected = cross_val_predict(BiasCorrectedRegressor(Ridge(alpha=2e4)), X, age, cv=outer)
    # Changing only the test fold's ages leaves its predictions unchanged.
    train, test = next(outer.split(X))
    shuffled = age.copy()
    shuffled[test] = shuffled[test][::-1]
    a = BiasCorrectedRegressor(Ridge(alpha=2e4)).fit(X[train], age[train]).predict(X[test])
    b = BiasCorrectedRegressor(Ridge(alpha=2e4)).fit(X[train], shuffled[train]).predict(X[test])
    np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(corrected[test], a)
    assert abs(np.corrcoef(corrected - age, age)[0, 1]) < 0.2


def test_wraps_a_slice_model(small_volumes):
    X, age = small_volumes
    slice_model = SliceCNNRegressor(**fast_params(train_split=None, pooling="mean"))
    model = BiasCorrectedRegressor(slice_model, cv=3, min_slope=-np.inf).fit(X[:9], age[:9])
    assert len(model.estimator_.history) == 2  # refit on all nine training volumes
    gap = model.gap(X[9:], age[9:])
    expected = model.correct(model.estimator_.predict(X[9:])) - age[9:]
    np.testing.assert_allclose(gap, expected)


@pytest.mark.parametrize(
    "y, message",
    [
        (np.full(20, 50.0), "two distinct ages"),
        (np.r_[np.nan, np.arange(19.0)], r"y\[0\] is nan"),
        (np.ones((20, 2)), "1-D"),
    ],
)
def test_bad_ages_raise(y, message):
    with pytest.raises(ValueError, match=message):
        BiasCorrectedRegressor(LinearRegression()).fit(np.ones((20, 3)), y)


def test_a_model_that_ignores_age_is_refused():
    rng = np.random.default_rng(0)
    X, age = rng.normal(size=(60, 3)), rng.uniform(20, 80, 60)
    with pytest.raises(ValueError, match="barely follow age"):
        BiasCorrectedRegressor(Ridge(alpha=1e6)).fit(X, age)


def test_passes_scikit_learn_estimator_checks():
    check_estimator(BiasCorrectedRegressor(LinearRegression(), min_slope=-np.inf))
