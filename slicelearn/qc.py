"""Quality control of preprocessing: a picture and measures per scan, outliers flagged.

:func:`write_qc` takes a cohort through a fitted
:class:`~slicelearn.data.VolumePreprocessor` and writes, into one folder:

- ``<id>.png`` for each scan: three orthogonal views of the preprocessed
  volume, with the template brain's outline (cyan) and the scan's own brain
  mask (red, where the scan was masked or skull-stripped);
- ``qc.csv``: per scan, the Dice overlap of its brain with the template's
  brain mask and the correlation of its intensities with the template's
  inside that mask (both after registration, so they say how well it
  worked), its brain volume on the template grid, and a ``flagged`` column;
- ``index.html``: every picture with its measures, flagged scans first.

A scan is flagged when a measure lies far below the cohort's (more than
3.5 robust standard deviations under the median) or under a floor that
working registrations clear on IXI (Dice 0.85, correlation 0.5).
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["qc_measures", "write_qc"]

DICE_FLOOR = 0.85
# Calibrated on the 136 IXI scans (deepbet, ANTs affine, z-scored in the brain):
# their correlations with the template lie between 0.32 and 0.51 (median 0.43;
# Dice 0.94-0.96). The same scans shifted by 1 cm fall to 0.19-0.24, by 2 cm to
# 0.10, and upside down to 0.17-0.19, so 0.25 flags those and no good IXI scan.
CORRELATION_FLOOR = 0.25
ROBUST_Z = 3.5


def qc_measures(
    volume: np.ndarray, template: np.ndarray, template_mask: np.ndarray, voxel_ml: float
) -> dict[str, float]:
    """Dice with the template's brain, correlation with the template, brain volume."""
    brain = volume != 0 if (volume == 0).mean() > 0.05 else template_mask
    overlap = 2 * np.logical_and(brain, template_mask).sum()
    dice = float(overlap / max(brain.sum() + template_mask.sum(), 1))
    inside = template_mask
    a, b = volume[inside].astype(np.float64), template[inside].astype(np.float64)
    correlation = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
    return {
        "dice_template_brain": round(dice, 4),
        "correlation_template": round(correlation, 4),
        # On the template grid, after registration: an affine one scales every
        # brain to the template's size, so this is not the subject's brain volume.
        "brain_ml_template_grid": round(float(brain.sum()) * voxel_ml, 1),
    }


def _brain_volume_text(measures: dict[str, float]) -> str:
    """The brain volume for people: in the scan's own space where it is known."""
    native = measures.get("brain_ml_native", np.nan)
    grid = f"{measures['brain_ml_template_grid']:.0f} ml on the template grid after registration"
    if np.isfinite(native):
        return f"brain {native:.0f} ml in the scan's own space ({grid})"
    return f"brain {grid}"


#: Below this many scans a cohort's spread is too uncertain to call a scan an
#: outlier by it (3 good IXI scans flagged one, at 0.395 against 0.41 and 0.42).
ROBUST_MIN_SCANS = 10


def _flags(values: np.ndarray, floor: float) -> np.ndarray:
    median = np.median(values)
    spread = 1.4826 * np.median(np.abs(values - median))
    low = values < floor
    if spread > 0 and len(values) >= ROBUST_MIN_SCANS:
        low |= (values - median) / spread < -ROBUST_Z
    return low


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "scan"


