"""The simulated atrophy cohort: format, determinism, and that each effect is where it was put.

Effects are measured back from the images with simple region-of-interest
statistics, on the fast 4 mm grid, and compared with the same cohort with the
effect switched off (same ``random_state``: identical subjects otherwise).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from slicelearn.datasets.atrophy import EFFECTS, load_atrophy_template, make_atrophy_cohort

COLUMNS = [
    "age",
    "sex",
    "diagnosis",
    "ventricle_volume_ratio",
    "gm_volume_loss",
    "hippocampal_atrophy",
    "gm_wm_contrast",
    "head_scale",
    "cortical_atrophy",
    "hippocampal_volume",
    "cortical_signature_volume",
]
NO_NUISANCE = {"anatomy": False, "pose": False, "head_size": False, "bias": False}


def _cohort(n=30, **kwargs):
    kwargs.setdefault("voxel_size", 4)
    kwargs.setdefault("random_state", 0)
    X, _, labels = make_atrophy_cohort(n, return_arrays=True, **kwargs)
    return X, labels


@pytest.fixture(scope="module")
def template():
    return load_atrophy_template(voxel_size=4)


@pytest.fixture(scope="module")
def rois(template):
    """Regions of interest on the 4 mm grid, from the simulator's own template."""
    affine = template.affine
    shape = template.t1.shape
    x, y, z = (affine[:3, :3] @ np.indices(shape).reshape(3, -1) + affine[:3, 3:4]).reshape(
        3, *shape
    )
    gm, wm, csf = (template[name].get_fdata() for name in ("gm", "wm", "csf"))
    brain = template.brain_mask.get_fdata() > 0.5
    ventricles = template.ventricles.get_fdata() > 0.3
    # Depth from sulcal CSF and distance from the ventricles: deep tissue that
    # neither cortical thinning nor ventricular expansion reaches.
    sulcal = ((csf > 0.3) & ~ndimage.binary_dilation(ventricles, iterations=2)) | ~brain
    depth = ndimage.distance_transform_edt(~sulcal, sampling=4)
    from_ventricles = ndimage.distance_transform_edt(~ventricles, sampling=4)
    deep = (depth > 10) & (from_ventricles > 10)
    return {
        "brain": brain,
        "ventricle_box": (np.abs(x) < 30) & (y > -45) & (y < 30) & (z > 0) & (z < 35),
        "hippocampi": template.hippocampi.get_fdata() > 0.5,
        "deep_gm": (gm > 0.5) & deep,
        "deep_wm": (wm > 0.9) & deep,
    }


def _ventricle_size(X, rois):
    """Dark (CSF-like) voxels in a central box, relative to each volume's bright WM level."""
    levels = [np.percentile(v[rois["brain"]], 95) for v in X]
    return np.array([(v[rois["ventricle_box"]] < 0.5 * level).sum() for v, level in zip(X, levels)])


def _hippocampal_signal(X, rois):
    """Mean hippocampal-ellipsoid intensity relative to the WM level (GM-like: high)."""
    return np.array([v[rois["hippocampi"]].mean() / np.percentile(v[rois["brain"]], 95) for v in X])


def _contrast(X, rois):
    """Michelson grey/white contrast between deep WM and deep GM."""
    wm = np.array([np.median(v[rois["deep_wm"]]) for v in X])
    gm = np.array([np.median(v[rois["deep_gm"]]) for v in X])
    return (wm - gm) / (wm + gm)


# --- Format ---------------------------------------------------------------------


