"""Estimators on scans: lazy loading, caching, workers, CV, and errors mid-epoch."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import TinyEncoder, fast_params, write_scans
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from skorch.callbacks import Callback

from slicelearn import SliceCNNClassifier, SliceCNNRegressor
from slicelearn.data import VolumeCache, VolumeDataset, VolumeLoadError, VolumePreprocessor


@pytest.fixture
def scans(tmp_path):
    paths = write_scans(tmp_path, n=8, shape=(10, 12, 9))
    ages = np.linspace(30, 70, 8).astype(np.float32)
    return paths, ages


def _prep(tmp_path, **kwargs):
    params = dict(
        target=None, target_shape=(8, 10, 9), voxel_size=2.0, cache_dir=tmp_path / "cache"
    )
    params.update(kwargs)
    return VolumePreprocessor(**params)


def test_paths_are_read_lazily_through_a_volume_dataset(scans, tmp_path):
    paths, ages = scans
    est = SliceCNNRegressor(**fast_params(preprocessing=_prep(tmp_path))).fit(paths, ages)
    assert est.volume_shape_ == (8, 10, 9) and est.n_slices_ == 8
    dataset = est.get_dataset(paths)
    assert isinstance(dataset, VolumeDataset)
    volume, target = dataset[2]
    assert volume.shape == (8, 10, 9) and torch.isnan(target)
    assert len(VolumeCache(tmp_path / "cache")) == 8
    np.testing.assert_allclose(
        est.predict(paths), est.predict(est.preprocessor_.transform(paths)), rtol=1e-6
    )


def test_each_scan_is_preprocessed_once_across_epochs_folds_and_grid(
    scans, tmp_path, count_preprocess
):
    paths, ages = scans
    search = GridSearchCV(
        SliceCNNRegressor(**fast_params(preprocessing=_prep(tmp_path), train_split=None)),
        {"pooling": ["mean", "max"], "position_embedding": [None, "sinusoidal"]},
        cv=KFold(2),
    )
    search.fit(paths, ages)
    assert sorted(count_preprocess) == sorted(paths)
    assert set(search.best_params_) == {"pooling", "position_embedding"}


def test_pipeline_with_preprocessor_cross_validates(scans, tmp_path):
    paths, ages = scans
    pipe = make_pipeline(_prep(tmp_path), SliceCNNRegressor(**fast_params(train_split=None)))
    scores = cross_val_score(pipe, paths, ages, cv=KFold(2), scoring="neg_mean_absolute_error")
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_workers_give_the_same_model(scans, tmp_path):
    paths, ages = scans
    encoder = TinyEncoder()
    serial = SliceCNNRegressor(**fast_params(encoder=encoder, preprocessing=_prep(tmp_path))).fit(
        paths, ages
    )
    parallel = SliceCNNRegressor(
        **fast_params(
            encoder=encoder,
            preprocessing=_prep(tmp_path),
            iterator_train__num_workers=2,
            iterator_valid__num_workers=2,
        )
    ).fit(paths, ages)
    np.testing.assert_allclose(parallel.predict(paths), serial.predict(paths), rtol=1e-5)


def test_classifier_on_scans(scans, tmp_path):
    paths, _ = scans
    labels = ["AD", "CN"] * 4
    clf = SliceCNNClassifier(**fast_params(preprocessing=_prep(tmp_path), train_split=None))
    assert set(clf.fit(paths, labels).predict(paths)) <= {"AD", "CN"}


def test_bad_scans_fail_before_training(scans, tmp_path):
    paths, ages = scans
    est = SliceCNNRegressor(**fast_params())
    with pytest.raises(FileNotFoundError, match=r"X\[8\] \(.*gone.nii.gz\): no such file"):
        est.fit([*paths, str(tmp_path / "gone.nii.gz")], [*ages, 1.0])
    odd = tmp_path / "odd.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 12, 8), np.float32), np.eye(4)), odd)
    with pytest.raises(ValueError, match=r"X\[8\] \(.*odd.nii.gz\) has shape \(10, 12, 8\)"):
        est.fit([*paths, str(odd)], [*ages, 1.0])
    series = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((10, 12, 9, 2), np.float32), np.eye(4)), series)
    with pytest.raises(ValueError, match=r"bold.nii.gz\) has shape \(10, 12, 9, 2\)"):
        est.fit([*paths, str(series)], [*ages, 1.0])
    with pytest.raises(ValueError, match="an array carries no affine"):
        SliceCNNRegressor(**fast_params(preprocessing=_prep(tmp_path))).fit(
            np.ones((8, 4, 4, 4)), ages
        )


class _BreakScanAfterFirstEpoch(Callback):
    def __init__(self, path):
        self.path = path

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == 1:
            with open(self.path, "wb") as handle:
                handle.write(b"scanner crashed")


def test_bad_scan_mid_epoch_names_the_file_and_keeps_the_work(scans, tmp_path):
    paths, ages = scans
    backup = open(paths[5], "rb").read()
    encoder = TinyEncoder()
    est = SliceCNNRegressor(
        **fast_params(
            encoder=encoder,
            max_epochs=3,
            train_split=None,
            callbacks=[("break", _BreakScanAfterFirstEpoch(paths[5]))],
            random_state=0,
        )
    )
    with pytest.raises(VolumeLoadError, match=r"(?s)sub-05_T1w.nii.gz.*epoch 2.*1 completed"):
        est.fit(paths, ages)
    assert len(est.history) == 2 and "train_loss" in est.history[0]
    untrained = SliceCNNRegressor(
        **fast_params(encoder=encoder, max_epochs=0, train_split=None, random_state=0)
    )
    untrained.fit(paths[:2], ages[:2])
    assert not torch.allclose(est.module_.head[0].weight, untrained.module_.head[0].weight)

    with open(paths[5], "wb") as handle:
        handle.write(backup)
    est.set_params(callbacks=[], max_epochs=1)
    est.partial_fit(paths, ages)
    assert np.isfinite(est.predict(paths)).all()
