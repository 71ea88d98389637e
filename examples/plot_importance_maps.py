"""
Where the model looks: slice-importance maps
============================================

Fit a brain-age slice model with attention pooling, then map what drives its
predictions back onto the brain with :mod:`slicelearn.inspection`: the
attention weight of each slice, the change when a slice is left out
(occlusion), and voxel-wise gradient x input. Each map is a NIfTI image in the
scans' space (here MNI), so ``nilearn.plotting`` shows it over the template.
"""

# %%
# Fit on a simulated cohort
# -------------------------
import matplotlib.pyplot as plt
from nilearn import datasets, image, plotting

from slicelearn import SliceCNNRegressor
from slicelearn.datasets import make_atrophy_cohort
from slicelearn.inspection import importance_maps, mean_importance_map

images, participants = make_atrophy_cohort(120, voxel_size=4, ad_fraction=0.0, random_state=0)
age = participants["age"].to_numpy()
model = SliceCNNRegressor(
    encoder="efficientnet_lite0",
    weights="imagenet",
    freeze_encoder=True,
    feature_layer="blocks.3",
    feature_grid=2,
    axis="axial",
    pooling="attention",
    position_embedding="sinusoidal",
    lr=3e-3,
    max_epochs=100,
    verbose=0,
    random_state=0,
).fit(images[:90], age[:90])
print(f"held-out MAE: {abs(model.predict(images[90:]) - age[90:]).mean():.1f} years")
template = datasets.load_mni152_template(resolution=2)
brain = datasets.load_mni152_brain_mask(resolution=2)


def in_brain(importance):
    """Show a map inside the MNI brain mask only (it fills whole slices)."""
    mask = image.resample_to_img(brain, importance, interpolation="nearest", copy_header=True)
    return image.math_img("importance * (mask > 0)", importance=importance, mask=mask)


# %%
# Attention over axial slices, averaged over the held-out subjects
# ----------------------------------------------------------------
# Each slice of the map holds that slice's mean attention weight; a midline
# sagittal view shows which heights the model attends to.
attention = mean_importance_map(model, images[90:], "attention")
plotting.plot_stat_map(
    in_brain(attention),
    bg_img=template,
    display_mode="x",
    cut_coords=[0],
    cmap="hot",
    title="mean attention per axial slice",
)

# %%
# Occlusion for one subject
# -------------------------
# How many years the prediction moves when one slice is left out of the set.
(occlusion,) = importance_maps(model, images[90:91], "occlusion")
plotting.plot_stat_map(
    in_brain(occlusion),
    bg_img=template,
    display_mode="x",
    cut_coords=[0],
    cmap="hot",
    title=f"|change of predicted age| (years), age {age[90]:.0f}",
)

# %%
# Voxel-wise gradient x input over the cohort
# -------------------------------------------
# ``"gradient"`` works with any pooling and is voxel-wise. Its cohort mean is
# largest in the slices that attention weights most.
gradient = mean_importance_map(model, images[90:], "gradient")
display = plotting.plot_stat_map(
    in_brain(gradient),
    bg_img=template,
    cut_coords=(0, -18, 10),
    cmap="hot",
    title="mean |gradient x input|",
)
plt.show()
