"""QC flags: fixed floors always, the cohort-relative rule only where the cohort is large enough."""

from __future__ import annotations

import numpy as np

from slicelearn.qc import _flags


def test_a_small_cohort_flags_by_the_floors_only():
    # Three good IXI scans' correlations: the robust rule would flag the first.
    assert not _flags(np.array([0.395, 0.413, 0.416]), floor=0.25).any()
    assert _flags(np.array([0.10, 0.41, 0.42]), floor=0.25).tolist() == [True, False, False]


def test_a_cohort_of_ten_or_more_also_flags_outliers_below_its_median():
    values = np.array([0.40, 0.41, 0.42, 0.43, 0.41, 0.42, 0.40, 0.43, 0.41, 0.42, 0.30])
    assert _flags(values, floor=0.25).tolist() == [False] * 10 + [True]
