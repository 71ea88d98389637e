"""Position embeddings of the slice index, added to the slice embeddings.

``learned`` is the paper's: one trainable vector per slice index, so it
fixes the slice count. ``sinusoidal`` is fixed and defined for any slice
count, so a model trained with it predicts on volumes with a different
number of slices.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "POSITION_EMBEDDINGS",
    "LearnedPositionEmbedding",
    "NoPositionEmbedding",
    "SinusoidalPositionEmbedding",
    "build_position_embedding",
]

POSITION_EMBEDDINGS = (None, "learned", "sinusoidal")


class LearnedPositionEmbedding(nn.Module):
    """One learned ``embed_dim`` vector per slice index (Gupta et al. 2023).

    Parameters
    ----------
    n_slices : int
        Number of slices the model is built for.
    embed_dim : int
        Size of the slice embeddings.
    """

    def __init__(self, n_slices: int, embed_dim: int) -> None:
        super().__init__()
        if n_slices < 1:
            raise ValueError(f"n_slices must be positive, got {n_slices}.")
        self.n_slices = n_slices
        self.weight = nn.Parameter(torch.randn(n_slices, embed_dim))

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Add the embedding of each token's slice index.

        ``positions`` (B, S) gives the indices of a subset of slices (slice
        sampling, cropping); by default the tokens are slices ``0 .. S-1``.
        """
        if positions is not None:
            if int(positions.max()) >= self.n_slices:
                raise ValueError(
                    f"Slice index {int(positions.max())} is beyond the {self.n_slices} slices "
                    "the learned position embedding was built for."
                )
            return tokens + self.weight[positions]
        n_slices = tokens.shape[1]
        if n_slices != self.n_slices:
            raise ValueError(
                f"The learned position embedding was built for {self.n_slices} slices, but the "
                f"input has {n_slices}. Resample the volumes to the training grid, or use "
                "position_embedding='sinusoidal', which works for any slice count."
            )
        return tokens + self.weight


class SinusoidalPositionEmbedding(nn.Module):
    """Fixed sine/cosine embedding of the slice index (Vaswani et al. 2017).

    Parameters
    ----------
    embed_dim : int
        Size of the slice embeddings (even sizes use all frequencies; an odd
        last dimension gets a sine).
    base : float, default=10000.0
        Longest wavelength, in slices.
    """

    def __init__(self, embed_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.base = base

    def table(self, n_slices: int, device=None, dtype=None) -> torch.Tensor:
        """The ``(n_slices, embed_dim)`` embedding table."""
        position = torch.arange(n_slices, device=device, dtype=torch.float32)[:, None]
        n_freq = (self.embed_dim + 1) // 2
        freq = torch.exp(
            -math.log(self.base) * torch.arange(n_freq, device=device, dtype=torch.float32) / n_freq
        )
        angles = position * freq
        table = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)
        return table[:, : self.embed_dim].to(dtype=dtype)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Add the embedding of each token's slice index (``positions``, default 0 .. S-1)."""
        if positions is None:
            return tokens + self.table(tokens.shape[1], tokens.device, tokens.dtype)
        table = self.table(int(positions.max()) + 1, tokens.device, tokens.dtype)
        return tokens + table[positions]


class NoPositionEmbedding(nn.Module):
    """Adds nothing: the slices form a pure set."""

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        return tokens


def build_position_embedding(kind: str | None, n_slices: int | None, embed_dim: int) -> nn.Module:
    """Build the position embedding named ``kind`` (``None`` adds nothing)."""
    if kind is None:
        return NoPositionEmbedding()
    if kind == "learned":
        if n_slices is None:
            raise ValueError(
                "position_embedding='learned' needs n_slices, the training slice count."
            )
        return LearnedPositionEmbedding(n_slices, embed_dim)
    if kind == "sinusoidal":
        return SinusoidalPositionEmbedding(embed_dim)
    raise ValueError(
        f"Unknown position_embedding {kind!r}; choose None, 'learned' or 'sinusoidal'."
    )
