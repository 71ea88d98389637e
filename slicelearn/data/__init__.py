"""Data: reading scans, preprocessing them, caching them, and serving them lazily.

- :mod:`.inputs`: the one way into every estimator: X read as volumes
  (:func:`read_volumes`) and y checked against them (:func:`check_targets`);
- :mod:`.io`: arrays, NIfTI paths and nibabel images into RAS volumes, with
  errors that name the file or index;
- :mod:`.preprocessing`: :class:`VolumePreprocessor`, the scikit-learn
  transformer from native space to a z-scored template grid;
- :mod:`.cache`: the on-disk cache of preprocessed volumes;
- :mod:`.dataset`: the lazy torch dataset the estimators train from;
- :mod:`.cohort`: reading BIDS datasets and CSV/TSV tables into ``(paths, y)``;
- :mod:`.skullstrip`: offline brain extraction of raw scans (:func:`brain_mask`);
- :mod:`.augment`: random flips, rotations, shifts and intensity fields
  (:class:`VolumeAugmenter`) for training and test-time augmentation;
- :mod:`.transforms`: lazy per-volume transforms with their own cache keys,
  and the readouts' input smoothing;
- :mod:`.slices`: which slices along an axis hold content.
"""

from .augment import AugmentedVolumes, VolumeAugmenter
from .cache import VolumeCache
from .cohort import Cohort, load_cohort, read_cohort
from .dataset import VolumeDataset, VolumeLoadError
from .inputs import check_targets, class_encoder, read_volumes
from .io import check_volume_array, load_image, load_nifti, load_volumes
from .preprocessing import PreprocessedVolumes, VolumePreprocessor, template_image
from .skullstrip import brain_mask

__all__ = [
    "AugmentedVolumes",
    "Cohort",
    "PreprocessedVolumes",
    "VolumeAugmenter",
    "VolumeCache",
    "VolumeDataset",
    "VolumeLoadError",
    "VolumePreprocessor",
    "brain_mask",
    "check_targets",
    "check_volume_array",
    "class_encoder",
    "load_cohort",
    "load_image",
    "load_nifti",
    "load_volumes",
    "read_cohort",
    "read_volumes",
    "template_image",
]
