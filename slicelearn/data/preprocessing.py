"""Preprocessing of native-space scans, as a scikit-learn transformer.

:class:`VolumePreprocessor` owns the recipe that takes one scan from the
scanner to the model: RAS reorientation, optional affine registration to a
template, resampling to a target grid (nilearn), an optional brain mask and
crop, percentile clipping and z-scoring. It sits in a ``Pipeline`` before an
estimator (its ``transform`` returns lazy :class:`PreprocessedVolumes`) or is
passed as an estimator's ``preprocessing`` parameter. Preprocessed volumes
are cached on disk by :mod:`slicelearn.data.cache`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, ClassVar

import nibabel as nib
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from .._validation import BOOLEAN, Interval, Options, Satisfies, validate_estimator
from .._version import __version__
from .cache import VolumeCache
from .io import canonical_shape, check_voxels, describe_item, load_nifti, read_voxels
from .registration import REGISTRATION_BACKENDS, REGISTRATIONS
from .skullstrip import SKULL_STRIP_METHODS

__all__ = ["TARGET_GRIDS", "PreprocessedVolumes", "VolumePreprocessor", "template_image"]

ImageLike = str | os.PathLike | nib.spatialimages.SpatialImage

#: Version of the preprocessing computation, part of every cache key: raised
#: whenever the same parameters start giving other volumes.
PREPROCESSING_RECIPE = 3

#: Named target grids. ``"mni152"`` is the MNI152 2009 template that nilearn
#: bundles (2 mm, 99 x 117 x 95); ``"mni152_91x109x91"`` is the FSL MNI152 2 mm
#: grid of the paper (RAS here), with nilearn's template resampled onto it;
#: ``"mni152_3mm"`` is nilearn's template at 3 mm (67 x 79 x 64), the coarser
#: grid that makes full fine-tuning faster at a measured cost in accuracy
#: (``docs/results.md``).
TARGET_GRIDS = ("mni152", "mni152_91x109x91", "mni152_3mm")

_FSL_MNI_AFFINE = np.array([[2.0, 0, 0, -90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])


def template_image(name: str = "mni152", brain_mask: bool = False) -> nib.Nifti1Image:
    """The bundled MNI152 template (or its brain mask) on a named grid (``TARGET_GRIDS``)."""
    from nilearn import datasets, image

    if name not in TARGET_GRIDS:
        raise ValueError(f"Unknown target grid {name!r}; choose one of {', '.join(TARGET_GRIDS)}.")
    loader = datasets.load_mni152_brain_mask if brain_mask else datasets.load_mni152_template
    template = loader(resolution=3 if name == "mni152_3mm" else 2)
    if name == "mni152_91x109x91":
        template = image.resample_img(
            template,
            target_affine=_FSL_MNI_AFFINE,
            target_shape=(91, 109, 91),
            interpolation="nearest" if brain_mask else "continuous",
            force_resample=True,
            copy_header=True,
        )
    return template


def _fingerprint_value(value: Any) -> Any:
    """A JSON-able stand-in for a parameter value, by content for images and files."""
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, str) and os.path.isfile(value):
            return {"file": file_digest(value)}
        return value
    if isinstance(value, os.PathLike):
        return _fingerprint_value(os.fspath(value))
    if isinstance(value, nib.spatialimages.SpatialImage):
        digest = hashlib.sha256(np.ascontiguousarray(value.get_fdata()).tobytes())
        digest.update(np.asarray(value.affine).tobytes())
        return {"image": digest.hexdigest()}
    if isinstance(value, (list, tuple)):
        return [_fingerprint_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _fingerprint_value(v) for k, v in sorted(value.items(), key=str)}
    if callable(value):
        name = getattr(value, "__qualname__", repr(value))
        return {"callable": f"{getattr(value, '__module__', '')}.{name}"}
    return repr(value)


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, memoised per (path, size, mtime) in this process."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _is_shape(value: Any) -> bool:
    return len(value) == 3 and all(Interval("int", 1).accepts(v) for v in value)


def _is_sizes(value: Any) -> bool:
    return len(value) == 3 and all(Interval("real", 0, closed="neither").accepts(v) for v in value)


class VolumePreprocessor(TransformerMixin, BaseEstimator):
    """Bring native-space T1 scans onto one grid, z-scored, ready for a slice model.

    Steps, in order: reorient to RAS canonical; optionally register (affine)
    to the template; resample to the target grid; apply a brain mask and crop
    to its bounding box; clip intensity percentiles; z-score.

    Parameters
    ----------
    target : {"mni152", "mni152_91x109x91", "mni152_3mm"}, image, path or None, default="mni152"
        Target grid: a named template grid, a reference image, or ``None``.
        With ``None`` and ``target_shape``/``voxel_size`` given, each scan is
        resampled to a grid of that shape and voxel size centred on its own
        field of view; with ``None`` alone, scans keep their grid (they must
        then share one shape).
    target_shape : tuple of 3 int, optional
        Shape of the target grid when ``target`` is ``None``.
    voxel_size : float or tuple of 3 float, optional
        Voxel size in mm of the target grid when ``target`` is ``None``.
    registration : {None, "rigid", "affine"}, default=None
        Registration to the template (needs ``pip install
        slicelearn[registration]``); requires a template ``target``.
        ``"rigid"`` (rotation and translation) keeps head and brain size;
        ``"affine"`` also scales and shears, which removes them. A scan that
        is already on the target grid (same shape and affine) is not
        registered again.
    registration_backend : {"dipy", "ants"}, default="dipy"
        dipy registers whole-head scans reproducibly (about 40 s a scan);
        antspyx is about 4 s a scan but needs brain-extracted scans (a
        per-subject ``mask``). See ``docs/registration_choice.md``.
    skull_strip : {None, "deepbet"}, default=None
        Extract the brain of each raw scan with :func:`slicelearn.data.brain_mask`
        (needs ``pip install 'slicelearn[skullstrip]'``) before registration,
        as its per-subject mask; ignored for a scan that has a ``mask`` entry.
    mask : None, "template", image, path, mapping or callable, default=None
        Brain mask. ``"template"`` is the MNI152 brain mask (meaningful after
        registration); an image or path is one shared mask on the target
        grid; a mapping ``{scan path: mask path}`` or a callable
        ``scan path -> mask path`` gives one mask per subject, which is
        resampled (or registered) with its scan. Voxels outside are zeroed.
    crop : bool, default=False
        Crop to the bounding box of the shared mask plus ``crop_margin``
        voxels (needs a shared mask, so all crops have one shape).
    crop_margin : int, default=2
    normalize : {"zscore", "zscore_brain", None}, default="zscore"
        z-score over the whole volume (the paper's) or within the mask.
    clip_percentiles : tuple of 2 float or None, default=None
        Clip intensities to these percentiles (within the mask when there
        is one) before z-scoring, e.g. ``(0.5, 99.5)``.
    cache_dir : path, "auto" or None, default="auto"
        Where preprocessed volumes are cached: ``"auto"`` is
        ``$SLICELEARN_DATA/cache`` (default ``~/slicelearn_data/cache``);
        ``None`` disables the cache.
    cache_dtype : {"float16", "float32"}, default="float16"

    Examples
    --------
    >>> import numpy as np, nibabel as nib
    >>> from slicelearn.data import VolumePreprocessor
    >>> data = np.random.default_rng(0).random((20, 24, 22))
    >>> scan = nib.Nifti1Image(data, np.diag([4.0, 4.0, 4.0, 1.0]))
    >>> prep = VolumePreprocessor(cache_dir=None).fit([scan])
    >>> prep.output_shape_
    (99, 117, 95)
    >>> volume = prep.transform([scan])[0]
    >>> volume.shape, abs(round(float(volume.mean()), 3)), round(float(volume.std()), 3)
    ((99, 117, 95), 0.0, 1.0)
    """

    def __init__(
        self,
        target: str | ImageLike | None = "mni152",
        target_shape: tuple[int, int, int] | None = None,
        voxel_size: float | tuple[float, float, float] | None = None,
        registration: str | None = None,
        registration_backend: str = "dipy",
        skull_strip: str | None = None,
        mask: Any = None,
        crop: bool = False,
        crop_margin: int = 2,
        normalize: str | None = "zscore",
        clip_percentiles: tuple[float, float] | None = None,
        cache_dir: str | os.PathLike | None = "auto",
        cache_dtype: str = "float16",
    ) -> None:
        self.target = target
        self.target_shape = target_shape
        self.voxel_size = voxel_size
        self.registration = registration
        self.registration_backend = registration_backend
        self.skull_strip = skull_strip
        self.mask = mask
        self.crop = crop
        self.crop_margin = crop_margin
        self.normalize = normalize
        self.clip_percentiles = clip_percentiles
        self.cache_dir = cache_dir
        self.cache_dtype = cache_dtype

    # -- fitting: validate parameters, resolve the grid, shared mask and crop ----
    def fit(self, X: Sequence[ImageLike] | None = None, y: Any = None) -> VolumePreprocessor:
        """Validate the parameters and resolve the target grid.

        ``X`` is only used, when scans keep their own grid, to read the
        output shape from the first scan's header.
        """
        self._validate_params()
        self.target_image_ = self._resolve_target()
        self.template_mask_ = (
            template_image(self.target, brain_mask=True)
            if self.registration and isinstance(self.target, str) and self.target in TARGET_GRIDS
            else None
        )
        self.shared_mask_ = self._resolve_shared_mask()
        self.crop_box_ = self._resolve_crop_box()
        self.output_shape_ = self._output_shape(X)
        self.fingerprint_ = self._fingerprint()
        return self

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "target": [str, nib.spatialimages.SpatialImage, os.PathLike, None],
        "target_shape": [Satisfies(_is_shape, "three positive ints"), None],
        "voxel_size": [
            Interval("real", 0, closed="neither"),
            Satisfies(_is_sizes, "three sizes > 0"),
            None,
        ],
        "registration": [Options(*REGISTRATIONS)],
        "registration_backend": [Options(*REGISTRATION_BACKENDS)],
        "skull_strip": [Options(*SKULL_STRIP_METHODS), None],
        "crop": [BOOLEAN],
        "crop_margin": [Interval("int", 0)],
        "normalize": [Options("zscore", "zscore_brain", None)],
        "clip_percentiles": [
            Satisfies(
                lambda value: 0 <= value[0] < value[1] <= 100,
                "(low, high) with 0 <= low < high <= 100",
            ),
            None,
        ],
        "cache_dir": [str, os.PathLike, None],
        "cache_dtype": [Options("float16", "float32")],
    }

    def _validate_params(self) -> None:
        """The parameter table, then the rules that tie parameters together."""
        validate_estimator(self)
        if self.skull_strip is not None and self._mask_is_shared():
            raise ValueError(
                "skull_strip computes one mask per scan; it cannot go with a shared mask "
                f"({self.mask!r}). Drop one of the two."
            )
        if self.registration and self.target is None:
            raise ValueError(
                f"registration={self.registration!r} needs a template target, e.g. 'mni152'."
            )
        if (self.target_shape is None) != (self.voxel_size is None):
            raise ValueError("target_shape and voxel_size go together.")
        if self.target is not None and self.target_shape is not None:
            raise ValueError("Give either a target image or target_shape/voxel_size, not both.")
        if self.normalize == "zscore_brain" and self.mask is None and self.skull_strip is None:
            raise ValueError("normalize='zscore_brain' needs a mask or skull_strip.")
        if self.crop and not self._mask_is_shared():
            raise ValueError("crop=True needs one shared mask ('template', an image or a path).")

    @property
    def keeps_native_grid(self) -> bool:
        """Whether scans stay on their own grid (so they must share one shape)."""
        return self.target is None and self.target_shape is None

    def _mask_is_shared(self) -> bool:
        return (
            self.mask is not None and not isinstance(self.mask, Mapping) and not callable(self.mask)
        )

    def _resolve_target(self) -> nib.Nifti1Image | None:
        if self.target is None:
            return None
        if isinstance(self.target, str) and self.target in TARGET_GRIDS:
            return template_image(self.target)
        if isinstance(self.target, str) and not os.path.isfile(self.target):
            raise ValueError(
                f"target {self.target!r} is neither a grid name ({', '.join(TARGET_GRIDS)}) "
                "nor an existing image file."
            )
        return load_nifti(self.target, 0)

    def _resolve_shared_mask(self) -> np.ndarray | None:
        if not self._mask_is_shared():
            return None
        if self.target_image_ is None:
            raise ValueError("A shared mask needs a target grid to live on (set target).")
        from nilearn import image

        if isinstance(self.mask, str) and self.mask == "template":
            name = self.target if self.target in TARGET_GRIDS else "mni152"
            mask_image = template_image(name, brain_mask=True)
        else:
            mask_image = load_nifti(self.mask, 0)
        mask_image = image.resample_to_img(
            mask_image,
            self.target_image_,
            interpolation="nearest",
            force_resample=True,
            copy_header=True,
        )
        mask = np.asarray(mask_image.get_fdata()) > 0.5
        if not mask.any():
            raise ValueError("The shared mask is empty on the target grid.")
        return mask

    def _resolve_crop_box(self) -> tuple[slice, ...] | None:
        if not self.crop:
            return None
        nonzero = np.argwhere(self.shared_mask_)
        low = np.maximum(nonzero.min(axis=0) - self.crop_margin, 0)
        high = np.minimum(nonzero.max(axis=0) + 1 + self.crop_margin, self.shared_mask_.shape)
        return tuple(slice(int(a), int(b)) for a, b in zip(low, high))

    def _output_shape(self, X: Sequence[ImageLike] | None) -> tuple[int, ...] | None:
        if self.crop_box_ is not None:
            return tuple(s.stop - s.start for s in self.crop_box_)
        if self.target_image_ is not None:
            return tuple(self.target_image_.shape[:3])
        if self.target_shape is not None:
            return tuple(int(n) for n in self.target_shape)
        if X is not None and len(X) > 0:
            return canonical_shape(load_nifti(X[0], 0))
        return None

    def _fingerprint(self) -> str:
        params = {name: _fingerprint_value(value) for name, value in self.get_params().items()}
        params.pop("cache_dir")
        params["slicelearn"] = __version__
        # Cached volumes of an earlier recipe are not this one's (2: ANTs seeded,
        # one thread; 3: ANTs without its full-resolution level).
        params["recipe"] = PREPROCESSING_RECIPE
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()

    # -- transforming ------------------------------------------------------------
    def transform(self, X: Sequence[ImageLike]) -> PreprocessedVolumes:
        """Lazy preprocessed volumes: nothing is loaded until an item is read."""
        self._check_fitted()
        return PreprocessedVolumes(X, self)

    def _check_fitted(self) -> None:
        if not hasattr(self, "fingerprint_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("VolumePreprocessor is not fitted yet: call fit first.")

    def mask_for(self, item: ImageLike) -> ImageLike | None:
        """The per-subject mask given for ``item``, or ``None``."""
        if self.mask is None or self._mask_is_shared():
            return None
        key = os.fspath(item) if isinstance(item, (str, os.PathLike)) else item
        if isinstance(self.mask, Mapping):
            if key not in self.mask:
                if self.skull_strip is not None:
                    return None  # extracted instead
                raise KeyError(f"No mask given for {key}.")
            return self.mask[key]
        return self.mask(key)

    def preprocess(self, item: ImageLike, index: int = 0) -> np.ndarray:
        """Preprocess one scan into a float32 array of shape ``output_shape_``.

        Raises
        ------
        FileNotFoundError, ValueError
            Naming ``X[index]`` and its file.
        """
        return self._preprocess(item, index)[0]

    def _preprocess(self, item: ImageLike, index: int) -> tuple[np.ndarray, dict[str, float]]:
        """The preprocessed volume, and measures of the scan in its own space."""
        self._check_fitted()
        from nilearn import image as nimage

        where = describe_item(item, index)
        scan = nib.as_closest_canonical(load_nifti(item, index))
        check_voxels(np.asarray(scan.get_fdata(dtype=np.float32)), where)
        mask_item = self.mask_for(item)
        subject_mask = None
        if mask_item is not None:
            subject_mask = nib.as_closest_canonical(load_nifti(mask_item, index))
        elif self.skull_strip is not None:
            from .skullstrip import brain_mask

            subject_mask = brain_mask(scan, self.skull_strip, index=index)
        measures = {}
        if subject_mask is not None:
            voxel_ml = abs(float(np.linalg.det(subject_mask.affine[:3, :3]))) / 1000
            native = np.asarray(subject_mask.dataobj) > 0.5
            measures["native_brain_ml"] = round(float(native.sum()) * voxel_ml, 1)
        if self.registration and not self._on_target_grid(scan):
            from .registration import register

            scan, apply_transform = register(
                scan,
                self.target_image_,
                transform=self.registration,
                moving_mask=subject_mask,
                template_mask=self.template_mask_,
                backend=self.registration_backend,
            )
            if subject_mask is not None:
                subject_mask = apply_transform(subject_mask, interpolation="nearest")
        elif self.target_image_ is not None or self.target_shape is not None:
            grid = self.target_image_ or self._own_grid(scan)
            scan = nimage.resample_to_img(
                scan, grid, interpolation="continuous", force_resample=True, copy_header=True
            )
            if subject_mask is not None:
                subject_mask = nimage.resample_to_img(
                    subject_mask,
                    grid,
                    interpolation="nearest",
                    force_resample=True,
                    copy_header=True,
                )
        volume = read_voxels(scan, where)
        if (
            self.output_shape_ is not None
            and self.crop_box_ is None
            and volume.shape != self.output_shape_
        ):
            raise ValueError(
                f"{where} has shape {volume.shape} but the first scan has {self.output_shape_}: "
                "give a target grid (target='mni152' or target_shape and voxel_size) to resample."
            )
        mask = self.shared_mask_
        if subject_mask is not None:
            mask = np.asarray(subject_mask.get_fdata()) > 0.5
            if mask.shape != volume.shape:
                raise ValueError(
                    f"{where}: its mask has shape {mask.shape}, the scan {volume.shape}."
                )
        if mask is not None:
            volume = np.where(mask, volume, 0.0).astype(np.float32)
        if self.crop_box_ is not None:
            volume = volume[self.crop_box_]
            mask = mask[self.crop_box_]
        if not volume.any():
            raise ValueError(f"{where} is all zeros after preprocessing (mask outside the scan?).")
        return self._normalize(volume, mask), measures

    def _on_target_grid(self, scan: nib.spatialimages.SpatialImage) -> bool:
        """Whether ``scan`` already lies on the target grid (registered before)."""
        target = self.target_image_
        return tuple(scan.shape[:3]) == tuple(target.shape[:3]) and np.allclose(
            scan.affine, target.affine, atol=1e-3
        )

    def output_grid(self, item: ImageLike, index: int = 0) -> np.ndarray:
        """The voxel-to-world affine of ``item`` once preprocessed (shape ``output_shape_``).

        The template's grid for registered or resampled scans, the scan's own
        RAS-reoriented grid otherwise; shifted to the crop box if there is one.
        """
        self._check_fitted()
        if self.target_image_ is not None:
            affine = np.asarray(self.target_image_.affine, dtype=np.float64)
        else:
            scan = nib.as_closest_canonical(load_nifti(item, index))
            grid = scan if self.keeps_native_grid else self._own_grid(scan)
            affine = np.asarray(grid.affine, dtype=np.float64)
        if self.crop_box_ is not None:
            start = np.array([box.start for box in self.crop_box_], dtype=np.float64)
            affine = affine.copy()
            affine[:3, 3] += affine[:3, :3] @ start
        return affine

    def _own_grid(self, scan: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
        """A grid of ``target_shape`` x ``voxel_size`` centred on the scan's field of view."""
        shape = np.asarray(self.target_shape, dtype=float)
        voxel = np.broadcast_to(np.asarray(self.voxel_size, dtype=float), (3,))
        centre = scan.affine @ np.append((np.asarray(scan.shape[:3]) - 1) / 2, 1)
        affine = np.diag([*voxel, 1.0])
        affine[:3, 3] = centre[:3] - voxel * (shape - 1) / 2
        return nib.Nifti1Image(np.zeros(tuple(int(n) for n in shape), np.uint8), affine)

    def _normalize(self, volume: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        inside = volume[mask] if mask is not None else volume
        if self.clip_percentiles is not None:
            low, high = np.percentile(inside, self.clip_percentiles)
            volume = np.clip(volume, low, high)
            inside = volume[mask] if mask is not None else volume
        if self.normalize == "zscore":
            volume = (volume - volume.mean()) / (volume.std() + 1e-6)
        elif self.normalize == "zscore_brain":
            volume = (volume - inside.mean()) / (inside.std() + 1e-6)
            volume[~mask] = 0.0
        return volume.astype(np.float32)

    @cached_property
    def _cache(self) -> VolumeCache | None:
        return VolumeCache.from_setting(self.cache_dir)

    def _cache_key(self, item: ImageLike) -> str:
        return hashlib.sha256(f"{file_digest(item)}:{self.fingerprint_}".encode()).hexdigest()

    def is_cached(self, item: ImageLike) -> bool:
        """Whether the cache holds ``item`` preprocessed with these parameters."""
        self._check_fitted()
        cache = self._cache
        if cache is None or not isinstance(item, (str, os.PathLike)) or not os.path.isfile(item):
            return False
        return self._cache_key(item) in cache

    def load(self, item: ImageLike, index: int = 0) -> np.ndarray:
        """Preprocessed ``item``, from the cache when it holds a valid copy."""
        self._check_fitted()
        cache = self._cache
        if cache is None or not isinstance(item, (str, os.PathLike)):
            return self.preprocess(item, index)
        if not os.path.isfile(item):
            raise FileNotFoundError(f"{describe_item(item, index)}: no such file.")
        key = self._cache_key(item)
        cached = cache.get(key)
        if cached is not None:
            return cached
        volume, measures = self._preprocess(item, index)
        cache.put(key, volume, dtype=self.cache_dtype, source=os.fspath(item), measures=measures)
        # Return what a later read will return, so epochs see identical inputs.
        return np.asarray(volume, dtype=self.cache_dtype).astype(np.float32)

    def native_measures(self, item: ImageLike) -> dict[str, float]:
        """Measures of a cached scan in its own space, e.g. ``native_brain_ml``.

        Recorded when the scan was preprocessed into the cache with a brain
        mask (skull stripping or a given mask); empty otherwise.
        """
        if not self.is_cached(item):
            return {}
        return self._cache.measures(self._cache_key(item))

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_cache", None)  # reopened lazily, e.g. in DataLoader workers
        return state


class PreprocessedVolumes(Sequence):
    """Scans with a fitted :class:`VolumePreprocessor`, read lazily one at a time.

    Indexing with an integer returns the preprocessed float32 volume (cached
    on disk); with a slice or index array, another lazy view. Estimators
    read these without ever holding the cohort in memory.

    Parameters
    ----------
    items : sequence of paths or nibabel images
        The scans.
    preprocessor : VolumePreprocessor
        Fitted; applied to each scan as it is read.
    """

    def __init__(self, items: Sequence[ImageLike], preprocessor: VolumePreprocessor) -> None:
        self.items = list(items)
        self.preprocessor = preprocessor

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        if isinstance(index, tuple) and all(part is Ellipsis for part in index[1:]):
            index = index[0]  # scikit-learn indexes array-likes as ``X[rows, ...]``
        if isinstance(index, (int, np.integer)):
            return self.preprocessor.load(self.items[index], int(index))
        if isinstance(index, slice):
            return PreprocessedVolumes(self.items[index], self.preprocessor)
        return PreprocessedVolumes([self.items[i] for i in np.asarray(index)], self.preprocessor)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *(self.preprocessor.output_shape_ or ()))

    def __repr__(self) -> str:
        return f"PreprocessedVolumes(n={len(self)}, shape={self.preprocessor.output_shape_})"
