"""
Your own BIDS dataset
=====================

Train and apply a brain-age model on a dataset laid out in BIDS: a
``participants.tsv`` with an ``age`` column, and one T1-weighted scan per
subject in ``sub-<label>/anat/`` (or ``sub-<label>/ses-<label>/anat/``).

So that this example runs anywhere, it first writes a small BIDS dataset of
simulated scans to a temporary folder. With your own data, start at
:func:`slicelearn.data.read_cohort` with your dataset's root.
"""

# %%
# A BIDS dataset on disk
# ----------------------
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pandas as pd
from nilearn import plotting
from sklearn.model_selection import train_test_split

from slicelearn.data import VolumePreprocessor, read_cohort
from slicelearn.datasets import make_atrophy_cohort
from slicelearn.presets import recommended_readout

root = Path(tempfile.mkdtemp()) / "my_study"
images, participants = make_atrophy_cohort(100, voxel_size=4, ad_fraction=0.0, random_state=3)
participants.insert(0, "participant_id", [f"sub-{i:03d}" for i in range(len(images))])
for label, scan in zip(participants["participant_id"], images):
    (root / label / "anat").mkdir(parents=True)
    nib.save(scan, root / label / "anat" / f"{label}_T1w.nii.gz")
participants[["participant_id", "age", "sex"]].to_csv(
    root / "participants.tsv", sep="\t", index=False
)
print(sorted(p.name for p in root.iterdir())[:4], "...")

# %%
# Read the cohort
# ---------------
# :func:`~slicelearn.data.read_cohort` pairs each row of ``participants.tsv``
# with its scan and names the row and folder of anything missing.
paths, age = read_cohort(root, target="age")
print(paths[0], age[0])
plotting.plot_anat(paths[0], title=f"{Path(paths[0]).name}, age {age[0]:.0f}")

# %%
# Preprocessing, and a model that reads paths
# -------------------------------------------
# :class:`~slicelearn.data.VolumePreprocessor` reorients each scan to RAS,
# resamples it onto the FSL MNI152 2 mm grid (add ``registration="affine"``
# for scans not yet in MNI space) and z-scores it. The model (the ridge
# readout of the command line's default, :func:`slicelearn.presets.recommended_readout`:
# a ridge regression on frozen ImageNet slice features, seconds to fit) keeps
# paths, reads scans lazily, and caches preprocessed volumes on disk so the
# next run skips this step. Every slicelearn estimator reads paths this way.
preprocessing = VolumePreprocessor(target="mni152_91x109x91", cache_dir=root.parent / "cache")
model = recommended_readout(preprocessing=preprocessing)
train_paths, test_paths, train_age, test_age = train_test_split(
    paths, age, test_size=0.25, random_state=0
)
model.fit(train_paths, train_age)

# %%
# Predictions back into a table
# -----------------------------
predicted = model.predict(test_paths)
table = pd.DataFrame(
    {
        "participant_id": [Path(p).parts[-3] for p in test_paths],
        "age": test_age,
        "predicted_age": np.round(predicted.astype(float), 1),
    }
)
table.to_csv(root.parent / "predicted_age.tsv", sep="\t", index=False)
print(table.head())
print(f"MAE {np.abs(predicted - test_age).mean():.1f} years on {len(table)} held-out subjects")
plt.figure(figsize=(4, 4))
plt.scatter(test_age, predicted)
plt.plot([20, 85], [20, 85], "k--", lw=0.8)
plt.xlabel("age")
plt.ylabel("predicted age")
plt.tight_layout()
