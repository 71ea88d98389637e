"""Linear readouts of a brain-trained 3D encoder: deepbet's encoder as a feature extractor.

The slice readouts (:mod:`slicelearn.readout`) read ImageNet encoders, which
never saw a brain. :class:`BrainEncoderRegressor` (ridge) and
:class:`BrainEncoderClassifier` (logistic regression) read instead the
encoder of deepbet's brain-extraction network
(:mod:`slicelearn.nn.deepbet_encoder`), trained on T1 scans from many sites
and shipped inside deepbet's wheel (``pip install 'slicelearn[skullstrip]'``;
no download). Each volume (registered and skull-stripped, as the
recommended preprocessing makes it) is read as deepbet reads a scan,
resampled to about 1 mm, and passed once through the encoder; each chosen
stage's maps are averaged over the whole volume and over a coarse grid of
boxes, and the features of all stages are joined. The penalised model on
top is the slice readouts' (its penalty chosen by internal CV), so these
readouts plug into ensembles, cross-validation and model files like the
others. Features are computed once per scan and recipe in a process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ._params import with_shared_parameters
from ._validation import Interval, Satisfies
from .data.preprocessing import VolumePreprocessor
from .feature_cache import RowCache, volume_keys
from .nn.deepbet_encoder import (
    DEEPBET_LAYERS,
    deepbet_input,
    load_deepbet_encoder,
)
from .readout import (
    DEFAULT_ALPHAS,
    DEFAULT_CS,
    _LogisticReadout,
    _RidgeReadout,
    _VolumeRowReadout,
)

__all__ = ["BrainEncoderClassifier", "BrainEncoderRegressor", "brain_encoder_features"]

#: Each scan's pooled stages by (content key, stage, grid, zoom, encoder digest);
#: grid 1 is the average over the whole volume.
_FEATURE_ROWS = RowCache()

_LAYERS = Satisfies(
    lambda value: (
        not isinstance(value, str)
        and len(value) > 0
        and all(name in DEEPBET_LAYERS for name in value)
        and len(set(value)) == len(value)
    ),
    f"a non-empty sequence of distinct stage names out of {', '.join(DEEPBET_LAYERS)}",
)


def brain_encoder_features(
    volume: np.ndarray,
    layers: Sequence[str] = ("down2", "down3"),
    grid: int = 2,
    zoom: float = 2.0,
) -> np.ndarray:
    """One volume's features from deepbet's encoder: each stage's maps averaged, joined.

    Parameters
    ----------
    volume : ndarray of shape (X, Y, Z)
        A registered, skull-stripped volume (zero outside the brain).
    layers : sequence of str, default=("down2", "down3")
        Encoder stages read, out of ``"down0"`` to ``"down3"`` (16, 32, 64
        and 128 channels).
    grid : int, default=2
        Each stage's channels averaged over the whole volume, and, for
        ``grid > 1``, over each box of a ``grid`` x ``grid`` x ``grid``
        division of it besides.
    zoom : float, default=2.0
        Resampling before the encoder (:func:`~slicelearn.nn.deepbet_encoder.deepbet_input`).

    Returns
    -------
    ndarray of shape (n_features,), float32
        Per stage, ``channels * (1 + grid**3)`` values (``channels`` for
        ``grid=1``), stages in the order given.
    """
    parts = _pooled_stages(volume, tuple(layers), grid, zoom)
    return np.concatenate([part for name in layers for part in parts[name]])


def _pooled_stages(
    volume: np.ndarray, layers: tuple[str, ...], grid: int, zoom: float
) -> dict[str, list[np.ndarray]]:
    """Each stage's maps averaged over the volume and, for ``grid > 1``, over each box."""
    encoder = load_deepbet_encoder()
    with torch.inference_mode():
        maps = encoder(deepbet_input(volume, zoom), layers)
    parts = {}
    for name in layers:
        stage = maps[name][0].float()
        parts[name] = [stage.mean(dim=(1, 2, 3)).numpy()]
        if grid > 1:
            parts[name].append(F.adaptive_avg_pool3d(stage, grid).flatten().numpy())
    return parts