def test_images_labels_and_arrays_have_the_documented_format():
    from nilearn.datasets import load_mni152_template

    images, labels = make_atrophy_cohort(4, voxel_size=4, ad_fraction=0.5, random_state=0)
    assert len(images) == 4 and all(isinstance(img, nib.Nifti1Image) for img in images)
    for img in images:
        assert img.shape == (50, 59, 48)
        assert img.get_data_dtype() == np.float32
        assert np.asarray(img.dataobj).dtype == np.float32
        assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    # The 4 mm grid: 2x2x2 blocks of the 2 mm template grid, same field of view.
    native = load_mni152_template(resolution=2).affine
    expected = native.copy()
    expected[:3, :3] *= 2
    expected[:3, 3] += 1.0
    np.testing.assert_allclose(images[0].affine, expected)

    assert list(labels.columns) == COLUMNS and len(labels) == 4
    assert labels["age"].dtype == np.float64
    assert set(labels["sex"]) <= {"F", "M"}
    assert (labels["diagnosis"] == "AD").sum() == 2
    assert (labels.loc[labels["diagnosis"] == "CN", "hippocampal_atrophy"] == 0).all()
    assert (labels.loc[labels["diagnosis"] == "AD", "hippocampal_atrophy"] > 0.05).all()

    X, affine, same = make_atrophy_cohort(
        4, voxel_size=4, ad_fraction=0.5, random_state=0, return_arrays=True
    )
    assert X.shape == (4, 50, 59, 48) and X.dtype == np.float32
    np.testing.assert_array_equal(affine, images[0].affine)
    np.testing.assert_array_equal(X, np.stack([np.asarray(img.dataobj) for img in images]))
    pd.testing.assert_frame_equal(labels, same)


def test_the_2mm_grid_is_the_template_grid_and_subjects_match_across_grids():
    from nilearn.datasets import load_mni152_template

    native = load_mni152_template(resolution=2)
    images, labels = make_atrophy_cohort(2, voxel_size=2, random_state=3)
    assert images[0].shape == native.shape == (99, 117, 95)
    np.testing.assert_array_equal(images[0].affine, native.affine)
    _, coarse = make_atrophy_cohort(2, voxel_size=4, random_state=3)
    # Same random_state, same subjects: demographics and applied effects agree.
    pd.testing.assert_frame_equal(labels[["age", "sex", "diagnosis"]], coarse.iloc[:, :3])
    for column in ("gm_wm_contrast", "head_scale", "hippocampal_atrophy"):
        np.testing.assert_allclose(labels[column], coarse[column], rtol=1e-3)


def test_the_same_random_state_gives_the_same_cohort_and_another_a_different_one():
    X1, labels1 = _cohort(3, random_state=7)
    X2, labels2 = _cohort(3, random_state=np.random.RandomState(7))
    np.testing.assert_array_equal(X1, X2)
    pd.testing.assert_frame_equal(labels1, labels2)
    X3, labels3 = _cohort(3, random_state=8)
    assert not np.allclose(X1, X3)
    assert not np.allclose(labels1["age"], labels3["age"])


def test_without_any_effect_or_noise_every_volume_is_the_young_template(template):
    off = dict.fromkeys(EFFECTS, False)
    X, labels = _cohort(3, effects=off, noise=0.0, age_range=(80, 85), ad_fraction=1.0)
    for volume in X:
        np.testing.assert_allclose(volume, template.t1.get_fdata(), atol=1e-5)
    assert (labels["ventricle_volume_ratio"] == 1).all()
    assert (labels[["gm_volume_loss", "hippocampal_atrophy"]] == 0).all().all()
    assert (labels[["gm_wm_contrast", "head_scale"]] == 1).all().all()


@pytest.mark.parametrize("effect", ["anatomy", "pose", "head_size", "bias"])
def test_each_nuisance_effect_alone_changes_the_volume_but_not_the_labels(template, effect):
    only = {**dict.fromkeys(EFFECTS, False), effect: True}
    X, labels = _cohort(1, effects=only, noise=0.0, random_state=4)
    change = np.abs(X[0] - template.t1.get_fdata())
    assert change.max() > 0.1 and change.mean() > 0.002
    assert labels["ventricle_volume_ratio"].item() == 1 and labels["gm_volume_loss"].item() == 0


