"""Reading BIDS datasets and CSV/TSV tables into (paths, y)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_scans

from slicelearn.data import load_cohort, read_cohort


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
    with pytest.raises(
        FileNotFoundError, match="participants.tsv line 3 \\(sub-09\\): no T1w scan"
    ):
        read_cohort(bids)
    (bids / "participants.tsv").write_text("participant_id\tage\nsub-01\t61\nsub-03\t\n")
    with pytest.raises(ValueError, match=r"line 3 \(sub-03\) has no value for \['age'\]"):
        read_cohort(bids)
    extra = bids / "sub-01" / "anat" / "sub-01_run-2_T1w.nii.gz"
    extra.write_bytes((bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz").read_bytes())
    (bids / "participants.tsv").write_text("participant_id\tage\nsub-01\t61\n")
    with pytest.raises(ValueError, match="line 2 \\(sub-01\\) has 2 T1w scans in anat"):
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
    with pytest.raises(
        FileNotFoundError, match="cohort.tsv line 3: path .*missing.nii.gz does not exist"
    ):
        read_cohort(table)
    table.write_text(f"path\tage\n{scans[0]}\t40\n{scans[1]}\tnan\n")
    with pytest.raises(ValueError, match="cohort.tsv line 3 has no value"):
        read_cohort(table)
    table.write_text(f"file\tage\n{scans[0]}\t40\n")
    with pytest.raises(ValueError, match="no 'path' column"):
        read_cohort(table)
    table.write_text(f"path\tage\n{scans[0]}\t40\n")
    with pytest.raises(ValueError, match="no target column"):
        read_cohort(table, target="sex")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_cohort(tmp_path / "nope.csv")


def test_bids_sessions_are_scans_of_one_subject_and_masks_come_from_derivatives(bids):
    second = bids / "sub-02" / "ses-2" / "anat"
    second.mkdir(parents=True)
    first = bids / "sub-02" / "ses-1" / "anat" / "sub-02_T1w.nii.gz"
    (second / "sub-02_ses-2_T1w.nii.gz").write_bytes(first.read_bytes())
    cohort = load_cohort(bids, target="age")
    assert cohort.ids == ["sub-01", "sub-02_ses-1", "sub-02_ses-2", "sub-03"]
    assert cohort.groups == ["sub-01", "sub-02", "sub-02", "sub-03"]
    np.testing.assert_allclose(cohort.y.astype(float), [61.5, 70, 70, 55])
    assert cohort.masks is None
    for path in cohort.paths:
        relative = Path(path).parent.relative_to(bids)
        folder = bids / "derivatives" / "deepbet" / relative
        folder.mkdir(parents=True, exist_ok=True)
        name = Path(path).name.split("_T1w")[0] + "_desc-brain_mask.nii.gz"
        (folder / name).write_bytes(Path(path).read_bytes())
    masks = load_cohort(bids, target="age").masks
    assert [Path(m).name for m in masks] == [
        "sub-01_desc-brain_mask.nii.gz",
        "sub-02_desc-brain_mask.nii.gz",
        "sub-02_ses-2_desc-brain_mask.nii.gz",
        "sub-03_desc-brain_mask.nii.gz",
    ]
    assert all("/derivatives/deepbet/" in m for m in masks)
    Path(masks[3]).unlink()
    with pytest.raises(FileNotFoundError, match="3 scans have a brain mask.*sub-03_T1w"):
        load_cohort(bids, target="age")


def test_table_ids_groups_and_masks(tmp_path):
    scans = write_scans(tmp_path, n=3)
    table = tmp_path / "cohort.csv"
    table.write_text(
        "participant_id,subject,path,mask,age\n"
        f"a1,a,{scans[0]},{scans[1]},40\nb1,b,{scans[1]},{scans[2]},50\n"
        f"a2,a,{scans[2]},{scans[0]},41\n"
    )
    cohort = load_cohort(table, mask_column="mask", group_column="subject")
    assert cohort.ids == ["a1", "b1", "a2"] and cohort.groups == ["a", "b", "a"]
    assert cohort.masks == [scans[1], scans[2], scans[0]]
    assert cohort.where[1].endswith("cohort.csv line 3 (b1)")
    assert load_cohort(table).groups == ["a1", "b1", "a2"]  # participant_id by default
    with pytest.raises(ValueError, match="no 'brain' column"):
        load_cohort(table, mask_column="brain")
    table.write_text(f"path,mask,age\n{scans[0]},gone.nii.gz,40\n")
    with pytest.raises(FileNotFoundError, match="line 2: mask .*gone.nii.gz does not exist"):
        load_cohort(table, mask_column="mask")
    assert load_cohort(table).ids == ["line 2"]
