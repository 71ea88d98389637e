"""slicelearn: ImageNet-pretrained 2D networks for 3D brain MRI, as scikit-learn estimators.

The layout follows the architecture:

- :mod:`slicelearn.nn`: plain torch modules (encoders, position embeddings,
  poolings, :class:`~slicelearn.nn.SliceNet`), usable without scikit-learn;
- :mod:`slicelearn.estimators`: :class:`SliceCNNRegressor` and
  :class:`SliceCNNClassifier`, skorch-based scikit-learn estimators;
- :mod:`slicelearn.readout`: :class:`SliceLinearRegressor` and
  :class:`SliceLinearClassifier`, linear readouts of frozen slice features;
- :mod:`slicelearn.voxels`: :class:`VoxelLinearRegressor` and
  :class:`VoxelLinearClassifier`, linear readouts of the voxels (the baseline);
- :mod:`slicelearn.brain_encoder`: :class:`BrainEncoderRegressor` and
  :class:`BrainEncoderClassifier`, linear readouts of deepbet's brain-trained
  3D encoder;
- :mod:`slicelearn.tissue`: :class:`TissueRegressor` and
  :class:`TissueClassifier`, linear readouts of tissue fractions (Atropos) and
  intracranial volume, the classic baseline;
- :mod:`slicelearn.ensemble`: :class:`EnsembleRegressor` and
  :class:`EnsembleClassifier`, several models averaged or stacked;
- :mod:`slicelearn.brain_age`: :class:`BiasCorrectedRegressor`, brain age
  corrected for regression to the mean;
- :mod:`slicelearn.inspection`: where a fitted model looks, as NIfTI maps;
- :mod:`slicelearn.distributed`: data-parallel training under torchrun;
- :mod:`slicelearn.model_files`: safe model files (JSON and safetensors);
- :mod:`slicelearn.data`: reading arrays, NIfTI paths and images;
- :mod:`slicelearn.datasets`: simulated tasks with a known answer;
- :mod:`slicelearn.cli`: the ``slicelearn`` command.
"""

from ._version import __version__
from .brain_age import BiasCorrectedRegressor
from .brain_encoder import BrainEncoderClassifier, BrainEncoderRegressor
from .ensemble import EnsembleClassifier, EnsembleRegressor
from .estimators import SliceCNNClassifier, SliceCNNRegressor
from .nn import SliceNet
from .readout import SliceLinearClassifier, SliceLinearRegressor
from .tissue import TissueClassifier, TissueRegressor
from .voxels import VoxelLinearClassifier, VoxelLinearRegressor

__all__ = [
    "BiasCorrectedRegressor",
    "BrainEncoderClassifier",
    "BrainEncoderRegressor",
    "EnsembleClassifier",
    "EnsembleRegressor",
    "SliceCNNClassifier",
    "SliceCNNRegressor",
    "SliceLinearClassifier",
    "SliceLinearRegressor",
    "SliceNet",
    "TissueClassifier",
    "TissueRegressor",
    "VoxelLinearClassifier",
    "VoxelLinearRegressor",
    "__version__",
]
