"""Subject-grouped splits: the estimators' internal validation and the readouts' penalty CV."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import fast_params
from sklearn.model_selection import KFold
from skorch.callbacks import Callback
from skorch.dataset import ValidSplit

from slicelearn import (
    SliceCNNClassifier,
    SliceCNNRegressor,
    SliceLinearClassifier,
    SliceLinearRegressor,
)
from slicelearn.splits import check_groups, grouped_validation_split


def _sessions(n_subjects: int, n_sessions: int, seed: int = 0):
    """Scans of subjects seen ``n_sessions`` times each, interleaved."""
    groups = np.repeat([f"sub-{i:02d}" for i in range(n_subjects)], n_sessions)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(groups))
    return groups[order]


class RecordSplit(Callback):
    """Keeps the subject labels on each side of the first epoch's split."""

    def __init__(self, groups):
        self.groups = groups

    def on_epoch_begin(self, net, dataset_train=None, dataset_valid=None, **kwargs):
        if not hasattr(self, "sides_"):
            self.sides_ = tuple(
                set(self.groups[np.asarray(part.indices)])
                for part in (dataset_train, dataset_valid)
            )


@pytest.mark.parametrize(
    "split",
    [
        ValidSplit(0.2, random_state=0),
        ValidSplit(0.25, stratified=True, random_state=0),
        ValidSplit(4),
        ValidSplit(4, stratified=True),
    ],
)
def test_grouped_validation_split_keeps_each_subject_on_one_side(split):
    groups = _sessions(12, 3)
    y = np.array([int(g[-2:]) % 2 for g in groups])  # one class per subject
    train, valid = grouped_validation_split(split, y, groups)
    assert len(valid) and len(train) + len(valid) == len(groups)
    assert not set(groups[train]) & set(groups[valid])
    if split.stratified:
        assert set(y[valid]) == {0, 1}


def test_a_splitter_that_ignores_groups_is_refused():
    with pytest.raises(ValueError, match="does not keep subjects apart"):
        grouped_validation_split(ValidSplit(KFold(3)), np.zeros(6), _sessions(3, 2))


@pytest.mark.parametrize("kind", [SliceCNNRegressor, SliceCNNClassifier])
def test_internal_validation_split_never_shares_a_subject(kind):
    groups = _sessions(10, 3)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(groups), 8, 10, 9)).astype(np.float32)
    y = np.array([int(g[-2:]) for g in groups], dtype=np.float32)
    if kind is SliceCNNClassifier:
        y = np.where(y % 2 == 0, "CN", "AD")
    recorder = RecordSplit(groups)
    est = kind(**fast_params(max_epochs=1, callbacks=[recorder]))
    est.fit(X, y, groups=groups)
    train_subjects, valid_subjects = recorder.sides_
    assert valid_subjects and not train_subjects & valid_subjects
    assert train_subjects | valid_subjects == set(groups)
    assert "_split_groups" not in est.__dict__  # the groups belong to that fit


def test_without_groups_a_subject_does_land_on_both_sides():
    # The control: skorch's split of scans, which the groups above prevent.
    groups = _sessions(10, 3)
    X = np.random.default_rng(0).normal(size=(len(groups), 8, 10, 9)).astype(np.float32)
    recorder = RecordSplit(groups)
    SliceCNNRegressor(**fast_params(max_epochs=1, callbacks=[recorder])).fit(
        X, np.arange(len(groups), dtype=np.float32)
    )
    train_subjects, valid_subjects = recorder.sides_
    assert train_subjects & valid_subjects


def test_groups_are_checked_against_the_scans():
    with pytest.raises(ValueError, match="X has 4 scans but groups has 3"):
        check_groups(["a", "b", "c"], 4)
    with pytest.raises(ValueError, match=r"groups\[1\] \(scan 2\) names no subject"):
        check_groups(["a", None, "c"], 3)


def _twins(n_subjects: int = 16):
    """Each subject scanned twice, identically; the targets are noise per subject."""
    rng = np.random.default_rng(0)
    volumes = rng.normal(size=(n_subjects, 8, 10, 9)).astype(np.float32)
    X = np.repeat(volumes, 2, axis=0)
    groups = np.repeat(np.arange(n_subjects), 2)
    return X, groups, rng


def test_ridge_penalty_is_chosen_over_subjects_not_over_repeated_scans():
    """Leave-one-scan-out rewards memorising a subject's other scan; subject folds do not."""
    X, groups, rng = _twins()
    y = np.repeat(rng.normal(size=len(X) // 2), 2)  # nothing to learn across subjects
    params = dict(weights=None, feature_layer="blocks.1")
    by_scan = SliceLinearRegressor(**params).fit(X, y)
    by_subject = SliceLinearRegressor(**params).fit(X, y, groups=groups)
    assert by_scan.alpha_ == min(by_scan.alphas)
    assert by_subject.alpha_ > 100 * by_scan.alpha_


def test_logistic_readout_takes_groups():
    X, groups, rng = _twins()
    y = np.repeat(rng.permutation(["AD", "CN"] * 8), 2)
    clf = SliceLinearClassifier(weights=None, feature_layer="blocks.1").fit(X, y, groups=groups)
    assert clf.predict(X).shape == (len(X),)
    with pytest.raises(ValueError, match="groups has 3"):
        clf.fit(X, y, groups=groups[:3])
