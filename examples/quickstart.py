"""Quickstart: position-encoded slice models on a task with a known answer.

Each volume holds one bright blob in one sagittal slice; the target is that
slice's index. A grid search over pooling and position embedding shows which
models can see *where* the blob is: without a position embedding the best R²
stays near 0.

Run: ``python examples/quickstart.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import pandas as pd
import torch
from sklearn.model_selection import GridSearchCV
from torch import nn

from slicelearn import SliceCNNRegressor
from slicelearn.datasets import make_slice_position_task


class BlobDetector(nn.Module):
    """A tiny from-scratch encoder: one convolution and a global max."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def main() -> None:
    X, y = make_slice_position_task(300, shape=(16, 20, 20), random_state=0)
    X_test, y_test = make_slice_position_task(150, shape=(16, 20, 20), random_state=1)
    est = SliceCNNRegressor(
        encoder=BlobDetector(),
        weights=None,
        lr=1e-3,
        max_epochs=40,
        batch_size=16,
        verbose=0,
        random_state=0,
    )
    search = GridSearchCV(
        est,
        {
            "pooling": ["mean", "max", "attention"],
            "position_embedding": [None, "learned", "sinusoidal"],
        },
        cv=3,
    )
    search.fit(X, y)
    table = pd.DataFrame(search.cv_results_["params"])
    table["cv_r2"] = search.cv_results_["mean_test_score"].round(3)
    print(table.to_string(index=False))
    print(f"\nbest: {search.best_params_}; held-out R² = {search.score(X_test, y_test):.3f}")


if __name__ == "__main__":
    main()
