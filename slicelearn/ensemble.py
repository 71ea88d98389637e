"""Several fitted models as one estimator: their predictions averaged, or stacked.

Models of different kinds err differently. On IXI brain age, the slice
readout and a voxel ridge averaged scored 6.06 years MAE in 5 repeats of
5-fold CV, against 6.50 and 6.58 for each alone (``docs/results.md``).
:class:`EnsembleRegressor` and :class:`EnsembleClassifier` hold such a
combination as one scikit-learn estimator, which cross-validation, grid
search and :func:`slicelearn.model_files.save_model` treat like any other.

- ``combine="mean"`` averages the members' predictions (a classifier's class
  probabilities) with equal weights: nothing is fitted beyond the members.
- ``combine="stack"`` learns the weights from out-of-fold predictions made
  inside the training data (non-negative least squares for a regressor, a
  logistic regression on the members' log-probabilities for a classifier),
  so in an outer cross-validation the test scans never choose them.

Members are cloned and fitted on the same ``X``. The slice readouts keep their
features in the process's feature cache, so the out-of-fold fits of stacking
encode every scan once. NIfTI inputs are preprocessed by each member's own
``preprocessing``; give the members one :class:`~slicelearn.data.VolumePreprocessor`
with a ``cache_dir`` (as the command line does) and each scan is preprocessed once.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, clone
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import check_is_fitted

from ._tags import volume_input_tags
from ._validation import RANDOM_STATE, Interval, Options, validate_estimator
from .data.inputs import check_targets, class_encoder
from .data.io import check_not_sparse
from .readout import probabilities
from .splits import check_groups

__all__ = ["EnsembleClassifier", "EnsembleRegressor"]

COMBINATIONS = ("mean", "stack")


def _fit_member(member: Any, X: Any, y: Any, groups: Any) -> Any:
    """Fit ``member``, passing ``groups`` where its ``fit`` takes them."""
    if groups is not None and "groups" in inspect.signature(member.fit).parameters:
        return member.fit(X, y, groups=groups)
    return member.fit(X, y)


def _countable(X: Any) -> Any:
    """``X`` as the members take it and the ensemble counts it: sparse refused early."""
    check_not_sparse(X)
    if not hasattr(X, "__len__") and hasattr(X, "__array__"):
        return np.asarray(X)  # an array-like without a length (sklearn's _NotAnArray)
    return X


def _take(X: Any, rows: np.ndarray) -> Any:
    """Rows of an array, or items of a list of paths or images."""
    if isinstance(X, np.ndarray) or hasattr(X, "iloc"):
        return X[rows] if isinstance(X, np.ndarray) else X.iloc[rows]
    return [X[i] for i in rows]


class _Ensemble(_BaseComposition):
    """Fitting the members and, for stacking, their out-of-fold predictions."""

    def __init__(
        self,
        estimators: Sequence[tuple[str, Any]],
        *,
        combine: str = "mean",
        cv: int = 5,
        random_state: int | None = 0,
    ) -> None:
        self.estimators = estimators
        self.combine = combine
        self.cv = cv
        self.random_state = random_state

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "combine": [Options(*COMBINATIONS)],
        "cv": [Interval("int", 2)],
        "random_state": [RANDOM_STATE],
    }

    def __sklearn_tags__(self):
        return volume_input_tags(super().__sklearn_tags__())

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters; with ``deep``, each member as ``<name>`` and its parameters as
        ``<name>__<parameter>``, as scikit-learn's ``VotingRegressor`` names them."""
        return self._get_params("estimators", deep=deep)

    def set_params(self, **params: Any) -> _Ensemble:
        """Set parameters: ``<name>`` replaces a member, ``<name>__<parameter>`` sets its own.

        So a grid search can tune a member, e.g. ``network__max_epochs``.
        """
        return self._set_params("estimators", **params)

    def _check_params(self) -> list[tuple[str, Any]]:
        members = list(self.estimators)
        if not members or not all(
            isinstance(m, tuple) and len(m) == 2 and isinstance(m[0], str) for m in members
        ):
            raise ValueError(
                "estimators must be a non-empty list of (name, estimator) pairs, "
                f"got {self.estimators!r}."
            )
        names = [name for name, _ in members]
        if len(set(names)) != len(names):
            raise ValueError(f"estimators need distinct names, got {names}.")
        validate_estimator(self)
        return members

    def _folds(self, n: int, codes: np.ndarray | None, groups: Any) -> list:
        """Training-data folds for the out-of-fold predictions of stacking."""
        rows = np.zeros(n)
        if groups is not None:
            n_splits = min(self.cv, len(np.unique(groups)))
            if codes is None:
                return list(GroupKFold(n_splits).split(rows, groups=groups))
            # Classes kept in every training fold as far as the subjects allow.
            splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=self.random_state)
            return list(splitter.split(rows, codes, groups))
        if codes is not None:
            smallest = int(np.bincount(codes).min())
            if smallest < 2:
                raise ValueError(
                    "combine='stack' needs at least 2 scans of every class for its "
                    "out-of-fold predictions; a class here has 1. Use combine='mean'."
                )
            splitter = StratifiedKFold(
                min(self.cv, smallest),
                shuffle=True,
                random_state=self.random_state,
            )
            return list(splitter.split(rows, codes))
        return list(KFold(self.cv, shuffle=True, random_state=self.random_state).split(rows))

    def _fit_members(self, X: Any, y: np.ndarray, groups: Any, codes=None) -> np.ndarray | None:
        """Fit every member on all of ``X``; for stacking, return their out-of-fold outputs."""
        members = self._check_params()
        n = len(y)
        if groups is not None:
            groups = check_groups(groups, n)
        out_of_fold = None
        if self.combine == "stack":
            folds = self._folds(n, codes, groups)
            out_of_fold = [None] * len(members)
            for index, (_, member) in enumerate(members):
                parts = []
                for train, test in folds:
                    fold_groups = None if groups is None else np.asarray(groups)[train]
                    fitted = _fit_member(clone(member), _take(X, train), y[train], fold_groups)
                    parts.append((test, self._member_output(fitted, _take(X, test))))
                width = parts[0][1].shape[1]
                if any(values.shape[1] != width for _, values in parts):
                    raise ValueError(
                        f"Member {members[index][0]!r} saw a different set of classes in "
                        "some of the stacking folds (a class's scans all fell on one "
                        "side): give more scans of each class, fewer folds (cv), or "
                        "combine='mean'."
                    )
                column = np.empty((n, width))
                for test, values in parts:
                    column[test] = values
                out_of_fold[index] = column
            out_of_fold = np.concatenate(out_of_fold, axis=1)
        self.estimators_ = [_fit_member(clone(m), X, y, groups) for _, m in members]
        self.named_estimators_ = dict(zip((name for name, _ in members), self.estimators_))
        return out_of_fold

    def _outputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimators_")
        X = _countable(X)
        return np.concatenate([self._member_output(m, X) for m in self.estimators_], axis=1)


