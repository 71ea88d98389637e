"""Permutation-invariant pooling of slice embeddings into one volume embedding.

Every pooling maps tokens ``(B, S, D)`` to ``(pooled (B, D), weights)``,
where ``weights`` is the ``(B, S)`` attention over slices for attention
pooling and ``None`` otherwise.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["POOLINGS", "AttentionPooling", "MaxPooling", "MeanPooling", "build_pooling"]

POOLINGS = ("mean", "max", "attention")


class MeanPooling(nn.Module):
    """Average over slices."""

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, None]:
        return tokens.mean(dim=1), None


class MaxPooling(nn.Module):
    """Element-wise maximum over slices."""

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, None]:
        return tokens.amax(dim=1), None


class AttentionPooling(nn.Module):
    """Multi-head attention of one learned query over the slices.

    The pooled vector goes through LayerNorm and an output projection, as in
    Gupta et al. (2023).

    Parameters
    ----------
    embed_dim : int
        Size of the slice embeddings.
    num_heads : int, default=4
        Attention heads; must divide ``embed_dim``.
    """

    def __init__(self, embed_dim: int, num_heads: int = 4) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"attention_heads={num_heads} must divide embed_dim={embed_dim}.")
        self.query = nn.Parameter(torch.randn(1, 1, embed_dim) * embed_dim**-0.5)
        self.attention = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)
        self.projection = nn.Linear(embed_dim, embed_dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        query = self.query.expand(tokens.shape[0], -1, -1)
        pooled, weights = self.attention(query, tokens, tokens, need_weights=True)
        pooled = self.projection(self.norm(pooled[:, 0]))
        return pooled, weights[:, 0]


def build_pooling(kind: str, embed_dim: int, num_heads: int = 4) -> nn.Module:
    """Build the pooling named ``kind``: ``"mean"``, ``"max"`` or ``"attention"``."""
    if kind == "mean":
        return MeanPooling()
    if kind == "max":
        return MaxPooling()
    if kind == "attention":
        return AttentionPooling(embed_dim, num_heads)
    raise ValueError(f"Unknown pooling {kind!r}; choose one of {', '.join(POOLINGS)}.")
