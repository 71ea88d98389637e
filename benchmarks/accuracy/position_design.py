"""Which design lets a slice's position reach the prediction?

The task (``make_slice_position_task``): one blob in one sagittal slice of a
noisy volume, target = that slice's index. Each row trains a SliceNet with a
tiny blob-detecting encoder and reports R² on the training set and on
held-out volumes. ``--mixer`` compares what sits between "add the position
embedding" and "pool":

- ``mlp``: the per-slice residual MLP that slicelearn uses (``SliceMixer``);
- ``ln``: a per-slice LayerNorm only;
- ``none``: nothing.

Run: ``python benchmarks/accuracy/position_design.py --out docs/position_design.tsv``
(about 3 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch
from torch import nn

from slicelearn.datasets import make_slice_position_task
from slicelearn.nn import SliceNet


class BlobDetector(nn.Module):
    out_features = 8

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool2d(1), nn.Flatten()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def r2(prediction: torch.Tensor, target: torch.Tensor) -> float:
    return float(1 - ((prediction - target) ** 2).sum() / ((target - target.mean()) ** 2).sum())


def run(mixer: str, pooling: str, position: str | None, data, epochs: int, seed: int = 0):
    (X, y), (X_test, y_test) = data
    torch.manual_seed(seed)
    net = SliceNet(
        BlobDetector(), n_slices=X.shape[1], pooling=pooling, position_embedding=position
    )
    if mixer == "none":
        net.mixer = nn.Identity()
    elif mixer == "ln":
        net.mixer = nn.LayerNorm(net.projection.out_features)
    with torch.no_grad():
        net.output_layer.bias.fill_(float(y.mean()))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        net.train()
        for batch in torch.randperm(len(X)).split(16):
            loss = ((net(X[batch]).squeeze(1) - y[batch]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        return r2(net(X).squeeze(1), y), r2(net(X_test).squeeze(1), y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", type=Path, help="write the table as TSV here")
    args = parser.parse_args()
    shape = (16, 20, 20)
    data = [
        tuple(map(torch.as_tensor, make_slice_position_task(n, shape, random_state=seed)))
        for n, seed in ((300, 0), (150, 1))
    ]
    rows = ["mixer\tpooling\tposition_embedding\ttrain_r2\ttest_r2\tseconds"]
    print(rows[0].replace("\t", "  "))
    for mixer, pooling, position in itertools.product(
        ("mlp", "ln", "none"), ("mean", "max", "attention"), ("learned", "sinusoidal", None)
    ):
        start = time.perf_counter()
        train, test = run(mixer, pooling, position, data, args.epochs)
        seconds = time.perf_counter() - start
        row = f"{mixer}\t{pooling}\t{position}\t{train:.3f}\t{test:.3f}\t{seconds:.0f}"
        print(row.replace("\t", "  "), flush=True)
        rows.append(row)
        if args.out:
            args.out.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