def test_template_intensities_and_regions(template):
    t1, gm, wm = (template[name].get_fdata() for name in ("t1", "gm", "wm"))
    assert np.median(t1[wm > 0.95]) == pytest.approx(1.0, abs=0.05)  # WM brightest
    assert np.median(t1[gm > 0.8]) == pytest.approx(0.7, abs=0.05)  # GM darker
    ventricular = t1[template.ventricles.get_fdata() > 0.9]
    assert np.median(ventricular) < 0.4  # CSF darkest
    # Lateral ventricles found from the CSF map near MNI (+-15, -10, 18) mm.
    for centre, side in zip(template.ventricle_centres_mm, (-1, 1)):
        assert np.linalg.norm(centre - [15 * side, -10, 18]) < 8
    hippocampi = template.hippocampi.get_fdata()
    assert hippocampi.min() == 0 and hippocampi.max() == 1
    assert np.mean(gm[hippocampi > 0.5]) > 0.4  # the ellipsoids sit on grey matter


# --- Effects --------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_cohorts():
    """The same 30 noisy subjects with every effect, and with ageing switched off."""
    return _cohort(30), _cohort(30, effects={"age": False})


def test_ventricles_grow_with_age_and_stop_when_ageing_is_off(noisy_cohorts, rois):
    (X, labels), (X_off, labels_off) = noisy_cohorts
    size = _ventricle_size(X, rois)
    assert stats.spearmanr(size, labels["age"])[0] > 0.5
    assert stats.spearmanr(size, labels["ventricle_volume_ratio"])[0] > 0.7
    older = labels["age"] > labels["age"].median()
    assert size[older].mean() > 1.3 * size[~older].mean()
    # Same subjects without ageing: ventricle size no longer follows age.
    pd.testing.assert_series_equal(labels["age"], labels_off["age"])
    assert abs(stats.spearmanr(_ventricle_size(X_off, rois), labels_off["age"])[0]) < 0.3
    assert (labels_off["gm_volume_loss"] == 0).all()


def test_age_labels_follow_the_documented_trends(noisy_cohorts):
    (_, labels), _ = noisy_cohorts
    cn = labels[labels["diagnosis"] == "CN"]
    assert stats.spearmanr(cn["age"], cn["ventricle_volume_ratio"])[0] > 0.7
    assert stats.spearmanr(labels["age"], labels["gm_volume_loss"])[0] > 0.9
    assert stats.spearmanr(labels["age"], labels["gm_wm_contrast"])[0] < -0.9
    old = labels[labels["age"] > 75]
    assert len(old) and (old["gm_volume_loss"] > 0.1).all()
    assert (labels["gm_volume_loss"] < 0.5).all()


def test_ad_removes_hippocampal_grey_matter_in_a_paired_comparison(rois):
    kwargs = dict(n=12, noise=0.0, age_range=(65, 80), ad_fraction=0.5, random_state=1)
    X, labels = _cohort(**kwargs)
    X_off, labels_off = _cohort(**kwargs, effects={"ad": False})
    ad = (labels["diagnosis"] == "AD").to_numpy()
    assert ad.sum() == 6
    change = _hippocampal_signal(X, rois) - _hippocampal_signal(X_off, rois)
    assert (change[ad] < -0.005).all() and change[ad].mean() < -0.02
    np.testing.assert_array_equal(X[~ad], X_off[~ad])  # controls untouched
    # AD also enlarges the ventricles, by 1 + 0.4 * severity (0.4 to 1.6).
    factor = labels["ventricle_volume_ratio"] / labels_off["ventricle_volume_ratio"]
    assert (factor[ad] > 1.1).all() and np.allclose(factor[~ad], 1.0)
    assert (_ventricle_size(X, rois) >= _ventricle_size(X_off, rois))[ad].all()
    assert (labels_off["hippocampal_atrophy"] == 0).all()


def test_ad_and_cn_groups_differ_in_the_hippocampus_only_when_ad_is_on(rois):
    kwargs = dict(n=20, age_range=(70, 75), effects=NO_NUISANCE, random_state=2)
    X, labels = _cohort(**kwargs)
    X_off, _ = _cohort(**{**kwargs, "effects": {**NO_NUISANCE, "ad": False}})
    ad = (labels["diagnosis"] == "AD").to_numpy()
    signal, signal_off = _hippocampal_signal(X, rois), _hippocampal_signal(X_off, rois)
    assert signal[ad].max() < signal[~ad].min()
    assert signal[~ad].mean() - signal[ad].mean() > 0.03
    assert abs(signal_off[~ad].mean() - signal_off[ad].mean()) < 0.01


