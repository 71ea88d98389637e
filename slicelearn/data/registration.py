"""Affine registration of a scan to the template, with ANTs (antspyx).

antspyx was chosen over dipy after measuring both on the IXI sample
(``docs/registration_choice.md``): it matched dipy's accuracy and was several
times faster. It is the optional extra ``pip install slicelearn[registration]``.
"""

from __future__ import annotations

from collections.abc import Callable

import nibabel as nib

__all__ = ["register_affine"]

_MISSING = (
    "registration='affine' needs antspyx: pip install 'slicelearn[registration]' "
    "(or pip install antspyx)."
)


def _ants():
    try:
        import ants
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    return ants


def _to_ants(ants, data, affine):
    image = nib.Nifti1Image(data.astype("float32"), affine)
    image.header.set_xyzt_units("mm", "sec")  # ANTs warns about unknown units otherwise
    return ants.from_nibabel_nifti(image)


def register_affine(
    scan: nib.spatialimages.SpatialImage,
    template: nib.spatialimages.SpatialImage,
    moving_mask: nib.spatialimages.SpatialImage | None = None,
    seed: int = 0,
) -> tuple[nib.Nifti1Image, Callable[..., nib.Nifti1Image]]:
    """Register ``scan`` to ``template`` with an affine transform (mutual information).

    Parameters
    ----------
    scan, template : nibabel images
    moving_mask : nibabel image, optional
        A brain mask of ``scan``. When given, the skull and neck are zeroed
        before registration: a head scan registers poorly to a brain template
        (Dice 0.5-0.7 on IXI), a brain-extracted one well (0.93-0.95).
    seed : int, default=0
        Seed of ANTs' random sampling, so repeated runs agree.

    Returns
    -------
    registered : nibabel image on the template grid
    apply : callable ``apply(image, interpolation="linear" | "nearest")``
        Applies the same transform to another image of the scan (a mask).
    """
    ants = _ants()
    fixed = _to_ants(ants, template.get_fdata(), template.affine)
    moving_data = scan.get_fdata()
    if moving_mask is not None:
        moving_data = moving_data * (moving_mask.get_fdata() > 0.5)
    moving = _to_ants(ants, moving_data, scan.affine)
    previous_seed = getattr(ants.config, "_random_seed", None)
    ants.config._random_seed = seed
    try:
        result = ants.registration(fixed, moving, type_of_transform="Affine")
    finally:
        ants.config._random_seed = previous_seed
    transforms = result["fwdtransforms"]

    def apply(image: nib.spatialimages.SpatialImage, interpolation: str = "linear"):
        interpolator = {"linear": "linear", "nearest": "nearestNeighbor"}[interpolation]
        moved = _to_ants(ants, image.get_fdata(), image.affine)
        warped = ants.apply_transforms(fixed, moved, transforms, interpolator=interpolator)
        return ants.to_nibabel_nifti(warped)

    return ants.to_nibabel_nifti(result["warpedmovout"]), apply
