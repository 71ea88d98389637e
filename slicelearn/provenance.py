"""What produced a model or a preprocessed cohort: software versions, template, parameters.

A model file and ``slicelearn preprocess`` record the same provenance, so a
prediction made on another machine, or months later, can say when the
software that preprocesses its scans is not the software that preprocessed
the training scans.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from typing import Any

import numpy as np

from ._version import __version__

__all__ = ["PACKAGES", "preprocessing_provenance", "software_versions", "version_differences"]

#: Distributions whose versions are recorded (pip names).
PACKAGES = (
    "slicelearn",
    "torch",
    "torchvision",
    "skorch",
    "scikit-learn",
    "numpy",
    "scipy",
    "nibabel",
    "nilearn",
    "timm",
    "deepbet",
    "antspyx",
    "dipy",
)

NOT_INSTALLED = "not installed"


def software_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """The installed version of each of ``packages`` (``"not installed"`` when absent).

    Examples
    --------
    >>> from slicelearn.provenance import software_versions
    >>> software_versions(("numpy", "no-such-package"))["no-such-package"]
    'not installed'
    """
    versions = {}
    for name in packages:
        if name == "slicelearn":
            versions[name] = __version__
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = NOT_INSTALLED
    return versions


def preprocessing_packages(preprocessor: Any) -> tuple[str, ...]:
    """The distributions whose code turns a raw scan into ``preprocessor``'s volumes."""
    packages = ["slicelearn", "numpy", "scipy", "nibabel", "nilearn"]
    if getattr(preprocessor, "skull_strip", None) == "deepbet":
        packages += ["deepbet", "torch"]
    if getattr(preprocessor, "registration", None):
        packages.append("antspyx" if preprocessor.registration_backend == "ants" else "dipy")
    return tuple(packages)


def preprocessing_provenance(preprocessor: Any) -> dict[str, Any]:
    """Software, template and parameters of a fitted :class:`~slicelearn.data.VolumePreprocessor`.

    Returns
    -------
    dict
        ``"software"`` (versions of the packages it runs), ``"recipe"``
        (:data:`slicelearn.data.preprocessing.PREPROCESSING_RECIPE`, the version
        of the computation, raised whenever the same parameters start giving
        other volumes), ``"template"``
        (its name and the SHA-256 of its voxels and affine, or ``None``) and
        ``"parameters"`` (``get_params()``, paths and masks as text).
    """
    from .report import json_ready

    template = getattr(preprocessor, "target_image_", None)
    template_record = None
    if template is not None:
        digest = hashlib.sha256(np.ascontiguousarray(template.get_fdata()).tobytes())
        digest.update(np.asarray(template.affine, dtype=np.float64).tobytes())
        name = preprocessor.target if isinstance(preprocessor.target, str) else "custom"
        template_record = {
            "name": name,
            "shape": list(template.shape[:3]),
            "sha256": digest.hexdigest(),
        }
    parameters = {
        key: value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        for key, value in preprocessor.get_params().items()
        if key != "mask"
    }
    parameters["mask"] = (
        None if preprocessor.mask is None else f"given ({type(preprocessor.mask).__name__})"
    )
    from .data.preprocessing import PREPROCESSING_RECIPE

    return json_ready(
        {
            "software": software_versions(preprocessing_packages(preprocessor)),
            "recipe": PREPROCESSING_RECIPE,
            "template": template_record,
            "parameters": parameters,
        }
    )


def version_differences(recorded: dict[str, str], packages: tuple[str, ...]) -> list[str]:
    """``"deepbet 1.0.2 there, 1.0.3 here"`` for each of ``packages`` whose version changed.

    Packages that ``recorded`` does not list are skipped (an older file).
    """
    current = software_versions(packages)
    return [
        f"{name} {recorded[name]} there, {current[name]} here"
        for name in packages
        if name in recorded and recorded[name] != current[name]
    ]
