"""Reading a cohort description into ``(paths, y)``.

A cohort is a BIDS dataset (``participants.tsv`` plus
``sub-<label>/[ses-<label>/]anat/*_T1w.nii[.gz]``) or a CSV/TSV table with a
path column (absolute, or relative to the table's folder) and target columns.
Each scan also gets an id, its subject (for grouped splits) and, where given,
a brain mask. Missing files and missing values raise errors that name the
table's line (as a text editor counts them) and the participant.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

__all__ = ["Cohort", "load_cohort", "read_cohort"]


def _read_table(path: Path) -> pd.DataFrame:
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        return pd.read_csv(path, sep=sep)
    except Exception as exc:
        raise ValueError(f"Cannot read the cohort table {path}: {exc}") from exc


class Cohort(NamedTuple):
    """A cohort read by :func:`load_cohort`, one entry per scan."""

    paths: list[str]
    """Absolute scan paths."""
    y: np.ndarray
    """Targets, shape (n,) or (n, n_targets)."""
    ids: list[str]
    """Each scan's name for people: ``participant_id`` (with the session in
    BIDS), or the table's line number."""
    groups: list[str]
    """The subject of each scan: scans of one subject must stay on one side of a split."""
    masks: list[str] | None
    """A brain mask per scan (a table's mask column, or BIDS derivatives), or None."""
    where: list[str]
    """Where each scan's row is, for messages: ``participants.tsv line 3 (sub-02)``."""


def _bids_label(participant: str) -> str:
    return participant if participant.startswith("sub-") else f"sub-{participant}"


def _bids_scans(root: Path, table: pd.DataFrame) -> tuple[list[int], list[str], list[str]]:
    """Every T1w scan, one per session: (table row, path, session label or "")."""
    if "participant_id" not in table.columns:
        raise ValueError(f"{root / 'participants.tsv'} has no participant_id column.")
    rows, paths, sessions = [], [], []
    for row, participant in enumerate(table["participant_id"].astype(str)):
        folder = root / _bids_label(participant)
        where = f"{root / 'participants.tsv'} line {row + 2} ({participant})"
        plain = sorted(folder.glob("anat/*_T1w.nii*"))
        by_session = {"": plain} if plain else {}
        for session in sorted(folder.glob("ses-*")):
            found = sorted(session.glob("anat/*_T1w.nii*"))
            if found:
                by_session[session.name] = found
        if not by_session:
            raise FileNotFoundError(
                f"{where}: no T1w scan under {folder}/anat or its ses-*/anat folders."
            )
        for session, found in by_session.items():
            if len(found) > 1:
                raise ValueError(
                    f"{where} has {len(found)} T1w scans in {session or 'anat'} "
                    f"({', '.join(p.name for p in found)}): list the scans to use in a table "
                    "with a path column instead."
                )
            rows.append(row)
            paths.append(str(found[0]))
            sessions.append(session)
    return rows, paths, sessions


def _bids_masks(root: Path, paths: list[str]) -> list[str] | None:
    """Brain masks from ``derivatives/*/sub-*/[ses-*/]anat/*_desc-brain_mask.nii*``."""
    derivatives = root / "derivatives"
    if not derivatives.is_dir():
        return None
    masks: list[str | None] = []
    for path in paths:
        scan = Path(path)
        prefix = scan.name.split("_T1w")[0]
        relative = scan.parent.relative_to(root)
        found = sorted(derivatives.glob(f"*/{relative}/{prefix}*desc-brain_mask.nii*"))
        pipelines = {p.relative_to(derivatives).parts[0] for p in found}
        if len(pipelines) > 1:
            raise ValueError(
                f"{scan.name} has brain masks from several derivatives pipelines "
                f"({', '.join(sorted(pipelines))}): keep one, or list masks in a table column."
            )
        masks.append(str(found[0]) if found else None)
    if all(mask is None for mask in masks):
        return None
    missing = [path for path, mask in zip(paths, masks) if mask is None]
    if missing:
        raise FileNotFoundError(
            f"{len(paths) - len(missing)} scans have a brain mask under {derivatives}, but "
            f"{Path(missing[0]).name} (and {len(missing) - 1} more) has none: add the missing "
            "masks, or remove them all to skull-strip every scan."
        )
    return masks  # type: ignore[return-value]


def _table_path(source: Path, row: int, value: Any, column: str) -> str:
    if pd.isna(value) or not str(value).strip():
        raise ValueError(f"{source} line {row + 2}: the {column!r} value is missing.")
    path = Path(str(value)).expanduser()
    path = path if path.is_absolute() else source.parent / path
    if not path.is_file():
        raise FileNotFoundError(f"{source} line {row + 2}: {column} {path} does not exist.")
    return str(path.resolve())


