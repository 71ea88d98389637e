"""Rigid or affine registration of a scan to the template: dipy or antspyx (ANTs).

Both libraries were measured on 10 IXI scans (``docs/registration_choice.md``):

- **dipy** (the default of :func:`register` and ``VolumePreprocessor``;
  ``pip install 'slicelearn[registration]'``): dense mutual information with
  the template's brain mask as the fixed-image mask. It registers whole-head
  scans (skull and neck on) to the skull-stripped
  template with Dice >= 0.93 on every subject, gives the same result on every
  run, and takes about 35-40 s per scan on 2 cores.
- **antspyx** (``backend="ants"``; ``pip install antspyx``; the command
  line's default): Dice 0.94-0.95 when the scan is brain-extracted first (a
  per-subject mask), but poor on whole-head scans (median Dice 0.72). It is
  made reproducible bit for bit here: a fixed nonzero sampling seed (ANTs
  seeds from the clock when given 0) and one ITK thread per process, so
  parallelism comes from preprocessing several scans at once. With several
  ITK threads, the same scan registered twice gave different volumes. ANTs'
  own schedule ends with 10 iterations at full resolution, which took half
  the registration time; they are skipped (:data:`ANTS_ITERATIONS`): on the
  136 IXI scans, the ridge readout (the command line's default model then) scored 6.49 +- 0.20 years
  MAE in 5 x 5-fold CV without them and 6.43 +- 0.19 with them, at 7.4
  against 11.0 s a scan (``benchmarks/accuracy/registration_schedule.py``).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from typing import Any

import nibabel as nib
import numpy as np

__all__ = [
    "ANTS_ITERATIONS",
    "REGISTRATIONS",
    "REGISTRATION_BACKENDS",
    "register",
    "register_affine",
]

REGISTRATION_BACKENDS = ("dipy", "ants")
#: ``VolumePreprocessor(registration=...)`` values: rigid keeps head and brain
#: size, affine scales (and shears) them to the template's.
REGISTRATIONS = (None, "rigid", "affine")

Apply = Callable[..., nib.Nifti1Image]

#: Iterations of ANTs' rigid or affine stage at shrink factors 6, 4, 2 and 1
#: of the template grid: ANTs' own schedule without the last level.
ANTS_ITERATIONS = (2100, 1200, 1200, 0)


def register_affine(
    scan: nib.spatialimages.SpatialImage,
    template: nib.spatialimages.SpatialImage,
    moving_mask: nib.spatialimages.SpatialImage | None = None,
    template_mask: nib.spatialimages.SpatialImage | None = None,
    backend: str = "dipy",
    seed: int = 0,
) -> tuple[nib.Nifti1Image, Apply]:
    """Register ``scan`` to ``template`` with an affine transform; see :func:`register`."""
    return register(scan, template, "affine", moving_mask, template_mask, backend, seed)


def register(
    scan: nib.spatialimages.SpatialImage,
    template: nib.spatialimages.SpatialImage,
    transform: str = "affine",
    moving_mask: nib.spatialimages.SpatialImage | None = None,
    template_mask: nib.spatialimages.SpatialImage | None = None,
    backend: str = "dipy",
    seed: int = 0,
) -> tuple[nib.Nifti1Image, Apply]:
    """Register ``scan`` to ``template`` (mutual information).

    Parameters
    ----------
    scan, template : nibabel images
    transform : {"rigid", "affine"}, default="affine"
        Rigid: rotation and translation, so head and brain size are kept.
        Affine: also scaling and shear, to the template's size.
    moving_mask : nibabel image, optional
        A brain mask of ``scan``; everything outside it is zeroed before
        registering (a skull strip).
    template_mask : nibabel image, optional
        The template's brain mask: dipy then measures similarity only inside
        it, which is what lets a whole-head scan match a brain-only template.
    backend : {"dipy", "ants"}, default="dipy"
    seed : int, default=0
        Seed of ANTs' random sampling (dipy's dense metric needs none); the
        same seed gives the same result bit for bit.

    Returns
    -------
    registered : nibabel image on the template grid
    apply : callable ``apply(image, interpolation="linear" | "nearest")``
        Applies the same transform to another image of the scan (a mask).
    """
    if transform not in ("rigid", "affine"):
        raise ValueError(f"Unknown transform {transform!r}; choose rigid or affine.")
    moving = scan.get_fdata(dtype=np.float32)
    if moving_mask is not None:
        moving = moving * (moving_mask.get_fdata() > 0.5)
    if backend == "dipy":
        apply = _dipy_transform(moving, scan.affine, template, template_mask, transform)
    elif backend == "ants":
        apply = _ants_transform(moving, scan.affine, template, seed, transform)
    else:
        raise ValueError(f"Unknown registration backend {backend!r}; choose dipy or ants.")
    return apply(nib.Nifti1Image(moving, scan.affine), "linear"), apply


def _dipy_transform(moving, moving_affine, template, template_mask, transform) -> Apply:
    try:
        from dipy.align import affine_registration
        from dipy.align.imaffine import AffineMap
    except ImportError as exc:
        raise ImportError(
            f"registration={transform!r} needs dipy: pip install 'slicelearn[registration]'."
        ) from exc
    static = template.get_fdata(dtype=np.float32)
    static_mask = None
    if template_mask is not None:
        # dipy wants an integer mask; a boolean one fails inside its metric.
        static_mask = (template_mask.get_fdata() > 0.5).astype(np.int32)
    _, affine = affine_registration(
        moving,
        static,
        moving_affine=moving_affine,
        static_affine=template.affine,
        static_mask=static_mask,
        pipeline=["center_of_mass", "translation", "rigid", "affine"][
            : 3 if transform == "rigid" else 4
        ],
    )

    def apply(image, interpolation: str = "linear") -> nib.Nifti1Image:
        mapping = AffineMap(
            affine,
            domain_grid_shape=static.shape,
            domain_grid2world=template.affine,
            codomain_grid_shape=image.shape[:3],
            codomain_grid2world=image.affine,
        )
        data = mapping.transform(image.get_fdata(dtype=np.float32), interpolation=interpolation)
        return nib.Nifti1Image(data.astype(np.float32), template.affine)

    return apply


def _ants_image(ants, data, affine):
    image = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    image.header.set_xyzt_units("mm", "sec")  # ANTs warns about unknown units otherwise
    return ants.from_nibabel_nifti(image)


#: ITK reads its thread count once, when a process first uses it: one thread
#: makes ANTs' registration reproducible bit for bit.
_ITK_THREADS = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"


def import_ants(purpose: str = "registration_backend='ants'") -> Any:
    """antspyx, with ITK on one thread (reproducible); ``ImportError`` naming the package if absent.

    ``purpose`` names what needs it, for the error message.
    """
    if "ants" in sys.modules and os.environ.get(_ITK_THREADS) != "1":
        warnings.warn(
            "antspyx was imported before slicelearn set ITK to one thread: ANTs "
            "in this process may not be reproducible run to run. Set "
            f"{_ITK_THREADS}=1 before importing ants.",
            RuntimeWarning,
            stacklevel=3,
        )
    os.environ[_ITK_THREADS] = "1"
    try:
        import ants
    except ImportError as exc:
        raise ImportError(f"{purpose} needs antspyx: pip install antspyx.") from exc
    return ants


def _ants_transform(moving, moving_affine, template, seed, transform) -> Apply:
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}.")
    ants = import_ants()
    fixed = _ants_image(ants, template.get_fdata(), template.affine)
    previous_seed = getattr(ants.config, "_random_seed", None)
    ants.config._random_seed = seed + 1  # ANTs takes 0 as "seed from the clock"
    try:
        result = ants.registration(
            fixed,
            _ants_image(ants, moving, moving_affine),
            type_of_transform="Rigid" if transform == "rigid" else "Affine",
            aff_iterations=ANTS_ITERATIONS,
        )
    finally:
        ants.config._random_seed = previous_seed
    transforms = result["fwdtransforms"]

    def apply(image, interpolation: str = "linear") -> nib.Nifti1Image:
        interpolator = {"linear": "linear", "nearest": "nearestNeighbor"}[interpolation]
        moved = _ants_image(ants, image.get_fdata(), image.affine)
        warped = ants.apply_transforms(fixed, moved, transforms, interpolator=interpolator)
        return ants.to_nibabel_nifti(warped)

    return apply
