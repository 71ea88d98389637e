"""Slice encoders: ImageNet weights, stem folding, registry, user modules and weight files."""

from __future__ import annotations

import copy
import re
import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision
from skimage import data
from torch import nn

from slicelearn.nn import (
    CNN2D,
    ENCODER_NAMES,
    PretrainedWeightsUnavailableError,
    build_encoder,
    efficientnet_lite_weights_path,
    fold_rgb_stem,
    pool_before_relu,
)
from slicelearn.nn.encoders import _match_by_position, torchvision_cache_file

ESPRESSO, CUP, COFFEE_MUG = 967, 968, 504
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def _first_conv(module: nn.Module) -> nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d))


def _rgb_224(image) -> torch.Tensor:
    """An (H, W, 3) uint8 image as a (1, 3, 224, 224) float tensor in [0, 255]."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    return F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)


def _top5(model: nn.Module, x: torch.Tensor) -> set[int]:
    with torch.no_grad():
        logits = model(x)
    return set(logits.topk(5, dim=1).indices[0].tolist())


def _assert_close_relative(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4):
    assert actual.shape == expected.shape
    scale = expected.abs().max().item()
    assert scale > 0
    diff = (actual - expected).abs().max().item()
    assert diff <= rtol * scale, f"max abs diff {diff:.3g} > {rtol} * {scale:.3g}"


def _lite_rgb(name: str) -> nn.Module:
    """timm's RGB EfficientNet-Lite with the offline ImageNet weights, via the package."""
    import timm

    model = timm.create_model(f"tf_{name}", pretrained=False)
    state = torch.load(efficientnet_lite_weights_path(name), map_location="cpu", weights_only=True)
    model.load_state_dict(_match_by_position(model.state_dict(), state))
    return model.eval()


@pytest.fixture(scope="module")
def lite0_rgb() -> nn.Module:
    return _lite_rgb("efficientnet_lite0")


# 1. ImageNet proof for the EfficientNet-Lite encoders -------------------------------------


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_efficientnet_lite_offline_weights_classify_imagenet_images(name):
    model = _lite_rgb(name)
    coffee = _rgb_224(data.coffee()) / 127.5 - 1
    chelsea = _rgb_224(data.chelsea()) / 127.5 - 1
    coffee_top5 = _top5(model, coffee)
    chelsea_top5 = _top5(model, chelsea)
    assert coffee_top5 & {ESPRESSO, CUP, COFFEE_MUG}, coffee_top5
    assert chelsea_top5 & CATS, chelsea_top5
    # The package's folded grey encoder is built from the same weights.
    encoder = build_encoder(name, weights="imagenet").eval()
    grey = _rgb_224(data.coffee()).mean(dim=1, keepdim=True) / 127.5 - 1
    with torch.no_grad():
        expected = model.forward_head(
            model.forward_features(grey.repeat(1, 3, 1, 1)), pre_logits=True
        )
        _assert_close_relative(encoder(grey), expected)


def test_efficientnet_lite0_encoder_equals_rgb_model_on_grey_copies(lite0_rgb):
    encoder = build_encoder("efficientnet_lite0", weights="imagenet").eval()
    assert encoder.out_features == 1280
    assert _first_conv(encoder).in_channels == 1
    assert _first_conv(encoder).weight.shape[1] == 1

    grey = _rgb_224(data.coffee()).mean(dim=1, keepdim=True) / 127.5 - 1
    with torch.no_grad():
        features = encoder(grey)
        expected = lite0_rgb.forward_head(
            lite0_rgb.forward_features(grey.repeat(1, 3, 1, 1)), pre_logits=True
        )
    assert features.shape == (1, 1280)
    _assert_close_relative(features, expected)


# 2. ImageNet proof for ResNet-18 (only with the torchvision checkpoint cached) -------------