def load_cohort(
    source: str | os.PathLike,
    target: str | list[str] = "age",
    *,
    path_column: str = "path",
    mask_column: str | None = None,
    group_column: str | None = None,
) -> Cohort:
    """Read scans, targets, subjects and brain masks from a BIDS root or a CSV/TSV table.

    Parameters
    ----------
    source : path
        A BIDS dataset folder (with ``participants.tsv``; every session's T1w
        scan is one entry), or a ``.csv`` / ``.tsv`` table.
    target : str or list of str, default="age"
        Target column(s); an empty list reads no target.
    path_column : str, default="path"
        Column of scan paths in a table (ignored for BIDS).
    mask_column : str, optional
        Column of brain-mask paths in a table. In BIDS, masks are found in
        ``derivatives/<pipeline>/sub-*/[ses-*/]anat/*_desc-brain_mask.nii*``
        when every scan has one.
    group_column : str, optional
        Column naming each scan's subject in a table (default: the
        ``participant_id`` column if there is one, else each row is its own
        subject). In BIDS the subject is the participant.

    Returns
    -------
    Cohort
        ``paths``, ``y``, ``ids``, ``groups``, ``masks`` and ``where``.

    Raises
    ------
    FileNotFoundError
        A scan, mask or the table is missing (the line is named).
    ValueError
        A column or a target value is missing (the line is named).

    Examples
    --------
    >>> from slicelearn.data import load_cohort
    >>> cohort = load_cohort("../shared/data/ixi/participants.tsv")  # doctest: +SKIP
    >>> cohort.ids[:2], cohort.y[:2]  # doctest: +SKIP
    (['IXI012-HH-1211', 'IXI013-HH-1212'], array([38.78, 46.71]))
    """
    source = Path(source)
    if source.is_dir():
        table_path = source / "participants.tsv"
        if not table_path.is_file():
            raise FileNotFoundError(f"{source} is not a BIDS dataset: no participants.tsv.")
        table = _read_table(table_path)
        rows, paths, sessions = _bids_scans(source, table)
        participants = table["participant_id"].astype(str).tolist()
        groups = [_bids_label(participants[row]) for row in rows]
        ids = [f"{g}_{s}" if s else g for g, s in zip(groups, sessions)]
        where = [f"{table_path} line {row + 2} ({participants[row]})" for row in rows]
        masks = _bids_masks(source, paths)
    elif source.is_file():
        table_path = source
        table = _read_table(source)
        for column in (path_column, mask_column, group_column):
            if column is not None and column not in table.columns:
                raise ValueError(
                    f"{source} has no {column!r} column (columns: {', '.join(table.columns)})."
                )
        rows = list(range(len(table)))
        paths = [_table_path(source, r, v, path_column) for r, v in enumerate(table[path_column])]
        masks = None
        if mask_column is not None:
            masks = [
                _table_path(source, r, v, mask_column) for r, v in enumerate(table[mask_column])
            ]
        has_ids = "participant_id" in table.columns
        ids = (
            table["participant_id"].astype(str).tolist()
            if has_ids
            else [f"line {row + 2}" for row in rows]
        )
        where = [f"{source} line {row + 2}" + (f" ({ids[row]})" if has_ids else "") for row in rows]
        group_source = group_column or ("participant_id" if has_ids else None)
        groups = table[group_source].astype(str).tolist() if group_source else list(ids)
    else:
        raise FileNotFoundError(f"Cohort source {source} does not exist.")

    columns = [target] if isinstance(target, str) else list(target)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(
            f"{table_path} has no target column(s) {missing} (columns: {', '.join(table.columns)})."
        )
    values = table[columns].iloc[rows]
    empty = values.isna().any(axis=1).to_numpy()
    if empty.any():
        entry = int(np.flatnonzero(empty)[0])
        raise ValueError(
            f"{where[entry]} has no value for {columns} "
            f"({int(empty.sum())} row(s) miss a target); drop or fill them first."
        )
    y = values.to_numpy()
    return Cohort(paths, y[:, 0] if isinstance(target, str) else y, ids, groups, masks, where)


def read_cohort(
    source: str | os.PathLike,
    target: str | list[str] = "age",
    path_column: str = "path",
) -> tuple[list[str], np.ndarray]:
    """Read scan paths and targets from a BIDS root or a CSV/TSV table.

    The short form of :func:`load_cohort`, which also gives each scan's id,
    subject and brain mask.

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
        Absolute scan paths, one per row (per session in BIDS).
    y : ndarray of shape (n,) or (n, n_targets)

    Examples
    --------
    >>> from slicelearn.data import read_cohort
    >>> paths, ages = read_cohort("../shared/data/ixi/participants.tsv")  # doctest: +SKIP
    """
    cohort = load_cohort(source, target, path_column=path_column)
    return cohort.paths, cohort.y