# --- AD as a detection task ---------------------------------------------------


@pytest.fixture(scope="module")
def ad_cohorts():
    """An older, age-matched cohort (half AD) with every effect, and with AD off."""
    kwargs = dict(n=80, age_range=(60, 85), ad_fraction=0.5, random_state=0)
    return _cohort(**kwargs), _cohort(**kwargs, effects={"ad": False})


def _cohens_d(cn, ad):
    return (np.mean(cn) - np.mean(ad)) / np.sqrt((np.var(cn, ddof=1) + np.var(ad, ddof=1)) / 2)


def _cv_auc(features, y):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression())
    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    scores = cross_val_predict(model, features, y, cv=folds, method="decision_function")
    return roc_auc_score(y, scores)


def test_ad_effect_sizes_match_the_documented_literature_values(ad_cohorts):
    (_, labels), (_, labels_off) = ad_cohorts
    ad = (labels["diagnosis"] == "AD").to_numpy()
    assert ad.sum() == 40
    # What was applied: 24 % of the hippocampi, 12 % of the signature cortex (x severity).
    assert labels.loc[ad, "hippocampal_atrophy"].mean() == pytest.approx(0.24, abs=0.03)
    assert labels.loc[ad, "cortical_atrophy"].mean() == pytest.approx(0.12, abs=0.015)
    assert (labels.loc[~ad, ["hippocampal_atrophy", "cortical_atrophy"]] == 0).all().all()
    # Group differences against age-matched controls, as a study would measure them:
    # hippocampus 20-25 % smaller (Cohen's d about 1.5-2); signature cortex about
    # 12 % thinner (d about 1, here 1-1.5); ventricles larger.
    hippocampus = labels["hippocampal_volume"].to_numpy()
    cortex = labels["cortical_signature_volume"].to_numpy()
    assert 1 - hippocampus[ad].mean() / hippocampus[~ad].mean() == pytest.approx(0.23, abs=0.06)
    assert 1.2 < _cohens_d(hippocampus[~ad], hippocampus[ad]) < 2.6
    assert 1 - cortex[ad].mean() / cortex[~ad].mean() == pytest.approx(0.12, abs=0.05)
    assert 0.7 < _cohens_d(cortex[~ad], cortex[ad]) < 2.0
    ventricles = np.log(labels["ventricle_volume_ratio"].to_numpy())
    assert 0.7 < _cohens_d(ventricles[ad], ventricles[~ad]) < 2.5
    # Controls' hippocampi shrink about 1-1.5 %/year in old age (Barnes et al. 2009).
    cn = labels[~ad]
    slope = np.polyfit(cn["age"], np.log(cn["hippocampal_volume"]), 1)[0]
    assert -0.02 < slope < -0.008
    # Without the AD effect the groups are the same.
    for column in ("hippocampal_volume", "cortical_signature_volume"):
        values = labels_off[column].to_numpy()
        assert abs(_cohens_d(values[~ad], values[ad])) < 0.5


def test_ad_is_detectable_from_regional_volumes_only_when_the_ad_effect_is_on(ad_cohorts):
    (_, labels), (_, labels_off) = ad_cohorts
    y = (labels["diagnosis"] == "AD").to_numpy()
    # The applied volumes, with age as a covariate (the groups are age-matched,
    # but ventricles and hippocampi change with age).
    columns = ["hippocampal_volume", "cortical_signature_volume", "ventricle_volume_ratio", "age"]
    assert _cv_auc(labels[columns].to_numpy(), y) > 0.9
    assert abs(_cv_auc(labels_off[columns].to_numpy(), y) - 0.5) < 0.15