def test_resnet18_imagenet_weights_classify_imagenet_images():
    weights_enum = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cache_file = torchvision_cache_file(weights_enum)
    if not cache_file.is_file():
        pytest.skip(f"ResNet-18 ImageNet weights are not cached at {cache_file}")

    from slicelearn.nn.encoders import _download_torchvision_weights

    model = torchvision.models.resnet18()
    model.load_state_dict(_download_torchvision_weights("resnet18", weights_enum))
    model.eval()

    def normalise(x: torch.Tensor) -> torch.Tensor:
        return (x / 255 - IMAGENET_MEAN) / IMAGENET_STD

    coffee = normalise(_rgb_224(data.coffee()))
    chelsea = normalise(_rgb_224(data.chelsea()))
    coffee_top5 = _top5(model, coffee)
    chelsea_top5 = _top5(model, chelsea)
    assert coffee_top5 & {ESPRESSO, CUP, COFFEE_MUG}, coffee_top5
    assert chelsea_top5 & CATS, chelsea_top5

    # The package's folded encoder equals the RGB backbone fed with grey copies.
    encoder = build_encoder("resnet18", weights="imagenet").eval()
    assert encoder.out_features == 512
    assert _first_conv(encoder).in_channels == 1
    model.fc = nn.Identity()
    grey = _rgb_224(data.coffee()).mean(dim=1, keepdim=True) / 255
    with torch.no_grad():
        _assert_close_relative(encoder(grey), model(grey.repeat(1, 3, 1, 1)))


# 3. Missing ResNet weights offline --------------------------------------------------------


def test_resnet_imagenet_without_cache_raises_helpful_error(monkeypatch, tmp_path):
    downloads: list[tuple[str, str]] = []

    def offline_download(url, dst, *args, **kwargs):
        downloads.append((url, str(dst)))
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline_download)

    expected_cache = tmp_path / "checkpoints" / "resnet18-f37072fd.pth"
    assert torchvision_cache_file(torchvision.models.ResNet18_Weights.IMAGENET1K_V1) == (
        expected_cache
    )
    with pytest.raises(PretrainedWeightsUnavailableError) as info:
        build_encoder("resnet18", weights="imagenet")
    message = str(info.value)
    assert str(expected_cache) in message
    assert "efficientnet_lite0" in message
    assert "offline" in message
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    # The cache under tmp_path was looked up and found empty, so a download was attempted.
    assert len(downloads) == 1
    assert downloads[0][1].startswith(str(tmp_path))


def test_resnet_imagenet_error_when_get_state_dict_fails(monkeypatch, tmp_path):
    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torchvision.models.ResNet34_Weights, "get_state_dict", offline)
    with pytest.raises(PretrainedWeightsUnavailableError, match="efficientnet_lite0") as info:
        build_encoder("resnet34", weights="imagenet")
    assert str(tmp_path / "checkpoints" / "resnet34-b627a593.pth") in str(info.value)


# 4. Folding the RGB stem ------------------------------------------------------------------


def test_fold_rgb_stem_is_equivalent_to_grey_copies():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    folded = fold_rgb_stem(copy.deepcopy(model)).eval()
    assert model.conv1.in_channels == 3
    assert folded.conv1.in_channels == 1
    assert folded.conv1.weight.shape == (64, 1, 7, 7)
    torch.testing.assert_close(folded.conv1.weight, model.conv1.weight.sum(1, keepdim=True))

    x1 = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        expected = model(x1.repeat(1, 3, 1, 1))
        actual = folded(x1)
    _assert_close_relative(actual, expected)


def test_fold_rgb_stem_returns_the_same_module():
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert fold_rgb_stem(model) is model
    assert model[0].in_channels == 1


def test_pool_before_relu_keeps_values_and_gradients_in_training():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().train()
    rewritten = copy.deepcopy(model)
    assert pool_before_relu(rewritten)
    assert isinstance(rewritten.relu, nn.Identity)
    assert [type(m) for m in rewritten.maxpool] == [nn.MaxPool2d, nn.ReLU]
    x = torch.randn(3, 3, 48, 40)
    expected, actual = model(x), rewritten(x)
    # Max and ReLU commute exactly: the same numbers, not merely close ones.
    assert torch.equal(actual, expected)
    expected.square().sum().backward()
    actual.square().sum().backward()
    for (name, a), b in zip(model.named_parameters(), rewritten.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6, msg=name)
    assert model.state_dict().keys() == rewritten.state_dict().keys()


def test_pool_before_relu_leaves_other_modules_and_rewritten_resnets_alone():
    class CustomForward(torchvision.models.ResNet):
        def _forward_impl(self, x):
            return super()._forward_impl(x)

    custom = CustomForward(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1])
    assert not pool_before_relu(custom)
    assert isinstance(custom.relu, nn.ReLU)
    assert not pool_before_relu(nn.Sequential(nn.ReLU(), nn.MaxPool2d(2)))
    model = torchvision.models.resnet18()
    assert pool_before_relu(model)
    assert not pool_before_relu(model)


