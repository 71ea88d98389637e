"""slicelearn: ImageNet-pretrained 2D networks for 3D brain MRI, as scikit-learn estimators.

The layout follows the architecture:

- :mod:`slicelearn.nn`: plain torch modules (encoders, position embeddings,
  poolings, :class:`~slicelearn.nn.SliceNet`), usable without scikit-learn;
- :mod:`slicelearn.estimators`: :class:`SliceCNNRegressor` and
  :class:`SliceCNNClassifier`, skorch-based scikit-learn estimators;
- :mod:`slicelearn.data`: reading arrays, NIfTI paths and images;
- :mod:`slicelearn.datasets`: simulated tasks with a known answer;
- :mod:`slicelearn.cli`: the ``slicelearn`` command.
"""

from .estimators import SliceCNNClassifier, SliceCNNRegressor
from .nn import SliceNet

__version__ = "0.1.0"

__all__ = ["SliceCNNClassifier", "SliceCNNRegressor", "SliceNet", "__version__"]
