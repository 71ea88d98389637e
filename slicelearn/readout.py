"""Linear readouts of frozen ImageNet slice features: no network training at all.

:class:`SliceLinearRegressor` (ridge) and :class:`SliceLinearClassifier`
(logistic regression) are the slice model with a fixed encoder and its
trained head replaced by a regularised linear model: every slice along each
chosen axis goes through one frozen ImageNet encoder, the slice features are
averaged over the slices (mean pooling), the axes' averages are joined, and
a linear model with its regularisation chosen by internal cross-validation
predicts the target. On IXI brain age this beat the trained head
(``docs/results.md``), is deterministic, fits in seconds once the features
exist, and needs no validation split, so it also trains properly on pilot
cohorts of a few dozen scans.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted

from ._params import with_shared_parameters
from ._tags import volume_input_tags
from ._validation import BOOLEAN, POSITIVE_GRID, Interval, Options, Satisfies, validate_estimator
from .data.augment import AugmentedVolumes, VolumeAugmenter
from .data.inputs import check_targets, class_encoder, read_volumes
from .data.preprocessing import PreprocessedVolumes, VolumePreprocessor
from .data.transforms import TransformedVolumes, smooth_volume
from .feature_cache import shared_feature_cache, volume_keys
from .nn.slicenet import AXES, SliceNet
from .splits import check_groups, grouped_folds

__all__ = ["SliceLinearClassifier", "SliceLinearRegressor"]

#: Ridge penalties searched by generalised cross-validation (efficient leave-one-out).
DEFAULT_ALPHAS = tuple(float(a) for a in np.logspace(-1, 7, 17))
#: Inverse penalties searched for the logistic readout.
DEFAULT_CS = tuple(float(c) for c in np.logspace(-5, 1, 7))
#: The logistic solver's tolerance: tighter than scikit-learn's 1e-4, so that
#: the fit stops at the same model whichever basis it is computed in (below).
LOGISTIC_TOL = 1e-6


def _axes(axis: str | Sequence[str]) -> tuple[str, ...]:
    """``axis`` as a tuple (the parameter table has checked it)."""
    return (axis,) if isinstance(axis, str) else tuple(axis)


class _LinearReadout(BaseEstimator):
    """Reading X, and the feature scaling, of every linear readout (slices or voxels).

    A family derives from it and provides ``_training_rows(X, y, groups)``
    (features, targets and subject groups of the training rows, fitted
    attributes set) and ``_test_features(X)``; :class:`_RidgeReadout` and
    :class:`_LogisticReadout` add the penalised model on top.
    """

    #: Divide each feature by its training SD (the slice features' scales
    #: differ by orders of magnitude; voxels share one scale and keep it).
    _scale_features = True
    #: Training SDs below this fraction of the median SD are raised to it:
    #: a feature nearly constant in training would otherwise weigh a new
    #: scan's small difference by its tiny SD (0: only zero SDs are replaced).
    _min_relative_scale = 0.0

    def __sklearn_tags__(self):
        return volume_input_tags(super().__sklearn_tags__())

    def _volumes(self, X: Any, reset: bool) -> np.ndarray | PreprocessedVolumes:
        fitted = None if reset else getattr(self, "preprocessor_", None)
        volumes, preprocessor = read_volumes(X, self.preprocessing, fitted)
        if reset:
            self.preprocessor_ = preprocessor
        return volumes

    def _validate_params(self) -> None:
        # Each class on the way declares its own parameters' entries (merged by
        # slicelearn._validation.parameter_constraints).
        validate_estimator(self)

    def _model_input(self, X: Any, reset: bool) -> Any:
        """The volumes of ``X`` as the model's features are computed from them."""
        return self._volumes(X, reset)

    def iter_volumes(self, X: Any) -> Iterator[np.ndarray]:
        """The volumes of ``X``, one at a time, as this fitted model reads them.

        Scans are preprocessed as the training scans were, and smoothed
        where the model smooths its input (``input_smoothing``); a voxel
        readout's own z-scoring and block averaging are not applied. Every
        family of estimators has this method
        (:meth:`SliceCNNRegressor.iter_volumes`).

        Yields
        ------
        ndarray of shape (X, Y, Z), float32
        """
        check_is_fitted(self, "coef_")
        volumes = self._model_input(X, reset=False)
        for index in range(len(volumes)):
            yield np.asarray(volumes[index], dtype=np.float32)

    def _standardized(self, features: np.ndarray) -> np.ndarray:
        centred = features - self.feature_mean_
        return centred / self.feature_scale_ if self._scale_features else centred

    def _fit_scaler(self, features: np.ndarray) -> np.ndarray:
        # float64, as the model file stores it: a loaded model predicts the same bits.
        self.feature_mean_ = features.mean(axis=0, dtype=np.float64)
        if self._scale_features:
            scale = features.std(axis=0)
            floor = self._min_relative_scale * np.median(scale[scale > 0]) if scale.any() else 0
            scale = np.maximum(scale, floor)
            self.feature_scale_ = np.where(scale > 0, scale, 1.0)
        self.n_features_ = features.shape[1]
        return self._standardized(features)


