"""Tissue fractions (Atropos) and intracranial volume: what they measure, the readouts, errors."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from slicelearn import TissueClassifier, TissueRegressor
from slicelearn.data import VolumePreprocessor
from slicelearn.model_files import load_model, save_model
from slicelearn.tissue import TISSUES, tissue_fractions

SHAPE = (30, 34, 30)


def _phantom(grey_share: float, seed: int = 0, noise: float = 0.3) -> np.ndarray:
    """A stripped "brain": white-matter core, grey-matter shell, CSF rim, noise; zero outside.

    ``grey_share`` is the grey shell's share of the brain, the rim's is 0.15.
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) - s / 2 + 0.5 for s in SHAPE], indexing="ij"))
    distance = np.sqrt((grid**2).sum(axis=0))
    radius = 13.0
    # Shell radii from the shares of a sphere's volume (r^3).
    white_r = radius * (1 - 0.15 - grey_share) ** (1 / 3)
    csf_r = radius * (1 - 0.15) ** (1 / 3)
    volume = np.zeros(SHAPE, np.float32)
    volume[distance < radius] = 1.0  # CSF, darkest
    volume[distance < csf_r] = 3.0  # grey matter
    volume[distance < white_r] = 5.0  # white matter
    inside = distance < radius
    volume[inside] += rng.normal(scale=noise, size=int(inside.sum()))
    volume[inside] = np.maximum(volume[inside], 0.05)  # stays non-zero in the brain
    return volume


def test_fractions_recover_the_phantom_shares_and_repeat_exactly():
    volume = _phantom(grey_share=0.45)
    fractions = tissue_fractions(volume)
    assert fractions.shape == (len(TISSUES),) and fractions.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(fractions, [0.15, 0.45, 0.40], atol=0.04)
    np.testing.assert_array_equal(tissue_fractions(volume), fractions)
    assert tissue_fractions(_phantom(grey_share=0.25))[1] < fractions[1] - 0.1


def test_fractions_repeat_exactly_in_another_process(tmp_path):
    # Atropos seeds its spatial prior's updates at random unless told not
    # to: two processes then differ on the noisy voxels of one volume.
    volume = _phantom(grey_share=0.45, seed=3, noise=1.0)
    np.save(tmp_path / "volume.npy", volume)
    code = (
        "import sys, numpy as np; from slicelearn.tissue import tissue_fractions; "
        "np.save(sys.argv[2], tissue_fractions(np.load(sys.argv[1])))"
    )
    for run in range(2):
        out = tmp_path / f"fractions{run}.npy"
        subprocess.run([sys.executable, "-c", code, tmp_path / "volume.npy", out], check=True)
    here = tissue_fractions(volume)
    np.testing.assert_array_equal(np.load(tmp_path / "fractions0.npy"), here)
    np.testing.assert_array_equal(np.load(tmp_path / "fractions1.npy"), here)


def test_the_regressor_reads_grey_matter_and_its_file_predicts_the_same(tmp_path):
    rng = np.random.default_rng(1)
    shares = rng.uniform(0.25, 0.55, 24)
    X = np.stack([_phantom(share, seed=i) for i, share in enumerate(shares)])
    age = 100 - 100 * shares  # less grey matter, older
    model = TissueRegressor().fit(X[:18], age[:18])
    predicted = model.predict(X[18:])
    assert np.abs(predicted - age[18:]).mean() < 3.0, predicted - age[18:]
    assert model.coef_.shape == (3,)
    loaded = load_model(save_model(model, tmp_path / "tissue.slm"))
    np.testing.assert_array_equal(loaded.predict(X[18:]), predicted)
    labels = np.where(shares > np.median(shares), "more grey", "less grey")
    clf = TissueClassifier().fit(X[:18], labels[:18])
    assert (clf.predict(X[18:]) == labels[18:]).mean() >= 5 / 6


