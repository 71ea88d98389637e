"""Safe model files: JSON plus safetensors, no pickle; refusals and version checks."""

import json
import zipfile

import numpy as np
import pytest
import torch
from conftest import fast_params, write_scans

from slicelearn import SliceCNNClassifier, SliceCNNRegressor
from slicelearn.data import VolumePreprocessor
from slicelearn.model_files import UntrustedTypeError, load_model, model_info, save_model


def _named(**overrides):
    # Encoders given by name: an nn.Module instance cannot go into a safe file.
    params = fast_params(encoder="cnn2d", embed_dim=8, **overrides)
    return params


def _volumes(n=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 6, 32, 32)).astype(np.float32)


def _rewrite_config(path, change):
    with zipfile.ZipFile(path) as archive:
        config = json.loads(archive.read("config.json"))
        weights = archive.read("weights.safetensors")
    change(config)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("weights.safetensors", weights)


def test_regressor_round_trip_predicts_the_same(tmp_path):
    X = _volumes()
    est = SliceCNNRegressor(
        **_named(pooling="attention", position_embedding="learned", crop_empty_slices=True)
    ).fit(X, np.linspace(20, 80, 8))
    path = save_model(est, tmp_path / "age.slm")
    loaded = load_model(path)
    assert type(loaded) is SliceCNNRegressor
    np.testing.assert_allclose(loaded.predict(X), est.predict(X), rtol=1e-6)
    assert loaded.get_params()["pooling"] == "attention"
    assert loaded.n_slices_ == est.n_slices_ and loaded.slice_range_ == est.slice_range_
    assert [row["train_loss"] for row in loaded.history] == [
        row["train_loss"] for row in est.history
    ]
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["config.json", "weights.safetensors"]
        versions = json.loads(archive.read("config.json"))["versions"]
    assert {"slicelearn", "torch", "skorch", "scikit-learn", "numpy"} <= set(versions)


def test_classifier_keeps_its_labels(tmp_path):
    X = _volumes(9)
    y = np.array(["AD", "CN", "MCI"] * 3)
    est = SliceCNNClassifier(**_named(train_split=None)).fit(X, y)
    loaded = load_model(save_model(est, tmp_path / "dx.slm"))
    np.testing.assert_array_equal(loaded.classes_, est.classes_)
    np.testing.assert_allclose(loaded.predict_proba(X), est.predict_proba(X), rtol=1e-6)
    assert list(loaded.predict(X)) == list(est.predict(X))


def test_preprocessing_recipe_travels_with_the_model(tmp_path):
    paths = write_scans(tmp_path, n=6, shape=(12, 14, 10))
    prep = VolumePreprocessor(
        target=None, target_shape=(10, 40, 36), voxel_size=2.0, cache_dir=None
    )
    est = SliceCNNRegressor(**_named(preprocessing=prep)).fit(paths, np.linspace(20, 70, 6))
    loaded = load_model(save_model(est, tmp_path / "m.slm"))
    assert loaded.preprocessor_.get_params() == est.preprocessor_.get_params()
    np.testing.assert_allclose(loaded.predict(paths), est.predict(paths), rtol=1e-6)


def test_unknown_types_are_refused_unless_trusted(tmp_path):
    X = _volumes()
    est = SliceCNNRegressor(**_named(optimizer=torch.optim.SGD)).fit(X, np.arange(8.0))
    path = save_model(est, tmp_path / "m.slm")
    assert load_model(path).optimizer is torch.optim.SGD  # torch optimisers are safe

    # A file that names an arbitrary callable is refused ...
    _rewrite_config(path, lambda c: c["params"].__setitem__("optimizer", {"__type__": "os.system"}))
    with pytest.raises(UntrustedTypeError, match="trusted=\\['os.system'\\]"):
        load_model(path)
    # ... and an object of an unknown class too.
    _rewrite_config(
        path,
        lambda c: c["params"].update(
            optimizer={"__type__": "torch.optim.sgd.SGD"},
            train_split={"__object__": "subprocess.Popen", "arguments": {"args": "true"}},
        ),
    )
    with pytest.raises(UntrustedTypeError, match="subprocess.Popen"):
        load_model(path)


def test_objects_that_cannot_be_stored_safely_are_named(tmp_path, tiny_encoder):
    est = SliceCNNRegressor(**fast_params(encoder=tiny_encoder)).fit(_volumes(), np.arange(8.0))
    with pytest.raises(TypeError, match="encoder = TinyEncoder"):
        save_model(est, tmp_path / "m.slm")
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(ValueError, match="not fitted"):
        save_model(SliceCNNRegressor(), tmp_path / "m.slm")