class _VolumeRowReadout(_LinearReadout):
    """A readout whose features are one row per volume, from ``_feature_matrix(X, reset)``.

    The brain-encoder and tissue readouts; ``_feature_matrix`` sets the
    fitted attributes of its features when ``reset``.
    """

    def _feature_matrix(self, X: Any, reset: bool) -> np.ndarray:
        raise NotImplementedError

    def _training_rows(self, X: Any, y: Any, groups: Any) -> tuple:
        features = self._feature_matrix(X, reset=True)
        y = check_targets(y, len(features), type(self).__name__)
        if groups is not None:
            groups = check_groups(groups, len(features))
        return features, y, groups

    def _test_features(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        return self._feature_matrix(X, reset=False)


class _SliceLinearReadout(_LinearReadout):
    """Frozen slice features, averaged over slices, joined over axes: shared by both readouts."""

    def __init__(
        self,
        encoder: str = "efficientnet_lite0",
        weights: str | None = "imagenet",
        *,
        feature_layer: str | None = "blocks.3",
        feature_grid: int = 2,
        slice_scale: float = 1.0,
        axis: str | Sequence[str] = "sagittal",
        standardize: bool = True,
        preprocessing: VolumePreprocessor | None = None,
        input_smoothing: float = 0.0,
        augmentation: VolumeAugmenter | None = None,
        augment_copies: int = 4,
        test_time_augmentation: int = 0,
        batch_size: int = 8,
        num_workers: int = 0,
        device: str = "cpu",
        covariates: Any = None,
    ) -> None:
        self.encoder = encoder
        self.weights = weights
        self.feature_layer = feature_layer
        self.feature_grid = feature_grid
        self.slice_scale = slice_scale
        self.axis = axis
        self.standardize = standardize
        self.preprocessing = preprocessing
        self.input_smoothing = input_smoothing
        self.augmentation = augmentation
        self.augment_copies = augment_copies
        self.test_time_augmentation = test_time_augmentation
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.device = device
        self.covariates = covariates

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "encoder": [Satisfies(lambda value: isinstance(value, str), "an encoder name")],
        "weights": [str, os.PathLike, None],
        "feature_layer": [str, None],
        "feature_grid": [Interval("int", 1)],
        "slice_scale": [Interval("real", 0.25, 4)],
        "axis": [
            Options(*AXES),
            Satisfies(
                lambda value: (
                    isinstance(value, (tuple, list))
                    and len(value) > 0
                    and all(axis in AXES for axis in value)
                    and len(set(value)) == len(value)
                ),
                "a tuple of distinct ones",
            ),
        ],
        "standardize": [BOOLEAN],
        "preprocessing": [VolumePreprocessor, None],
        "input_smoothing": [Interval("real", 0)],
        "augmentation": [VolumeAugmenter, None],
        "augment_copies": [Interval("int", 0)],
        "test_time_augmentation": [Interval("int", 0)],
        "batch_size": [Interval("int", 1)],
        "num_workers": [Interval("int", 0)],
        "device": [str],
        "covariates": [
            Satisfies(
                lambda value: hasattr(value, "transform") and hasattr(value, "get_params"),
                "a feature transformer of volumes such as slicelearn.tissue.TissueFeatures()",
            ),
            None,
        ],
    }

    # -- features ----------------------------------------------------------------
    def _encoders(self) -> list[SliceNet]:
        """One frozen SliceNet per axis (only their encoders are used)."""
        nets = []
        for axis in _axes(self.axis):
            # weights=None (a frozen random encoder) is the same in every process.
            with torch.random.fork_rng():
                torch.manual_seed(0)
                net = SliceNet(
                    self.encoder,
                    self.weights,
                    axis=axis,
                    position_embedding=None,
                    pooling="mean",
                    freeze_encoder=True,
                    standardize=self.standardize,
                    feature_layer=self.feature_layer,
                    feature_grid=self.feature_grid,
                    slice_scale=self.slice_scale,
                )
            nets.append(net.eval())
        return nets

    def _check_input_params(self) -> None:
        """The parameter table, then the rules that tie parameters together."""
        self._validate_params()
        if self.test_time_augmentation and self.augmentation is None:
            raise ValueError(
                "test_time_augmentation needs an augmentation to draw the copies from: "
                "pass augmentation=VolumeAugmenter()."
            )
        if self.test_time_augmentation and not self.augment_copies:
            # Measured on IXI brain age: a readout trained on unperturbed scans
            # scored 16.5 years MAE on averaged copies, against 6.4 on the scans.
            raise ValueError(
                "test_time_augmentation needs training copies too (augment_copies >= 1): "
                "perturbed scans are outside what a readout trained without them has seen."
            )

    def _copy_features(self, X: Any, reset: bool, copies: int) -> np.ndarray:
        """``(copies + 1, n, F)``: features of ``X`` and of its first ``copies`` perturbations."""
        volumes = self._model_input(X, reset)
        parts = [self._pooled_features(volumes, reset)]
        if copies:
            keys = volume_keys(volumes)
            for copy in range(1, copies + 1):
                augmented = AugmentedVolumes(volumes, self.augmentation, copy, keys)
                parts.append(self._pooled_features(augmented, reset=False))
        return np.stack(parts)

    def _training_rows(self, X: Any, y: np.ndarray, groups: Any) -> tuple:
        """Features, targets and subject groups of the training rows (copies included)."""
        self._check_input_params()
        copies = self.augment_copies if self.augmentation is not None else 0
        features = self._copy_features(X, reset=True, copies=copies)
        n = features.shape[1]
        y = check_targets(y, n, type(self).__name__)
        if groups is not None:
            groups = check_groups(groups, n)
        if copies:
            # A scan's copies stay in its group, so the penalty's CV never
            # scores a copy of a scan it trained on.
            groups = np.arange(n).astype(str) if groups is None else groups
            groups = np.tile(groups, copies + 1)
            y = np.concatenate([y] * (copies + 1))
        covariates = self._covariate_rows(X, n, reset=True)
        # A perturbed copy keeps its scan's covariates: they measure the scan.
        features = np.concatenate(
            [features, np.broadcast_to(covariates, (len(features), *covariates.shape))], axis=-1
        )
        return features.reshape(-1, features.shape[-1]), y, groups

    def _test_features(self, X: Any) -> np.ndarray:
        """``(n, F)``, averaged over the original and its test-time copies."""
        self._check_input_params()
        features = self._copy_features(X, reset=False, copies=self.test_time_augmentation).mean(0)
        covariates = self._covariate_rows(X, len(features), reset=False)
        return np.concatenate([features, covariates], axis=1)

    def _covariate_rows(self, X: Any, n: int, reset: bool) -> np.ndarray:
        """``(n, k)``: the covariates of the ``n`` volumes, unsmoothed (``k = 0`` without)."""
        if self.covariates is None:
            rows = np.zeros((n, 0))
        else:
            volumes = self._volumes(X, reset=False)  # read already: the preprocessor is fitted
            rows = np.asarray(clone(self.covariates).fit(volumes).transform(volumes), float)
            if rows.ndim != 2 or len(rows) != len(volumes):
                raise ValueError(
                    f"covariates={self.covariates!r} gave an array of shape {rows.shape} "
                    f"for {len(volumes)} volumes: it must give one row per volume."
                )
        if reset:
            self.n_covariates_ = rows.shape[1]
        elif rows.shape[1] != getattr(self, "n_covariates_", 0):
            raise ValueError(
                f"covariates gave {rows.shape[1]} columns; the model was fitted with "
                f"{getattr(self, 'n_covariates_', 0)}."
            )
        return rows

    def _fit_scaler(self, features: np.ndarray) -> np.ndarray:
        """Standardise, then weigh the covariates' block as much as the slice features'.

        After z-scoring, each block's total variance is its column count: a
        few covariates beside hundreds of slice features would be all but
        ignored by one ridge penalty. Their columns are scaled up by
        ``sqrt(slice columns / covariate columns)`` so that both blocks carry
        the same variance (fixed, not tuned).
        """
        standardized = super()._fit_scaler(features)
        count = getattr(self, "n_covariates_", 0)
        if not count:
            return standardized
        self.feature_scale_[-count:] /= np.sqrt((features.shape[1] - count) / count)
        return self._standardized(features)

    def _model_input(self, X: Any, reset: bool) -> Any:
        """The volumes of ``X`` as the encoder sees them: read, then smoothed."""
        volumes = self._volumes(X, reset)
        shape = tuple(volumes.shape[1:])
        if reset:
            self.volume_shape_ = shape
        elif shape != tuple(self.volume_shape_):
            # The slice average is defined for any grid, but features of
            # another grid's slices are not what the readout was fitted on.
            raise ValueError(
                f"X holds volumes of shape {shape}; the model was fitted on "
                f"{tuple(self.volume_shape_)}. Resample the volumes to the training grid "
                "(preprocessing=VolumePreprocessor(target=...) does it for scans)."
            )
        sigma = float(self.input_smoothing)
        if not sigma:
            return volumes
        return TransformedVolumes(
            volumes,
            lambda volume, _key: smooth_volume(volume, sigma),
            f"smooth:{sigma!r}",
            volume_keys(volumes),
        )

    def _pooled_features(self, volumes: Any, reset: bool) -> np.ndarray:
        """``(n, F)``: each axis's slice features averaged over slices, joined."""
        if not hasattr(self, "_nets"):
            self._nets = self._encoders()
        fingerprint = _encoder_digest(self._nets[0])
        if reset:
            self.encoder_digest_ = fingerprint
        elif fingerprint != self.encoder_digest_:
            raise ValueError(
                f"The {self.encoder} weights found here differ from those the model was "
                "fitted with (another weights package version?): its readout does not apply."
            )
        parts = []
        for net in self._nets:
            features = shared_feature_cache().features(
                net,
                volumes,
                batch_size=self.batch_size,
                device=self.device,
                num_workers=self.num_workers,
            )
            if reset and not parts:
                # Per-slice training means of the first axis: each slice's term in
                # the readout is then zero for a slice like the cohort's (slice_contributions).
                self.slice_feature_mean_ = features.double().mean(dim=0).numpy()
            parts.append(features.mean(dim=1).double().numpy())
        return np.concatenate(parts, axis=1)

    def slice_contributions(self, X: Any) -> np.ndarray:
        """Each slice's term in the linear readout, in absolute value: ``(n, S)``.

        The readout is linear in the slice average, so a prediction's
        deviation from the training cohort's mean prediction is a sum of
        per-slice terms: each slice's features minus the training mean of
        that slice's features, times the weights, over the slice count. This
        returns those terms in absolute value (output units; for a classifier,
        of the first logit). Slices that look like the cohort's (empty border
        slices, for one) score zero. The slices are those of the first axis;
        :func:`slicelearn.inspection.slice_importance` with
        ``method="contribution"`` calls this.
        """
        check_is_fitted(self, "coef_")
        self._check_input_params()
        volumes = self._model_input(X, reset=False)
        net = self._nets[0] if hasattr(self, "_nets") else self._encoders()[0]
        features = (
            shared_feature_cache()
            .features(net, volumes, batch_size=self.batch_size, device=self.device)
            .double()
            .numpy()
        )
        if features.shape[1:] != self.slice_feature_mean_.shape:
            raise ValueError(
                f"X has {features.shape[1]} {_axes(self.axis)[0]} slices; the model was fitted "
                f"on {self.slice_feature_mean_.shape[0]}."
            )
        width = features.shape[2]
        coef = np.atleast_2d(self.coef_)[0, :width] / self.feature_scale_[:width]
        return np.abs((features - self.slice_feature_mean_) @ coef) / features.shape[1]

    def slice_importance(self, X: Any) -> np.ndarray:
        """Deprecated name of :meth:`slice_contributions` (it says what is computed)."""
        warnings.warn(
            "slice_importance was renamed slice_contributions; the old name goes in 0.3.",
            FutureWarning,
            stacklevel=2,
        )
        return self.slice_contributions(X)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_nets", None)  # rebuilt from the parameters
        return state


