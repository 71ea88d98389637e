"""Real cohorts: a data home, and fetchers/loaders for IXI and OASIS.

Like nilearn's fetchers, downloads go to a data home (``data_home``, else
``$SLICELEARN_DATA``, else ``~/slicelearn_data``), are written to a temporary
file and renamed into place only once complete and verified, and are reused
afterwards. Every loader returns ``(paths, labels)``: scan paths and a pandas
DataFrame with one row per scan.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from .._files import data_home as resolve_data_home
from .._files import write_atomic

__all__ = ["fetch_ixi", "fetch_oasis_vbm", "get_data_home", "load_ixi"]

IXI_URL = "http://biomedic.doc.ic.ac.uk/brain-development/downloads/IXI/"
#: MD5 of ``IXI-T1.tar`` as published by torchio's IXI dataset; the demographics
#: spreadsheet has no published checksum and is validated by parsing instead.
IXI_T1_MD5 = "34901a0593b41dd19c1a1f746eac2d58"


def get_data_home(data_home: str | os.PathLike | None = None) -> Path:
    """The folder where slicelearn keeps downloaded data (created if needed)."""
    return resolve_data_home(data_home, create=True)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path, md5: str | None = None, verbose: int = 1) -> Path:
    """Download ``url`` to ``target`` atomically; verify ``md5`` when given."""
    if target.is_file() and (md5 is None or _md5(target) == md5):
        return target
    if verbose:
        print(f"Downloading {url} ...", flush=True)

    def fetch(handle) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        with urllib.request.urlopen(url, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                handle.write(block)
        if md5 is not None and digest.hexdigest() != md5:
            raise OSError(
                f"Checksum mismatch for {url}: expected MD5 {md5}, got {digest.hexdigest()}. "
                "The download was incomplete or the file changed; nothing was kept."
            )

    return write_atomic(target, fetch)


def _read_ixi_demographics(path: Path) -> pd.DataFrame:
    """IXI.xls (or a CSV export of it) as ``participant_number, age, sex``."""
    if path.suffix.lower() == ".csv":
        table = pd.read_csv(path)
    else:
        try:
            table = pd.read_excel(path)
        except ImportError as exc:
            raise ImportError(
                f"Reading {path.name} needs xlrd: pip install xlrd (or export it to CSV)."
            ) from exc
    columns = {c.upper(): c for c in table.columns}
    missing = {"IXI_ID", "SEX_ID (1=M, 2=F)", "AGE"} - set(columns)
    if missing:
        raise ValueError(f"{path} is not the IXI demographics table: missing {sorted(missing)}.")
    sex = table[columns["SEX_ID (1=M, 2=F)"]].map({1: "M", 2: "F"})
    frame = pd.DataFrame(
        {
            "participant_number": table[columns["IXI_ID"]].astype(int),
            "age": table[columns["AGE"]],
            "sex": sex,
        }
    )
    return frame.dropna().drop_duplicates("participant_number")


def load_ixi(path: str | os.PathLike) -> tuple[list[str], pd.DataFrame]:
    """Read a local copy of the IXI T1 scans with their age and sex.

    Two layouts are understood: a folder with ``participants.tsv`` (columns
    ``participant_id``, ``age``, ``sex``, ``path``), such as
    ``../shared/data/ixi``; or the original release, ``IXI-T1/*.nii.gz`` next
    to ``IXI.xls`` (or ``IXI.csv``). Only subjects with both age and sex are
    returned.

    Parameters
    ----------
    path : path
        The folder.

    Returns
    -------
    paths : list of str
    labels : DataFrame with columns ``participant_id``, ``age``, ``sex``

    Examples
    --------
    >>> from slicelearn.datasets import load_ixi
    >>> paths, labels = load_ixi("../shared/data/ixi")  # doctest: +SKIP
    >>> len(paths), labels["age"].between(20, 82).all()  # doctest: +SKIP
    (136, True)
    """
    root = Path(path)
    table = root / "participants.tsv"
    if table.is_file():
        frame = pd.read_csv(table, sep="\t").dropna(subset=["age", "sex", "path"])
        paths = [str(root / p) for p in frame["path"]]
        labels = frame[["participant_id", "age", "sex"]].reset_index(drop=True)
    else:
        scans = sorted((root / "IXI-T1").glob("IXI*-T1.nii.gz")) or sorted(
            root.glob("IXI*-T1.nii.gz")
        )
        sheet = next((root / n for n in ("IXI.xls", "IXI.csv") if (root / n).is_file()), None)
        if not scans or sheet is None:
            raise FileNotFoundError(
                f"{root} holds neither participants.tsv nor IXI-T1/*.nii.gz with IXI.xls."
            )
        demographics = _read_ixi_demographics(sheet).set_index("participant_number")
        rows = []
        for scan in scans:
            participant = scan.name.split("-T1")[0]
            number = int(participant[3:6])
            if number in demographics.index:
                rows.append((str(scan), participant, *demographics.loc[number, ["age", "sex"]]))
        paths = [r[0] for r in rows]
        labels = pd.DataFrame([r[1:] for r in rows], columns=["participant_id", "age", "sex"])
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} IXI scans are missing, e.g. {missing[0]}.")
    labels["age"] = labels["age"].astype(float)
    return paths, labels


def fetch_ixi(
    data_home: str | os.PathLike | None = None, verbose: int = 1
) -> tuple[list[str], pd.DataFrame]:
    """Download the IXI T1 release (about 4.5 GB) and its demographics, once.

    The archive's MD5 is verified before it is unpacked; downloads are
    atomic, so an interrupted one leaves nothing that looks complete.
    Needs network access (and ``xlrd`` to read ``IXI.xls``). IXI is CC BY-SA
    3.0: credit brain-development.org/ixi-dataset.

    Returns
    -------
    paths, labels : as :func:`load_ixi`
    """
    folder = get_data_home(data_home) / "ixi"
    scans = folder / "IXI-T1"
    done = folder / ".extracted"
    if not done.is_file():
        archive = _download(IXI_URL + "IXI-T1.tar", folder / "IXI-T1.tar", IXI_T1_MD5, verbose)
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".IXI-T1."))
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
            shutil.rmtree(scans, ignore_errors=True)
            os.replace(staging, scans)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        done.write_text(IXI_T1_MD5)
        archive.unlink()
    _download(IXI_URL + "IXI.xls", folder / "IXI.xls", None, verbose)
    return load_ixi(folder)


def fetch_oasis_vbm(
    n_subjects: int | None = None, data_home: str | os.PathLike | None = None
) -> tuple[list[str], pd.DataFrame]:
    """OASIS-1 grey-matter VBM maps with age and dementia labels, via nilearn.

    Downloads through :func:`nilearn.datasets.fetch_oasis_vbm` (online, once).
    ``diagnosis`` is ``"AD"`` for a clinical dementia rating (CDR) above 0 and
    ``"CN"`` for CDR 0; subjects without a CDR get ``NaN``.

    Returns
    -------
    paths : list of str
        Grey-matter density maps (already on the MNI grid).
    labels : DataFrame with ``participant_id``, ``age``, ``sex``, ``cdr``, ``diagnosis``
    """
    from nilearn import datasets

    home = get_data_home(data_home) / "nilearn"
    oasis = datasets.fetch_oasis_vbm(n_subjects=n_subjects, data_dir=str(home))
    ext = pd.DataFrame(oasis.ext_vars)
    cdr = pd.to_numeric(ext["cdr"], errors="coerce")
    labels = pd.DataFrame(
        {
            "participant_id": ext["id"].astype(str),
            "age": pd.to_numeric(ext["age"], errors="coerce").astype(float),
            "sex": ext["mf"].astype(str),
            "cdr": cdr,
            "diagnosis": pd.Series(np.where(cdr > 0, "AD", "CN"), dtype=object).where(
                cdr.notna(), None
            ),
        }
    )
    return [str(p) for p in oasis.gray_matter_maps], labels
