"""Torch modules: slice encoders, position embeddings, poolings and the slice network;
deepbet's 3D brain encoder."""

from .deepbet_encoder import DEEPBET_LAYERS, DeepbetEncoder, deepbet_input, load_deepbet_encoder
from .encoders import (
    CNN2D,
    ENCODER_NAMES,
    FEATURE_LAYERS,
    EncoderSpec,
    PretrainedWeightsUnavailableError,
    TruncatedEncoder,
    build_encoder,
    efficientnet_lite0_weights_path,
    efficientnet_lite_weights_path,
    fold_rgb_stem,
    get_encoder_spec,
    list_encoders,
    pool_before_relu,
    register_encoder,
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
    "DEEPBET_LAYERS",
    "ENCODER_NAMES",
    "FEATURE_LAYERS",
    "POOLINGS",
    "POSITION_EMBEDDINGS",
    "AttentionPooling",
    "DeepbetEncoder",
    "EncoderSpec",
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
    "deepbet_input",
    "efficientnet_lite0_weights_path",
    "efficientnet_lite_weights_path",
    "fold_rgb_stem",
    "get_encoder_spec",
    "list_encoders",
    "load_deepbet_encoder",
    "pool_before_relu",
    "register_encoder",
]
