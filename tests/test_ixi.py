"""Real anatomy: the estimators read IXI T1 scans (native space, P-S-R, skull on)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import fast_params

from slicelearn import SliceCNNRegressor
from slicelearn.data import load_volumes

IXI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ixi"

pytestmark = pytest.mark.skipif(
    not (IXI / "participants.tsv").is_file(),
    reason=f"the IXI sample is not at {IXI} (it lives beside the repository, never in it)",
)


def _participants(n: int) -> tuple[list[str], np.ndarray]:
    rows = (IXI / "participants.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    records = [dict(zip(header, row.split("\t"))) for row in rows[1 : n + 1]]
    return [str(IXI / r["path"]) for r in records], np.array([float(r["age"]) for r in records])


def test_ixi_scans_load_as_ras_volumes():
    paths, _ = _participants(3)
    volumes = load_volumes(paths)
    # Stored 120 x 120 x 90 in P-S-R order; RAS canonical puts the 90 right-left voxels first.
    assert volumes.shape == (3, 90, 120, 120)
    assert volumes.dtype == np.float32 and volumes.max() > 100


def test_regressor_fits_and_predicts_ages_from_ixi_paths():
    paths, ages = _participants(6)
    est = SliceCNNRegressor(**fast_params(max_epochs=1, train_split=None, batch_size=2))
    est.fit(paths, ages)
    assert est.n_slices_ == 90
    predictions = est.predict(paths)
    assert predictions.shape == (6,) and np.isfinite(predictions).all()
    # The output bias starts at the mean age, so predictions sit near it after one epoch.
    assert abs(predictions.mean() - ages.mean()) < 20
