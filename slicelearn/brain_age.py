"""Brain-age gap with linear bias correction, as a scikit-learn meta-estimator.

A brain-age model shrinks its predictions toward the training mean
(regression to the mean): the old are predicted too young, the young too
old, so the raw gap (predicted minus chronological age) correlates
negatively with age. The standard correction (de Lange & Cole 2020; see also
Smith et al. 2019 and Beheshti et al. 2019) fits ``predicted = slope * age +
intercept`` on predictions that the model did not train on, then reports
``(predicted - intercept) / slope``.

:class:`BiasCorrectedRegressor` does this inside ``fit``: out-of-fold
predictions on the training set (``cv``) give the line, and the wrapped
estimator is then refit on the whole training set. Test subjects take no
part in it, so it can sit inside ``cross_val_score`` or ``GridSearchCV``
without leakage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, RegressorMixin, clone
from sklearn.model_selection import check_cv, cross_val_predict
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

__all__ = ["BiasCorrectedRegressor"]


class BiasCorrectedRegressor(MetaEstimatorMixin, RegressorMixin, BaseEstimator):
    """A regressor whose predictions are corrected for regression to the mean.

    Parameters
    ----------
    estimator : regressor
        The brain-age model, e.g. :class:`~slicelearn.SliceCNNRegressor`.
        It is cloned and fitted ``n_splits + 1`` times.
    cv : int, cross-validation generator or iterable, default=5
        How the out-of-fold training predictions that fit the correction line
        are made (see :func:`sklearn.model_selection.check_cv`). Splits are
        not shuffled unless the splitter does so; pass
        ``KFold(5, shuffle=True, random_state=0)`` for a cohort sorted by age.
    min_slope : float, default=0.1
        A fitted slope below this means the model hardly tracks age at all,
        and dividing by it would blow predictions up: ``fit`` raises then.

    Attributes
    ----------
    estimator_ : regressor
        The wrapped estimator, fitted on all of the training data.
    slope_, intercept_ : float
        The line ``predicted = slope_ * age + intercept_`` fitted on the
        out-of-fold training predictions.
    oof_predictions_ : ndarray of shape (n_subjects,)
        Those out-of-fold predictions, before correction.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import Ridge
    >>> from slicelearn.brain_age import BiasCorrectedRegressor
    >>> rng = np.random.default_rng(0)
    >>> age = rng.uniform(20, 80, 300)
    >>> X = age[:, None] + rng.normal(scale=15, size=(300, 5))
    >>> model = BiasCorrectedRegressor(Ridge(alpha=1e3)).fit(X[:200], age[:200])
    >>> raw_gap = model.estimator_.predict(X[200:]) - age[200:]
    >>> gap = model.gap(X[200:], age[200:])
    >>> bool(abs(np.corrcoef(gap, age[200:])[0, 1]) < abs(np.corrcoef(raw_gap, age[200:])[0, 1]))
    True
    """

    def __init__(self, estimator: Any, cv: Any = 5, min_slope: float = 0.1) -> None:
        self.estimator = estimator
        self.cv = cv
        self.min_slope = min_slope

    def fit(self, X: Any, y: Any, **fit_params) -> BiasCorrectedRegressor:
        """Fit the correction line on out-of-fold predictions, then the estimator on all data.

        Parameters
        ----------
        X : array-like or list of NIfTI paths or images
            Whatever the wrapped estimator takes.
        y : array-like of shape (n_subjects,)
            Chronological ages.
        **fit_params
            Passed to every fit of the wrapped estimator.

        Returns
        -------
        self
        """
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        age = check_array(y, ensure_2d=False, dtype=np.float64, ensure_all_finite=False)
        if age.ndim == 2 and age.shape[1] == 1:
            age = column_or_1d(age, warn=True)
        if age.ndim != 1:
            raise ValueError(f"y must be one age per subject (1-D); got shape {age.shape}.")
        if not np.isfinite(age).all():
            bad = int(np.flatnonzero(~np.isfinite(age))[0])
            raise ValueError(f"y[{bad}] is {age[bad]}: ages must be finite.")
        if len(age) < 2:
            raise ValueError(f"Bias correction needs at least 2 subjects; got {len(age)} sample.")
        if len(np.unique(age)) < 2:
            raise ValueError("Bias correction needs at least two distinct ages in y.")
        cv = check_cv(self.cv)
        oof = cross_val_predict(clone(self.estimator), X, y, cv=cv, params=fit_params or None)
        oof = np.asarray(oof, dtype=np.float64).ravel()
        slope, intercept = np.polyfit(age, oof, deg=1)
        if slope < self.min_slope:
            raise ValueError(
                f"The out-of-fold predictions barely follow age (slope {slope:.3g} < "
                f"min_slope={self.min_slope}); a correction would divide by it. Check the "
                "model, or lower min_slope if this is intended."
            )
        self.slope_, self.intercept_ = float(slope), float(intercept)
        self.oof_predictions_ = oof
        self.estimator_ = clone(self.estimator).fit(X, y, **fit_params)
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        return self

    def correct(self, predicted_age: Any) -> np.ndarray:
        """Apply the fitted correction to predictions of the wrapped estimator."""
        check_is_fitted(self, "slope_")
        return (np.asarray(predicted_age, dtype=np.float64) - self.intercept_) / self.slope_

    def predict(self, X: Any) -> np.ndarray:
        """Bias-corrected brain age of ``X``.

        Returns
        -------
        ndarray of shape (n_subjects,)
        """
        check_is_fitted(self, "estimator_")
        return self.correct(np.asarray(self.estimator_.predict(X)).ravel())

    def gap(self, X: Any, age: Any) -> np.ndarray:
        """Corrected brain-age gap: corrected predicted age minus chronological age.

        Returns
        -------
        ndarray of shape (n_subjects,)
        """
        age = np.asarray(age, dtype=np.float64).ravel()
        predicted = self.predict(X)
        if len(age) != len(predicted):
            raise ValueError(f"X has {len(predicted)} subjects but age has {len(age)} values.")
        return predicted - age

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = clone(self.estimator).__sklearn_tags__()
        tags.input_tags = inner.input_tags
        return tags