def _region_measures(X, template, rois):
    """Hippocampal and signature-cortex intensity, dark voxels near the ventricles and overall."""
    cortex = template.ad_cortex.get_fdata() > 0.5
    rows = []
    for volume in X:
        level = np.percentile(volume[rois["brain"]], 95)
        rows.append(
            [
                volume[rois["hippocampi"]].mean() / level,
                volume[cortex].mean() / level,
                (volume[rois["ventricle_box"]] < 0.5 * level).sum(),
                (volume[rois["brain"]] < 0.5 * level).mean(),
            ]
        )
    return np.array(rows)


def test_a_simple_image_classifier_detects_ad_only_when_the_ad_effect_is_on(
    ad_cohorts, template, rois
):
    # Every nuisance on (position, shape, head size, bias, noise): the images
    # themselves, measured in the template's regions, not the ground truth.
    (X, labels), (X_off, _) = ad_cohorts
    y = (labels["diagnosis"] == "AD").to_numpy()
    assert _cv_auc(_region_measures(X, template, rois), y) > 0.7
    assert abs(_cv_auc(_region_measures(X_off, template, rois), y) - 0.5) < 0.15


def test_the_ad_labels_are_what_the_images_show(template):
    # AD alone, nothing moving: the GM turned into CSF, read back from the
    # intensity drop (GM 0.70 -> CSF 0.22), is the labelled fraction.
    only_ad = {**dict.fromkeys(EFFECTS, False), "ad": True}
    kwargs = dict(n=4, noise=0.0, ad_fraction=1.0, random_state=5, ad_ventricle_excess=0.0)
    young = template.t1.get_fdata()
    gm = template.gm.get_fdata()
    X, labels = _cohort(**kwargs, effects=only_ad, ad_cortical_atrophy=0.0)
    weight = template.hippocampi.get_fdata()
    lost = ((young - X) * weight).sum(axis=(1, 2, 3)) / 0.48
    np.testing.assert_allclose(lost / (weight * gm).sum(), labels["hippocampal_atrophy"], rtol=0.05)
    assert (labels["cortical_atrophy"] == 0).all()
    X, labels = _cohort(**kwargs, effects=only_ad, ad_hippocampal_atrophy=0.0)
    weight = template.ad_cortex.get_fdata()
    lost = ((young - X) * weight).sum(axis=(1, 2, 3)) / 0.48
    np.testing.assert_allclose(lost / (weight * gm).sum(), labels["cortical_atrophy"], rtol=0.1)
    np.testing.assert_allclose(1 - labels["cortical_signature_volume"], labels["cortical_atrophy"])
    assert (labels["hippocampal_atrophy"] == 0).all()
    assert labels["cortical_atrophy"].between(0.05, 0.2).all()


def test_zero_ad_effect_sizes_are_the_ad_effect_switched_off():
    kwargs = dict(n=4, ad_fraction=0.5, random_state=6)
    X_off, labels_off = _cohort(**kwargs, effects={"ad": False})
    X_zero, labels_zero = _cohort(
        **kwargs, ad_hippocampal_atrophy=0.0, ad_cortical_atrophy=0.0, ad_ventricle_excess=0.0
    )
    np.testing.assert_allclose(X_zero, X_off, atol=1e-5)
    pd.testing.assert_frame_equal(labels_zero, labels_off, atol=1e-6)


def test_grey_white_contrast_falls_with_age_only_when_ageing_is_on(rois):
    X, labels = _cohort(30, effects=NO_NUISANCE)
    X_off, labels_off = _cohort(30, effects={**NO_NUISANCE, "age": False})
    contrast, contrast_off = _contrast(X, rois), _contrast(X_off, rois)
    assert stats.spearmanr(contrast, labels["age"])[0] < -0.8
    slope = np.polyfit(labels["age"], contrast, 1)[0]
    slope_off = np.polyfit(labels_off["age"], contrast_off, 1)[0]
    assert slope < 0 and abs(slope_off) < 0.1 * abs(slope)
    assert (labels_off["gm_wm_contrast"] == 1).all()


