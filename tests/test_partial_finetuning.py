"""Partial fine-tuning: a fixed trunk whose maps are cached, and trained later layers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import TinyEncoder

from slicelearn import SliceCNNRegressor
from slicelearn.feature_cache import shared_feature_cache
from slicelearn.nn import SliceNet


def _data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6, 40, 36)).astype(np.float32)
    y = (X[:, :2].mean(axis=(1, 2, 3)) * 10 + 50).astype(np.float32)
    return X, y


def test_trunk_maps_give_the_same_prediction_as_volumes():
    torch.manual_seed(0)
    net = SliceNet("resnet18", None, freeze_encoder="layer2", n_slices=6, embed_dim=8)
    x = torch.from_numpy(_data(2)[0])
    net.eval()
    net.fuse_batchnorm = False
    with torch.no_grad():
        maps = net.encode_frozen(x)
        assert maps.shape[:3] == (2, 6, 128)  # resnet18's layer2 has 128 channels
        torch.testing.assert_close(net(trunk_maps=maps), net(x), rtol=1e-5, atol=1e-5)


def test_only_the_layers_after_the_fixed_one_train():
    net = SliceNet("resnet18", None, freeze_encoder="layer3", n_slices=6, embed_dim=8)
    trunk = net.frozen_part
    assert not any(p.requires_grad for p in trunk.parameters())
    trainable = net.encoder.trunk[net.frozen_stages :]
    assert net.encoder.stage_names[net.frozen_stages :] == ["layer4"]
    assert all(p.requires_grad for p in trainable.parameters())
    statistics = copy.deepcopy(trunk.state_dict())
    net.train()(torch.from_numpy(_data(2)[0]))
    # Fixed batch norms stay in eval mode and keep their statistics.
    assert not any(m.training for m in trunk.children())
    for name, tensor in trunk.state_dict().items():
        torch.testing.assert_close(tensor, statistics[name], msg=name)


def test_estimator_caches_the_trunk_once_and_fine_tunes_the_rest():
    X, y = _data()
    cache = shared_feature_cache()
    before = cache.computed
    est = SliceCNNRegressor(
        encoder="resnet18",
        weights=None,
        freeze_encoder="layer3",
        pooling="mean",
        position_embedding="sinusoidal",
        max_epochs=3,
        batch_size=4,
        lr=1e-2,
        verbose=0,
        random_state=0,
    )
    est.fit(X, y)
    assert cache.computed - before == len(X)  # one trunk pass per volume, for 3 epochs
    fitted = est.module_
    predictions = est.predict(X)
    assert cache.computed - before == len(X)  # predictions reuse the cached maps
    fitted.fuse_batchnorm = False
    with torch.no_grad():
        full = fitted(torch.as_tensor(X)).numpy().ravel()
    np.testing.assert_allclose(predictions, full, rtol=1e-4, atol=1e-4)


def test_partial_fit_keeps_trunk_weights_and_moves_later_layers():
    X, y = _data()
    est = SliceCNNRegressor(
        encoder="resnet18",
        weights=None,
        freeze_encoder="layer3",
        max_epochs=1,
        batch_size=4,
        lr=1e-2,
        verbose=0,
        random_state=0,
        train_split=None,
    ).fit(X, y)
    trunk_before = copy.deepcopy(est.module_.frozen_part.state_dict())
    tail_before = copy.deepcopy(est.module_.encoder.trunk[est.module_.frozen_stages :].state_dict())
    est.partial_fit(X, y)
    for name, tensor in est.module_.frozen_part.state_dict().items():
        torch.testing.assert_close(tensor, trunk_before[name], msg=name)
    tail_after = est.module_.encoder.trunk[est.module_.frozen_stages :].state_dict()
    assert any(not torch.equal(tail_after[k], tail_before[k]) for k in tail_before)


def test_partial_freezing_errors_name_the_choices():
    with pytest.raises(ValueError, match="layer1, layer2, layer3"):
        SliceNet("resnet18", None, freeze_encoder="layer4")
    with pytest.raises(ValueError, match="needs a named encoder"):
        SliceNet(TinyEncoder(), None, freeze_encoder="features.1")
    with pytest.raises(ValueError, match="blocks.0, blocks.1, blocks.2"):
        SliceNet("efficientnet_lite0", None, freeze_encoder="bn2", feature_layer="blocks.3")
