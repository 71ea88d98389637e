"""The 2D-slice set network: a plain ``nn.Module``, usable without scikit-learn.

A volume is cut into all of its slices along one axis; one shared 2D encoder
embeds every slice, projected to ``embed_dim`` and layer-normalised; a
position embedding of the slice index is added; a per-slice MLP mixes
position and content; a permutation-invariant pooling
combines the slices; a small head predicts the target (Gupta et al., ISBI
2021 and 2023).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .._validation import BOOLEAN, Interval, Options, Satisfies, validate_params
from .encoders import FEATURE_LAYERS, WeightsSpec, build_encoder
from .pooling import POOLINGS, build_pooling
from .position import POSITION_EMBEDDINGS, build_position_embedding

__all__ = ["AXES", "SliceMixer", "SliceNet", "SliceNetOutput", "slice_axis_dim"]


def _fuse_batchnorm(encoder: nn.Module) -> nn.Module | None:
    """A copy of ``encoder`` with eval-mode batch norms folded into their convolutions.

    One dry run on a small slice records which batch norm reads which
    convolution's output; each such pair becomes one convolution with folded
    weight and bias, and the batch norm is replaced by what it does after
    normalising (nothing, or timm's fused activation). Returns None when there
    is nothing to fold.
    """
    fused = copy.deepcopy(encoder).eval().requires_grad_(False)
    produced: dict[int, tuple[nn.Module, torch.Tensor]] = {}
    pairs: list[tuple[nn.Conv2d, nn.modules.batchnorm._BatchNorm]] = []

    def after_conv(module, _inputs, output):
        produced[id(output)] = (module, output)  # keep the tensor alive: ids stay unique

    def before_norm(module, inputs, _output):
        source = produced.get(id(inputs[0]))
        if source is not None and module.track_running_stats:
            pairs.append((source[0], module))

    hooks = []
    for module in fused.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(after_conv))
        elif isinstance(module, nn.BatchNorm2d):
            hooks.append(module.register_forward_hook(before_norm))
    try:
        first = next(m for m in fused.modules() if isinstance(m, nn.Conv2d))
        with torch.no_grad():
            fused(torch.zeros(1, first.in_channels, 64, 64))
    except (StopIteration, RuntimeError, ValueError):
        return None
    finally:
        for hook in hooks:
            hook.remove()
    convs = [conv for conv, _ in pairs]
    if not pairs or len(set(map(id, convs))) != len(convs):
        return None  # nothing to fold, or a convolution shared by two norms
    parents = {
        id(child): (parent, name)
        for parent in fused.modules()
        for name, child in parent.named_children()
    }
    with torch.no_grad():
        for conv, norm in pairs:
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias)
            conv.bias.requires_grad_(False)
            # timm's BatchNormAct2d applies dropout and an activation after normalising.
            rest = [m for m in (getattr(norm, "drop", None), getattr(norm, "act", None)) if m]
            parent, name = parents[id(norm)]
            setattr(parent, name, nn.Sequential(*rest) if rest else nn.Identity())
    return fused


#: Most slices per encoder batch in gradient-free evaluation on the CPU. Each
#: volume is encoded on its own, in the fewest chunks of at most this many
#: slices, of equal size (:func:`volume_chunks`): exact (in eval mode each
#: slice is encoded on its own), it bounds prediction memory for any batch
#: size. A 2 mm volume's 91 to 109 slices form one chunk: on an AMD EPYC with
#: 2 threads, ResNet-18 inference on 91 slices of 109 x 91 ran 1.06x to 1.16x
#: faster in one chunk than in chunks of 32 (three runs, best of 3 or 4
#: interleaved repeats each): the deep layers' small maps make poor matrix
#: blocks when few slices share them.
CPU_EVAL_CHUNK = 128


def volume_chunks(n_slices: int, limit: int) -> list[tuple[int, int]]:
    """``(begin, end)`` of the fewest equal chunks of at most ``limit`` slices.

    >>> volume_chunks(91, 128), volume_chunks(182, 128), volume_chunks(10, 4)
    ([(0, 91)], [(0, 91), (91, 182)], [(0, 4), (4, 7), (7, 10)])
    """
    count = -(-n_slices // limit)
    size, extra = divmod(n_slices, count)
    bounds, begin = [], 0
    for index in range(count):
        end = begin + size + (index < extra)
        bounds.append((begin, end))
        begin = end
    return bounds


def evaluate_volume_slices(
    encoder: nn.Module, slices: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """Gradient-free encoder features ``(S, F)`` of one volume's slices ``(S, C, H, W)``.

    How :class:`SliceNet` evaluates. Slices that hold a single value (the
    empty border of a registered or skull-stripped scan) give the same
    features whenever that value is the same, so each distinct one is encoded
    once: an exact saving in evaluation, where batch norm uses its running
    statistics. The rest run in chunks of ``chunk_size`` slices, or without it
    on the CPU in the fewest equal chunks of at most :data:`CPU_EVAL_CHUNK`
    (:func:`volume_chunks`), on a GPU all at once.
    """
    n_slices = len(slices)
    pixels = slices.flatten(1)
    constant = (pixels.amax(1) == pixels.amin(1)).nonzero().squeeze(1)
    rows = None
    if len(constant) > 1:
        # Every slice's source: itself, or the first constant slice of its value.
        source = torch.arange(n_slices, device=slices.device)
        _, value = torch.unique(pixels[constant, 0], return_inverse=True)
        first = torch.full((int(value.max()) + 1,), n_slices, device=slices.device)
        first = first.scatter_reduce(0, value, constant, reduce="amin")
        source[constant] = first[value]
        encoded = source.unique()
        rows = torch.searchsorted(encoded, source)
        slices = slices[encoded]
    if chunk_size is not None:
        bounds = [(b, min(b + chunk_size, len(slices))) for b in range(0, len(slices), chunk_size)]
    elif slices.device.type == "cpu":
        bounds = volume_chunks(len(slices), CPU_EVAL_CHUNK)
    else:
        bounds = [(0, len(slices))]
    outputs = [encoder(slices[begin:end]) for begin, end in bounds]
    features = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
    return features if rows is None else features[rows]


#: Slicing axes of RAS-canonical volumes ``(B, X, Y, Z)``, with their array dimension.
AXES = {"sagittal": 1, "coronal": 2, "axial": 3}


#: What each of SliceNet's parameters accepts (slicelearn._validation), checked
#: when it is built; the network estimators check the ones they share at fit.
#: ``slice_range`` and ``crop_box`` are checked by their own rules below.
PARAMETER_CONSTRAINTS: dict[str, list] = {
    "encoder": [str, nn.Module, Satisfies(callable, "a module class")],
    "weights": [str, os.PathLike, None],
    "n_outputs": [Interval("int", 1)],
    "axis": [Options(*AXES)],
    "embed_dim": [Interval("int", 1)],
    "pooling": [Options(*POOLINGS)],
    "position_embedding": [Options(*POSITION_EMBEDDINGS)],
    "n_slices": [Interval("int", 1), None],
    "attention_heads": [Interval("int", 1)],
    "head_hidden": [Interval("int", 1), None],
    "dropout": [Interval("real", 0, 1, closed="left")],
    "freeze_encoder": [BOOLEAN, str],
    "standardize": [BOOLEAN],
    "feature_layer": [str, None],
    "feature_grid": [Interval("int", 1)],
    "slice_scale": [Interval("real", 0.25, 4)],
    "train_slices": [Interval("int", 1), Interval("real", 0, 1, closed="right"), None],
    "slice_chunk_size": [Interval("int", 1), None],
    "checkpoint_slices": [BOOLEAN],
    "channels_last": [BOOLEAN],
    "fuse_batchnorm": [BOOLEAN],
}


def _check_crop_box(box) -> tuple[tuple[int, int], ...]:
    try:
        ranges = tuple((int(start), int(stop)) for start, stop in box)
    except (TypeError, ValueError):
        raise ValueError(f"crop_box must be three (start, stop) pairs, got {box!r}.") from None
    if len(ranges) != 3 or any(not 0 <= a < b for a, b in ranges):
        raise ValueError(
            f"crop_box must be three (start, stop) pairs with 0 <= start < stop, got {box!r}."
        )
    return ranges


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

    Parameters
    ----------
    embed_dim : int
        Size of the slice tokens.
    dropout : float, default=0.0
        Dropout after the hidden layer.
    expansion : int, default=2
        Hidden width as a multiple of ``embed_dim``.
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
    encoder : str, nn.Module or module class, default="resnet18"
        Slice encoder name, module or module class; see
        :func:`slicelearn.nn.build_encoder`.
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
    freeze_encoder : bool or str, default=False
        ``True`` keeps the whole encoder fixed. A layer name (one of
        :data:`slicelearn.nn.FEATURE_LAYERS` for the encoder, e.g. ``"layer3"``
        or ``"blocks.2"``) keeps the encoder fixed up to and including that
        layer and trains the layers after it (partial fine-tuning): the fixed
        trunk's feature maps can then be computed once per slice and reused
        (:meth:`encode_frozen`, ``forward(trunk_maps=...)``). Fixed layers
        keep their batch-norm statistics too.
    standardize : bool, default=True
        z-score each volume as a whole before slicing (the paper's input
        normalisation; idempotent on already z-scored input).
    feature_layer : str, optional
        Take slice features from an earlier layer of a named pretrained
        encoder; see :func:`slicelearn.nn.build_encoder`.
    feature_grid : int, default=1
        Average-pool the encoder's feature map to this grid per side; see
        :func:`slicelearn.nn.build_encoder`.
    slice_scale : float, default=1.0
        Resize every slice by this factor (bilinear) before the encoder.
        ImageNet encoders learned objects at about 224 pixels; a 2 mm
        sagittal slice is about 117 x 95, so 1.5 or 2 shows them the brain
        at a scale nearer their photographs' (no new information, more
        encoder work: about the factor squared).
    train_slices : int or float, optional
        Stochastic slice sampling: in training mode, each volume contributes a
        random subset of its slices (this many, or this fraction), drawn anew
        at every step and position-embedded at their true indices. Evaluation
        always uses every slice. Changes the algorithm (less encoder work per
        step, a noisier gradient).
    slice_range : (int, int), optional
        Keep only slices ``start:stop`` along ``axis`` (e.g. without the empty
        border slices); position indices stay those of the full volume.
    crop_box : ((int, int), (int, int), (int, int)), optional
        Cut every volume to ``x0:x1, y0:y1, z0:z1`` before slicing (e.g. the
        box that holds the brain, :func:`slicelearn.data.slices.occupied_box`):
        fewer slices and fewer pixels per slice. The box is cut before
        ``standardize``, so nothing outside it reaches the network. Position
        indices stay those of the full volume. Replaces ``slice_range``.
    slice_chunk_size : int, optional
        Run the encoder on at most this many slices at a time, which bounds
        activation memory. Exact in evaluation; in training, batch-norm
        statistics then come from each chunk. Without it, gradient-free
        evaluation on the CPU encodes each volume in equal chunks of at most
        :data:`CPU_EVAL_CHUNK` slices (exact) and training runs all slices at
        once.
    checkpoint_slices : bool, default=False
        With ``slice_chunk_size``, recompute each chunk's activations in the
        backward pass instead of storing them (activation checkpointing):
        encoder memory of one chunk instead of all slices, for about one more
        forward pass of compute.
    channels_last : bool, default=True
        Run the encoder in channels-last memory format (an exact rewrite that
        is faster for convolutions on CPU and GPU).
    fuse_batchnorm : bool, default=True
        In evaluation mode without gradients, run a copy of the encoder whose
        batch norms are folded into the preceding convolutions (exact up to
        float rounding; rebuilt whenever the weights change).

    Attributes
    ----------
    output_shift, output_scale : torch.Tensor of shape (n_outputs,)
        Fixed buffers (saved with the weights, not trained): the prediction is
        ``head(pooled) * output_scale + output_shift``. Identity by default;
        :class:`~slicelearn.SliceCNNRegressor` sets them to its training
        targets' mean and standard deviation, so the head works in standard
        units.

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
        encoder: str | nn.Module | Callable[[], nn.Module] = "resnet18",
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
        freeze_encoder: bool | str = False,
        standardize: bool = True,
        feature_layer: str | None = None,
        feature_grid: int = 1,
        slice_scale: float = 1.0,
        train_slices: int | float | None = None,
        slice_range: tuple[int, int] | None = None,
        crop_box: tuple[tuple[int, int], ...] | None = None,
        slice_chunk_size: int | None = None,
        checkpoint_slices: bool = False,
        channels_last: bool = True,
        fuse_batchnorm: bool = True,
    ) -> None:
        given = {name: value for name, value in locals().items() if name != "self"}
        validate_params("SliceNet", given, PARAMETER_CONSTRAINTS)
        super().__init__()
        self.axis = axis
        self.slice_dim = slice_axis_dim(axis)
        self.standardize = standardize
        self.slice_scale = float(slice_scale)
        self.freeze_encoder = freeze_encoder
        self.train_slices = train_slices
        self.slice_range = (
            None if slice_range is None else (int(slice_range[0]), int(slice_range[1]))
        )
        self.crop_box = None if crop_box is None else _check_crop_box(crop_box)
        if self.crop_box is not None:
            if slice_range is not None:
                raise ValueError("Give crop_box or slice_range, not both.")
            # The kept slices' true indices, for the position embedding.
            self.slice_range = self.crop_box[self.slice_dim - 1]
        self.slice_chunk_size = slice_chunk_size
        self.checkpoint_slices = checkpoint_slices
        self.channels_last = channels_last
        self.fuse_batchnorm = fuse_batchnorm
        # (weight versions, fused copy); not a submodule, so never saved or trained.
        self._fused: tuple[tuple[int, ...], nn.Module | None] | None = None
        partial = isinstance(freeze_encoder, str)
        if partial and feature_layer is None:
            layers = FEATURE_LAYERS.get(encoder) if isinstance(encoder, str) else None
            if layers is None:
                raise ValueError(
                    f"Partial freezing (freeze_encoder={freeze_encoder!r}) needs a named "
                    f"encoder with layers: {', '.join(FEATURE_LAYERS)}."
                )
            feature_layer = layers[-1]
        self.encoder = build_encoder(
            encoder, weights, feature_layer=feature_layer, feature_grid=feature_grid
        )
        #: Trunk modules kept fixed by partial freezing (0 without it).
        self.frozen_stages = 0
        if partial:
            names = self.encoder.stage_names
            choices = [n for n in names[:-1] if n in FEATURE_LAYERS.get(encoder, ())]
            if freeze_encoder not in choices:
                raise ValueError(
                    f"freeze_encoder={freeze_encoder!r} must be a layer before the last one "
                    f"used; choose one of {', '.join(choices)}."
                )
            self.frozen_stages = names.index(freeze_encoder) + 1
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
        # The head's output in the target's units: ``head * output_scale +
        # output_shift``. A regressor sets these to its training targets' mean
        # and standard deviation, so the head works in standard units: Adam
        # moves each weight by about ``lr`` a step whatever the loss's scale,
        # and a head in years had to grow its weights ~16-fold first.
        self.register_buffer("output_shift", torch.zeros(n_outputs))
        self.register_buffer("output_scale", torch.ones(n_outputs))
        if freeze_encoder:
            self.frozen_part.requires_grad_(False)
            self.frozen_part.eval()
        if channels_last:
            self.encoder.to(memory_format=torch.channels_last)

    @property
    def output_layer(self) -> nn.Linear:
        """The head's last linear layer (before ``output_scale`` and ``output_shift``)."""
        return self.head[-1]

    # Version 2 added output_shift and output_scale; a version-1 state (no
    # such buffers) loads with the identity, which is what it computed.
    _version = 2

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        if local_metadata.get("version", 1) < 2:
            for name, fill in (("output_shift", 0.0), ("output_scale", 1.0)):
                state_dict.setdefault(prefix + name, torch.full_like(getattr(self, name), fill))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    @property
    def frozen_part(self) -> nn.Module:
        """The fixed part of the encoder: all of it, or the trunk of partial freezing."""
        if self.frozen_stages:
            return self.encoder.trunk[: self.frozen_stages]
        return self.encoder

    def train(self, mode: bool = True) -> SliceNet:
        if not self.freeze_encoder:
            return super().train(mode)
        # A frozen encoder must not update its batch-norm statistics either, so
        # it stays in eval mode. skorch switches modes twice a batch; walking
        # the frozen encoder's ~150 modules each time cost a quarter of a
        # frozen-encoder fit in the gallery's profile, so it is left alone.
        if self.frozen_stages:
            frozen, on_path = list(self.frozen_part), (self.encoder, self.encoder.trunk)
        else:
            frozen, on_path = [self.encoder], ()
        _train_around(self, mode, frozen, on_path)
        return self

    def encode_frozen(self, volumes: torch.Tensor) -> torch.Tensor:
        """What a fixed encoder allows to compute once per volume.

        Slice features ``(B, S, F)`` with ``freeze_encoder=True``; the frozen
        trunk's feature maps ``(B, S, C, h, w)`` with partial freezing.
        """
        if not self.frozen_stages:
            return self.encode(volumes)
        slices = self.to_slices(volumes)
        # One volume at a time, as in forward: its maps do not depend on the batch.
        maps = torch.cat([self.frozen_part(self._encoder_input(one[None])) for one in slices])
        return maps.reshape(*slices.shape[:2], *maps.shape[1:])

    def _encoder_input(self, slices: torch.Tensor) -> torch.Tensor:
        """``(B, S, H, W)`` slices as one ``(B*S, 1, H, W)`` encoder batch, ``slice_scale``d."""
        flat = slices.flatten(0, 1).unsqueeze(1)
        if self.slice_scale != 1.0:
            flat = F.interpolate(
                flat, scale_factor=self.slice_scale, mode="bilinear", align_corners=False
            )
        if self.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)
        return flat

    def _features_from_trunk(self, maps: torch.Tensor) -> torch.Tensor:
        """Slice features ``(B, S, F)`` from frozen-trunk maps ``(B, S, C, h, w)``."""
        batch, n_slices = maps.shape[:2]
        flat = maps.flatten(0, 1)
        if self.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)
        trainable = self.encoder.trunk[self.frozen_stages :]
        features = self.encoder.pool(trainable(flat)).flatten(1)
        return features.view(batch, n_slices, -1)

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
        if self.crop_box is not None:
            # Before standardising: nothing outside the box reaches the network.
            if any(stop > size for (_, stop), size in zip(self.crop_box, volumes.shape[1:])):
                raise ValueError(
                    f"The model crops volumes to the box {self.crop_box}, but the input "
                    f"volumes are {tuple(volumes.shape[1:])}."
                )
            (x0, x1), (y0, y1), (z0, z1) = self.crop_box
            volumes = volumes[:, x0:x1, y0:y1, z0:z1]
        if self.standardize:
            # Statistics in float64 where the device has it: a float32 variance
            # overflows for intensities above ~1e19.
            wide = torch.float64 if volumes.device.type in ("cpu", "cuda") else dtype
            flat = volumes.flatten(1).to(wide)
            mean = flat.mean(dim=1).view(-1, 1, 1, 1)
            std = flat.std(dim=1, correction=0).view(-1, 1, 1, 1)
            volumes = ((volumes.to(wide) - mean) / (std + 1e-6)).to(dtype)
        slices = volumes.movedim(self.slice_dim, 1)
        if self.slice_range is not None and self.crop_box is None:
            start, stop = self.slice_range
            if stop > slices.shape[1]:
                raise ValueError(
                    f"The model keeps {self.axis} slices {start}:{stop}, but the input has "
                    f"only {slices.shape[1]}."
                )
            slices = slices[:, start:stop]
        return slices

    def encode(self, volumes: torch.Tensor) -> torch.Tensor:
        """Raw encoder features ``(B, S, F)`` of every slice (before the projection)."""
        return self.encode_slices(self.to_slices(volumes))

    def encode_slices(self, slices: torch.Tensor) -> torch.Tensor:
        """Encoder features ``(B, S, F)`` of slices ``(B, S, H, W)``, in chunks if asked."""
        batch, n_slices, height, width = slices.shape
        min_size = getattr(self.encoder, "min_input_size", 0)
        if min(int(height * self.slice_scale), int(width * self.slice_scale)) < min_size:
            scaled = "" if self.slice_scale == 1.0 else f" (x{self.slice_scale:g}: slice_scale)"
            raise ValueError(
                f"The encoder needs slices of at least {min_size}x{min_size}; "
                f"{self.axis} slices of this input are {height}x{width}{scaled}."
            )
        flat = self._encoder_input(slices)
        if not torch.is_grad_enabled() and not self.encoder.training:
            # Each volume on its own: its features are then computed the same
            # way whatever batch it comes in (see forward).
            encoder = self._inference_encoder()
            features = torch.cat(
                [
                    evaluate_volume_slices(
                        encoder, flat[v * n_slices : (v + 1) * n_slices], self.slice_chunk_size
                    )
                    for v in range(batch)
                ]
            )
            return features.view(batch, n_slices, -1)
        chunk = self.slice_chunk_size or len(flat)
        recompute = self.checkpoint_slices and torch.is_grad_enabled() and self.training
        outputs = []
        for begin in range(0, len(flat), chunk):
            part = flat[begin : begin + chunk]
            if recompute:
                outputs.append(checkpoint(self.encoder, part, use_reentrant=False))
            else:
                outputs.append(self.encoder(part))
        features = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        return features.view(batch, n_slices, -1)

    def __getstate__(self) -> dict:
        # The fused copy is a cache: rebuilt on demand, never pickled.
        state = self.__dict__.copy()
        state["_fused"] = None
        return state

    def _inference_encoder(self) -> nn.Module:
        """The encoder with batch norms folded into convolutions, for gradient-free eval."""
        if not self.fuse_batchnorm:
            return self.encoder
        state = [*self.encoder.parameters(), *self.encoder.buffers()]
        versions = tuple(t._version for t in state) + tuple(t.data_ptr() for t in state)
        if self._fused is None or self._fused[0] != versions:
            self._fused = (versions, _fuse_batchnorm(self.encoder))
        return self._fused[1] or self.encoder

    def embed_features(
        self, features: torch.Tensor, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Slice tokens ``(B, S, embed_dim)`` from encoder features ``(B, S, F)``.

        ``positions`` (B, S) holds each slice's index in the volume when the
        slices are a subset; by default they are ``slice_range[0]`` onwards.
        """
        if positions is None and self.slice_range is not None and self.slice_range[0] > 0:
            offset = torch.arange(features.shape[1], device=features.device) + self.slice_range[0]
            positions = offset.expand(features.shape[0], -1)
        tokens = self.embedding_norm(self.projection(features))
        return self.mixer(self.position(tokens, positions))

    def predict_from_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pool slice tokens ``(B, S, embed_dim)`` and apply the head.

        Returns the prediction ``(B, n_outputs)`` and the attention weights
        ``(B, S)`` (``None`` unless ``pooling="attention"``). Any subset of a
        volume's tokens may be given: the pooling is over the set.
        """
        pooled, attention = self.pooling(tokens)
        return self.head(pooled) * self.output_scale + self.output_shift, attention

    def _sampled(self, n_slices: int, batch: int, device) -> torch.Tensor | None:
        """Random sorted slice indices ``(B, k)`` for a training step, or None for all."""
        if not (self.training and self.train_slices):
            return None
        if isinstance(self.train_slices, float):
            keep = max(1, math.ceil(self.train_slices * n_slices))
        else:
            keep = self.train_slices
        if keep >= n_slices:
            return None
        scores = torch.rand(batch, n_slices, device=device)
        return scores.topk(keep, dim=1).indices.sort(dim=1).values

    def forward(
        self,
        volumes: torch.Tensor | None = None,
        return_details: bool = False,
        *,
        trunk_maps: torch.Tensor | None = None,
    ) -> torch.Tensor | SliceNetOutput:
        """Predict from a batch of volumes (or of precomputed encoder features).

        Parameters
        ----------
        volumes : Tensor of shape (B, X, Y, Z) or (B, 1, X, Y, Z)
            Volumes; or ``(B, S, F)`` slice features from :meth:`encode`, which
            a frozen encoder lets one compute once and reuse every epoch.
        return_details : bool, default=False
            Also return the slice embeddings and attention weights.
        trunk_maps : Tensor of shape (B, S, C, h, w), optional
            Instead of volumes, the frozen trunk's maps from
            :meth:`encode_frozen` (partial freezing).

        Returns
        -------
        Tensor of shape (B, n_outputs), or :class:`SliceNetOutput`.

        Notes
        -----
        In gradient-free evaluation, each volume of the batch runs on its own
        (its slices in chunks of a fixed size), so a volume's prediction is
        bitwise the same whatever else is in its batch: CPU convolution and
        matrix kernels choose their blocking, and so their summation order,
        by the size of the batch they are given.
        """
        given = trunk_maps if trunk_maps is not None else volumes
        if (
            given is not None
            and len(given) > 1
            and not self.training
            and not torch.is_grad_enabled()
        ):
            outputs = [
                self._forward_one(
                    None if trunk_maps is not None else given[i : i + 1],
                    return_details,
                    given[i : i + 1] if trunk_maps is not None else None,
                )
                for i in range(len(given))
            ]
            if not return_details:
                return torch.cat(outputs)
            attention = [o.attention for o in outputs]
            return SliceNetOutput(
                torch.cat([o.prediction for o in outputs]),
                torch.cat([o.slice_embeddings for o in outputs]),
                None if attention[0] is None else torch.cat(attention),
            )
        return self._forward_one(volumes, return_details, trunk_maps)

    def _forward_one(
        self,
        volumes: torch.Tensor | None,
        return_details: bool,
        trunk_maps: torch.Tensor | None,
    ) -> torch.Tensor | SliceNetOutput:
        """:meth:`forward` on the whole batch at once."""
        if trunk_maps is not None:
            if not self.frozen_stages:
                raise ValueError("trunk_maps needs partial freezing (freeze_encoder='<layer>').")
            chosen = self._sampled(trunk_maps.shape[1], trunk_maps.shape[0], trunk_maps.device)
            if chosen is not None:
                index = chosen.view(*chosen.shape, 1, 1, 1).expand(-1, -1, *trunk_maps.shape[2:])
                trunk_maps = trunk_maps.gather(1, index)
            features = self._features_from_trunk(trunk_maps.to(self.projection.weight.dtype))
        elif volumes is None:
            raise ValueError("Give volumes, encoder features or trunk_maps.")
        elif volumes.ndim == 3:
            if volumes.shape[-1] != self.projection.in_features:
                raise ValueError(
                    "Expected volumes (B, X, Y, Z) or (B, 1, X, Y, Z), or encoder features "
                    f"(B, S, {self.projection.in_features}); got {tuple(volumes.shape)}."
                )
            features = volumes.to(self.projection.weight.dtype)
            chosen = self._sampled(features.shape[1], features.shape[0], features.device)
            if chosen is not None:
                features = features.gather(1, chosen[..., None].expand(-1, -1, features.shape[2]))
        else:
            slices = self.to_slices(volumes)
            chosen = self._sampled(slices.shape[1], slices.shape[0], slices.device)
            if chosen is not None:
                index = chosen[..., None, None].expand(-1, -1, *slices.shape[2:])
                slices = slices.gather(1, index)
            features = self.encode_slices(slices)
        positions = None
        if chosen is not None:
            positions = chosen + (self.slice_range[0] if self.slice_range else 0)
        tokens = self.embed_features(features, positions)
        prediction, attention = self.predict_from_tokens(tokens)
        if return_details:
            return SliceNetOutput(prediction, tokens, attention)
        return prediction


def _train_around(
    module: nn.Module, mode: bool, frozen: list[nn.Module], on_path: tuple[nn.Module, ...]
) -> None:
    """``module.train(mode)``, except that the ``frozen`` modules are put in eval mode once."""
    module.training = mode
    for child in module.children():
        if any(child is part for part in frozen):
            if child.training:
                child.eval()
        elif any(child is ancestor for ancestor in on_path):
            _train_around(child, mode, frozen, on_path)
        else:
            child.train(mode)
