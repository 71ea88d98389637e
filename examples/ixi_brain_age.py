"""Brain age on real MRI: a frozen ImageNet encoder on the IXI sample.

Reads the IXI T1 scans (native space, skull on; IXI, CC BY-SA 3.0) from
``../shared/data/ixi`` or ``--ixi PATH``, holds out a quarter of the subjects,
fits a slice model whose EfficientNet-Lite0 encoder keeps its ImageNet weights
(offline), and compares the held-out MAE with predicting the training mean.

Run: ``python examples/ixi_brain_age.py`` (tens of minutes on 2 CPU cores:
the frozen encoder is recomputed every epoch).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error
from sklearn.model_selection import train_test_split

from slicelearn import SliceCNNRegressor

DEFAULT_IXI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ixi"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ixi", type=Path, default=DEFAULT_IXI)
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--pooling", default="mean")
    parser.add_argument("--position-embedding", default="sinusoidal")
    args = parser.parse_args()
    table = args.ixi / "participants.tsv"
    if not table.is_file():
        raise SystemExit(f"IXI sample not found: {table} (pass --ixi PATH)")
    participants = pd.read_csv(table, sep="\t")
    paths = [str(args.ixi / p) for p in participants["path"]]
    ages = participants["age"].to_numpy(dtype=np.float32)
    train_paths, test_paths, train_ages, test_ages = train_test_split(
        paths, ages, test_size=0.25, random_state=0
    )
    est = SliceCNNRegressor(
        encoder="efficientnet_lite0",
        weights="imagenet",
        freeze_encoder=True,
        pooling=args.pooling,
        position_embedding=args.position_embedding,
        lr=1e-3,
        max_epochs=args.max_epochs,
        random_state=0,
    )
    start = time.perf_counter()
    est.fit(train_paths, train_ages)
    predictions = est.predict(test_paths)
    mae = mean_absolute_error(test_ages, predictions)
    baseline = mean_absolute_error(test_ages, np.full_like(test_ages, train_ages.mean()))
    print(
        f"IXI held-out MAE: {mae:.2f} years (predicting the training mean: {baseline:.2f}); "
        f"{len(train_paths)} training / {len(test_paths)} test subjects; "
        f"{time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
