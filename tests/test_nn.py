"""The torch modules on their own: slicing, position embeddings, pooling, freezing."""

from __future__ import annotations

import pytest
import torch
from conftest import TinyEncoder
from torch import nn

from slicelearn.nn import (
    AttentionPooling,
    LearnedPositionEmbedding,
    MaxPooling,
    MeanPooling,
    SinusoidalPositionEmbedding,
    SliceNet,
    build_pooling,
    build_position_embedding,
)


class ShapeRecorder(nn.Module):
    """Records the slice batches it sees and returns their means as features."""

    out_features = 1

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x.mean(dim=(1, 2, 3))[:, None]


def small_net(**kwargs) -> SliceNet:
    params = dict(embed_dim=8, attention_heads=2, head_hidden=8, n_slices=6)
    params.update(kwargs)
    return SliceNet(params.pop("encoder", TinyEncoder()), **params)


@pytest.mark.parametrize(
    ("axis", "expected_slice"),
    [
        ("sagittal", lambda v, i: v[:, i, :, :]),
        ("coronal", lambda v, i: v[:, :, i, :]),
        ("axial", lambda v, i: v[:, :, :, i]),
    ],
)
def test_axis_cuts_the_documented_slices(axis, expected_slice):
    volumes = torch.randn(2, 5, 6, 7)
    recorder = ShapeRecorder()
    n_slices = {"sagittal": 5, "coronal": 6, "axial": 7}[axis]
    net = SliceNet(
        recorder, axis=axis, standardize=False, n_slices=n_slices, embed_dim=4, attention_heads=1
    )
    net(volumes)
    (seen,) = net.encoder.seen  # the net trains a deep copy of the given module
    slices = seen.view(2, n_slices, *seen.shape[-2:])
    for index in (0, n_slices - 1):
        torch.testing.assert_close(slices[:, index], expected_slice(volumes, index))


def test_accepts_channel_dimension_and_rejects_other_shapes():
    net = small_net().eval()
    volumes = torch.randn(3, 6, 10, 9)
    with torch.no_grad():
        torch.testing.assert_close(net(volumes), net(volumes[:, None]))
    assert net(volumes).shape == (3, 1)
    with pytest.raises(ValueError, match="one channel"):
        net(torch.randn(3, 2, 6, 10, 9))
    with pytest.raises(ValueError, match=r"\(B, X, Y, Z\).*or encoder features"):
        net(torch.randn(6, 10, 9))


def test_precomputed_features_give_the_same_prediction():
    net = small_net(position_embedding="sinusoidal").eval()
    volumes = torch.randn(3, 6, 10, 9)
    with torch.no_grad():
        features = net.encode(volumes)
        assert features.shape == (3, 6, net.encoder.out_features)
        torch.testing.assert_close(net(features), net(volumes))


def test_standardize_makes_output_invariant_to_intensity_scale():
    net = small_net().eval()
    volumes = torch.randn(2, 6, 10, 9)
    with torch.no_grad():
        torch.testing.assert_close(net(volumes), net(volumes * 37.0 + 500.0), rtol=1e-4, atol=1e-4)
    raw = small_net(standardize=False).eval()
    with torch.no_grad():
        assert not torch.allclose(raw(volumes), raw(volumes * 37.0 + 500.0))


def test_details_expose_slice_embeddings_and_attention():
    net = small_net(pooling="attention").eval()
    out = net(torch.randn(3, 6, 10, 9), return_details=True)
    assert out.prediction.shape == (3, 1)
    assert out.slice_embeddings.shape == (3, 6, 8)
    assert out.attention.shape == (3, 6)
    torch.testing.assert_close(out.attention.sum(dim=1), torch.ones(3))
    assert (out.attention >= 0).all()
    for pooling in ("mean", "max"):
        assert (
            small_net(pooling=pooling)(torch.randn(1, 6, 10, 9), return_details=True).attention
            is None
        )


