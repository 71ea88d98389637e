"""A trained model finds the simulated Alzheimer's effect where the simulator put it.

Only the AD effect is switched on, and its cortical part off
(``ad_cortical_atrophy=0``), so AD and CN volumes differ where the simulator
acts alone: the two hippocampi (atrophy) and the lateral ventricles
(enlargement). After training on the per-subject atrophy, the prediction of an
AD volume must fall to the CN level when the axial slices of those regions are
swapped for a CN subject's, and hardly move when all other brain slices are.
"""

from __future__ import annotations

import numpy as np
import pytest

from slicelearn import SliceCNNRegressor
from slicelearn.datasets.atrophy import load_atrophy_template, make_atrophy_cohort

AD_ONLY = {"age": False, "anatomy": False, "head_size": False, "pose": False, "bias": False}


@pytest.fixture(scope="module")
def trained():
    X, _, labels = make_atrophy_cohort(
        120,
        voxel_size=4,
        effects={**AD_ONLY, "ad": True},
        ad_cortical_atrophy=0.0,  # the temporo-parietal cortex would span most slices
        return_arrays=True,
        random_state=0,
    )
    atrophy = labels["hippocampal_atrophy"].to_numpy(np.float32) * 100  # percent of tissue
    est = SliceCNNRegressor(
        encoder="efficientnet_lite0",
        weights="imagenet",
        freeze_encoder=True,
        feature_layer="blocks.3",
        feature_grid=4,
        pooling="mean",
        position_embedding="sinusoidal",
        axis="axial",
        lr=1e-3,
        max_epochs=100,
        batch_size=8,
        train_split=None,
        verbose=0,
        random_state=0,
    ).fit(X[:96], atrophy[:96])
    return est, X[96:], labels["diagnosis"].to_numpy()[96:]


def test_model_learns_the_hippocampal_effect(trained):
    est, X, diagnosis = trained
    predicted = est.predict(X)
    assert predicted[diagnosis == "AD"].min() > predicted[diagnosis == "CN"].max()


def test_prediction_comes_from_the_slices_where_the_effect_was_put(trained):
    est, X, diagnosis = trained
    template = load_atrophy_template(voxel_size=4)

    def axial_extent(region):
        profile = template[region].get_fdata().sum(axis=(0, 1))
        return np.flatnonzero(profile > 0.05 * profile.max())

    effect = np.union1d(axial_extent("hippocampi"), axial_extent("ventricles"))
    # The ventricles push the tissue around them: allow two slices (8 mm) of margin.
    effect = np.arange(effect.min() - 2, effect.max() + 3)
    elsewhere = np.setdiff1d(axial_extent("brain_mask"), effect)
    assert len(elsewhere) >= 10

    ad, cn = X[diagnosis == "AD"], X[diagnosis == "CN"][0]
    predicted_ad = est.predict(ad)
    gap = predicted_ad.mean() - est.predict(X[diagnosis == "CN"]).mean()

    def swapped(slices):
        out = ad.copy()
        out[..., slices] = cn[..., slices]
        return est.predict(out)

    drop_at_effect = (predicted_ad - swapped(effect)).mean()
    change_elsewhere = np.abs(predicted_ad - swapped(elsewhere)).mean()
    assert drop_at_effect > 0.7 * gap
    assert change_elsewhere < 0.15 * drop_at_effect
