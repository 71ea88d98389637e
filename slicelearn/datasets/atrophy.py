"""A simulated brain-MRI cohort with ageing and Alzheimer's-disease atrophy.

This module owns the package's embedded default dataset:

- :func:`make_atrophy_cohort` synthesises T1-weighted-like volumes with a
  labelled age, sex and diagnosis, and the ground truth of every effect it put
  into them;
- :func:`load_atrophy_template` returns the tissue maps and regions of interest
  the simulator is built from (and that tests use to find the effects again).

It is a **simulator, not real data**. Every volume is the young-adult MNI152
template bundled with nilearn (no download) after a handful of documented,
literature-sized transformations: ventricles that enlarge, cortex and
hippocampi that thin with age, grey/white contrast that fades with age,
hippocampal atrophy, temporo-parietal cortical thinning and extra ventricular
enlargement in Alzheimer's disease, and between-subject nuisance (shape,
hippocampal and regional cortical size, head size, position, bias field,
noise). The effect sizes are
approximations of published group figures, not a model fitted to any cohort;
``docs/simulator.md`` lists the sources and what is *not* simulated.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.utils import Bunch, check_random_state

__all__ = ["EFFECTS", "load_atrophy_template", "make_atrophy_cohort"]

#: Names of the effects that ``make_atrophy_cohort(effects=...)`` switches on or off.
EFFECTS: tuple[str, ...] = ("age", "ad", "anatomy", "head_size", "pose", "bias")

# --- Tissue intensities (arbitrary units, white matter = 1) --------------------
# T1-weighted ordering WM > GM > CSF; GM/WM of about 0.7 and a dark CSF are
# typical of 3 T MPRAGE images. These are modelling choices, not citations.
_WM_INTENSITY = 1.0
_GM_INTENSITY = 0.70
_CSF_INTENSITY = 0.22

# --- Ageing --------------------------------------------------------------------
# The MNI152 2009 template averages young adults, so it stands for age 20:
# younger ages get no age effect.
_REFERENCE_AGE = 20.0
# Lateral ventricles: about 20 %/decade in early adulthood, then a steep
# increase from the fifth or sixth decade (Kaye et al. 1992). Modelled as
# V(age) / V(20) = 1 + (R - 1) * ((age - 20) / 65) ** 2 with R = 3: roughly a
# tripling between 20 and 85 (1.43x at 50, 2.18x at 70). This quadratic grows
# more slowly than Kaye's 20 %/decade before 40 and faster after 50.
_VENTRICLE_RATIO_AT_85 = 3.0
# Grey matter volume loss: annual rates of about 0.32 %/year at 35 rising to
# 0.55 %/year at 70 (Schippling et al. 2017); linear in between, constant
# outside, integrated from age 20 (about 28 % of the template's GM by 85).
_GM_LOSS_RATE_KNOTS = ((35.0, 0.0032), (70.0, 0.0055))
# Grey/white contrast: T1 grey/white contrast falls with age across most of the
# cortex (Salat et al. 2009). The size is our approximation: the WM-GM
# intensity difference shrinks by 4 % of its young value per decade.
_CONTRAST_LOSS_PER_DECADE = 0.04
# Hippocampal volume loss in ageing: none until 40, then an annual rate rising
# linearly to 1.2 %/year at 80 (constant after), of the template's volume:
# 6 % lost by 60, 13.5 % by 70, 30 % by 85. Healthy controls lose about
# 1.4 %/year (95 % CI 0.5-2.3) in the meta-analysis of Barnes et al. 2009
# (mean ages in the seventies); we use a little less, 1.05 %/year at 75,
# because longitudinal "controls" include preclinical AD.
_HIPPOCAMPAL_LOSS_RATE_KNOTS = ((40.0, 0.0), (80.0, 0.012))
# Between-subject variation of hippocampal size (the "anatomy" effect): the
# volume is the template's times exp(-0.2 + 0.1 z), capped at 1, so the
# template stands for a large hippocampus (+2 SD) and the spread is about 10 %,
# the order of the coefficient of variation of head-size-corrected
# hippocampal volume in healthy older adults.
_HIPPOCAMPUS_LOG_MEAN = -0.2
_HIPPOCAMPUS_LOG_SD = 0.10
# Individual variation around the age trends (log-normal, these log SDs).
_VENTRICLE_JITTER = 0.15
_GM_LOSS_JITTER = 0.15
_CONTRAST_JITTER = 0.15
# The age-related thinning of the AD-signature cortex varies on its own (log SD),
# so that those regions are not simply as thin as the rest of the cortex.
_REGIONAL_JITTER = 0.5
# The ventricular expansion follows a smooth outward flow from the ventricles
# (see _ventricle_flow), computed once per grid over these flow times (mm).
_VENTRICLE_FLOW_SD_MM = 4.0
_VENTRICLE_FLOW_MIN_MM = -3.0
_VENTRICLE_FLOW_MAX_MM = 18.0

# --- Alzheimer's disease -------------------------------------------------------
# Hippocampal volume is about 24 % (left 24.2 %, right 23.1 %) smaller in AD
# than in age-matched controls (Shi et al. 2009, meta-analysis of MRI studies).
_AD_HIPPOCAMPAL_ATROPHY = 0.24
# Ventricles of AD patients are larger and grow faster (Nestor et al. 2008); the
# ventricle-to-brain ratio grows about 15.6 %/year in probable AD against
# 4.3 %/year without AD (Bradley et al. 2002). We assume 1.4x an age-matched
# control's ventricular volume (about three years of that excess growth); this
# cross-sectional ratio is our assumption, not a published figure.
_AD_VENTRICLE_EXCESS = 0.4
# AD-signature cortical thinning: mild AD cortex is a few tenths of a millimetre
# (about 0.2-0.4 mm) thinner than age-matched controls' in medial temporal,
# lateral temporal, temporal pole, inferior and superior parietal, precuneus and
# posterior cingulate cortex (Dickerson et al. 2009; McDonald et al. 2009), of a
# cortex about 2.5 mm thick (Fischl & Dale 2000). Thickness times an unchanged
# area: 0.3 mm of 2.5 mm is 12 % of the regions' cortical GM volume.
_AD_CORTICAL_ATROPHY = 0.12
# Disease severity multiplies every AD effect: normal(1, 0.25), clipped.
_AD_SEVERITY_SD = 0.25
_AD_SEVERITY_CLIP = (0.4, 1.6)
# Hippocampi: ellipsoids around MNI (+-26, -22, -14) mm, the long axis running
# posterior and up at 35 degrees from the y axis (the template's hippocampus).
_HIPPOCAMPUS_CENTRES_MM = ((-26.0, -22.0, -14.0), (26.0, -22.0, -14.0))
_HIPPOCAMPUS_SEMI_AXES_MM = (6.0, 18.0, 7.0)  # lateral, long, perpendicular
_HIPPOCAMPUS_TILT_DEG = 35.0
# The AD-signature cortex: ellipsoids (centre, semi-axes along x, y, z; mm) on
# the right hemisphere, mirrored to the left, placed by eye on the MNI152
# template over the gyri of the signature (nilearn bundles no volumetric atlas).
# Frontal parts of Dickerson's signature (superior frontal gyrus, inferior
# frontal sulcus), which thin less, are left out. The hippocampal ellipsoids are
# cut out of the medial temporal one, so no voxel is counted in both.
_AD_CORTICAL_REGIONS = (
    ("medial temporal (entorhinal, parahippocampal)", (24.0, -18.0, -30.0), (8.0, 20.0, 8.0)),
    ("temporal pole", (40.0, 14.0, -30.0), (12.0, 12.0, 12.0)),
    ("lateral temporal (middle, inferior temporal)", (54.0, -28.0, -16.0), (12.0, 34.0, 16.0)),
    ("inferior parietal (supramarginal, angular)", (48.0, -50.0, 36.0), (14.0, 24.0, 14.0)),
    ("superior parietal", (24.0, -62.0, 58.0), (12.0, 14.0, 10.0)),
    ("precuneus", (7.0, -62.0, 42.0), (8.0, 17.0, 20.0)),
    ("posterior cingulate", (6.0, -36.0, 30.0), (7.0, 18.0, 12.0)),
)

# --- Between-subject nuisance --------------------------------------------------
# Intracranial volume is about 12 % larger in men (Ruigrok et al. 2014): a
# linear scale of 1.019 for men and 0.981 for women (ratio 1.038 = 1.12 ** (1/3)).
_SEX_HEAD_SCALE = {"F": 0.981, "M": 1.019}
_HEAD_SCALE_SD = 0.025  # isotropic, so about +-5 % at two SDs
_SHIFT_SD_MM = 3.0
_ROTATION_SD_DEG = 3.0
_DEFORMATION_SD_MM = 2.5  # per component, smooth on a 32 mm control grid
_DEFORMATION_SPACING_MM = 32.0
_BIAS_SD = 0.10  # log-intensity SD of the multiplicative bias field
_BIAS_SPACING_MM = 64.0
_VENTRICLE_RATIO_CLIP = (0.5, 6.0)
_NOISE_TYPES = ("rician", "gaussian")


# ----------------------------------------------------------------------------
# Template, tissue maps and their per-grid cache
# ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Template:
    """Everything about one grid that does not change between subjects."""

    affine: np.ndarray
    shape: tuple[int, int, int]
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain_mask: np.ndarray
    ventricles: np.ndarray  # fraction of each voxel in the lateral ventricle ROI
    hippocampi: np.ndarray  # soft ellipsoid weight in [0, 1]
    ad_cortex: np.ndarray  # soft weight in [0, 1] of the AD-signature cortex
    base_intensity: np.ndarray  # the young template synthesised from the maps
    centre_mm: np.ndarray  # brain-mask centroid: centre of rotation and scaling
    ventricle_centres_mm: np.ndarray  # (2, 3) centroids, left then right
    flow_box: tuple[np.ndarray, np.ndarray]  # voxel index range [lo, hi) of the flow
    flow_times: np.ndarray  # flow times (mm) of the snapshots
    flow_snapshots: np.ndarray  # (T, 3, *box) displacement in voxels at each time, float16
    flow_ratios: np.ndarray  # ventricular volume ratio at each time
    thin_index: np.ndarray  # flat indices of GM voxels the cortical thinning may reach
    thin_depth: np.ndarray  # their depth from the nearest non-ventricular CSF (mm)
    thin_gm: np.ndarray  # their template GM fraction
    thin_table: tuple[np.ndarray, np.ndarray]  # (depth threshold mm, GM fraction lost)
    hippocampus_index: np.ndarray  # flat indices of the voxels in the ellipsoids
    hippocampus_weight: np.ndarray  # their ellipsoid weight
    hippocampus_depth: np.ndarray  # their depth (mm) inside GM, from the nearest non-GM voxel
    hippocampus_thin: tuple[np.ndarray, np.ndarray]  # (k into thin_*, position in hippocampus_*)
    cortex_position: np.ndarray  # positions in thin_* of the AD-signature cortex voxels
    cortex_weight: np.ndarray  # their ad_cortex weight
    cortex_gm_total: float  # sum(ad_cortex * GM) over the whole grid, deep GM included
    spline_bases: dict  # {spacing_mm: (Bx, By, Bz)}


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=1)
def _mni_images() -> dict[str, nib.Nifti1Image]:
    """nilearn's bundled 2 mm MNI152 template, tissue maps and mask (no download)."""
    from nilearn import datasets

    return {
        "t1": datasets.load_mni152_template(resolution=2),
        "gm": datasets.load_mni152_gm_template(resolution=2),
        "wm": datasets.load_mni152_wm_template(resolution=2),
        "mask": datasets.load_mni152_brain_mask(resolution=2),
    }