class _BrainEncoderReadout(_VolumeRowReadout):
    """deepbet-encoder features of each volume: both brain-encoder readouts."""

    # Boxes of the grid outside every training brain hold near-constant maps.
    _min_relative_scale = 0.01

    def __init__(
        self,
        *,
        feature_layers: Sequence[str] = ("down2", "down3"),
        feature_grid: int = 2,
        input_zoom: float = 2.0,
        preprocessing: Any = None,
    ) -> None:
        self.feature_layers = feature_layers
        self.feature_grid = feature_grid
        self.input_zoom = input_zoom
        self.preprocessing = preprocessing

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "feature_layers": [_LAYERS],
        "feature_grid": [Interval("int", 1, 4)],
        "input_zoom": [Interval("real", 0.25, 4)],
        "preprocessing": [VolumePreprocessor, None],
    }

    def _feature_matrix(self, X: Any, reset: bool) -> np.ndarray:
        """``(n, F)`` float32: every volume's features, in the order of ``X``."""
        self._validate_params()
        volumes = self._volumes(X, reset)
        shape = tuple(volumes.shape[1:])
        digest = load_deepbet_encoder().digest
        if reset:
            self.volume_shape_ = shape
            self.encoder_digest_ = digest
        else:
            if shape != tuple(self.volume_shape_):
                raise ValueError(
                    f"X holds volumes of shape {shape}; the model was fitted on "
                    f"{self.volume_shape_}."
                )
            if digest != self.encoder_digest_:
                raise ValueError(
                    "deepbet's network found here differs from the one the model was "
                    "fitted with (another deepbet version?): its readout does not apply."
                )
        grid, zoom = int(self.feature_grid), float(self.input_zoom)
        # One entry per stage and pooling, so that readouts of other stages or
        # grids reuse them; a pass through the encoder stores every stage.
        wanted = [(name, 1) for name in self.feature_layers]
        if grid > 1:
            wanted = [entry for name in self.feature_layers for entry in ((name, 1), (name, grid))]
        rows = []
        for index, key in enumerate(volume_keys(volumes)):
            parts = {entry: _FEATURE_ROWS.get((key, *entry, zoom, digest)) for entry in wanted}
            if any(part is None for part in parts.values()):
                computed = _pooled_stages(np.asarray(volumes[index]), DEEPBET_LAYERS, grid, zoom)
                for name, pooled in computed.items():
                    for entry, part in zip(((name, 1), (name, grid)), pooled):
                        _FEATURE_ROWS.put((key, *entry, zoom, digest), part)
                parts = {entry: computed[entry[0]][entry[1] > 1] for entry in wanted}
            rows.append(np.concatenate([parts[entry] for entry in wanted]))
        return np.stack(rows)


_BRAIN_PARAMS_DOC = """    feature_layers : sequence of str, default=("down2", "down3")
        deepbet encoder stages read (``"down0"`` to ``"down3"``).
    feature_grid : int, default=2
        Each stage's maps averaged over the volume and, above 1, over the
        boxes of a ``feature_grid``-cubed division of it (1 to 4).
    input_zoom : float, default=2.0
        Trilinear resampling before the encoder; deepbet works at about
        1 mm, so 2 for volumes on the 2 mm template grid.
    preprocessing : VolumePreprocessor or None, default=None
        Applied to NIfTI paths or images (see :class:`~slicelearn.SliceCNNRegressor`);
        the encoder expects registered, skull-stripped volumes
        (:func:`slicelearn.presets.recommended_preprocessing`).
"""

_BRAIN_ATTRIBUTES_DOC = """    feature_mean_, feature_scale_ : ndarray of shape (n_features,)
        The training features' means and SDs (raised to at least 1% of the
        median SD: boxes outside every training brain are near-constant):
        each feature is standardised.
    encoder_digest_ : str
        SHA-256 of deepbet's network file; prediction refuses another.
    volume_shape_ : tuple of int
    n_features_ : int
"""


class BrainEncoderRegressor(_RidgeReadout, _BrainEncoderReadout):
    __doc__ = (
        """Ridge regression on deepbet's brain-trained 3D encoder features.

    Parameters
    ----------
    alphas : tuple of float, default=10**-1 ... 10**7 (17 values)
        Ridge penalties; the one with the best leave-one-out error is kept
        (5-fold CV over subjects with ``groups``).
"""
        + _BRAIN_PARAMS_DOC
        + """
    Attributes
    ----------
    alpha_ : float
        The chosen penalty.
    coef_ : ndarray of shape (n_features,)
    intercept_ : float
"""
        + _BRAIN_ATTRIBUTES_DOC
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn import BrainEncoderRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(12, 24, 28, 24)).astype(np.float32)
    >>> model = BrainEncoderRegressor(feature_layers=("down3",), feature_grid=1, input_zoom=1)
    >>> model.fit(X, np.arange(12.0)).n_features_
    128
    """
    )

    def __init__(self, *, alphas: Sequence[float] = DEFAULT_ALPHAS, **params: Any) -> None:
        super().__init__(**params)
        self.alphas = alphas

    __init__.__signature__ = with_shared_parameters(__init__, _BrainEncoderReadout.__init__)


class BrainEncoderClassifier(_LogisticReadout, _BrainEncoderReadout):
    __doc__ = (
        """Logistic regression on deepbet's brain-trained 3D encoder features.

    Parameters
    ----------
    Cs : tuple of float, default=10**-5 ... 10**1 (7 values)
        Inverse penalties, chosen by stratified internal cross-validation
        (log loss).
"""
        + _BRAIN_PARAMS_DOC
        + """
    Attributes
    ----------
    classes_ : ndarray
    C_ : float
    coef_ : ndarray of shape (n_classes or 1, n_features)
    intercept_ : ndarray
"""
        + _BRAIN_ATTRIBUTES_DOC
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn import BrainEncoderClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(12, 24, 28, 24)).astype(np.float32)
    >>> clf = BrainEncoderClassifier(feature_layers=("down3",), feature_grid=1, input_zoom=1)
    >>> clf.fit(X, ["a", "b"] * 6).predict_proba(X[:2]).shape
    (2, 2)
    """
    )

    def __init__(self, *, Cs: Sequence[float] = DEFAULT_CS, **params: Any) -> None:
        super().__init__(**params)
        self.Cs = Cs

    __init__.__signature__ = with_shared_parameters(__init__, _BrainEncoderReadout.__init__)