def test_head_size_follows_the_head_scale_and_sex(rois):
    X, labels = _cohort(40, noise=0.0, effects={"bias": False})
    head_volume = (X > 0.1).sum(axis=(1, 2, 3))
    assert stats.spearmanr(head_volume, labels["head_scale"])[0] > 0.9
    by_sex = labels.groupby("sex")["head_scale"].mean()
    assert by_sex["M"] > by_sex["F"]
    _, fixed = _cohort(5, effects={"head_size": False})
    assert (fixed["head_scale"] == 1).all()


def test_noise_types(template):
    outside = template.brain_mask.get_fdata() == 0
    off = dict.fromkeys(EFFECTS, False)
    X_gauss, _ = _cohort(1, effects=off, noise=0.05, noise_type="gaussian")
    X_rice, _ = _cohort(1, effects=off, noise=0.05, noise_type="rician")
    background = X_gauss[0][outside & (template.t1.get_fdata() == 0)]
    assert background.std() == pytest.approx(0.05, rel=0.1)
    assert X_gauss.min() < 0 <= X_rice.min()
    # Rician background is Rayleigh: mean sigma * sqrt(pi / 2).
    rayleigh = X_rice[0][outside & (template.t1.get_fdata() == 0)]
    assert rayleigh.mean() == pytest.approx(0.05 * np.sqrt(np.pi / 2), rel=0.1)


def test_age_ranges_are_respected():
    _, labels = _cohort(40, age_range=(30, 50), ad_age_range=(60, 70), noise=0.0)
    cn, ad = labels[labels["diagnosis"] == "CN"], labels[labels["diagnosis"] == "AD"]
    assert cn["age"].between(30, 50).all() and ad["age"].between(60, 70).all()
    _, fixed = _cohort(3, age_range=(70, 70), ad_fraction=0.0)
    assert (fixed["age"] == 70).all() and (fixed["diagnosis"] == "CN").all()
    _, young = _cohort(3, age_range=(5, 15), noise=0.0)
    assert (young["gm_volume_loss"] == 0).all()  # the template is the age-20 reference


# --- Validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_subjects": 0}, "n_subjects"),
        ({"n_subjects": 2.5}, "n_subjects"),
        ({"n_subjects": True}, "n_subjects"),
        ({"voxel_size": 3}, "voxel_size"),
        ({"voxel_size": "4"}, "voxel_size"),
        ({"age_range": (50, 40)}, "age_range"),
        ({"age_range": (-1, 40)}, "age_range"),
        ({"age_range": 40}, "age_range"),
        ({"age_range": (20, float("nan"))}, "age_range"),
        ({"ad_age_range": (90, 80)}, "ad_age_range"),
        ({"ad_fraction": 1.5}, "ad_fraction"),
        ({"ad_fraction": -0.1}, "ad_fraction"),
        ({"effects": {"smoking": True}}, "Unknown effects"),
        ({"effects": {"age": "yes"}}, "effects"),
        ({"effects": ["age"]}, "effects"),
        ({"noise": -0.1}, "noise"),
        ({"noise": float("inf")}, "noise"),
        ({"noise_type": "poisson"}, "noise_type"),
        ({"return_arrays": "yes"}, "return_arrays"),
        ({"random_state": "seed"}, "seed"),
        ({"ad_hippocampal_atrophy": -0.1}, "ad_hippocampal_atrophy"),
        ({"ad_hippocampal_atrophy": 0.9}, "ad_hippocampal_atrophy"),
        ({"ad_cortical_atrophy": float("nan")}, "ad_cortical_atrophy"),
        ({"ad_cortical_atrophy": True}, "ad_cortical_atrophy"),
        ({"ad_ventricle_excess": "0.4"}, "ad_ventricle_excess"),
    ],
)
def test_bad_arguments_raise_clear_value_errors(kwargs, match):
    kwargs = {"n_subjects": 1, "voxel_size": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        make_atrophy_cohort(**kwargs)


def test_bad_template_voxel_size_is_rejected():
    with pytest.raises(ValueError, match="voxel_size"):
        load_atrophy_template(voxel_size=1)