def _picture(volume, template_mask, masked: bool, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    centre = [s // 2 for s in volume.shape]
    finite = volume[volume != 0] if masked else volume.ravel()
    low, high = np.percentile(finite, [1, 99]) if finite.size else (0, 1)
    cmap = plt.get_cmap("gray").with_extremes(bad="black")  # black outside the brain mask
    for ax, dim, name in zip(axes, range(3), ("sagittal", "coronal", "axial"), strict=True):
        image = np.take(volume, centre[dim], axis=dim).T
        outline = np.take(template_mask, centre[dim], axis=dim).T
        shown = np.ma.masked_where(image == 0, image) if masked else image
        ax.imshow(shown, cmap=cmap, origin="lower", vmin=low, vmax=high)
        ax.contour(outline, levels=[0.5], colors="cyan", linewidths=1.0)
        if masked:
            ax.contour(image != 0, levels=[0.5], colors="#ff2a2a", linewidths=1.6)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(title, 95)), fontsize=9)
    fig.text(0.01, 0.02, "cyan: template brain outline; red: this scan's brain mask", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_qc(
    folder: str | os.PathLike,
    preprocessor: Any,
    paths: Sequence[str],
    ids: Sequence[str] | None = None,
    progress: bool = True,
) -> Any:
    """Write the QC pictures, ``qc.csv`` and ``index.html`` of a cohort into ``folder``.

    Parameters
    ----------
    folder : path
    preprocessor : fitted VolumePreprocessor
        On a template grid (``target="mni152"`` or another template).
    paths : list of str
        The scans; preprocessed through ``preprocessor.load`` (so from its
        cache when they were preprocessed before).
    ids : list of str, optional
        Names of the scans for people (default: the file names).
    progress : bool, default=True
        Print a counter per scan to stderr.

    Returns
    -------
    pandas.DataFrame
        The rows of ``qc.csv``.
    """
    import sys

    import pandas as pd

    from .data.preprocessing import template_image

    if preprocessor.target_image_ is None:
        raise ValueError(
            "QC compares scans with the template: preprocess onto a template grid (--grid mni152)."
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = preprocessor.target if isinstance(preprocessor.target, str) else "mni152"
    template = np.asarray(preprocessor.target_image_.get_fdata(), dtype=np.float32)
    template_mask = np.asarray(template_image(name, brain_mask=True).get_fdata()) > 0.5
    if preprocessor.crop_box_ is not None:
        template, template_mask = (
            template[preprocessor.crop_box_],
            template_mask[preprocessor.crop_box_],
        )
    voxel_ml = float(abs(np.linalg.det(preprocessor.target_image_.affine[:3, :3]))) / 1000
    masked = preprocessor.mask is not None or bool(preprocessor.skull_strip)
    ids = list(ids) if ids is not None else [Path(p).name.split(".nii")[0] for p in paths]
    rows = []
    for index, (path, scan_id) in enumerate(zip(paths, ids, strict=True)):
        volume = preprocessor.load(path, index)
        picture = f"{index:04d}_{_safe_name(scan_id)}.png"
        measures = qc_measures(volume, template, template_mask, voxel_ml)
        native = preprocessor.native_measures(path).get("native_brain_ml")
        measures["brain_ml_native"] = np.nan if native is None else native
        title = (
            f"{scan_id}: Dice with template brain {measures['dice_template_brain']:.3f}, "
            f"correlation {measures['correlation_template']:.2f}, " + _brain_volume_text(measures)
        )
        _picture(volume, template_mask, masked, title, folder / picture)
        rows.append({"id": scan_id, "path": path, **measures, "picture": picture})
        if progress:
            print(f"QC {index + 1}/{len(paths)} ({scan_id})", file=sys.stderr)
    table = pd.DataFrame(rows)
    dice_low = _flags(table["dice_template_brain"].to_numpy(), DICE_FLOOR)
    corr_low = _flags(table["correlation_template"].to_numpy(), CORRELATION_FLOOR)
    reasons = []
    for d, c in zip(dice_low, corr_low, strict=True):
        reasons.append("; ".join(r for r, on in (("low Dice", d), ("low correlation", c)) if on))
    table["flagged"] = dice_low | corr_low
    table["reason"] = reasons
    table.to_csv(folder / "qc.csv", index=False)
    _index_page(folder / "index.html", table)
    return table


def _index_page(path: Path, table) -> None:
    ordered = table.sort_values(["flagged", "dice_template_brain"], ascending=[False, True])
    cards = []
    for row in ordered.itertuples():
        colour = "#c62828" if row.flagged else "#2e7d32"
        status = f"FLAGGED: {html.escape(row.reason)}" if row.flagged else "ok"
        cards.append(
            f'<div class="card" style="border-color:{colour}">'
            f'<img src="{html.escape(row.picture)}" alt="{html.escape(row.id)}">'
            f"<p><b>{html.escape(row.id)}</b> &middot; <span style='color:{colour}'>{status}"
            f"</span><br>Dice with template brain {row.dice_template_brain:.3f}, "
            f"correlation {row.correlation_template:.3f}, "
            f"{html.escape(_brain_volume_text(row._asdict()))}</p></div>"
        )
    flagged = int(table["flagged"].sum())
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>slicelearn QC</title>"
        "<style>body{font-family:sans-serif;margin:1em}.card{display:inline-block;"
        "border:3px solid;margin:4px;padding:4px;width:740px;vertical-align:top}"
        ".card img{width:100%}p{margin:2px;font-size:13px}</style></head><body>"
        f"<h1>Preprocessing QC: {len(table)} scans, {flagged} flagged</h1>"
        "<p>Each picture shows the preprocessed scan through its centre, the template's brain "
        "outline in cyan and the scan's own brain mask in red. Flagged scans come first: "
        f"Dice below {DICE_FLOOR} or correlation below {CORRELATION_FLOOR}, or either more "
        f"than {ROBUST_Z} robust SDs below the cohort's median (in cohorts of "
        f"{ROBUST_MIN_SCANS} scans or more). Measures are in "
        "<a href='qc.csv'>qc.csv</a>.</p>" + "\n".join(cards) + "</body></html>"
    )