class EnsembleRegressor(RegressorMixin, _Ensemble):
    """Regressors combined: their predictions averaged, or stacked.

    Parameters
    ----------
    estimators : list of (str, estimator)
        Named regressors (slice readouts, voxel readouts, slice networks or
        any scikit-learn regressor that reads the same ``X``).
    combine : {"mean", "stack"}, default="mean"
        ``"mean"``: equal weights. ``"stack"``: non-negative weights and an
        intercept fitted by least squares to the members' out-of-fold
        predictions on the training data.
    cv : int, default=5
        Folds of the out-of-fold predictions (``combine="stack"``); grouped
        by subject when ``fit`` is given ``groups``.
    random_state : int or None, default=0
        Shuffling of those folds.

    Attributes
    ----------
    estimators_ : list of estimators
        The members, fitted on all the training data.
    named_estimators_ : dict
    weights_ : ndarray of shape (n_estimators,)
        The members' weights (equal for ``"mean"``).
    intercept_ : float
        Added to the weighted sum (0 for ``"mean"``).

    Examples
    --------
    >>> from slicelearn import EnsembleRegressor, SliceLinearRegressor, VoxelLinearRegressor
    >>> from slicelearn.datasets import make_slice_position_task
    >>> X, y = make_slice_position_task(n_subjects=20, random_state=0)
    >>> ensemble = EnsembleRegressor([
    ...     ("slices", SliceLinearRegressor(weights=None, feature_layer="blocks.1")),
    ...     ("voxels", VoxelLinearRegressor()),
    ... ]).fit(X, y)
    >>> ensemble.weights_.tolist(), ensemble.predict(X[:3]).shape
    ([0.5, 0.5], (3,))
    """

    def fit(self, X: Any, y: Any, groups: Any = None) -> EnsembleRegressor:
        """Fit every member on ``X`` and ``y`` (and, to stack, learn their weights)."""
        from sklearn.linear_model import LinearRegression

        X = _countable(X)
        y = check_targets(y, len(X), type(self).__name__).astype(np.float64)
        out_of_fold = self._fit_members(X, y, groups)
        if out_of_fold is None:
            self.weights_ = np.full(len(self.estimators_), 1.0 / len(self.estimators_))
            self.intercept_ = 0.0
        else:
            line = LinearRegression(positive=True).fit(out_of_fold, y)
            self.weights_ = np.asarray(line.coef_, dtype=np.float64)
            self.intercept_ = float(line.intercept_)
        return self

    @staticmethod
    def _member_output(member: Any, X: Any) -> np.ndarray:
        return np.asarray(member.predict(X), dtype=np.float64).reshape(-1, 1)

    def predict(self, X: Any) -> np.ndarray:
        """The members' predictions, weighted and summed; shape (n_subjects,)."""
        return self._outputs(X) @ self.weights_ + self.intercept_


