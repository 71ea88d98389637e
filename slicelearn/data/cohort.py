"""Reading a cohort description into ``(paths, y)``.

A cohort is a BIDS dataset (``participants.tsv`` plus
``sub-<label>/[ses-<label>/]anat/*_T1w.nii[.gz]``) or a CSV/TSV table with a
path column (absolute, or relative to the table's folder) and target columns.
Missing files and missing values raise errors that name the row.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["read_cohort"]


def _read_table(path: Path) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        return pd.read_csv(path, sep=sep)
    except Exception as exc:
        raise ValueError(f"Cannot read the cohort table {path}: {exc}") from exc


def _bids_scans(root: Path, table: pd.DataFrame) -> list[str]:
    if "participant_id" not in table.columns:
        raise ValueError(f"{root / 'participants.tsv'} has no participant_id column.")
    paths = []
    for row, participant in enumerate(table["participant_id"].astype(str)):
        label = participant if participant.startswith("sub-") else f"sub-{participant}"
        folder = root / label
        found = sorted([*folder.glob("anat/*_T1w.nii*"), *folder.glob("ses-*/anat/*_T1w.nii*")])
        if not found:
            raise FileNotFoundError(
                f"participants.tsv row {row} ({participant}): no T1w scan under {folder}/anat "
                "or its ses-*/anat folders."
            )
        if len(found) > 1:
            raise ValueError(
                f"participants.tsv row {row} ({participant}) has {len(found)} T1w scans "
                f"({', '.join(p.name for p in found)}): list the scans to use in a table "
                "with a path column instead."
            )
        paths.append(str(found[0]))
    return paths


def read_cohort(
    source: str | os.PathLike,
    target: str | list[str] = "age",
    path_column: str = "path",
) -> tuple[list[str], np.ndarray]:
    """Read scan paths and targets from a BIDS root or a CSV/TSV table.

    Parameters
    ----------
    source : path
        A BIDS dataset folder (with ``participants.tsv``), or a ``.csv`` /
        ``.tsv`` table.
    target : str or list of str, default="age"
        Target column(s).
    path_column : str, default="path"
        Column of scan paths in a table (ignored for BIDS).

    Returns
    -------
    paths : list of str
        Absolute scan paths, one per row.
    y : ndarray of shape (n,) or (n, n_targets)

    Raises
    ------
    FileNotFoundError
        A scan or the table is missing (the row is named).
    ValueError
        A column or a target value is missing (the row is named).

    Examples
    --------
    >>> from slicelearn.data import read_cohort
    >>> paths, ages = read_cohort("../shared/data/ixi/participants.tsv")  # doctest: +SKIP
    """
    source = Path(source)
    if source.is_dir():
        table_path = source / "participants.tsv"
        if not table_path.is_file():
            raise FileNotFoundError(f"{source} is not a BIDS dataset: no participants.tsv.")
        table = _read_table(table_path)
        paths = _bids_scans(source, table)
        row_name = table["participant_id"].astype(str).tolist()
    elif source.is_file():
        table_path = source
        table = _read_table(source)
        if path_column not in table.columns:
            raise ValueError(
                f"{source} has no {path_column!r} column (columns: {', '.join(table.columns)})."
            )
        row_name = [f"row {i}" for i in range(len(table))]
        paths = []
        for row, value in enumerate(table[path_column]):
            if pd.isna(value) or not str(value).strip():
                raise ValueError(f"{source}, row {row}: the {path_column!r} value is missing.")
            path = Path(str(value)).expanduser()
            path = path if path.is_absolute() else source.parent / path
            if not path.is_file():
                raise FileNotFoundError(f"{source}, row {row}: scan {path} does not exist.")
            paths.append(str(path.resolve()))
    else:
        raise FileNotFoundError(f"Cohort source {source} does not exist.")

    columns = [target] if isinstance(target, str) else list(target)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{table_path} has no target column(s) {missing} (columns: {', '.join(table.columns)})."
        )
    values = table[columns]
    empty = values.isna().any(axis=1).to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise ValueError(
            f"{table_path}: {row_name[row]} has no value for {columns} "
            f"({int(empty.sum())} row(s) miss a target); drop or fill them first."
        )
    y = values.to_numpy()
    return paths, (y[:, 0] if isinstance(target, str) else y)
