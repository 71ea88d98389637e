"""Brain extraction of raw T1 scans, offline: :func:`brain_mask`.

The one method, ``"deepbet"`` (Fisch et al., 2024; MIT; ``pip install
'slicelearn[skullstrip]'``), is a pair of TorchScript U-Nets that ship inside
its wheel, so nothing is downloaded. The wheel puts them in a top-level
``site-packages/data/models`` folder, a name another package could also
write to; before loading them, this module checks their bytes against the
hashes that deepbet's own install record holds, so a clash is an error that
says so rather than a wrong mask.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np

from .io import describe_item, load_nifti

__all__ = ["SKULL_STRIP_METHODS", "brain_mask"]

#: Brain-extraction methods :func:`brain_mask` (and ``VolumePreprocessor(skull_strip=...)``) take.
SKULL_STRIP_METHODS = ("deepbet",)

_MODEL_FILES = ("model.pt", "bbox_model.pt")
_EXTRACTORS: dict[str, object] = {}
_LOCK = threading.Lock()


def _missing_extra(exc: BaseException) -> ImportError:
    return ImportError(
        f"skull_strip='deepbet' needs deepbet and its dependencies ({exc}): "
        "pip install 'slicelearn[skullstrip]'."
    )


def _verified_model_paths() -> dict[str, Path]:
    """deepbet's two model files, checked against deepbet's install record."""
    from importlib import metadata

    try:
        distribution = metadata.distribution("deepbet")
    except metadata.PackageNotFoundError as exc:
        raise _missing_extra(exc) from None
    recorded = {
        Path(entry).name: entry
        for entry in distribution.files or ()
        if Path(entry).name in _MODEL_FILES and Path(entry).parent.name == "models"
    }
    paths = {}
    for name in _MODEL_FILES:
        entry = recorded.get(name)
        if entry is None:
            raise RuntimeError(
                f"deepbet {distribution.version}'s install record lists no models/{name}; "
                "reinstall it: pip install --force-reinstall deepbet."
            )
        path = Path(distribution.locate_file(entry)).resolve()
        if not path.is_file():
            raise RuntimeError(
                f"deepbet's model file {path} is missing; reinstall it: "
                "pip install --force-reinstall deepbet."
            )
        if entry.hash is not None and entry.hash.mode == "sha256":
            digest = hashlib.sha256(path.read_bytes()).digest()
            found = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if found != entry.hash.value:
                raise RuntimeError(
                    f"{path} is not the model file deepbet {distribution.version} installed "
                    "(its hash differs from deepbet's install record): another package "
                    "wrote to the shared site-packages/data folder. Reinstall deepbet in "
                    "its own environment: pip install --force-reinstall deepbet."
                )
        paths[name] = path
    return paths


def _deepbet(device: str):
    """One deepbet extractor per device, loaded once per process."""
    with _LOCK:
        if device not in _EXTRACTORS:
            try:
                from deepbet import BrainExtraction
            except ImportError as exc:  # deepbet itself, or cc3d, fill_voids, fastremap
                raise _missing_extra(exc) from None
            paths = _verified_model_paths()
            with warnings.catch_warnings():
                # torch >= 2.10 deprecates torch.jit.load, which deepbet's models need.
                warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
                _EXTRACTORS[device] = BrainExtraction(
                    no_gpu=device == "cpu",
                    model_path=os.fspath(paths["model.pt"]),
                    bbox_model_path=os.fspath(paths["bbox_model.pt"]),
                )
        return _EXTRACTORS[device]


def brain_mask(
    img: str | os.PathLike | nib.spatialimages.SpatialImage,
    method: str = "deepbet",
    *,
    threshold: float = 0.5,
    device: str = "cpu",
    index: int = 0,
) -> nib.Nifti1Image:
    """The brain mask of a raw T1 scan, in the scan's own space.

    Parameters
    ----------
    img : path or nibabel image
        A T1-weighted scan in any orientation, skull, neck and face on.
    method : {"deepbet"}, default="deepbet"
        deepbet's two-stage U-Net (about 2 to 7 s a scan on the CPU, its
        models ship with the package: no download).
    threshold : float, default=0.5
        Probability above which a voxel is brain.
    device : {"cpu", "cuda"}, default="cpu"
    index : int, default=0
        The scan's position in its cohort, for error messages.

    Returns
    -------
    nibabel.Nifti1Image
        A uint8 mask (1 = brain) with the scan's shape and affine.

    Examples
    --------
    >>> from slicelearn.data import brain_mask  # doctest: +SKIP
    >>> mask = brain_mask("sub-01_T1w.nii.gz")  # doctest: +SKIP
    >>> mask.shape == nib.load("sub-01_T1w.nii.gz").shape  # doctest: +SKIP
    True
    """
    if method not in SKULL_STRIP_METHODS:
        raise ValueError(
            f"Unknown skull-strip method {method!r}; "
            f"choose one of {', '.join(SKULL_STRIP_METHODS)}."
        )
    where = describe_item(img, index)
    image = load_nifti(img, index)
    extractor = _deepbet(device)
    canonical = nib.as_closest_canonical(image)
    data = np.nan_to_num(canonical.get_fdata(dtype=np.float32))
    if np.ptp(data) == 0:
        raise ValueError(f"{where} is constant: there is no brain to extract.")
    try:
        probability = extractor.run_model(data.copy())
        mask = extractor.postprocess(probability > threshold)
    except (AssertionError, ValueError, RuntimeError) as exc:
        # deepbet asserts when its first stage finds no head in the field of view.
        raise ValueError(
            f"Brain extraction failed on {where}: {exc or type(exc).__name__}"
        ) from exc
    if not mask.any():
        raise ValueError(f"Brain extraction found no brain in {where}.")
    # Back from RAS to the scan's own voxel order.
    to_scan = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(("R", "A", "S")), nib.io_orientation(image.affine)
    )
    voxels = nib.orientations.apply_orientation(mask.astype(np.uint8), to_scan)
    result = nib.Nifti1Image(np.ascontiguousarray(voxels), image.affine)
    result.header.set_data_dtype(np.uint8)
    result.header.set_xyzt_units(*image.header.get_xyzt_units())
    return result