def test_named_resnets_are_built_with_the_stem_pooled_first():
    encoder = build_encoder("resnet18", weights=None)
    assert isinstance(encoder.relu, nn.Identity)
    truncated = build_encoder("resnet18", weights=None, feature_layer="layer2", feature_grid=2)
    assert truncated(torch.zeros(2, 1, 64, 64)).shape == (2, 128 * 4)


def test_fold_rgb_stem_rejects_single_channel_stem():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 3, 3), nn.Conv2d(3, 4, 1))
    with pytest.raises(ValueError, match="3 channels"):
        fold_rgb_stem(model)
    assert model[0].in_channels == 1
    assert model[3].in_channels == 3


# 5. CNN2D -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(32, 32), (37, 45)])
def test_cnn2d_output_shape(size):
    model = CNN2D().eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, *size))
    assert out.shape == (3, 64)
    assert torch.isfinite(out).all()


def test_cnn2d_rejects_slices_smaller_than_32_pixels():
    with pytest.raises(ValueError, match=r"32x32.*31x40"):
        CNN2D()(torch.zeros(1, 1, 31, 40))


def test_cnn2d_architecture():
    model = CNN2D()
    modules = list(model.modules())
    convs = [m for m in modules if isinstance(m, nn.Conv2d)]
    norms = [m for m in modules if isinstance(m, nn.InstanceNorm2d)]
    pools = [m for m in modules if isinstance(m, nn.MaxPool2d)]
    assert len(norms) == 5
    assert len(pools) == 5
    assert [c.out_channels for c in convs] == [32, 64, 128, 256, 256, 64]
    assert [c.in_channels for c in convs] == [1, 32, 64, 128, 256, 256]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 5 + [(1, 1)]
    assert [n.num_features for n in norms] == [32, 64, 128, 256, 256]
    assert all(n.affine for n in norms)
    assert model.out_features == 64
    # Block order: conv -> InstanceNorm -> MaxPool -> ReLU, five times.
    kinds = [type(m) for m in model.features]
    assert kinds[:20] == [nn.Conv2d, nn.InstanceNorm2d, nn.MaxPool2d, nn.ReLU] * 5
    assert kinds[20:] == [nn.Conv2d, nn.AdaptiveAvgPool2d]


# 6. Every named encoder -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "out_features"),
    [
        ("resnet18", 512),
        ("resnet34", 512),
        ("resnet50", 2048),
        ("efficientnet_lite0", 1280),
        ("cnn2d", 64),
    ],
)
def test_named_encoders_map_grey_slices_to_features(name, out_features):
    encoder = build_encoder(name, weights=None).eval()
    assert encoder.out_features == out_features
    assert _first_conv(encoder).in_channels == 1
    assert _first_conv(encoder).weight.shape[1] == 1
    with torch.no_grad():
        out = encoder(torch.randn(2, 1, 40, 40))
    assert out.shape == (2, out_features)
    assert torch.isfinite(out).all()