def test_intracranial_volume_comes_from_the_preprocessing_of_scans(tmp_path):
    paths, masks, brain_ml = [], {}, []
    for index in range(8):
        volume = _phantom(0.3 + 0.03 * index, seed=index)
        # Native scans of two voxel sizes: the mask's volume is in ml of each scan.
        voxel_mm = 1.0 if index % 2 else 1.2
        affine = np.diag([voxel_mm] * 3 + [1.0])
        scan, mask = tmp_path / f"s{index}.nii.gz", tmp_path / f"s{index}_mask.nii.gz"
        nib.save(nib.Nifti1Image(volume + 0.5, affine), scan)  # a background, as raw scans have
        nib.save(nib.Nifti1Image((volume > 0).astype(np.uint8), affine), mask)
        paths.append(str(scan))
        masks[str(scan)] = str(mask)
        brain_ml.append((volume > 0).sum() * voxel_mm**3 / 1000)
    preprocessing = VolumePreprocessor(
        target=None, mask=masks, normalize="zscore_brain", cache_dir=tmp_path / "cache"
    )
    model = TissueRegressor(intracranial_volume=True, preprocessing=preprocessing)
    features = model.fit(paths, np.arange(8.0))._feature_matrix(paths, reset=False)
    assert features.shape == (8, 4)
    np.testing.assert_allclose(features[:, 3], brain_ml, rtol=0.01)
    with pytest.raises(ValueError, match="intracranial_volume=True reads the brain volume"):
        TissueRegressor(intracranial_volume=True).fit(np.stack([_phantom(0.4)] * 4), np.arange(4))


def test_a_volume_without_a_brain_is_named():
    X = np.stack([_phantom(0.4, seed=i) for i in range(4)])
    X[2] = 0
    X[2, 10, 10, 10:15] = 1.0  # five voxels: not a stripped brain
    with pytest.raises(ValueError, match=r"X\[2\]: The volume has 5 non-zero voxels"):
        TissueRegressor().fit(X, np.arange(4.0))


def test_tissue_covariates_join_the_slice_features_and_are_stored(tmp_path):
    from slicelearn import SliceLinearRegressor
    from slicelearn.tissue import TissueFeatures

    rng = np.random.default_rng(2)
    shares = rng.uniform(0.25, 0.55, 24)
    X = np.stack([_phantom(share, seed=i) for i, share in enumerate(shares)])
    age = 100 - 100 * shares
    slices_only = SliceLinearRegressor(weights=None, feature_layer="blocks.1", feature_grid=1)
    joined = SliceLinearRegressor(
        weights=None, feature_layer="blocks.1", feature_grid=1, covariates=TissueFeatures()
    )
    slices_only.fit(X[:18], age[:18])
    joined.fit(X[:18], age[:18])
    assert joined.n_covariates_ == 3 and joined.n_features_ == slices_only.n_features_ + 3
    # The three tissue columns carry as much variance as all the slice columns.
    fractions = TissueFeatures().transform(X[:18])
    np.testing.assert_allclose(
        joined.feature_scale_[-3:],
        fractions.std(axis=0) / np.sqrt(slices_only.n_features_ / 3),
    )
    error_joined = np.abs(joined.predict(X[18:]) - age[18:]).mean()
    error_slices = np.abs(slices_only.predict(X[18:]) - age[18:]).mean()
    assert error_joined < 0.75 * error_slices, (error_joined, error_slices)
    loaded = load_model(save_model(joined, tmp_path / "joined.slm"))
    assert isinstance(loaded.covariates, TissueFeatures)
    np.testing.assert_array_equal(loaded.predict(X[18:]), joined.predict(X[18:]))


def test_covariates_that_do_not_give_one_row_per_volume_are_refused():
    from sklearn.preprocessing import FunctionTransformer

    from slicelearn import SliceLinearRegressor

    X = np.stack([_phantom(0.4, seed=i) for i in range(4)])
    model = SliceLinearRegressor(
        weights=None,
        feature_layer="blocks.1",
        covariates=FunctionTransformer(lambda volumes: np.ones((2, 1))),
    )
    with pytest.raises(ValueError, match=r"shape \(2, 1\) for 4 volumes"):
        model.fit(X, np.arange(4.0))
    with pytest.raises(ValueError, match="covariates"):
        SliceLinearRegressor(covariates="tissue").fit(X, np.arange(4.0))


def test_tissue_features_name_their_columns_and_refuse_paths():
    from slicelearn.tissue import TissueFeatures

    X = np.stack([_phantom(0.3, seed=0), _phantom(0.5, seed=1)])
    features = TissueFeatures()
    table = features.fit_transform(X)
    assert table.shape == (2, 3) and table[1, 1] > table[0, 1]
    assert list(features.get_feature_names_out()) == [
        "csf_fraction",
        "grey_matter_fraction",
        "white_matter_fraction",
    ]
    with pytest.raises(ValueError, match=r"X has shape \(2,\): TissueFeatures takes volumes"):
        features.transform(["a.nii.gz", "b.nii.gz"])
