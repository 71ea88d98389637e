"""Speed options: exact rewrites give the same numbers; algorithmic ones do what they say."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import TinyEncoder, fast_params
from torch import nn

from slicelearn import SliceCNNRegressor
from slicelearn.nn import CNN2D, SliceNet
from slicelearn.nn.slicenet import CPU_EVAL_CHUNK, volume_chunks


class CountingEncoder(nn.Module):
    """Records how many slices each call encodes."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = TinyEncoder()
        self.out_features = 8
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(x))
        return self.inner(x)


def _volumes(batch=2, shape=(10, 36, 34), seed=0):
    return torch.from_numpy(
        np.random.default_rng(seed).normal(size=(batch, *shape)).astype(np.float32)
    )


def _twin_nets(**options):
    torch.manual_seed(0)
    reference = SliceNet(CNN2D(), n_slices=10, embed_dim=8, channels_last=False)
    torch.manual_seed(0)
    fast = SliceNet(CNN2D(), n_slices=10, embed_dim=8, **options)
    return reference.eval(), fast.eval()


@pytest.mark.parametrize(
    "options",
    [
        {"channels_last": True},
        {"slice_chunk_size": 7},
        {"slice_chunk_size": 3, "channels_last": True},
    ],
)
def test_exact_rewrites_give_the_same_predictions(options):
    reference, fast = _twin_nets(**options)
    x = _volumes()
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), reference(x), rtol=1e-4, atol=1e-5)