def test_encoder_names_are_the_documented_ones():
    lite = {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"}
    assert set(ENCODER_NAMES) == {"resnet18", "resnet34", "resnet50", "cnn2d", *lite}


# 7. User modules ------------------------------------------------------------------------


def test_user_module_feature_size_is_inferred():
    module = nn.Sequential(nn.Conv2d(1, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    encoder = build_encoder(module)
    assert encoder.out_features == 5
    assert encoder is not module
    assert encoder.training  # the probe restores the training mode
    assert encoder(torch.randn(2, 1, 20, 20)).shape == (2, 5)


def test_user_module_out_features_attribute_is_kept():
    module = nn.Sequential(nn.Conv2d(1, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    module.out_features = 7
    assert build_encoder(module).out_features == 7


def test_user_rgb_module_is_folded_and_caller_module_untouched():
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(6, 4, 3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ).eval()
    before = {k: v.clone() for k, v in module.state_dict().items()}

    encoder = build_encoder(module).eval()

    assert encoder.out_features == 4
    assert encoder[0].in_channels == 1
    assert encoder[0].weight.shape == (6, 1, 3, 3)
    x1 = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        _assert_close_relative(encoder(x1), module(x1.repeat(1, 3, 1, 1)))

    # (c) the caller's module is not modified
    assert module[0].in_channels == 3
    assert module[0].weight.shape == (6, 3, 3, 3)
    after = module.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert encoder[0].weight.data_ptr() != module[0].weight.data_ptr()


def test_user_module_with_spatial_output_is_rejected():
    module = nn.Sequential(nn.Conv2d(1, 5, 3))
    with pytest.raises(ValueError, match=r"\(N, F\)"):
        build_encoder(module)


def test_user_module_cannot_take_imagenet_weights():
    module = nn.Sequential(nn.Conv2d(1, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="named encoder"):
        build_encoder(module, weights="imagenet")


# 8. Weights as a path --------------------------------------------------------------------


def test_weights_path_roundtrip_cnn2d(tmp_path):
    torch.manual_seed(0)
    source = build_encoder("cnn2d")
    path = tmp_path / "cnn2d.pth"
    torch.save(source.state_dict(), path)

    fresh = build_encoder("cnn2d")
    assert any(
        not torch.equal(a, b)
        for a, b in zip(fresh.state_dict().values(), source.state_dict().values())
    ), "two random initialisations should differ"

    loaded = build_encoder("cnn2d", weights=path)
    assert loaded.state_dict().keys() == source.state_dict().keys()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # also accepted as a string
    loaded_str = build_encoder("cnn2d", weights=str(path))
    torch.testing.assert_close(loaded_str.features[0].weight, source.features[0].weight)


def test_weights_path_missing_raises_file_not_found(tmp_path):
    path = tmp_path / "does_not_exist.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        build_encoder("cnn2d", weights=path)


def test_weights_path_garbage_raises_value_error(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"\x00this is not a torch checkpoint\xff" * 10)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        build_encoder("cnn2d", weights=path)


def test_weights_path_not_a_state_dict_raises_value_error(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        build_encoder("cnn2d", weights=path)


def test_weights_path_of_wrong_encoder_raises_value_error(tmp_path):
    path = tmp_path / "cnn2d.pth"
    torch.save(build_encoder("cnn2d").state_dict(), path)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        build_encoder("resnet18", weights=path)


def test_weights_path_rgb_resnet18_backbone_is_folded(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    path = tmp_path / "resnet18_rgb.pth"
    torch.save(state, path)

    encoder = build_encoder("resnet18", weights=path)
    assert encoder.conv1.in_channels == 1
    torch.testing.assert_close(encoder.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    torch.testing.assert_close(encoder.bn1.running_var, state["bn1.running_var"])


def test_weights_path_folded_resnet18_roundtrip(tmp_path):
    torch.manual_seed(0)
    source = build_encoder("resnet18")
    path = tmp_path / "resnet18_folded.pth"
    torch.save(source.state_dict(), path)
    loaded = build_encoder("resnet18", weights=path)
    assert loaded.conv1.in_channels == 1
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_weights_path_full_torchvision_resnet18_checkpoint(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path / "resnet18_full.pth"
    torch.save(state, path)
    encoder = build_encoder("resnet18", weights=path)
    torch.testing.assert_close(encoder.conv1.weight, state["conv1.weight"].sum(1, keepdim=True))


# 9. Invalid names and weights ------------------------------------------------------------


def test_unknown_encoder_name_lists_valid_names():
    with pytest.raises(ValueError, match="vgg99") as info:
        build_encoder("vgg99")
    for name in ENCODER_NAMES:
        assert name in str(info.value)
    assert "timm:" in str(info.value)


def test_weights_of_wrong_type_raise_type_error():
    with pytest.raises(TypeError, match="42"):
        build_encoder("cnn2d", weights=42)


def test_encoder_of_wrong_type_raises_type_error():
    with pytest.raises(TypeError, match="int"):
        build_encoder(3)
    with pytest.raises(TypeError, match="returned a str, not an nn.Module"):
        build_encoder(lambda: "resnet18")


def test_a_module_class_builds_a_fresh_encoder_each_time():
    first, second = build_encoder(CNN2D), build_encoder(CNN2D)
    assert isinstance(first, CNN2D) and first is not second
    assert first.out_features == 64
    assert first(torch.zeros(2, 1, 32, 32)).shape == (2, 64)


def test_cnn2d_has_no_imagenet_weights():
    with pytest.raises(ValueError, match="cnn2d"):
        build_encoder("cnn2d", weights="imagenet")


# 10. timm: names -------------------------------------------------------------------------


def test_timm_encoder_by_name():
    import timm

    expected = timm.create_model("resnet10t", pretrained=False).num_features
    encoder = build_encoder("timm:resnet10t", weights=None).eval()
    assert encoder.out_features == expected == 512
    assert _first_conv(encoder).in_channels == 1
    assert _first_conv(encoder).weight.shape[1] == 1
    with torch.no_grad():
        out = encoder(torch.randn(2, 1, 40, 40))
    assert out.shape == (2, expected)


def test_timm_unknown_model_raises_value_error():
    with pytest.raises(ValueError, match="not_a_model"):
        build_encoder("timm:not_a_model")


# -- features from earlier layers --------------------------------------------------


@pytest.mark.parametrize(
    "name, weights, last", [("efficientnet_lite0", "imagenet", "bn2"), ("resnet18", None, "layer4")]
)
def test_truncating_at_the_last_layer_is_the_whole_encoder(name, weights, last):
    torch.manual_seed(0)
    full = build_encoder(name, weights).eval()
    torch.manual_seed(0)
    truncated = build_encoder(name, weights, feature_layer=last).eval()
    assert truncated.out_features == full.out_features
    x = torch.randn(2, 1, 64, 72)
    torch.testing.assert_close(truncated(x), full(x), atol=1e-5, rtol=1e-5)


def test_mid_level_features_match_the_layer_output_pooled_to_a_grid():
    full = build_encoder("efficientnet_lite0", "imagenet").eval()
    mid = build_encoder("efficientnet_lite0", "imagenet", feature_layer="blocks.3", feature_grid=2)
    mid.eval()
    x = torch.randn(3, 1, 64, 80)
    with torch.no_grad():
        expected = full.blocks[:4](full.bn1(full.conv_stem(x)))
        expected = F.adaptive_avg_pool2d(expected, 2).flatten(1)
        got = mid(x)
    assert mid.out_features == 80 * 4 == got.shape[1]
    torch.testing.assert_close(got, expected)
    # ImageNet weights are kept, not re-initialised.
    torch.testing.assert_close(mid.trunk[0].weight, full.conv_stem.weight)


def test_resnet_layer3_grid_feature_size():
    encoder = build_encoder("resnet18", None, feature_layer="layer3", feature_grid=3)
    assert encoder.out_features == 256 * 9
    assert encoder(torch.zeros(2, 1, 48, 48)).shape == (2, 256 * 9)


def test_feature_layer_errors_name_the_choices():
    with pytest.raises(ValueError, match="blocks.0, blocks.1"):
        build_encoder("efficientnet_lite0", None, feature_layer="layer3")
    with pytest.raises(ValueError, match="not for 'cnn2d'"):
        build_encoder("cnn2d", None, feature_grid=2)
    with pytest.raises(ValueError, match="named encoder"):
        build_encoder(CNN2D(), None, feature_layer="features.3")
    with pytest.raises(ValueError, match="positive integer"):
        build_encoder("resnet18", None, feature_grid=0)


# 8. The registry ----------------------------------------------------------------------


def test_a_new_encoder_is_one_registration(monkeypatch):
    from slicelearn.cli import _features, build_parser
    from slicelearn.nn import (
        FEATURE_LAYERS,
        SliceNet,
        get_encoder_spec,
        list_encoders,
        register_encoder,
    )
    from slicelearn.nn import encoders as registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    def two_stage(weights):
        model = nn.Sequential()
        model.add_module("stem", nn.Conv2d(3, 4, 3, padding=1))  # an RGB stem, folded
        model.add_module("stage1", nn.Conv2d(4, 6, 3, padding=1))
        model.add_module("stage2", nn.Conv2d(6, 8, 3, padding=1))
        model.add_module("pool", nn.AdaptiveAvgPool2d(1))
        model.add_module("flat", nn.Flatten())
        return model

    spec = register_encoder(
        "two_stage",
        two_stage,
        feature_layers=("stage1", "stage2"),
        imagenet=False,
        recommended_features=("stage1", 2),
    )
    assert "two_stage" in list_encoders() and get_encoder_spec("two_stage") is spec
    assert FEATURE_LAYERS["two_stage"] == ("stage1", "stage2")
    encoder = build_encoder("two_stage", feature_layer="stage1", feature_grid=2)
    assert encoder.out_features == 6 * 4 and _first_conv(encoder).in_channels == 1
    assert SliceNet("two_stage", n_slices=5).encoder.out_features == 8  # probed
    with pytest.raises(ValueError, match="no ImageNet weights"):
        build_encoder("two_stage", weights="imagenet")
    args = build_parser().parse_args(
        ["fit", "--data", "t.csv", "--target", "age", "--out", "m", "--encoder", "two_stage"]
    )
    assert _features(args) == {"feature_layer": "stage1", "feature_grid": 2}
    with pytest.raises(ValueError, match="registered already"):
        register_encoder("two_stage", two_stage)
    with pytest.raises(ValueError, match="Unknown encoder 'nope'.*two_stage"):
        get_encoder_spec("nope")