def test_an_encoder_class_is_stored_by_name_and_loads_when_trusted(tmp_path):
    from conftest import TinyEncoder

    X = np.random.default_rng(0).normal(size=(8, 5, 6, 6)).astype(np.float32)
    est = SliceCNNRegressor(**fast_params(encoder=TinyEncoder)).fit(X, np.arange(8.0))
    path = save_model(est, tmp_path / "m.slm")
    with pytest.raises(UntrustedTypeError, match=r"trusted=\['conftest.TinyEncoder'\]"):
        load_model(path)
    loaded = load_model(path, trusted=["conftest.TinyEncoder"])
    assert loaded.encoder is TinyEncoder
    np.testing.assert_allclose(loaded.predict(X), est.predict(X), rtol=1e-6)


def test_metadata_and_task_are_read_without_building_the_model(tmp_path, monkeypatch):
    X = _volumes(9)
    clf = SliceCNNClassifier(**_named(train_split=None)).fit(X, ["AD", "CN", "CN"] * 3)
    path = save_model(clf, tmp_path / "dx.slm", metadata={"target": "diagnosis", "cv": [1, 2]})
    monkeypatch.setattr(SliceCNNClassifier, "initialize", None)  # building it would fail
    info = model_info(path)
    assert info["task"] == "classification"
    assert info["class"] == "slicelearn.estimators.SliceCNNClassifier"
    assert info["metadata"] == {"target": "diagnosis", "cv": [1, 2]}
    assert info["versions"]["slicelearn"]
    with pytest.raises(TypeError, match=r"metadata\['when'\]"):
        save_model(clf, tmp_path / "bad.slm", metadata={"when": object()})
    assert not (tmp_path / "bad.slm").exists()


def test_newer_formats_and_other_files_get_clear_errors(tmp_path):
    est = SliceCNNRegressor(**_named()).fit(_volumes(), np.arange(8.0))
    path = save_model(est, tmp_path / "m.slm")
    _rewrite_config(path, lambda c: c.update(format_version=99))
    with pytest.raises(ValueError, match="format 99.*Upgrade slicelearn"):
        load_model(path)
    junk = tmp_path / "junk.slm"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a slicelearn model file"):
        load_model(junk)
    with pytest.raises(ValueError, match="not a slicelearn model file"):
        model_info(junk)
    with pytest.raises(ValueError, match="format 99"):
        model_info(path)


def test_a_model_from_another_version_loads_or_says_why(tmp_path):
    est = SliceCNNRegressor(**_named()).fit(_volumes(), np.arange(8.0))
    path = save_model(est, tmp_path / "m.slm")
    _rewrite_config(path, lambda c: c["versions"].update(slicelearn="0.0.1"))
    np.testing.assert_allclose(load_model(path).predict(_volumes()), est.predict(_volumes()))
    # Weights that no longer fit the network the parameters build: a clear message.
    _rewrite_config(path, lambda c: c["params"].update(embed_dim=16))
    with pytest.raises(ValueError, match="saved by slicelearn 0.0.1; its weights do not fit"):
        load_model(path)


def test_loading_fetches_no_pretrained_weights(tmp_path, monkeypatch):
    est = SliceCNNRegressor(**_named()).fit(_volumes(), np.arange(8.0))
    path = save_model(est, tmp_path / "m.slm")
    # A model trained from ImageNet weights must load where they are unavailable.
    _rewrite_config(path, lambda c: c["params"].update(weights="/nowhere/imagenet.pth"))
    loaded = load_model(path)
    assert loaded.weights == "/nowhere/imagenet.pth"
    np.testing.assert_allclose(loaded.predict(_volumes()), est.predict(_volumes()), rtol=1e-6)


def test_a_model_cropped_to_the_brain_box_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    X = np.zeros((8, 12, 44, 40), np.float32)
    X[:, 3:10, 2:38, 1:36] = rng.normal(size=(8, 7, 36, 35))
    y = X.mean(axis=(1, 2, 3)) * 10
    est = SliceCNNRegressor(
        encoder="cnn2d", weights=None, max_epochs=1, verbose=0, crop_to_content=True,
        train_split=None, random_state=0,
    ).fit(X, y)  # fmt: skip
    save_model(est, tmp_path / "box.slm")
    loaded = load_model(tmp_path / "box.slm")
    assert loaded.content_box_ == ((3, 10), (2, 38), (1, 36)) == loaded.module_.crop_box
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