@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_pooling_is_permutation_invariant_without_position(pooling):
    net = small_net(pooling=pooling, position_embedding=None).eval()
    volumes = torch.randn(2, 6, 10, 9)
    shuffled = volumes[:, torch.randperm(6)]
    with torch.no_grad():
        torch.testing.assert_close(net(volumes), net(shuffled), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("position_embedding", ["learned", "sinusoidal"])
def test_position_embedding_breaks_permutation_invariance(position_embedding):
    torch.manual_seed(0)  # the initial weights decide the size of the effect
    net = small_net(pooling="mean", position_embedding=position_embedding).eval()
    volumes = torch.randn(2, 6, 10, 9)
    with torch.no_grad():
        assert not torch.allclose(net(volumes), net(volumes.flip(1)), atol=1e-6)


def test_learned_embedding_fixes_slice_count_and_sinusoidal_does_not():
    learned = small_net(position_embedding="learned", n_slices=6)
    with pytest.raises(ValueError, match="built for 6 slices.*has 9.*sinusoidal"):
        learned(torch.randn(1, 9, 10, 9))
    sinusoidal = small_net(position_embedding="sinusoidal", n_slices=None)
    assert sinusoidal(torch.randn(1, 6, 10, 9)).shape == (1, 1)
    assert sinusoidal(torch.randn(1, 13, 10, 9)).shape == (1, 1)
    with pytest.raises(ValueError, match="n_slices"):
        build_position_embedding("learned", None, 8)


def test_sinusoidal_table_values():
    table = SinusoidalPositionEmbedding(6).table(4)
    assert table.shape == (4, 6)
    # Index 0 is (sin 0, cos 0) = (0, 1) at every frequency.
    torch.testing.assert_close(table[0], torch.tensor([0.0, 1.0] * 3))
    # The first frequency is 1 radian per slice.
    torch.testing.assert_close(table[:, 0], torch.sin(torch.arange(4.0)))
    # A longer table extends a shorter one: embeddings do not depend on the slice count.
    torch.testing.assert_close(SinusoidalPositionEmbedding(6).table(9)[:4], table)
    assert SinusoidalPositionEmbedding(5).table(3).shape == (3, 5)


def test_learned_embedding_is_added_per_slice():
    embedding = LearnedPositionEmbedding(3, 4)
    tokens = torch.zeros(2, 3, 4)
    torch.testing.assert_close(embedding(tokens)[1], embedding.weight)


def test_poolings_compute_what_they_say():
    tokens = torch.randn(2, 5, 4)
    torch.testing.assert_close(MeanPooling()(tokens)[0], tokens.mean(1))
    torch.testing.assert_close(MaxPooling()(tokens)[0], tokens.max(1).values)
    attention = AttentionPooling(4, num_heads=2)
    pooled, weights = attention(tokens)
    assert pooled.shape == (2, 4) and weights.shape == (2, 5)
    with pytest.raises(ValueError, match="divide"):
        AttentionPooling(6, num_heads=4)
    with pytest.raises(ValueError, match="mean, max, attention"):
        build_pooling("median", 4)


def test_unknown_options_raise_clear_errors():
    with pytest.raises(ValueError, match="axis must be one of 'sagittal', 'coronal', 'axial'"):
        small_net(axis="transverse")
    with pytest.raises(ValueError, match="learned"):
        small_net(position_embedding="rotary")


def test_frozen_encoder_gets_no_gradient_and_keeps_batchnorm_statistics():
    encoder = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    net = small_net(encoder=encoder, freeze_encoder=True, position_embedding=None)
    net.train()
    assert not net.encoder.training and net.head.training
    running_mean = net.encoder[1].running_mean.clone()
    loss = net(torch.randn(2, 6, 10, 9)).sum()
    loss.backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    assert net.projection.weight.grad is not None
    torch.testing.assert_close(net.encoder[1].running_mean, running_mean)


def test_cnn2d_too_small_slices_name_the_axis():
    net = SliceNet("cnn2d", n_slices=40, axis="sagittal")
    with pytest.raises(ValueError, match="at least 32x32.*sagittal slices.*20x36"):
        net(torch.randn(1, 40, 20, 36))
    assert net(torch.randn(1, 40, 32, 36)).shape == (1, 1)


def test_linear_head_and_multiple_outputs():
    net = small_net(head_hidden=None, n_outputs=3)
    assert isinstance(net.head[0], nn.Linear) and len(net.head) == 1
    assert net(torch.randn(2, 6, 10, 9)).shape == (2, 3)
    assert net.output_layer.out_features == 3


@pytest.mark.parametrize(
    "encoder, kwargs",
    [
        ("cnn2d", {"pooling": "attention"}),
        ("efficientnet_lite0", {"pooling": "mean", "feature_layer": "blocks.3", "feature_grid": 2}),
        (
            "efficientnet_lite0",
            {"pooling": "max", "freeze_encoder": "blocks.2", "feature_layer": "blocks.4"},
        ),
    ],
)
def test_evaluation_is_bitwise_independent_of_the_rest_of_the_batch(encoder, kwargs):
    # CPU kernels block (and so sum) by batch size; a volume's prediction
    # must not change with its batch mates, their order or their number.
    torch.manual_seed(0)
    net = SliceNet(encoder, None, n_slices=36, **kwargs).eval()
    volumes = torch.randn(5, 36, 64, 48)
    with torch.no_grad():
        full = net(volumes, return_details=True)
        permuted = net(volumes[[3, 0, 4, 1, 2]])
        halves = torch.cat([net(volumes[:2]), net(volumes[2:])])
        alone = net(volumes[4:])
    assert torch.equal(permuted, full.prediction[[3, 0, 4, 1, 2]])
    assert torch.equal(halves, full.prediction)
    assert torch.equal(alone, full.prediction[4:])
    assert full.slice_embeddings.shape == (5, 36, 32)
    if net.frozen_stages:
        maps = net.encode_frozen(volumes)
        assert torch.equal(net.encode_frozen(volumes[[4, 2]]), maps[[4, 2]])
        with torch.no_grad():
            from_maps = net(trunk_maps=maps)
            assert torch.equal(net(trunk_maps=maps[[1, 0]]), from_maps[[1, 0]])
        torch.testing.assert_close(from_maps, full.prediction)