def _world_coordinates(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    ijk = np.indices(shape, dtype=np.float64).reshape(3, -1)
    return affine[:3, :3] @ ijk + affine[:3, 3:4]


def _find_ventricles(csf: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The lateral ventricles: the largest CSF component in a central box (2 mm grid)."""
    x, y, z = _world_coordinates(affine, csf.shape).reshape(3, *csf.shape)
    box = (np.abs(x) < 30) & (y > -50) & (y < 35) & (z > -5) & (z < 35)
    labels, n = ndimage.label((csf > 0.5) & box)
    if n == 0:
        raise RuntimeError("No ventricular CSF found near the centre of the MNI template.")
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    component = labels == (int(np.argmax(sizes)) + 1)
    volume_ml = component.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000
    if not 5 <= volume_ml <= 60:
        raise RuntimeError(f"Implausible lateral-ventricle volume {volume_ml:.1f} mL in template.")
    return component


def _ventricle_centres(ventricles: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Centroid (mm) of the left and of the right lateral ventricle."""
    xyz = _world_coordinates(affine, ventricles.shape)
    weight = ventricles.reshape(-1).astype(np.float64)
    centres = []
    for side in (-1, 1):
        w = weight * (np.sign(xyz[0]) == side)
        centres.append((xyz * w).sum(axis=1) / w.sum())
    return np.array(centres, dtype=np.float32)


def _hippocampal_weight(grid_mm: np.ndarray, voxel_size: float) -> np.ndarray:
    """Soft ellipsoids (1 inside, a one-voxel ramp at the surface) around both hippocampi."""
    tilt = math.radians(_HIPPOCAMPUS_TILT_DEG)
    long_axis = np.array([0.0, -math.cos(tilt), math.sin(tilt)])  # posterior and up
    perp_axis = np.array([0.0, math.sin(tilt), math.cos(tilt)])
    axes = np.stack([np.array([1.0, 0.0, 0.0]), long_axis, perp_axis])
    weight = np.zeros(grid_mm.shape[1])
    for centre in _HIPPOCAMPUS_CENTRES_MM:
        region = _ellipsoid_weight(grid_mm, centre, _HIPPOCAMPUS_SEMI_AXES_MM, voxel_size, axes)
        weight = np.maximum(weight, region)
    return weight


def _ellipsoid_weight(
    grid_mm: np.ndarray, centre, semi_axes, voxel_size: float, axes: np.ndarray | None = None
) -> np.ndarray:
    """Soft ellipsoid: 1 inside, 0 outside, a ramp about one voxel wide at the surface."""
    local = grid_mm - np.asarray(centre, dtype=np.float64)[:, None]
    if axes is not None:
        local = axes @ local
    radius = np.sqrt(((local / np.asarray(semi_axes, dtype=np.float64)[:, None]) ** 2).sum(0))
    ramp = min(semi_axes) / voxel_size
    return np.clip(0.5 + (1.0 - radius) * ramp, 0.0, 1.0)


def _ad_cortex_weight(grid_mm: np.ndarray, voxel_size: float) -> np.ndarray:
    """Soft weight of the AD-signature cortical regions (both hemispheres)."""
    weight = np.zeros(grid_mm.shape[1])
    for _, (x, y, z), semi_axes in _AD_CORTICAL_REGIONS:
        for side in (-1.0, 1.0):
            region = _ellipsoid_weight(grid_mm, (side * x, y, z), semi_axes, voxel_size)
            weight = np.maximum(weight, region)
    return weight


def _bspline(t: np.ndarray) -> np.ndarray:
    t = np.abs(t)
    out = np.where(t < 1, 2.0 / 3.0 - t**2 + 0.5 * t**3, 0.0)
    return np.where((t >= 1) & (t < 2), (2.0 - t) ** 3 / 6.0, out)


def _spline_basis(coords_mm: np.ndarray, start_mm: float, stop_mm: float, spacing: float):
    """Cubic B-spline basis (n, K) on control points fixed in world space, unit-norm rows.

    Control points sit at fixed world positions, so a subject's smooth fields are
    the same on the 2 mm and 4 mm grids. Unit-norm rows make a field built from
    independent N(0, s^2) coefficients have SD s at every voxel.
    """
    n_ctrl = math.ceil((stop_mm - start_mm) / spacing) + 4
    knots = start_mm + (np.arange(n_ctrl) - 1.5) * spacing
    basis = _bspline((coords_mm[:, None] - knots[None, :]) / spacing)
    return (basis / np.sqrt((basis**2).sum(axis=1, keepdims=True))).astype(np.float32)


def _smooth_field(coefficients: np.ndarray, bases) -> np.ndarray:
    """Separable B-spline synthesis: (C, Kx, Ky, Kz) coefficients to (C, X, Y, Z) fields."""
    bx, by, bz = bases
    out = np.einsum("cabk,zk->cabz", coefficients, bz)
    out = np.einsum("cabz,yb->cayz", out, by)
    return np.einsum("xa,cayz->cxyz", bx, out)


def _grid_maps(voxel_size: int) -> dict[str, np.ndarray | nib.Nifti1Image]:
    """Template arrays on the requested grid (resampled once with nilearn for 4 mm)."""
    images = dict(_mni_images())
    base_affine = images["t1"].affine
    # The lateral ventricles are found once on the native 2 mm grid.
    gm2 = images["gm"].get_fdata(dtype=np.float32)
    wm2 = images["wm"].get_fdata(dtype=np.float32)
    mask2 = images["mask"].get_fdata(dtype=np.float32)
    csf2 = np.clip(mask2 - gm2 - wm2, 0.0, 1.0)
    ventricles2 = _find_ventricles(csf2, base_affine)
    centres = _ventricle_centres(ventricles2, base_affine)
    roi2 = ndimage.binary_dilation(ventricles2, iterations=1).astype(np.float32)
    images["ventricles"] = nib.Nifti1Image(roi2, base_affine)
    if voxel_size != 2:
        from nilearn import image as nimage

        factor = voxel_size / 2
        affine = base_affine.copy()
        affine[:3, :3] *= factor
        # Voxel centres of the coarse grid sit at the centres of 2x2x2 blocks.
        affine[:3, 3] += base_affine[:3, :3] @ np.full(3, (factor - 1) / 2)
        shape = tuple(math.ceil(s / factor) for s in images["t1"].shape)
        fwhm = math.sqrt(voxel_size**2 - 2**2)  # to an effective voxel_size resolution
        images = {
            name: nimage.resample_img(
                nimage.smooth_img(img, fwhm),
                target_affine=affine,
                target_shape=shape,
                interpolation="linear",
                force_resample=True,
                copy_header=True,
            )
            for name, img in images.items()
        }
    arrays = {name: img.get_fdata(dtype=np.float32) for name, img in images.items()}
    arrays["affine"] = images["t1"].affine
    arrays["ventricle_centres_mm"] = centres
    return arrays


def _ventricle_flow(ventricles: np.ndarray, csf: np.ndarray, voxel_size: int):
    """Snapshots of a smooth outward flow from the lateral ventricles, and its volume effect.

    The velocity is the gradient of the ventricle map smoothed with a Gaussian
    (SD 4 mm), scaled to at most 1 mm per unit time. Following it *towards* the
    ventricles for a time t gives the pull-back map of an expansion: a subject
    voxel near a ventricle samples the template closer to (or inside) it, so the
    ventricles widen along their normals while keeping their shape. A flow of a
    smooth field never folds; the septum between the two ventricles thins but
    does not tear. Returns the voxel box it acts in, the snapshot times (mm),
    the displacement (voxels) at each time and the ventricular volume ratio.
    """
    phi = ndimage.gaussian_filter(ventricles.astype(np.float64), _VENTRICLE_FLOW_SD_MM / voxel_size)
    gradient = np.stack(np.gradient(phi, float(voxel_size)))
    norm = np.sqrt((gradient**2).sum(axis=0))
    active = np.nonzero(norm > 1e-3 * norm.max())
    lo = np.maximum(np.array([a.min() for a in active]) - 1, 0)
    hi = np.minimum(np.array([a.max() for a in active]) + 2, ventricles.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    # In voxels per unit time (mm); max speed 1 mm per mm of flow time.
    velocity = (gradient[(slice(None), *box)] / norm.max() / voxel_size).astype(np.float32)
    start = np.indices(velocity.shape[1:], dtype=np.float32).reshape(3, -1)
    ventricle_csf = (csf * ventricles)[box].astype(np.float32)
    original = float((csf * ventricles).sum())

    def speed(points: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                ndimage.map_coordinates(v, points, order=1, mode="nearest", prefilter=False)
                for v in velocity
            ]
        )

    step, per_snapshot = 0.5, 2  # midpoint (RK2) steps of 0.5 mm, a snapshot every 1 mm
    snapshots, ratios, times = [], [], []
    # Forward in time the ventricles grow; backward they shrink (for ratios < 1).
    for direction, span in ((-1.0, _VENTRICLE_FLOW_MIN_MM), (1.0, _VENTRICLE_FLOW_MAX_MM)):
        points = start.copy()
        h = direction * step
        for n in range(round(abs(span) / (step * per_snapshot)) + 1):
            if n:
                for _ in range(per_snapshot):
                    points = points + h * speed(points + 0.5 * h * speed(points))
            elif direction > 0:
                continue  # time 0 was stored with the backward pass
            warped = ndimage.map_coordinates(ventricle_csf, points, order=1, prefilter=False)
            ratios.append(float(warped.sum()) / original)
            snapshots.append((points - start).reshape(3, *velocity.shape[1:]))
            times.append(direction * n * step * per_snapshot)
    order = np.argsort(times)
    times = np.asarray(times)[order]
    snapshots = [snapshots[i] for i in order]
    ratios = np.maximum.accumulate(np.asarray(ratios)[order])
    # Half precision is plenty for displacements of a few voxels (and halves the cache).
    return (lo, hi), times, np.stack(snapshots).astype(np.float16), ratios


def _ventricle_displacement(index: np.ndarray, time_mm: float, template: _Template) -> None:
    """Add the ventricular expansion at flow time ``time_mm`` to voxel indices (in place)."""
    times, snapshots = template.flow_times, template.flow_snapshots
    spacing = times[1] - times[0]
    k = int(np.clip((time_mm - times[0]) // spacing, 0, len(times) - 2))
    frac = np.float32((time_mm - times[k]) / spacing)
    field = (1 - frac) * snapshots[k].astype(np.float32) + frac * snapshots[k + 1]
    lo, hi = template.flow_box
    lo_f, hi_f = lo.astype(np.float32)[:, None], (hi - 1).astype(np.float32)[:, None]
    inside = np.flatnonzero(np.all((index >= lo_f) & (index <= hi_f), axis=0))
    local = index[:, inside] - lo_f
    for axis in range(3):
        index[axis, inside] += ndimage.map_coordinates(
            field[axis], local, order=1, mode="nearest", prefilter=False
        )


def _cortical_depth(csf: np.ndarray, mask: np.ndarray, ventricles: np.ndarray, voxel_size: int):
    """Distance (mm) of every voxel to the nearest sulcal/outer CSF or outside of the brain."""
    near_ventricles = ndimage.binary_dilation(ventricles > 0.5, iterations=2)
    seeds = ((csf >= 0.5) & ~near_ventricles) | (mask < 0.5)
    return ndimage.distance_transform_edt(~seeds, sampling=voxel_size).astype(np.float32)


def _thinning_loss(depth: np.ndarray, gm: np.ndarray, thresholds: np.ndarray, width: float):
    """Fraction of the GM (of ``gm.sum()``) that thinning to each threshold removes."""
    return np.array([(gm * np.clip((t - depth) / width, 0.0, 1.0)).sum() for t in thresholds])


@functools.lru_cache(maxsize=2)
def _template(voxel_size: int) -> _Template:
    maps = _grid_maps(voxel_size)
    affine = np.asarray(maps["affine"], dtype=np.float64)
    gm, wm, mask = maps["gm"], maps["wm"], np.clip(maps["mask"], 0.0, 1.0)
    gm, wm = np.clip(gm, 0.0, 1.0), np.clip(wm, 0.0, 1.0)
    total = gm + wm
    over = total > 1
    gm[over] /= total[over]
    wm[over] /= total[over]
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    brain = np.clip(gm + wm + csf, 0.0, 1.0)
    # nilearn's MNI152 2009 template is skull-stripped: outside its brain mask
    # it is ~0 (a few hundred voxels of residual tissue), kept in WM = 1 units.
    t1 = np.clip(maps["t1"], 0.0, None)
    wm_level = float(np.median(t1[wm > 0.95])) if np.any(wm > 0.95) else float(t1.max())
    background = ((1.0 - brain) * t1 / wm_level).astype(np.float32)
    base = (_GM_INTENSITY * gm + _WM_INTENSITY * wm + _CSF_INTENSITY * csf + background).astype(
        np.float32
    )
    shape = tuple(int(s) for s in gm.shape)
    grid_mm = _world_coordinates(affine, shape)
    centre = (grid_mm * mask.reshape(-1)).sum(axis=1) / mask.sum()
    ventricles = np.clip(maps["ventricles"], 0.0, 1.0)

    depth = _cortical_depth(csf, mask, ventricles, voxel_size)
    max_depth = 16.0
    reach = (gm > 1e-3) & (depth < max_depth)
    thin_index = np.flatnonzero(reach)
    thin_depth = depth.reshape(-1)[thin_index]
    thin_gm = gm.reshape(-1)[thin_index]
    thresholds = np.linspace(0.0, max_depth, 65)
    losses = _thinning_loss(thin_depth, thin_gm, thresholds, float(voxel_size)) / gm.sum()

    flow_box, flow_times, flow_snapshots, flow_ratios = _ventricle_flow(ventricles, csf, voxel_size)
    hippocampi = _hippocampal_weight(grid_mm, voxel_size)
    hippocampi = hippocampi.reshape(shape).astype(np.float32)
    hippocampus_index = np.flatnonzero(hippocampi > 0)
    gm_depth = ndimage.distance_transform_edt(gm >= 0.5, sampling=voxel_size).astype(np.float32)
    # Where the hippocampal ellipsoids meet the voxels the cortical thinning reaches.
    _, k_thin, k_hippocampus = np.intersect1d(thin_index, hippocampus_index, return_indices=True)
    # The AD-signature cortex, minus the hippocampal ellipsoids, among those voxels.
    ad_cortex = _ad_cortex_weight(grid_mm, voxel_size) * (1.0 - hippocampi.reshape(-1))
    ad_cortex = ad_cortex.reshape(shape).astype(np.float32)
    cortex_weight = ad_cortex.reshape(-1)[thin_index]
    cortex_position = np.flatnonzero(cortex_weight > 0)

    # World-fixed control grids for the smooth random fields (same on every grid).
    base_images = _mni_images()
    base_affine = base_images["t1"].affine
    fov = _world_coordinates(base_affine, base_images["t1"].shape)
    fov_lo, fov_hi = fov.min(axis=1), fov.max(axis=1)
    axes_mm = [affine[a, a] * np.arange(shape[a]) + affine[a, 3] for a in range(3)]
    if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))):
        raise RuntimeError("The template grid is expected to be axis-aligned (RAS).")
    bases = {
        spacing: tuple(_spline_basis(axes_mm[a], fov_lo[a], fov_hi[a], spacing) for a in range(3))
        for spacing in (_DEFORMATION_SPACING_MM, _BIAS_SPACING_MM)
    }

    template = _Template(
        affine=_readonly(affine),
        shape=shape,
        gm=_readonly(gm),
        wm=_readonly(wm),
        csf=_readonly(csf),
        brain_mask=_readonly(mask),
        ventricles=_readonly(ventricles),
        hippocampi=_readonly(hippocampi),
        ad_cortex=_readonly(ad_cortex),
        base_intensity=_readonly(base),
        centre_mm=_readonly(centre.astype(np.float32)),
        ventricle_centres_mm=_readonly(maps["ventricle_centres_mm"]),
        flow_box=(_readonly(flow_box[0]), _readonly(flow_box[1])),
        flow_times=_readonly(flow_times),
        flow_snapshots=_readonly(flow_snapshots),
        flow_ratios=_readonly(flow_ratios),
        thin_index=_readonly(thin_index),
        thin_depth=_readonly(thin_depth),
        thin_gm=_readonly(thin_gm),
        thin_table=(_readonly(thresholds), _readonly(losses)),
        hippocampus_index=_readonly(hippocampus_index),
        hippocampus_weight=_readonly(hippocampi.reshape(-1)[hippocampus_index]),
        hippocampus_depth=_readonly(gm_depth.reshape(-1)[hippocampus_index]),
        hippocampus_thin=(_readonly(k_thin), _readonly(k_hippocampus)),
        cortex_position=_readonly(cortex_position),
        cortex_weight=_readonly(cortex_weight[cortex_position]),
        cortex_gm_total=float((ad_cortex * gm).sum()),
        spline_bases=bases,
    )
    return template


# ----------------------------------------------------------------------------
# Effect sizes as functions of age and disease
# ----------------------------------------------------------------------------


def _ventricle_ratio_for_age(age: float) -> float:
    years = max(age - _REFERENCE_AGE, 0.0)
    return 1.0 + (_VENTRICLE_RATIO_AT_85 - 1.0) * (years / 65.0) ** 2


def _gm_loss_for_age(age: float) -> float:
    """Cumulative GM fraction lost since age 20 (integral of the annual rate)."""
    (a0, r0), (a1, r1) = _GM_LOSS_RATE_KNOTS
    ages = np.linspace(_REFERENCE_AGE, max(age, _REFERENCE_AGE), 200)
    rates = np.interp(ages, [a0, a1], [r0, r1])
    return float(np.sum(0.5 * (rates[1:] + rates[:-1]) * np.diff(ages)))


def _hippocampal_loss_for_age(age: float) -> float:
    """Cumulative fraction of the hippocampal volume lost to ageing (integral of the rate)."""
    (a0, r0), (a1, r1) = _HIPPOCAMPAL_LOSS_RATE_KNOTS
    ages = np.linspace(a0, max(age, a0), 200)
    rates = np.interp(ages, [a0, a1], [r0, r1])
    return float(np.sum(0.5 * (rates[1:] + rates[:-1]) * np.diff(ages)))


def _contrast_for_age(age: float) -> float:
    """WM-GM intensity difference relative to the young template's."""
    return 1.0 - _CONTRAST_LOSS_PER_DECADE * max(age - _REFERENCE_AGE, 0.0) / 10.0


def _solve_threshold(loss, target: float, high: float, n: int = 33, rounds: int = 3) -> float:
    """Depth threshold in [0, high] at which the nondecreasing ``loss(thresholds)`` is ``target``.

    Tabulates ``loss`` on ``n`` thresholds, then again inside the bracketing
    interval, ``rounds`` times, and interpolates linearly: the loss is piecewise
    linear in the threshold with a kink at every voxel's depth, so the
    interpolation error shrinks with the bracket.
    """
    low = 0.0
    for _ in range(rounds):
        thresholds = np.linspace(low, high, n)
        losses = loss(thresholds)
        k = int(np.clip(np.searchsorted(losses, target), 1, n - 1))
        low, high = float(thresholds[k - 1]), float(thresholds[k])
    return float(np.interp(target, losses, thresholds))


def _rotation(angles_rad: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles_rad)
    sx, sy, sz = np.sin(angles_rad)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


# ----------------------------------------------------------------------------
# One subject
# ----------------------------------------------------------------------------


def _simulate_subject(
    template: _Template,
    *,
    age: float,
    sex: str,
    ad: bool,
    seed: int,
    effects: Mapping[str, bool],
    noise: float,
    noise_type: str,
    ad_hippocampal: float = _AD_HIPPOCAMPAL_ATROPHY,
    ad_cortical: float = _AD_CORTICAL_ATROPHY,
    ad_ventricle: float = _AD_VENTRICLE_EXCESS,
) -> tuple[np.ndarray, dict[str, float]]:
    # Every draw happens, in this order, whatever the effects: switching an
    # effect off leaves everything else about the subject unchanged.
    rng = np.random.default_rng(seed)
    z_ventricle, z_gm, z_contrast, z_severity, z_scale = rng.standard_normal(5)
    angles = np.deg2rad(_ROTATION_SD_DEG) * rng.standard_normal(3)
    shift = _SHIFT_SD_MM * rng.standard_normal(3)
    deformation_bases = template.spline_bases[_DEFORMATION_SPACING_MM]
    bias_bases = template.spline_bases[_BIAS_SPACING_MM]
    n_ctrl = tuple(b.shape[1] for b in deformation_bases)
    deformation = rng.standard_normal((3, *n_ctrl), dtype=np.float32) * _DEFORMATION_SD_MM
    bias = rng.standard_normal(tuple(b.shape[1] for b in bias_bases), dtype=np.float32)
    # Draws added after the first release come from a second stream, so that the
    # draws above (and the noise) are those of earlier versions.
    z_hippocampus, z_region = np.random.default_rng([seed, 1]).standard_normal(2)

    severity = float(np.clip(1.0 + _AD_SEVERITY_SD * z_severity, *_AD_SEVERITY_CLIP))
    age_on, ad_on = effects["age"], effects["ad"] and ad

    # Tissue changes in template space: GM turns into CSF.
    intensity = template.base_intensity.copy().reshape(-1)
    gm_to_csf = _CSF_INTENSITY - _GM_INTENSITY
    gm = template.gm.reshape(-1)
    width = float(np.mean(np.abs(np.diag(template.affine)[:3])))
    # GM removed so far from each voxel the cortical thinning reaches.
    removed = np.zeros(template.thin_index.size, dtype=np.float32)
    gm_loss = 0.0
    if age_on:
        thresholds, losses = template.thin_table
        target = _gm_loss_for_age(age) * math.exp(_GM_LOSS_JITTER * z_gm)
        target = min(target, float(losses[-1]))
        threshold = float(np.interp(target, losses, thresholds))
        removed = template.thin_gm * np.clip((threshold - template.thin_depth) / width, 0, 1)
        # Regional variation: in the AD-signature cortex, the age-related
        # thinning is exp(0.5 z) times what the global threshold gives, z of
        # its own (thinning to a threshold of its own, blended in by the
        # regions' weight).
        position, weight = template.cortex_position, template.cortex_weight
        depth, cortex_gm = template.thin_depth[position], template.thin_gm[position]

        def regional_loss(regional):
            local = threshold + weight * (np.asarray(regional)[..., None] - threshold)
            return cortex_gm * np.clip((local - depth) / width, 0, 1)

        high = float(depth.max()) + width
        target = float(regional_loss(threshold) @ weight) * math.exp(_REGIONAL_JITTER * z_region)
        target = min(target, float(regional_loss(high) @ weight))
        regional = _solve_threshold(lambda t: regional_loss(t) @ weight, target, high)
        removed[position] = regional_loss(regional)
        gm_loss = float(removed.sum() / template.gm.sum())
    # The soft regions (weight w in [0, 1]) have a volume of sum(w * GM); an
    # effect at full strength in a voxel acts there with strength w.
    position, weight = template.cortex_position, template.cortex_weight
    cortex_gm = template.thin_gm[position]
    # The regions' volume counts all their GM, also the GM too deep for the
    # thinning to reach (more of it on the blurrier 4 mm grid).
    cortex_template = template.cortex_gm_total
    cortical_atrophy = 0.0
    if ad_on and ad_cortical > 0:
        # AD thins the signature cortex further: the same surface-inwards
        # thinning as ageing, continued deeper, until the requested fraction of
        # the regions' GM that ageing left has gone.
        depth, done = template.thin_depth[position], removed[position]
        before = cortex_template - float(weight @ done)

        def cortical_loss(threshold):
            ramp = np.clip((np.asarray(threshold)[..., None] - depth) / width, 0, 1)
            return weight * np.clip(cortex_gm * ramp - done, 0, None)

        high = float(depth.max()) + width
        target = min(ad_cortical * severity, float(cortical_loss(high) @ weight) / before)
        lost = cortical_loss(
            _solve_threshold(lambda t: cortical_loss(t) @ weight / before, target, high)
        )
        removed[position] += lost
        cortical_atrophy = float(lost @ weight) / before
    intensity[template.thin_index] += gm_to_csf * removed
    cortex_volume = 1.0 - float(weight @ removed[position]) / cortex_template

    # The hippocampal ellipsoids' GM that the cortical changes left.
    index, weight = template.hippocampus_index, template.hippocampus_weight
    k_thin, k_hippocampus = template.hippocampus_thin
    hippocampal_gm = gm[index].copy()
    hippocampal_gm[k_hippocampus] -= removed[k_thin]  # GM is not removed twice
    hippocampal_template = float((weight * gm[index]).sum())
    left = float((weight * hippocampal_gm).sum())
    # Its volume before AD: what the cortical changes left, or a smaller
    # hippocampus (between-subject variation, ageing) if that is smaller still.
    size = 1.0
    if effects["anatomy"]:
        size = min(1.0, math.exp(_HIPPOCAMPUS_LOG_MEAN + _HIPPOCAMPUS_LOG_SD * z_hippocampus))
    if age_on:
        size *= 1.0 - _hippocampal_loss_for_age(age)
    before_ad = min(left, size * hippocampal_template)
    after = before_ad * (1.0 - ad_hippocampal * severity) if ad_on else before_ad
    remaining = left
    if after < left:
        # Atrophy eats the hippocampus from its surface inwards: GM within a
        # depth threshold turns into CSF, the threshold set so that the
        # requested volume remains.
        depth = template.hippocampus_depth

        def hippocampal_loss(threshold):
            ramp = np.clip((np.asarray(threshold)[..., None] - depth) / width, 0, 1)
            return weight * hippocampal_gm * ramp

        high = float(depth.max()) + width
        target = min(1.0 - after / left, float(hippocampal_loss(high) @ weight) / left)
        threshold = _solve_threshold(lambda t: hippocampal_loss(t) @ weight / left, target, high)
        lost = hippocampal_loss(threshold)
        intensity[index] += gm_to_csf * lost
        remaining = left - float(lost @ weight)
    hippocampal_atrophy = 1.0 - remaining / before_ad if ad_on else 0.0
    hippocampal_volume = remaining / hippocampal_template
    contrast = 1.0
    if age_on:
        contrast = 1.0 - (1.0 - _contrast_for_age(age)) * math.exp(_CONTRAST_JITTER * z_contrast)
        wm_shift = (1.0 - contrast) * (_WM_INTENSITY - _GM_INTENSITY)
        intensity -= wm_shift * template.wm.reshape(-1)
    intensity = intensity.reshape(template.shape)

    # Ventricular expansion strength from the calibrated volume ratio.
    ratio = 1.0
    if age_on:
        ratio = _ventricle_ratio_for_age(age) * math.exp(_VENTRICLE_JITTER * z_ventricle)
    if ad_on:
        ratio *= 1.0 + ad_ventricle * severity
    flow_time = 0.0
    if ratio != 1.0:
        ratio = float(np.clip(ratio, *_VENTRICLE_RATIO_CLIP))
        ratio = float(np.clip(ratio, template.flow_ratios[0], template.flow_ratios[-1]))
        flow_time = float(np.interp(ratio, template.flow_ratios, template.flow_times))
        ratio = float(np.interp(flow_time, template.flow_times, template.flow_ratios))

    # Pull-back map of output voxels into template space (mm), then one resampling.
    scale = 1.0
    if effects["head_size"]:
        scale = _SEX_HEAD_SCALE[sex] * math.exp(_HEAD_SCALE_SD * z_scale)
    rotation = _rotation(angles) if effects["pose"] else np.eye(3)
    translation = shift if effects["pose"] else np.zeros(3)
    # Subject point x samples the template at c + R.T (x - c - t) / s (+ deformation),
    # written directly in voxel indices of the template grid.
    centre = template.centre_mm.astype(np.float64)
    linear = rotation.T / scale
    offset = centre - linear @ (centre + translation)
    forward, inverse = template.affine, np.linalg.inv(template.affine)
    matrix = inverse[:3, :3] @ linear @ forward[:3, :3]
    bias_vector = inverse[:3, :3] @ (linear @ forward[:3, 3] + offset) + inverse[:3, 3]
    axes = [np.arange(n, dtype=np.float32) for n in template.shape]
    i, j, k = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    index = np.empty((3, *template.shape), dtype=np.float32)
    for a in range(3):
        m = matrix[a].astype(np.float32)
        np.add(m[0] * i + m[1] * j, m[2] * k + np.float32(bias_vector[a]), out=index[a])
    if effects["anatomy"]:
        # Displacement in mm, converted to voxels (the grid is axis-aligned).
        voxel = np.diag(forward[:3, :3]).astype(np.float32)[:, None, None, None]
        index += _smooth_field(deformation, deformation_bases) / voxel
    index = index.reshape(3, -1)
    if flow_time != 0.0:
        _ventricle_displacement(index, flow_time, template)
    volume = ndimage.map_coordinates(
        intensity, index, order=1, mode="constant", cval=0.0, prefilter=False, output=np.float32
    ).reshape(template.shape)

    if effects["bias"]:
        volume *= np.exp(_BIAS_SD * _smooth_field(bias[None], bias_bases)[0])
    if noise > 0:
        sigma = np.float32(noise * _WM_INTENSITY)
        real = rng.standard_normal(template.shape, dtype=np.float32)
        if noise_type == "gaussian":
            volume += sigma * real
        else:
            imaginary = rng.standard_normal(template.shape, dtype=np.float32)
            volume = np.sqrt((volume + sigma * real) ** 2 + (sigma * imaginary) ** 2)
    truth = {
        "ventricle_volume_ratio": ratio,
        "gm_volume_loss": gm_loss,
        "hippocampal_atrophy": hippocampal_atrophy,
        "gm_wm_contrast": contrast,
        "head_scale": scale,
        "cortical_atrophy": cortical_atrophy,
        "hippocampal_volume": hippocampal_volume,
        "cortical_signature_volume": cortex_volume,
    }
    return volume.astype(np.float32, copy=False), truth


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def _check_voxel_size(voxel_size) -> int:
    if isinstance(voxel_size, bool) or not isinstance(voxel_size, numbers.Real):
        raise ValueError(f"voxel_size must be 2 or 4 (mm), got {voxel_size!r}.")
    if voxel_size not in (2, 4):
        raise ValueError(f"voxel_size must be 2 or 4 (mm), got {voxel_size!r}.")
    return int(voxel_size)


def _check_age_range(value, name: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two numbers (low, high), got {value!r}.") from None
    if not (math.isfinite(low) and math.isfinite(high)) or not 0 <= low <= high <= 120:
        raise ValueError(f"{name} must satisfy 0 <= low <= high <= 120, got {value!r}.")
    return low, high


def _check_effects(effects) -> dict[str, bool]:
    chosen = dict.fromkeys(EFFECTS, True)
    if effects is None:
        return chosen
    if not isinstance(effects, Mapping):
        raise ValueError(f"effects must be a mapping such as {{'age': False}}, got {effects!r}.")
    unknown = sorted(set(effects) - set(EFFECTS))
    if unknown:
        raise ValueError(f"Unknown effects {unknown}; choose from {list(EFFECTS)}.")
    for name, value in effects.items():
        if not isinstance(value, bool | np.bool_):
            raise ValueError(f"effects[{name!r}] must be True or False, got {value!r}.")
        chosen[name] = bool(value)
    return chosen


def make_atrophy_cohort(
    n_subjects: int = 100,
    *,
    voxel_size: int = 2,
    age_range: tuple[float, float] = (20.0, 85.0),
    ad_fraction: float = 0.5,
    ad_age_range: tuple[float, float] | None = None,
    effects: Mapping[str, bool] | None = None,
    noise: float = 0.03,
    noise_type: str = "rician",
    return_arrays: bool = False,
    random_state: int | np.random.RandomState | None = None,
    ad_hippocampal_atrophy: float = _AD_HIPPOCAMPAL_ATROPHY,
    ad_cortical_atrophy: float = _AD_CORTICAL_ATROPHY,
    ad_ventricle_excess: float = _AD_VENTRICLE_EXCESS,
) -> tuple[list[nib.Nifti1Image], pd.DataFrame] | tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Simulate a labelled cohort of T1-weighted-like brain MRI volumes.

    Each volume is synthesised from nilearn's bundled MNI152 tissue maps (no
    download): grey matter (GM), white matter (WM) and cerebrospinal fluid (CSF =
    brain mask - GM - WM) get T1-like intensities (WM 1.0 > GM 0.70 > CSF 0.22).
    Then, per subject:

    **Age** (uniform in ``age_range``; the template stands for age 20, younger
    ages get no age effect):

    - the lateral ventricles, located from the template's CSF map, widen by a
      smooth, fold-free outward deformation; their volume grows as
      ``1 + 2 * ((age - 20) / 65) ** 2`` (3x by 85: slow early growth that
      accelerates late, after Kaye et al. 1992);
    - cortical GM thins: GM within a depth threshold of sulcal or outer CSF
      turns into CSF (sulci widen), at 0.32 %/year of GM at 35 rising to
      0.55 %/year at 70 (Schippling et al. 2017), about 28 % lost by 85;
    - grey/white contrast fades: WM intensity moves towards GM by 4 % of the
      WM-GM difference per decade (direction after Salat et al. 2009; the size
      is our approximation).

    Each age effect varies between subjects (log-normal, SD 0.15).

    The hippocampi (ellipsoids around MNI (+-26, -22, -14) mm) also lose
    volume with age: none until 40, then at a rate rising to 1.2 %/year of the
    template's volume at 80 (Barnes et al. 2009: about 1.4 %/year in elderly
    controls). The age-related thinning of the AD-signature cortex (below)
    varies between subjects on its own (log-normal, SD 0.5).

    **Alzheimer's disease** (``diagnosis == "AD"``), beyond an age-matched
    control:

    - hippocampal GM turns into CSF from the hippocampal surface inwards,
      ``ad_hippocampal_atrophy`` (24 %) of it on average (Shi et al. 2009: AD
      hippocampi 23-24 % smaller than age-matched controls);
    - the AD-signature cortex (medial and lateral temporal, temporal pole,
      inferior and superior parietal, precuneus, posterior cingulate; Dickerson
      et al. 2009) thins further, losing ``ad_cortical_atrophy`` (12 %) of its
      GM: about 0.3 mm of a 2.5 mm cortex;
    - the ventricles are ``1 + ad_ventricle_excess`` (1.4) times an
      age-matched control's (an assumption; AD ventricles are larger and grow
      faster: Nestor et al. 2008, Bradley et al. 2002).

    A per-subject severity (normal, mean 1, SD 0.25) scales all three. Against
    the simulated controls, the default sizes give Cohen's d of about 1.7-2
    (hippocampal volume), 1.1-1.5 (signature cortex) and 1-1.8 (log ventricle
    volume); see ``docs/simulator.md`` for the comparison with the literature.

    **Nuisance**: a smooth random deformation (2.5 mm SD per component),
    hippocampal size (the template's volume times ``exp(-0.2 + 0.1 z)``,
    capped at 1: a spread of about 10 %, part of the ``"anatomy"`` effect), head
    size (isotropic scale, SD 2.5 %; men 3.8 % larger than women, after the
    12 % intracranial-volume difference of Ruigrok et al. 2014), position
    (3 mm and 3 degree SDs), a smooth multiplicative bias field (10 % SD) and
    Rician or Gaussian noise. All spatial effects are composed into one
    pull-back map and applied with a single linear interpolation.

    The effect sizes approximate published group figures (some are our own
    assumptions, flagged in ``docs/simulator.md``, which also lists what is not
    simulated); this is a simulator, not real data.

    Parameters
    ----------
    n_subjects : int, default=100
        Number of subjects.
    voxel_size : {2, 4}, default=2
        2 gives the template grid (99 x 117 x 95, 2 mm); 4 a 50 x 59 x 48 grid
        (4 mm) for fast demos and tests. The same ``random_state`` gives the
        same subjects (labels, shapes, positions) on both grids.
    age_range : (float, float), default=(20, 85)
        Ages of the cognitively normal (CN) subjects are uniform in this range
        (``0 <= low <= high <= 120``; ``low == high`` fixes the age).
    ad_fraction : float, default=0.5
        Fraction of AD subjects, ``round(ad_fraction * n_subjects)`` of them, at
        random positions.
    ad_age_range : (float, float) or None, default=None
        Ages of the AD subjects. ``None`` uses ``age_range``, so diagnosis is
        not confounded with age (an AD subject may be implausibly young); pass
        e.g. ``(55, 85)`` for the realistic, confounded design.
    effects : mapping of str to bool, default=None
        Switches, all ``True`` by default: ``"age"`` (ventricles, cortical
        and hippocampal thinning, contrast), ``"ad"`` (hippocampal atrophy,
        signature-cortex thinning, extra ventricular enlargement),
        ``"anatomy"`` (smooth random deformation, hippocampal size),
        ``"head_size"`` (scale, with the sex difference), ``"pose"`` (shift and
        rotation), ``"bias"`` (bias field). Switching an effect off changes
        nothing else: with the same ``random_state`` the labels, the other
        effects and the noise stay the same, which gives paired comparisons.
    noise : float, default=0.03
        Noise standard deviation, as a fraction of the WM intensity; 0 turns
        noise off.
    noise_type : {"rician", "gaussian"}, default="rician"
        Rician noise (magnitude of complex Gaussian noise, as in magnitude MR
        images; never negative) or additive Gaussian noise.
    return_arrays : bool, default=False
        Return ``(X, affine, labels)`` instead of ``(images, labels)``.
    random_state : int, RandomState instance or None, default=None
        Seeds everything; the same value gives identical volumes and labels.
    ad_hippocampal_atrophy : float in [0, 0.6], default=0.24
        Fraction of an AD subject's hippocampal GM (of what it would have as a
        control) that AD removes, before the severity factor.
    ad_cortical_atrophy : float in [0, 0.6], default=0.12
        The same for the GM of the AD-signature cortex.
    ad_ventricle_excess : float in [0, 3], default=0.4
        AD ventricles are ``1 + ad_ventricle_excess * severity`` times a
        control's. All three at 0 give the same volumes as ``effects={"ad":
        False}``; smaller values make AD detection harder.

    Returns
    -------
    images : list of nibabel.Nifti1Image
        Float32 RAS volumes on the template grid (only if ``return_arrays`` is
        false).
    X : ndarray of shape (n_subjects, X, Y, Z), float32
        The volumes as one array (only if ``return_arrays``).
    affine : ndarray of shape (4, 4)
        Their affine (only if ``return_arrays``).
    labels : pandas.DataFrame
        One row per subject: ``age`` (float), ``sex`` ("F"/"M"), ``diagnosis``
        ("CN"/"AD"), and the ground truth applied: ``ventricle_volume_ratio``
        (lateral-ventricle volume relative to the template, before head
        scaling), ``gm_volume_loss`` (fraction of the template's GM turned into
        CSF by ageing), ``hippocampal_atrophy`` (fraction of hippocampal GM
        removed by AD, of what the subject would have without it; 0 for CN),
        ``gm_wm_contrast`` (WM-GM intensity difference relative to the
        template's), ``head_scale``, ``cortical_atrophy`` (fraction of the
        AD-signature cortex's GM removed by AD; 0 for CN),
        ``hippocampal_volume`` and ``cortical_signature_volume`` (GM of the
        hippocampal ellipsoids and of the signature cortex after every tissue
        change, relative to the template's; region volumes are sums of the
        regions' soft weight times GM, before deformation and head scaling).

    Raises
    ------
    ValueError
        On a bad argument (the message names it).

    See Also
    --------
    load_atrophy_template : the tissue maps and regions of interest.

    Notes
    -----
    Speed (one CPU core): about 0.1-0.15 s per subject at 2 mm and 2 s for
    100 subjects at 4 mm, once the grid's template is cached; the first call
    on a grid prepares it (about 3 s, plus 2-3 s to import nilearn and load its
    templates). A 2 mm volume takes 4.4 MB of memory.

    Examples
    --------
    >>> from slicelearn.datasets.atrophy import make_atrophy_cohort
    >>> images, labels = make_atrophy_cohort(n_subjects=2, voxel_size=4, random_state=0)
    >>> images[0].shape, images[0].get_fdata(dtype="float32").dtype
    ((50, 59, 48), dtype('float32'))
    >>> list(labels.columns[:3])
    ['age', 'sex', 'diagnosis']
    >>> X, affine, labels = make_atrophy_cohort(
    ...     n_subjects=2, voxel_size=4, random_state=0, return_arrays=True
    ... )
    >>> X.shape, float(affine[0, 0])
    ((2, 50, 59, 48), 4.0)
    """
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, numbers.Integral):
        raise ValueError(f"n_subjects must be a positive integer, got {n_subjects!r}.")
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be a positive integer, got {n_subjects!r}.")
    voxel_size = _check_voxel_size(voxel_size)
    age_range = _check_age_range(age_range, "age_range")
    ad_ages = age_range if ad_age_range is None else _check_age_range(ad_age_range, "ad_age_range")
    if (
        isinstance(ad_fraction, bool)
        or not isinstance(ad_fraction, numbers.Real)
        or not 0 <= ad_fraction <= 1
    ):
        raise ValueError(f"ad_fraction must be a number in [0, 1], got {ad_fraction!r}.")
    chosen = _check_effects(effects)
    if (
        isinstance(noise, bool)
        or not isinstance(noise, numbers.Real)
        or not math.isfinite(noise)
        or noise < 0
    ):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}.")
    if noise_type not in _NOISE_TYPES:
        raise ValueError(f"noise_type must be one of {list(_NOISE_TYPES)}, got {noise_type!r}.")
    if not isinstance(return_arrays, bool | np.bool_):
        raise ValueError(f"return_arrays must be True or False, got {return_arrays!r}.")
    ad_sizes = {
        "ad_hippocampal_atrophy": (ad_hippocampal_atrophy, 0.6),
        "ad_cortical_atrophy": (ad_cortical_atrophy, 0.6),
        "ad_ventricle_excess": (ad_ventricle_excess, 3.0),
    }
    for name, (value, high) in ad_sizes.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not 0 <= value <= high  # also rejects NaN
        ):
            raise ValueError(f"{name} must be a number in [0, {high}], got {value!r}.")
    rng = check_random_state(random_state)

    n_ad = round(float(ad_fraction) * n_subjects)
    is_ad = np.zeros(n_subjects, dtype=bool)
    is_ad[rng.permutation(n_subjects)[:n_ad]] = True
    cn_ages = rng.uniform(*age_range, size=n_subjects)
    ad_ages_drawn = rng.uniform(*ad_ages, size=n_subjects)
    ages = np.where(is_ad, ad_ages_drawn, cn_ages)
    sexes = np.where(rng.uniform(size=n_subjects) < 0.5, "F", "M")
    seeds = rng.randint(0, 2**31 - 1, size=n_subjects)

    template = _template(voxel_size)
    X = np.empty((n_subjects, *template.shape), dtype=np.float32)
    rows = []
    for i in range(n_subjects):
        X[i], truth = _simulate_subject(
            template,
            age=float(ages[i]),
            sex=str(sexes[i]),
            ad=bool(is_ad[i]),
            seed=int(seeds[i]),
            effects=chosen,
            noise=float(noise),
            noise_type=noise_type,
            ad_hippocampal=float(ad_hippocampal_atrophy),
            ad_cortical=float(ad_cortical_atrophy),
            ad_ventricle=float(ad_ventricle_excess),
        )
        rows.append(truth)
    labels = pd.DataFrame(
        {
            "age": ages.astype(float),
            "sex": sexes.astype(object),
            "diagnosis": np.where(is_ad, "AD", "CN").astype(object),
        }
    )
    labels = pd.concat([labels, pd.DataFrame(rows)], axis=1)
    affine = np.array(template.affine)
    if return_arrays:
        return X, affine, labels
    images = []
    for volume in X:
        image = nib.Nifti1Image(volume, affine)
        image.header.set_xyzt_units("mm")
        images.append(image)
    return images, labels


def load_atrophy_template(voxel_size: int = 2) -> Bunch:
    """The young-adult template and regions of interest behind the simulator.

    Parameters
    ----------
    voxel_size : {2, 4}, default=2
        The grid, as in :func:`make_atrophy_cohort`.

    Returns
    -------
    template : sklearn.utils.Bunch
        Float32 ``Nifti1Image`` maps on the grid of the simulated volumes:
        ``t1`` (the synthesised young template, before any effect), ``gm``,
        ``wm``, ``csf`` and ``brain_mask`` (fractions in [0, 1]),
        ``ventricles`` (the lateral-ventricle region, located from the CSF
        map), ``hippocampi`` (the two ellipsoids the AD atrophy acts in; a soft
        weight in [0, 1]), ``ad_cortex`` (the AD-signature cortex the AD
        thinning acts in, the hippocampi cut out; a soft weight); ``affine``;
        ``ventricle_centres_mm`` (2, 3) and ``hippocampus_centres_mm`` (2, 3),
        left first.

    Raises
    ------
    ValueError
        If ``voxel_size`` is not 2 or 4.

    Examples
    --------
    >>> from slicelearn.datasets.atrophy import load_atrophy_template
    >>> template = load_atrophy_template(voxel_size=4)
    >>> template.t1.shape
    (50, 59, 48)
    >>> bool(template.hippocampi.get_fdata().max() == 1.0)
    True
    """
    template = _template(_check_voxel_size(voxel_size))
    affine = np.array(template.affine)

    def image(array: np.ndarray) -> nib.Nifti1Image:
        return nib.Nifti1Image(np.array(array, dtype=np.float32), affine)

    return Bunch(
        t1=image(template.base_intensity),
        gm=image(template.gm),
        wm=image(template.wm),
        csf=image(template.csf),
        brain_mask=image(template.brain_mask),
        ventricles=image(template.ventricles),
        hippocampi=image(template.hippocampi),
        ad_cortex=image(template.ad_cortex),
        affine=affine,
        ventricle_centres_mm=np.array(template.ventricle_centres_mm, dtype=float),
        hippocampus_centres_mm=np.array(_HIPPOCAMPUS_CENTRES_MM, dtype=float),
    )