def test_checkpointed_chunks_give_the_same_gradients():
    # CNN2D uses instance norm: chunking does not change its statistics.
    reference, fast = _twin_nets(slice_chunk_size=4, checkpoint_slices=True)
    reference.train(), fast.train()
    x = _volumes()
    reference(x).sum().backward()
    fast(x).sum().backward()
    for (name, a), b in zip(reference.named_parameters(), fast.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_chunks_bound_the_encoder_batch():
    net = SliceNet(CountingEncoder(), n_slices=10, embed_dim=8, slice_chunk_size=4)
    net(_volumes(batch=2))
    assert net.encoder.calls == [4, 4, 4, 4, 4]  # 2 volumes x 10 slices in chunks of 4


def test_volume_chunks_are_equal_and_cover_every_slice_once():
    for n_slices in (1, 7, 91, 128, 129, 182, 300):
        for limit in (1, 4, 32, 128):
            bounds = volume_chunks(n_slices, limit)
            assert bounds[0][0] == 0 and bounds[-1][1] == n_slices
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            sizes = [end - begin for begin, end in bounds]
            assert max(sizes) <= limit and max(sizes) - min(sizes) <= 1
            assert len(bounds) == -(-n_slices // limit)


def test_cpu_evaluation_runs_in_chunks_per_volume_and_training_does_not():
    n_slices = CPU_EVAL_CHUNK + 40
    net = SliceNet(CountingEncoder(), n_slices=n_slices, embed_dim=8)
    x = _volumes(batch=3, shape=(n_slices, 12, 10))
    net.train()
    with torch.no_grad():
        net(x)
    assert net.encoder.calls == [3 * n_slices]  # batch-norm statistics over every slice
    net.encoder.calls.clear()
    net.eval()
    with torch.no_grad():
        chunked = net(x)
    # Each volume on its own, in two equal chunks that never span two volumes.
    half = n_slices // 2
    assert net.encoder.calls == [n_slices - half, half] * 3
    net.slice_chunk_size = n_slices
    net.encoder.calls.clear()
    with torch.no_grad():
        torch.testing.assert_close(chunked, net(x), rtol=1e-5, atol=1e-6)
    assert net.encoder.calls == [n_slices] * 3


def test_evaluation_encodes_each_distinct_constant_slice_once():
    torch.manual_seed(0)
    net = SliceNet(CountingEncoder(), n_slices=12, embed_dim=8).eval()
    x = _volumes(batch=2, shape=(12, 20, 18))
    x[0, [0, 1, 10, 11]] = 0.0  # empty border slices
    x[0, 5] = 2.5  # a constant slice of another value
    x[1, 3] = 0.0  # a single constant slice: nothing to share
    with torch.no_grad():
        features = net.encode(x)
        net.encoder.calls.clear()
        slices = net.to_slices(x)
        assert (slices[0, 0] == slices[0, 0, 0, 0]).all()  # still constant after standardising
        every_slice = net.encoder(net._encoder_input(slices)).view(2, 12, -1)
    # Volume 0: 7 varying slices, one zero slice and the 2.5 slice; volume 1: all 12.
    with torch.no_grad():
        net.encoder.calls.clear()
        net.encode(x)
    assert net.encoder.calls == [9, 12]
    torch.testing.assert_close(features, every_slice, rtol=1e-5, atol=1e-6)
    assert torch.equal(features[0, 0], features[0, 11])
    # A volume's features do not depend on the other volumes of its batch.
    with torch.no_grad():
        assert torch.equal(net.encode(x[:1]), features[:1])
        assert torch.equal(net.encode(x[1:]), features[1:])


def test_slice_sampling_encodes_a_subset_in_training_and_all_slices_at_evaluation():
    net = SliceNet(CountingEncoder(), n_slices=10, embed_dim=8, train_slices=0.3)
    net.train()(_volumes(batch=2))
    assert net.encoder.calls == [2 * 3]
    net.eval()(_volumes(batch=2))
    assert net.encoder.calls[-1] == 2 * 10
    net.train_slices = 4
    net.train()(_volumes(batch=2))
    assert net.encoder.calls[-1] == 2 * 4


@pytest.mark.parametrize("position_embedding", ["learned", "sinusoidal"])
def test_sampled_slices_keep_their_true_positions(position_embedding):
    net = SliceNet(
        TinyEncoder(), n_slices=10, embed_dim=8, position_embedding=position_embedding
    ).eval()
    x = _volumes(batch=2)
    features = net.encode(x)
    chosen = torch.tensor([[1, 4, 8], [0, 5, 9]])
    subset = features.gather(1, chosen[..., None].expand(-1, -1, features.shape[2]))
    expected = net.embed_features(features)
    got = net.embed_features(subset, chosen)
    torch.testing.assert_close(got, expected.gather(1, chosen[..., None].expand(-1, -1, 8)))


def test_sampling_is_reproducible_under_the_estimator_seed(small_volumes):
    X, y = small_volumes
    params = fast_params(train_slices=3, max_epochs=3)
    first = SliceCNNRegressor(**params).fit(X, y).predict(X)
    second = SliceCNNRegressor(**params).fit(X, y).predict(X)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(
        first, SliceCNNRegressor(**fast_params(max_epochs=3)).fit(X, y).predict(X)
    )


def test_crop_empty_slices_keeps_the_occupied_range_with_true_positions():
    rng = np.random.default_rng(0)
    X = np.zeros((8, 12, 10, 9), dtype=np.float32)
    X[:, 3:10] = rng.normal(size=(8, 7, 10, 9))
    X[0, 2] = 1.0  # one volume reaches one slice further: still constant, still empty
    X[1, 2, 0, 0] = 5.0  # ... this one holds content in slice 2
    y = X.mean(axis=(1, 2, 3)) * 10
    est = SliceCNNRegressor(
        **fast_params(crop_empty_slices=True, position_embedding="learned", train_split=None)
    ).fit(X, y)
    assert est.slice_range_ == (2, 10)
    assert est.module_.slice_range == (2, 10) and est.n_slices_ == 12
    # The cropped model equals the full network on the kept slices, at their true indices.
    with torch.no_grad():
        net = est.module_
        features = net.encode_slices(net.to_slices(torch.as_tensor(X)))
        positions = torch.arange(2, 10).expand(len(X), -1)
        expected = net.predict_from_tokens(net.embed_features(features, positions))[0]
    np.testing.assert_allclose(est.predict(X), expected.numpy().ravel(), rtol=1e-5)
    assert SliceCNNRegressor(**fast_params()).fit(X, y).get_params()["crop_empty_slices"] is False


def test_crop_to_content_keeps_the_brain_box_with_true_positions():
    rng = np.random.default_rng(1)
    X = np.zeros((8, 12, 14, 11), dtype=np.float32)
    X[:, 3:10, 2:12, 1:9] = rng.normal(size=(8, 7, 10, 8))
    X[1, 2, 5, 5] = 4.0  # one volume has content one sagittal slice further
    y = X.mean(axis=(1, 2, 3)) * 10
    est = SliceCNNRegressor(
        **fast_params(crop_to_content=True, position_embedding="learned", train_split=None)
    ).fit(X, y)
    assert est.content_box_ == ((2, 10), (2, 12), (1, 9))
    assert est.slice_range_ == (2, 10) and est.n_slices_ == 12
    net = est.module_
    # The network sees the box, standardised on its own, its slices at their true indices.
    with torch.no_grad():
        box = torch.as_tensor(X[:, 2:10, 2:12, 1:9])
        box = (box - box.mean(dim=(1, 2, 3), keepdim=True)) / (
            box.std(dim=(1, 2, 3), correction=0, keepdim=True) + 1e-6
        )
        features = net.encode_slices(box)
        positions = torch.arange(2, 10).expand(len(X), -1)
        expected = net.predict_from_tokens(net.embed_features(features, positions))[0]
    np.testing.assert_allclose(est.predict(X), expected.numpy().ravel(), rtol=1e-5)
    # Content outside the box does not reach the network.
    moved = X.copy()
    moved[:, 0] = 7.0
    moved[:, :, 13] = -3.0
    np.testing.assert_array_equal(est.predict(moved), est.predict(X))
    with pytest.raises(ValueError, match="crops volumes to the box"):
        est.predict(X[:, :, :11])


def test_crop_box_is_checked_and_excludes_slice_range():
    with pytest.raises(ValueError, match="not both"):
        SliceNet(TinyEncoder(), crop_box=((0, 2), (0, 2), (0, 2)), slice_range=(0, 2))
    with pytest.raises(ValueError, match="three"):
        SliceNet(TinyEncoder(), crop_box=((0, 2), (3, 1), (0, 2)))


def test_precision_options(small_volumes):
    X, y = small_volumes
    bf16 = SliceCNNRegressor(**fast_params(precision="bf16")).fit(X, y)
    fp32 = SliceCNNRegressor(**fast_params(precision="fp32")).fit(X, y)
    assert np.allclose(bf16.predict(X), fp32.predict(X), atol=0.5)
    with pytest.raises(ValueError, match="precision must be one of"):
        SliceCNNRegressor(**fast_params(precision="fp8")).fit(X, y)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_on_cuda_and_on_cpus_with_native_bf16(monkeypatch, native):
    from slicelearn import precision

    monkeypatch.setattr(precision, "native_bf16", lambda: native)
    assert precision.resolve_precision("auto", "cuda:0") == "bf16"
    assert precision.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    # Training steps on the CPU: float32 measured faster for the fine-tuning recipe.
    assert precision.resolve_precision("auto", "cpu", training=True) == "fp32"
    assert precision.resolve_precision("auto", "cuda:0", training=True) == "bf16"
    assert precision.resolve_precision("bf16", "cpu", training=True) == "bf16"
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    autocast = precision.autocast("auto", "cpu")
    assert (autocast is not None) == native
    if native:
        assert autocast.fast_dtype == torch.bfloat16


def test_auto_precision_trains_in_fp32_and_predicts_in_bf16_on_native_cpus(
    monkeypatch, small_volumes
):
    from slicelearn import precision
    from slicelearn.nn import slicenet

    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    seen = {"train": set(), "eval": set()}
    forward = slicenet.SliceNet.forward

    def recording_forward(module, *args, **kwargs):
        phase = "train" if module.training and torch.is_grad_enabled() else "eval"
        seen[phase].add(torch.is_autocast_enabled("cpu"))
        return forward(module, *args, **kwargs)

    monkeypatch.setattr(slicenet.SliceNet, "forward", recording_forward)
    X, y = small_volumes
    SliceCNNRegressor(**fast_params(precision="auto")).fit(X, y).predict(X)
    assert seen == {"train": {False}, "eval": {True}}


@pytest.mark.parametrize(
    "value, error", [(0, ValueError), (1.5, ValueError), (-2, ValueError), ("half", TypeError)]
)
def test_bad_train_slices_raise(value, error):
    with pytest.raises(error):
        SliceNet(TinyEncoder(), train_slices=value)


def test_fused_batchnorm_inference_is_exact_and_follows_weight_changes():
    torch.manual_seed(0)
    net = SliceNet("resnet18", None, n_slices=6, embed_dim=8, position_embedding=None)
    net.train()(_volumes(batch=4, shape=(6, 40, 36)))  # give batch norm real statistics
    net.eval()
    x = _volumes(batch=2, shape=(6, 40, 36), seed=1)
    with torch.no_grad():
        fused = net.encode(x)
        assert net._fused is not None and net._fused[1] is not None
    net.fuse_batchnorm = False
    with torch.no_grad():
        plain = net.encode(x)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)
    net.fuse_batchnorm = True
    with torch.no_grad():
        net.encoder.bn1.running_mean.add_(0.5)  # in place, as an optimiser or BN update would
        changed = net.encode(x)
    net.fuse_batchnorm = False
    with torch.no_grad():
        torch.testing.assert_close(changed, net.encode(x), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(changed, fused)


def test_model_with_a_fused_inference_copy_pickles_without_it():
    import pickle

    net = SliceNet("resnet18", None, n_slices=6, embed_dim=8, position_embedding=None).eval()
    x = _volumes(batch=2, shape=(6, 40, 36))
    with torch.no_grad():
        expected = net(x)
    assert net._fused is not None
    restored = pickle.loads(pickle.dumps(net))
    assert restored._fused is None
    with torch.no_grad():
        torch.testing.assert_close(restored(x), expected)


def test_batchnorm_folding_covers_timm_efficientnet_with_its_fused_activations():
    net = SliceNet("efficientnet_lite0", "imagenet", n_slices=6, embed_dim=8).eval()
    x = _volumes(batch=2, shape=(6, 48, 40))
    with torch.no_grad():
        folded = net.encode(x)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in net._fused[1].modules()), (
            "every batch norm of EfficientNet-Lite0 follows a convolution"
        )
        net.fuse_batchnorm = False
        reference = net.encode(x)
    torch.testing.assert_close(folded, reference, rtol=1e-4, atol=1e-4)
