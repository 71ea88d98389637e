"""Subject-grouped splits: no subject on both sides of a validation split or fold.

A cohort with several scans per subject (BIDS sessions, test-retest) leaks
when one subject's scans land on both sides: the validation score then
measures recognising a subject, not predicting its target. The estimators'
internal validation split, the readouts' penalty search and the command
line's folds all take their subject groups from here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_groups", "grouped_folds", "grouped_validation_split"]


def check_groups(groups: Any, n_samples: int) -> np.ndarray:
    """``groups`` as a 1D array of one label per scan, or a clear error."""
    labels = np.asarray(groups, dtype=object)
    if labels.ndim != 1:
        raise ValueError(f"groups must be 1D (one subject per scan), got shape {labels.shape}.")
    if len(labels) != n_samples:
        raise ValueError(f"X has {n_samples} scans but groups has {len(labels)} entries.")
    for index, label in enumerate(labels):
        if label is None or (isinstance(label, float) and np.isnan(label)):
            raise ValueError(f"groups[{index}] (scan {index + 1}) names no subject.")
    return np.asarray([str(label) for label in labels])


def grouped_validation_split(split: Any, y: Any, groups: np.ndarray) -> tuple[np.ndarray, ...]:
    """Training and validation indices of skorch's ``ValidSplit`` config, by subject.

    skorch's ``ValidSplit`` passes ``groups`` to its splitter, but the splitter
    it builds for a fractional ``cv`` (``ShuffleSplit``) ignores them. This
    reads the same settings and splits subjects instead:

    - ``cv`` a fraction: ``GroupShuffleSplit`` of that fraction of the subjects,
      or, stratified, the first fold of ``StratifiedGroupKFold(round(1 / cv))``;
    - ``cv`` an integer ``k``: the first fold of ``GroupKFold(k)``
      (``StratifiedGroupKFold(k)`` when stratified);
    - ``cv`` a splitter: it must be a group splitter (``GroupKFold``, ...).
    """
    from sklearn.model_selection import GroupKFold, GroupShuffleSplit, StratifiedGroupKFold

    cv, stratified = split.cv, bool(split.stratified)
    if isinstance(cv, float) and not cv.is_integer():
        if stratified:
            n_splits = max(2, round(1 / cv))
            splitter = StratifiedGroupKFold(n_splits, shuffle=True, random_state=split.random_state)
        else:
            splitter = GroupShuffleSplit(1, test_size=cv, random_state=split.random_state)
    elif isinstance(cv, (int, float, np.integer)):
        splitter = StratifiedGroupKFold(int(cv)) if stratified else GroupKFold(int(cv))
    elif "Group" in type(cv).__name__:
        splitter = cv
    else:
        raise ValueError(
            f"The validation split {split!r} does not keep subjects apart; with groups, "
            "give ValidSplit a fraction or a fold count, or a group splitter such as "
            "GroupKFold."
        )
    n_subjects = len(np.unique(groups))
    if getattr(splitter, "n_splits", 1) > n_subjects:
        raise ValueError(
            f"Cannot have number of splits n_splits={splitter.n_splits} greater than the "
            f"number of subjects: n_subjects={n_subjects}."
        )
    indices = np.arange(len(groups))
    return next(iter(splitter.split(indices, np.asarray(y), groups)))


def grouped_folds(
    n_splits: int,
    y: Any,
    groups: np.ndarray,
    *,
    stratified: bool,
    random_state: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled K folds of subjects (stratified by ``y`` for classes)."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    n_subjects = len(np.unique(groups))
    if n_splits > n_subjects:
        raise ValueError(
            f"{n_splits} folds need at least {n_splits} subjects; there are {n_subjects}."
        )
    cls = StratifiedGroupKFold if stratified else GroupKFold
    splitter = cls(n_splits, shuffle=True, random_state=random_state)
    return list(splitter.split(np.zeros(len(groups)), np.asarray(y), groups))
