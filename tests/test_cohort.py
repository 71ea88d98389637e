"""Reading BIDS datasets and CSV/TSV tables into (paths, y)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_scans

from slicelearn.data import read_cohort


@pytest.fixture
def bids(tmp_path):
    root = tmp_path / "bids"
    for label, session in (("01", None), ("02", "ses-1"), ("03", None)):
        folder = root / f"sub-{label}" / (session or "") / "anat"
        folder.mkdir(parents=True)
        (scan,) = write_scans(folder, n=1)
        (folder / scan.split("/")[-1]).rename(folder / f"sub-{label}_T1w.nii.gz")
    (root / "participants.tsv").write_text(
        "participant_id\tage\tdiagnosis\nsub-01\t61.5\tCN\nsub-02\t70\tAD\nsub-03\t55\tMCI\n"
    )
    return root


def test_bids_root_gives_paths_and_targets(bids):
    paths, ages = read_cohort(bids, target="age")
    assert [p.split("/")[-1] for p in paths] == [f"sub-0{i}_T1w.nii.gz" for i in (1, 2, 3)]
    assert "ses-1" in paths[1]
    np.testing.assert_allclose(ages.astype(float), [61.5, 70, 55])
    _, labels = read_cohort(bids, target="diagnosis")
    assert labels.tolist() == ["CN", "AD", "MCI"]
    _, both = read_cohort(bids, target=["age", "diagnosis"])
    assert both.shape == (3, 2)


def test_bids_errors_name_the_participant(bids):
    (bids / "participants.tsv").write_text("participant_id\tage\nsub-01\t61\nsub-09\t50\n")
    with pytest.raises(FileNotFoundError, match="row 1 \\(sub-09\\): no T1w scan"):
        read_cohort(bids)
    (bids / "participants.tsv").write_text("participant_id\tage\nsub-01\t61\nsub-03\t\n")
    with pytest.raises(ValueError, match="sub-03 has no value for \\['age'\\]"):
        read_cohort(bids)
    extra = bids / "sub-01" / "anat" / "sub-01_run-2_T1w.nii.gz"
    extra.write_bytes((bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz").read_bytes())
    (bids / "participants.tsv").write_text("participant_id\tage\nsub-01\t61\n")
    with pytest.raises(ValueError, match="has 2 T1w scans"):
        read_cohort(bids)
    with pytest.raises(FileNotFoundError, match="no participants.tsv"):
        read_cohort(bids / "sub-01")


def test_table_with_relative_and_absolute_paths(tmp_path):
    scans = write_scans(tmp_path, n=2)
    table = tmp_path / "cohort.csv"
    table.write_text(f"path,age\n{scans[0].split('/')[-1]},40\n{scans[1]},50\n")
    paths, ages = read_cohort(table)
    assert paths == scans
    assert ages.tolist() == [40, 50]


def test_table_errors_name_the_row(tmp_path):
    scans = write_scans(tmp_path, n=2)
    table = tmp_path / "cohort.tsv"
    table.write_text(f"path\tage\n{scans[0]}\t40\nmissing.nii.gz\t50\n")
    with pytest.raises(FileNotFoundError, match="row 1: scan .*missing.nii.gz does not exist"):
        read_cohort(table)
    table.write_text(f"path\tage\n{scans[0]}\t40\n{scans[1]}\tnan\n")
    with pytest.raises(ValueError, match="row 1 has no value"):
        read_cohort(table)
    table.write_text(f"file\tage\n{scans[0]}\t40\n")
    with pytest.raises(ValueError, match="no 'path' column"):
        read_cohort(table)
    table.write_text(f"path\tage\n{scans[0]}\t40\n")
    with pytest.raises(ValueError, match="no target column"):
        read_cohort(table, target="sex")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_cohort(tmp_path / "nope.csv")
