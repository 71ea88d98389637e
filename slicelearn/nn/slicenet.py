"""The 2D-slice set network: a plain ``nn.Module``, usable without scikit-learn.

A volume is cut into all of its slices along one axis; one shared 2D encoder
embeds every slice, projected to ``embed_dim`` and layer-normalised; a
position embedding of the slice index is added; a per-slice MLP mixes
position and content; a permutation-invariant pooling
combines the slices; a small head predicts the target (Gupta et al., ISBI
2021 and 2023).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .encoders import WeightsSpec, build_encoder
from .pooling import build_pooling
from .position import build_position_embedding

__all__ = ["AXES", "SliceMixer", "SliceNet", "SliceNetOutput", "slice_axis_dim"]

#: Slicing axes of RAS-canonical volumes ``(B, X, Y, Z)``, with their array dimension.
AXES = {"sagittal": 1, "coronal": 2, "axial": 3}


def slice_axis_dim(axis: str) -> int:
    """Dimension of a ``(B, X, Y, Z)`` batch that ``axis`` slices along."""
    try:
        return AXES[axis]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown axis {axis!r}; choose one of {', '.join(AXES)}.") from None


class SliceNetOutput(NamedTuple):
    """Everything a forward pass computes, for analysis."""

    prediction: torch.Tensor
    """``(B, n_outputs)`` predictions (logits for classification)."""
    slice_embeddings: torch.Tensor
    """``(B, S, embed_dim)`` slice tokens as they enter the pooling."""
    attention: torch.Tensor | None
    """``(B, S)`` attention over slices (averaged over heads), or ``None``."""


class SliceMixer(nn.Module):
    """Pre-norm residual MLP applied to every slice token on its own.

    Adding a position vector and then averaging is blind to position: the
    mean of ``e_s + p_s`` is ``mean(e) + mean(p)`` whatever slice holds the
    content. A non-linearity between the addition and the pooling lets a
    token's contribution depend jointly on its content and its index (the
    DeepSets ``phi``), so a feature's position reaches the pooled vector for
    any slice count. See ``docs/design.md`` for the experiment behind it.
    """

    def __init__(self, embed_dim: int, dropout: float = 0.0, expansion: int = 2) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(embed_dim)
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, expansion * embed_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(expansion * embed_dim, embed_dim),
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + self.mlp(self.norm(tokens))


class SliceNet(nn.Module):
    """2D-slice set network for 3D volumes (Gupta et al., ISBI 2021/2023).

    Parameters
    ----------
    encoder : str or nn.Module, default="resnet18"
        Slice encoder name or module; see :func:`slicelearn.nn.build_encoder`.
    weights : {"imagenet", None} or path, default=None
        Encoder weights; see :func:`slicelearn.nn.build_encoder`.
    n_outputs : int, default=1
        Size of the prediction: 1 for regression or binary logits, the number
        of classes for multi-class logits.
    axis : {"sagittal", "coronal", "axial"}, default="sagittal"
        Slicing axis of RAS-canonical ``(B, X, Y, Z)`` volumes: sagittal
        slices are ``x[:, i]``, coronal ``x[:, :, j]``, axial ``x[:, :, :, k]``.
    embed_dim : int, default=32
        Size ``d`` of the slice embeddings (the encoder output is projected
        to it).
    pooling : {"mean", "max", "attention"}, default="attention"
        How slice embeddings are combined.
    position_embedding : {None, "learned", "sinusoidal"}, default="learned"
        Embedding of the slice index added to each slice embedding.
    n_slices : int, optional
        Slice count of the volumes; required by the learned position
        embedding.
    attention_heads : int, default=4
        Heads of the attention pooling.
    head_hidden : int or None, default=64
        Hidden units of the MLP head; ``None`` or 0 gives a linear head.
    dropout : float, default=0.0
        Dropout in the slice mixer and the head.
    freeze_encoder : bool, default=False
        Keep the encoder's weights (and batch-norm statistics) fixed.
    standardize : bool, default=True
        z-score each volume as a whole before slicing (the paper's input
        normalisation; idempotent on already z-scored input).
    feature_layer : str, optional
        Take slice features from an earlier layer of a named pretrained
        encoder; see :func:`slicelearn.nn.build_encoder`.
    feature_grid : int, default=1
        Average-pool the encoder's feature map to this grid per side; see
        :func:`slicelearn.nn.build_encoder`.

    Examples
    --------
    >>> import torch
    >>> from slicelearn.nn import SliceNet
    >>> net = SliceNet("cnn2d", n_slices=40, pooling="attention")
    >>> out = net(torch.randn(2, 40, 48, 36), return_details=True)
    >>> out.prediction.shape, out.slice_embeddings.shape, out.attention.shape
    (torch.Size([2, 1]), torch.Size([2, 40, 32]), torch.Size([2, 40]))
    """

    def __init__(
        self,
        encoder: str | nn.Module = "resnet18",
        weights: WeightsSpec = None,
        *,
        n_outputs: int = 1,
        axis: str = "sagittal",
        embed_dim: int = 32,
        pooling: str = "attention",
        position_embedding: str | None = "learned",
        n_slices: int | None = None,
        attention_heads: int = 4,
        head_hidden: int | None = 64,
        dropout: float = 0.0,
        freeze_encoder: bool = False,
        standardize: bool = True,
        feature_layer: str | None = None,
        feature_grid: int = 1,
    ) -> None:
        super().__init__()
        self.axis = axis
        self.slice_dim = slice_axis_dim(axis)
        self.standardize = standardize
        self.freeze_encoder = freeze_encoder
        self.encoder = build_encoder(
            encoder, weights, feature_layer=feature_layer, feature_grid=feature_grid
        )
        self.projection = nn.Linear(self.encoder.out_features, embed_dim)
        # Encoder features come at any scale (EfficientNet's are ~0.07); unit-scale
        # tokens keep the content comparable with the position embedding.
        self.embedding_norm = nn.LayerNorm(embed_dim)
        self.position = build_position_embedding(position_embedding, n_slices, embed_dim)
        self.mixer = SliceMixer(embed_dim, dropout)
        self.pooling = build_pooling(pooling, embed_dim, attention_heads)
        if head_hidden:
            self.head = nn.Sequential(
                nn.Linear(embed_dim, head_hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(head_hidden, n_outputs),
            )
        else:
            self.head = nn.Sequential(nn.Linear(embed_dim, n_outputs))
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    @property
    def output_layer(self) -> nn.Linear:
        """The last linear layer, whose bias a regressor sets to the target mean."""
        return self.head[-1]

    def train(self, mode: bool = True) -> SliceNet:
        super().train(mode)
        if self.freeze_encoder:
            # A frozen encoder must not update its batch-norm statistics either.
            self.encoder.eval()
        return self

    def to_slices(self, volumes: torch.Tensor) -> torch.Tensor:
        """Turn ``(B, X, Y, Z)`` or ``(B, 1, X, Y, Z)`` volumes into ``(B, S, H, W)`` slices."""
        if volumes.ndim == 5:
            if volumes.shape[1] != 1:
                raise ValueError(
                    "Expected one channel in (B, 1, X, Y, Z) input, "
                    f"got shape {tuple(volumes.shape)}."
                )
            volumes = volumes[:, 0]
        if volumes.ndim != 4:
            raise ValueError(
                "Expected volumes of shape (B, X, Y, Z) or (B, 1, X, Y, Z), "
                f"got {tuple(volumes.shape)}."
            )
        dtype = self.projection.weight.dtype
        volumes = volumes.to(dtype=dtype)
        if self.standardize:
            flat = volumes.flatten(1)
            mean = flat.mean(dim=1).view(-1, 1, 1, 1)
            std = flat.std(dim=1).view(-1, 1, 1, 1)
            volumes = (volumes - mean) / (std + 1e-6)
        return volumes.movedim(self.slice_dim, 1)

    def encode(self, volumes: torch.Tensor) -> torch.Tensor:
        """Raw encoder features ``(B, S, F)`` of every slice (before the projection)."""
        slices = self.to_slices(volumes)
        batch, n_slices, height, width = slices.shape
        min_size = getattr(self.encoder, "min_input_size", 0)
        if min(height, width) < min_size:
            raise ValueError(
                f"The encoder needs slices of at least {min_size}x{min_size}; "
                f"{self.axis} slices of this input are {height}x{width}."
            )
        features = self.encoder(slices.reshape(batch * n_slices, 1, height, width))
        return features.view(batch, n_slices, -1)

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        """Slice tokens ``(B, S, embed_dim)`` from encoder features ``(B, S, F)``."""
        tokens = self.embedding_norm(self.projection(features))
        return self.mixer(self.position(tokens))

    def embed_slices(self, volumes: torch.Tensor) -> torch.Tensor:
        """Slice tokens ``(B, S, embed_dim)`` as they enter the pooling."""
        return self.embed_features(self.encode(volumes))

    def forward(
        self, volumes: torch.Tensor, return_details: bool = False
    ) -> torch.Tensor | SliceNetOutput:
        """Predict from a batch of volumes (or of precomputed encoder features).

        Parameters
        ----------
        volumes : Tensor of shape (B, X, Y, Z) or (B, 1, X, Y, Z)
            Volumes; or ``(B, S, F)`` slice features from :meth:`encode`, which
            a frozen encoder lets one compute once and reuse every epoch.
        return_details : bool, default=False
            Also return the slice embeddings and attention weights.

        Returns
        -------
        Tensor of shape (B, n_outputs), or :class:`SliceNetOutput`.
        """
        if volumes.ndim == 3:
            if volumes.shape[-1] != self.projection.in_features:
                raise ValueError(
                    "Expected volumes (B, X, Y, Z) or (B, 1, X, Y, Z), or encoder features "
                    f"(B, S, {self.projection.in_features}); got {tuple(volumes.shape)}."
                )
            features = volumes.to(self.projection.weight.dtype)
        else:
            features = self.encode(volumes)
        tokens = self.embed_features(features)
        pooled, attention = self.pooling(tokens)
        prediction = self.head(pooled)
        if return_details:
            return SliceNetOutput(prediction, tokens, attention)
        return prediction