def _encoder_digest(net: SliceNet) -> str:
    digest = hashlib.sha256()
    for name, tensor in net.encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Class probabilities from logistic scores: ``(n,)`` for two classes, else ``(n, k)``."""
    if scores.ndim == 1:
        positive = 1 / (1 + np.exp(-scores))
        return np.column_stack([1 - positive, positive])
    scores = scores - scores.max(axis=1, keepdims=True)
    odds = np.exp(scores)
    return odds / odds.sum(axis=1, keepdims=True)


def _row_space(features: np.ndarray) -> np.ndarray | None:
    """An orthonormal basis ``(r, F)`` of the rows' span, or None when ``F <= n``.

    An L2-penalised linear model's weights lie in the span of its training
    rows (the representer theorem), and within that span the basis keeps
    both the scores and the penalty, so a model fitted on
    ``features @ basis.T`` and mapped back by ``@ basis`` is the model of
    ``features``. Also for each internal CV fold: its rows are in the span.
    """
    n, width = features.shape
    if width <= n:
        return None
    _, singular, rows = np.linalg.svd(features, full_matrices=False)
    return rows[singular > singular[0] * 1e-10] if singular[0] > 0 else rows[:1]


class _RidgeReadout(RegressorMixin):
    """Ridge on a readout's training rows (the family supplies the rows)."""

    _parameter_constraints: ClassVar[dict[str, list]] = {"alphas": [POSITIVE_GRID]}

    def fit(self, X: Any, y: Any, groups: Any = None) -> _RidgeReadout:
        """Fit the ridge readout to ``y``, its penalty chosen by internal CV.

        With ``groups`` (the subject of each scan), the penalty is chosen by
        5-fold CV over subjects instead of leave-one-scan-out, so that no
        subject's other scans vote for it.
        """
        from sklearn.linear_model import RidgeCV

        features, y, groups = self._training_rows(X, y, groups)
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            # Copies of the training scans follow the scans, so the first bad row is a scan's.
            bad = int(np.flatnonzero(~np.isfinite(y))[0])
            raise ValueError(f"y[{bad}] is NaN or infinite.")
        cv, scoring = None, None
        if groups is not None:
            n_folds = min(5, len(np.unique(groups)))
            if n_folds >= 2:
                cv = grouped_folds(n_folds, y, groups, stratified=False, random_state=0)
                scoring = "neg_mean_squared_error"
        ridge = RidgeCV(alphas=np.asarray(self.alphas, dtype=float), cv=cv, scoring=scoring).fit(
            self._fit_scaler(features), y
        )
        self.alpha_ = float(ridge.alpha_)
        self.coef_ = np.asarray(ridge.coef_, dtype=np.float64)
        self.intercept_ = float(ridge.intercept_)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, shape (n_subjects,)."""
        check_is_fitted(self, "coef_")
        return self._standardized(self._test_features(X)) @ self.coef_ + self.intercept_


class _LogisticReadout(ClassifierMixin):
    """Logistic regression on a readout's training rows (the family supplies the rows)."""

    _parameter_constraints: ClassVar[dict[str, list]] = {"Cs": [POSITIVE_GRID]}

    def fit(self, X: Any, y: Any, groups: Any = None) -> _LogisticReadout:
        """Fit the logistic readout to the labels ``y``, its penalty chosen by internal CV.

        With ``groups`` (the subject of each scan), the penalty's internal CV
        folds keep each subject's scans together.
        """
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

        features, y, groups = self._training_rows(X, y, groups)
        encoder = class_encoder(y, type(self).__name__)
        self.label_encoder_ = encoder
        codes = encoder.transform(y)
        standardized = self._fit_scaler(features)
        # With more features than rows the solution lies in the rows' span:
        # fitting in that basis is the same model, and as fast for 30 000
        # voxels as for 100 features.
        basis = _row_space(standardized)
        design = standardized if basis is None else standardized @ basis.T
        smallest = int(np.bincount(codes).min())
        cv: Any = min(5, smallest)
        if groups is not None:
            smallest = min(smallest, len(np.unique(groups)))
            cv = min(5, smallest)
            if cv >= 2:
                cv = grouped_folds(cv, codes, groups, stratified=True, random_state=0)
        if smallest >= 2:
            with warnings.catch_warnings():
                # scikit-learn >= 1.8 announces changes of defaults and fitted
                # attributes that this use (L2, the attributes read below) does not meet.
                warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
                model = LogisticRegressionCV(
                    Cs=np.asarray(self.Cs, dtype=float),
                    cv=cv,
                    scoring="neg_log_loss",
                    max_iter=5000,
                    tol=LOGISTIC_TOL,
                ).fit(design, codes)
            self.C_ = float(np.ravel(model.C_)[0])
        else:  # a class with one member leaves nothing to cross-validate the penalty on
            self.C_ = float(np.median(self.Cs))
            model = LogisticRegression(C=self.C_, max_iter=5000, tol=LOGISTIC_TOL).fit(
                design, codes
            )
        coef = model.coef_ if basis is None else model.coef_ @ basis
        self.coef_ = np.asarray(coef, dtype=np.float64)
        self.intercept_ = np.asarray(model.intercept_, dtype=np.float64)
        return self

    @property
    def classes_(self) -> np.ndarray:
        check_is_fitted(self, "label_encoder_")
        return self.label_encoder_.classes_

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        scores = self._standardized(self._test_features(X)) @ self.coef_.T
        scores = scores + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        return probabilities(self.decision_function(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


_READOUT_PARAMS_DOC = """    encoder : str, default="efficientnet_lite0"
        A named encoder of :func:`slicelearn.nn.build_encoder`, kept frozen.
    weights : {"imagenet", None} or path, default="imagenet"
    feature_layer : str or None, default="blocks.3"
        Encoder layer the slice features come from (``None``: the last).
    feature_grid : int, default=2
        Each slice's feature map is average-pooled to this grid per side.
    slice_scale : float, default=1.0
        Resize every slice by this factor (bilinear) before the encoder
        (:class:`~slicelearn.nn.SliceNet`'s ``slice_scale``).
    axis : str or tuple of str, default="sagittal"
        Slicing axis, or several: their slice averages are joined.
    standardize : bool, default=True
        z-score every volume before slicing, as the slice networks do.
    preprocessing : VolumePreprocessor or None, default=None
        Applied to NIfTI paths or images (see :class:`~slicelearn.SliceCNNRegressor`).
    input_smoothing : float, default=0.0
        Gaussian smoothing (sigma, in voxels) of every volume before it is
        sliced, at fit and at prediction. Frozen ImageNet features respond
        strongly to fine texture: on IXI brain age, a readout of unsmoothed
        2 mm volumes went from 6.4 to 18.8 years MAE when the test scans were
        shifted by half a voxel (the blur of linear interpolation); one of
        volumes smoothed with sigma 1 went from 6.4 to 6.8 (``docs/results.md``).
        The recommended configuration
        (:data:`slicelearn.presets.RECOMMENDED_READOUT`, a member of the
        command line's default) uses 1.0 on its 2 mm grid; the default here is 0 because
        sigma is in voxels, and an array of volumes says nothing of their size.
    augmentation : VolumeAugmenter or None, default=None
        Random flips, rotations, shifts and intensity fields
        (:class:`~slicelearn.data.VolumeAugmenter`). With it, ``fit`` adds
        ``augment_copies`` perturbed copies of every training volume as extra
        rows (same target), and the penalty is chosen by 5-fold CV that keeps
        a volume's copies with it. Each copy is seeded by the volume's content,
        so its features are computed once per process and reused by every
        fold; the cost is ``augment_copies`` extra encoder passes per volume.
    augment_copies : int, default=4
        Perturbed copies per training volume (used only with ``augmentation``).
    test_time_augmentation : int, default=0
        At prediction, average the features of each volume and of this many
        of its perturbed copies (needs ``augmentation`` and training copies).
        The readout is linear, so this averages the predictions (for a
        classifier, the logits).
    batch_size : int, default=8
        Volumes per encoder pass.
    num_workers : int, default=0
        DataLoader workers reading and preprocessing scans.
    device : str, default="cpu"
    covariates : transformer or None, default=None
        Measures of each volume joined to its slice features, e.g.
        :class:`slicelearn.tissue.TissueFeatures` (grey-matter, white-matter
        and CSF fractions, optionally the intracranial volume). It is given
        the volumes as read (unsmoothed, not z-scored by the readout). After
        standardisation its block of columns is weighted to carry as much
        variance as the slice features' block.
"""


class SliceLinearRegressor(_RidgeReadout, _SliceLinearReadout):
    __doc__ = (
        """Ridge regression on frozen ImageNet slice features, e.g. brain age.

    Parameters
    ----------
"""
        + _READOUT_PARAMS_DOC
        + """    alphas : tuple of float, default=10**-1 ... 10**7 (17 values)
        Ridge penalties; the one with the best leave-one-out error is kept
        (5-fold CV over subjects with ``groups`` or ``augmentation``).

    Attributes
    ----------
    alpha_ : float
        The chosen penalty.
    coef_ : ndarray of shape (n_features,)
        Weights on the standardised features.
    intercept_ : float
    volume_shape_ : tuple of int

    Examples
    --------
    >>> from slicelearn import SliceLinearRegressor
    >>> from slicelearn.datasets import make_slice_position_task
    >>> X, y = make_slice_position_task(n_subjects=20, random_state=0)
    >>> est = SliceLinearRegressor(weights=None, feature_layer="blocks.1").fit(X, y)
    >>> est.predict(X[:3]).shape
    (3,)
    """
    )

    def __init__(
        self,
        encoder: str = "efficientnet_lite0",
        weights: str | None = "imagenet",
        *,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        **params: Any,
    ) -> None:
        super().__init__(encoder, weights, **params)
        self.alphas = alphas

    __init__.__signature__ = with_shared_parameters(__init__, _SliceLinearReadout.__init__)


class SliceLinearClassifier(_LogisticReadout, _SliceLinearReadout):
    __doc__ = (
        """Logistic regression on frozen ImageNet slice features, e.g. AD vs CN.

    Parameters
    ----------
"""
        + _READOUT_PARAMS_DOC
        + """    Cs : tuple of float, default=10**-5 ... 10**1 (7 values)
        Inverse penalties, chosen by stratified internal cross-validation
        (log loss).

    Attributes
    ----------
    classes_ : ndarray
    C_ : float
    coef_ : ndarray of shape (n_classes or 1, n_features)
    intercept_ : ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn import SliceLinearClassifier
    >>> from slicelearn.datasets import make_slice_position_task
    >>> X, k = make_slice_position_task(n_subjects=20, random_state=0)
    >>> clf = SliceLinearClassifier(weights=None, feature_layer="blocks.1")
    >>> clf.fit(X, np.where(k < 20, "early", "late")).predict_proba(X[:2]).shape
    (2, 2)
    """
    )

    def __init__(
        self,
        encoder: str = "efficientnet_lite0",
        weights: str | None = "imagenet",
        *,
        Cs: Sequence[float] = DEFAULT_CS,
        **params: Any,
    ) -> None:
        super().__init__(encoder, weights, **params)
        self.Cs = Cs

    __init__.__signature__ = with_shared_parameters(__init__, _SliceLinearReadout.__init__)