class EnsembleClassifier(ClassifierMixin, _Ensemble):
    """Classifiers combined: their class probabilities averaged, or stacked.

    Parameters
    ----------
    estimators : list of (str, estimator)
        Named classifiers with ``predict_proba`` (slice readouts, voxel
        readouts, slice networks or any scikit-learn classifier that reads
        the same ``X``).
    combine : {"mean", "stack"}, default="mean"
        ``"mean"``: the probabilities averaged with equal weights (soft
        voting). ``"stack"``: a logistic regression, its penalty chosen by
        internal CV, on the members' out-of-fold log-probabilities.
    cv : int, default=5
        Folds of the out-of-fold predictions (``combine="stack"``), stratified
        by class, and grouped by subject too when ``fit`` is given ``groups``.
    random_state : int or None, default=0
        Shuffling of those folds.

    Attributes
    ----------
    classes_ : ndarray
    estimators_ : list of estimators
    named_estimators_ : dict
    stacker_coef_, stacker_intercept_ : ndarray
        The stacking logistic regression (``combine="stack"`` only).

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn import EnsembleClassifier, SliceLinearClassifier, VoxelLinearClassifier
    >>> from slicelearn.datasets import make_slice_position_task
    >>> X, k = make_slice_position_task(n_subjects=20, random_state=0)
    >>> ensemble = EnsembleClassifier([
    ...     ("slices", SliceLinearClassifier(weights=None, feature_layer="blocks.1")),
    ...     ("voxels", VoxelLinearClassifier()),
    ... ]).fit(X, np.where(k < 20, "early", "late"))
    >>> ensemble.predict_proba(X[:2]).shape
    (2, 2)
    """

    def fit(self, X: Any, y: Any, groups: Any = None) -> EnsembleClassifier:
        """Fit every member on ``X`` and the labels ``y`` (and, to stack, the combiner)."""
        X = _countable(X)
        y = check_targets(y, len(X), type(self).__name__)
        encoder = class_encoder(y, type(self).__name__)
        self.label_encoder_ = encoder
        codes = encoder.transform(y)
        out_of_fold = self._fit_members(X, y, groups, codes=codes)
        for (name, _), member in zip(self.estimators, self.estimators_):
            if not np.array_equal(np.asarray(member.classes_), encoder.classes_):
                raise ValueError(
                    f"Member {name!r} learned the classes {list(member.classes_)}, "
                    f"not {list(encoder.classes_)}."
                )
        if out_of_fold is not None:
            self._fit_stacker(np.log(np.clip(out_of_fold, 1e-12, 1.0)), codes)
        return self

    def _fit_stacker(self, log_proba: np.ndarray, codes: np.ndarray) -> None:
        import warnings

        from sklearn.linear_model import LogisticRegressionCV

        with warnings.catch_warnings():
            # scikit-learn >= 1.8 announces changes of defaults that this use does not meet.
            warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
            stacker = LogisticRegressionCV(
                Cs=np.logspace(-3, 2, 11),
                cv=min(5, int(np.bincount(codes).min())),
                scoring="neg_log_loss",
                max_iter=5000,
            ).fit(log_proba, codes)
        self.stacker_coef_ = np.asarray(stacker.coef_, dtype=np.float64)
        self.stacker_intercept_ = np.asarray(stacker.intercept_, dtype=np.float64)

    @property
    def classes_(self) -> np.ndarray:
        check_is_fitted(self, "label_encoder_")
        return self.label_encoder_.classes_

    @staticmethod
    def _member_output(member: Any, X: Any) -> np.ndarray:
        return np.asarray(member.predict_proba(X), dtype=np.float64)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        outputs = self._outputs(X)
        n_classes = len(self.classes_)
        if self.combine == "mean":
            return outputs.reshape(len(outputs), -1, n_classes).mean(axis=1)
        scores = np.log(np.clip(outputs, 1e-12, 1.0)) @ self.stacker_coef_.T
        scores = scores + self.stacker_intercept_
        return probabilities(scores[:, 0] if scores.shape[1] == 1 else scores)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
