"""Data home, IXI and OASIS loaders, without network: downloads are served locally."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from slicelearn.datasets import fetch_ixi, fetch_oasis_vbm, fetchers, get_data_home, load_ixi

SHARED_IXI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ixi"
DEMOGRAPHICS = 'IXI_ID,"SEX_ID (1=M, 2=F)",AGE\n2,2,35.8\n12,1,38.78\n13,1,\n'


def _nifti_bytes() -> bytes:
    image = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    return image.to_bytes()


def _ixi_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in (
            "IXI002-Guys-0828-T1.nii.gz",
            "IXI012-HH-1211-T1.nii.gz",
            "IXI013-HH-1212-T1.nii.gz",
        ):
            data = _nifti_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SLICELEARN_DATA", str(tmp_path / "env"))
    assert get_data_home() == tmp_path / "env" and (tmp_path / "env").is_dir()
    assert get_data_home(tmp_path / "explicit") == tmp_path / "explicit"


@pytest.mark.skipif(
    not (SHARED_IXI / "participants.tsv").is_file(), reason=f"the IXI sample is not at {SHARED_IXI}"
)
def test_load_ixi_shared_sample():
    paths, labels = load_ixi(SHARED_IXI)
    assert len(paths) == len(labels) == 136
    assert list(labels.columns) == ["participant_id", "age", "sex"]
    assert labels["age"].between(20, 82).all() and set(labels["sex"]) == {"F", "M"}
    assert all(Path(p).is_file() for p in paths)


def test_load_ixi_original_layout(tmp_path):
    scans = tmp_path / "IXI-T1"
    scans.mkdir()
    with tarfile.open(fileobj=io.BytesIO(_ixi_tar())) as tar:
        tar.extractall(scans, filter="data")
    (tmp_path / "IXI.csv").write_text(DEMOGRAPHICS)
    paths, labels = load_ixi(tmp_path)
    # IXI013 has no age: dropped.
    assert labels["participant_id"].tolist() == ["IXI002-Guys-0828", "IXI012-HH-1211"]
    assert labels["sex"].tolist() == ["F", "M"] and labels["age"].tolist() == [35.8, 38.78]
    assert [Path(p).name for p in paths] == [
        "IXI002-Guys-0828-T1.nii.gz",
        "IXI012-HH-1211-T1.nii.gz",
    ]
    with pytest.raises(FileNotFoundError, match="neither participants.tsv"):
        load_ixi(tmp_path / "IXI-T1")


@pytest.fixture
def served(monkeypatch):
    """Serve the IXI URLs from memory; count requests."""
    archive = _ixi_tar()
    files = {"IXI-T1.tar": archive, "IXI.xls": DEMOGRAPHICS.encode()}
    requests = []

    def urlopen(url, timeout=None):
        requests.append(url)
        return io.BytesIO(files[url.rsplit("/", 1)[-1]])

    monkeypatch.setattr(fetchers.urllib.request, "urlopen", urlopen)
    monkeypatch.setattr(fetchers, "IXI_T1_MD5", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(pd, "read_excel", lambda path: pd.read_csv(path))
    return requests


def test_fetch_ixi_downloads_verifies_and_reuses(tmp_path, served):
    paths, labels = fetch_ixi(data_home=tmp_path, verbose=0)
    assert len(paths) == 2 and labels["age"].tolist() == [35.8, 38.78]
    assert (tmp_path / "ixi" / "IXI-T1" / "IXI002-Guys-0828-T1.nii.gz").is_file()
    assert not (tmp_path / "ixi" / "IXI-T1.tar").exists()  # unpacked, then removed
    first = len(served)
    fetch_ixi(data_home=tmp_path, verbose=0)
    assert len(served) == first  # nothing fetched again


def test_fetch_ixi_rejects_a_bad_checksum_and_keeps_nothing(tmp_path, served, monkeypatch):
    monkeypatch.setattr(fetchers, "IXI_T1_MD5", "0" * 32)
    with pytest.raises(OSError, match="Checksum mismatch"):
        fetch_ixi(data_home=tmp_path, verbose=0)
    assert sorted(p.name for p in (tmp_path / "ixi").iterdir()) == []


def test_fetch_oasis_vbm_labels(monkeypatch, tmp_path):
    from nilearn import datasets
    from sklearn.utils import Bunch

    ext = pd.DataFrame(
        {
            "id": ["OAS1_0001", "OAS1_0002", "OAS1_0003"],
            "mf": ["F", "M", "F"],
            "age": [74, 55, 80],
            "cdr": [0.0, np.nan, 1.0],
        }
    )

    def fake_fetch(n_subjects=None, data_dir=None):
        return Bunch(
            gray_matter_maps=[f"{data_dir}/gm{i}.nii.gz" for i in range(3)],
            ext_vars=ext.to_records(index=False),
        )

    monkeypatch.setattr(datasets, "fetch_oasis_vbm", fake_fetch)
    paths, labels = fetch_oasis_vbm(data_home=tmp_path)
    assert len(paths) == 3 and paths[0].startswith(str(tmp_path))
    assert labels["diagnosis"].tolist() == ["CN", None, "AD"]
    assert labels["age"].tolist() == [74.0, 55.0, 80.0]
