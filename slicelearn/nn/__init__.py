"""Torch modules: slice encoders, position embeddings, poolings and the slice network."""

from .encoders import (
    CNN2D,
    ENCODER_NAMES,
    FEATURE_LAYERS,
    PretrainedWeightsUnavailableError,
    TruncatedEncoder,
    build_encoder,
    efficientnet_lite0_weights_path,
    efficientnet_lite_weights_path,
    fold_rgb_stem,
)
from .pooling import POOLINGS, AttentionPooling, MaxPooling, MeanPooling, build_pooling
from .position import (
    POSITION_EMBEDDINGS,
    LearnedPositionEmbedding,
    SinusoidalPositionEmbedding,
    build_position_embedding,
)
from .slicenet import AXES, SliceMixer, SliceNet, SliceNetOutput

__all__ = [
    "AXES",
    "CNN2D",
    "ENCODER_NAMES",
    "FEATURE_LAYERS",
    "POOLINGS",
    "POSITION_EMBEDDINGS",
    "AttentionPooling",
    "LearnedPositionEmbedding",
    "MaxPooling",
    "MeanPooling",
    "PretrainedWeightsUnavailableError",
    "SinusoidalPositionEmbedding",
    "SliceMixer",
    "SliceNet",
    "SliceNetOutput",
    "TruncatedEncoder",
    "build_encoder",
    "build_pooling",
    "build_position_embedding",
    "efficientnet_lite0_weights_path",
    "efficientnet_lite_weights_path",
    "fold_rgb_stem",
]
