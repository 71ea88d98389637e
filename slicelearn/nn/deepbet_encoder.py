"""deepbet's brain-extraction network cut after its encoder: 3D features trained on brain T1.

deepbet (Fisch et al., 2024; MIT) ships, inside its wheel, a TorchScript 3D
encoder-decoder trained to find the brain in T1 scans from many sites. Its
encoder (``init``, then ``down0`` to ``down3``, 16 to 128 channels, each
halving the grid) has seen brains, not photographs. This module loads that
network from deepbet's verified install (offline) and returns the encoder's
maps; :mod:`slicelearn.brain_encoder` pools them into features for linear
readouts. The decoder is never run.
"""

from __future__ import annotations

import functools
import hashlib
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DEEPBET_CHANNELS",
    "DEEPBET_LAYERS",
    "DeepbetEncoder",
    "deepbet_input",
    "load_deepbet_encoder",
]

#: The encoder's stages, first to last, and their channels.
DEEPBET_LAYERS = ("down0", "down1", "down2", "down3")
DEEPBET_CHANNELS = {"down0": 16, "down1": 32, "down2": 64, "down3": 128}


class DeepbetEncoder(nn.Module):
    """The encoder half of deepbet's network: a volume in, its stages' maps out.

    Parameters
    ----------
    network : torch.jit.ScriptModule
        deepbet's ``model.pt`` (see :func:`load_deepbet_encoder`).
    digest : str
        SHA-256 of that file: what a fitted readout records.
    """

    def __init__(self, network: torch.jit.ScriptModule, digest: str) -> None:
        super().__init__()
        self.network = network.eval()
        self.digest = digest
        # The traced stages take their activation module as an argument.
        self._activation = getattr(network.conv, "2")

    def forward(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The maps of ``layers`` for ``x`` of shape ``(N, 1, X, Y, Z)`` (:func:`deepbet_input`)."""
        deepest = max(DEEPBET_LAYERS.index(name) for name in layers)
        hidden = self.network.init.forward(self._activation, x)
        maps = {}
        for name in DEEPBET_LAYERS[: deepest + 1]:
            hidden = getattr(self.network, name).forward(self._activation, hidden)
            if name in layers:
                maps[name] = hidden
        return maps


@functools.lru_cache(maxsize=1)
def load_deepbet_encoder() -> DeepbetEncoder:
    """deepbet's network from its install, checked against deepbet's install record; once a process.

    Raises ``ImportError`` naming the extra to install (``slicelearn[skullstrip]``)
    when deepbet is missing, and ``RuntimeError`` when its model file is not
    the one deepbet installed.
    """
    from ..data.skullstrip import _verified_model_paths

    path = _verified_model_paths()["model.pt"]
    with warnings.catch_warnings():
        # torch >= 2.10 deprecates torch.jit.load, which deepbet's models need.
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")
        network = torch.jit.load(str(path), map_location="cpu")
    return DeepbetEncoder(network, hashlib.sha256(path.read_bytes()).hexdigest())


def deepbet_input(volume: np.ndarray, zoom: float = 2.0) -> torch.Tensor:
    """A registered, skull-stripped volume as deepbet's network reads a T1 scan.

    deepbet scales a scan between its 0.5th and 99.5th intensity percentiles,
    clips, standardises, and maps to mean 0.449 and SD 0.226 (ImageNet's
    grey). A skull-stripped volume has a background of zeros that a
    z-scored brain would read as mid-grey, so the background is set to the
    brain's 0.5th percentile first (dark, as air is in a raw scan). The
    volume is then resampled by ``zoom`` (trilinear): deepbet works at about
    1 mm, so 2 on the 2 mm template grid.

    Parameters
    ----------
    volume : ndarray of shape (X, Y, Z)
        Zero outside the brain.
    zoom : float, default=2.0

    Returns
    -------
    Tensor of shape (1, 1, X', Y', Z'), float32

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn.nn.deepbet_encoder import deepbet_input
    >>> volume = np.zeros((8, 8, 8), np.float32)
    >>> volume[2:6, 2:6, 2:6] = np.arange(64).reshape(4, 4, 4)
    >>> tuple(deepbet_input(volume, zoom=2).shape)
    (1, 1, 16, 16, 16)
    """
    x = torch.as_tensor(np.asarray(volume, dtype=np.float32))
    brain = x != 0
    values = x[brain] if bool(brain.any()) else x.flatten()
    low, high = torch.quantile(values, 0.005), torch.quantile(values, 0.995)
    x = torch.where(brain, x, low)
    x = ((x - low) / (high - low if high > low else 1.0)).clamp(0, 1)
    spread = x.std()
    x = (x - x.mean()) / (spread if spread > 0 else 1.0)
    x = (0.226 * x + 0.449)[None, None]
    if zoom != 1:
        x = F.interpolate(x, scale_factor=float(zoom), mode="trilinear", align_corners=False)
    return x
