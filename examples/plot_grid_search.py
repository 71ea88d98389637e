"""
Grid search over pooling and position embedding
===============================================

:class:`~slicelearn.SliceCNNRegressor` is a scikit-learn estimator, so
``GridSearchCV`` tunes its architecture like any other parameter. Here the
task has a known answer: each volume holds one bright blob in one sagittal
slice, and the target is that slice's index
(:func:`slicelearn.datasets.make_slice_position_task`). A set pooling alone is
blind to slice order, so only models with a position embedding can solve it.
"""

# %%
# The task
# --------
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import GridSearchCV
from torch import nn

from slicelearn import SliceCNNRegressor
from slicelearn.datasets import make_slice_position_task

X, y = make_slice_position_task(240, shape=(16, 20, 20), random_state=0)
X_test, y_test = make_slice_position_task(120, shape=(16, 20, 20), random_state=1)
print(X.shape, "targets:", np.unique(y))


# %%
# A tiny encoder
# --------------
# Any ``nn.Module`` mapping ``(N, 1, H, W)`` slices to ``(N, F)`` features is
# an encoder; this one detects a blob and nothing else.
class BlobDetector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# %%
# The search
# ----------
# Three poolings times three position embeddings, 3-fold cross-validated R².
# An encoder given as a module keeps the weights it has (it may be a trained
# one), and every candidate starts from a copy of them: seed torch before
# building it, or each run of the script starts elsewhere.
torch.manual_seed(0)
search = GridSearchCV(
    SliceCNNRegressor(
        encoder=BlobDetector(),
        weights=None,
        lr=3e-3,
        max_epochs=15,
        batch_size=16,
        verbose=0,
        random_state=0,
    ),
    {
        "pooling": ["mean", "max", "attention"],
        "position_embedding": [None, "learned", "sinusoidal"],
    },
    cv=3,
)
search.fit(X, y)
results = pd.DataFrame(search.cv_results_["params"]).fillna("none")
results["R2"] = search.cv_results_["mean_test_score"]
table = results.pivot(index="pooling", columns="position_embedding", values="R2")
print(table.round(2))
print(f"best: {search.best_params_}; held-out R² {search.score(X_test, y_test):.2f}")

# %%
# The results
# -----------
# Without a position embedding every pooling fails (R² near 0). Max pooling
# reads the blob's slice from either embedding; attention pooling converges
# more slowly and, in these 15 epochs, only partly with sinusoidal positions;
# mean pooling does not learn it in this time at all.
fig, ax = plt.subplots(figsize=(5, 3.5))
image = ax.imshow(table.to_numpy(), cmap="viridis", vmin=min(0, table.min().min()), vmax=1)
ax.set_xticks(range(table.shape[1]), table.columns)
ax.set_yticks(range(table.shape[0]), table.index)
ax.set_xlabel("position embedding")
ax.set_ylabel("pooling")
for (row, column), value in np.ndenumerate(table.to_numpy()):
    ax.text(column, row, f"{value:.2f}", ha="center", va="center", color="w")
fig.colorbar(image, label="cross-validated R²")
fig.tight_layout()
