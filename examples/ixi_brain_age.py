"""
Brain age on real MRI (IXI)
===========================

The recommended slice model on the IXI sample.

Reads the IXI T1 scans (native space, skull on; IXI, CC BY-SA 3.0) from
``../shared/data/ixi`` or ``--ixi PATH``, holds out a quarter of the subjects,
and fits the configuration that did best in ``docs/results.md``:

- preprocessing: each scan masked with its DLMUSE brain mask, registered
  (affine) to the MNI152 2 mm template, z-scored within the brain, cached;
- a frozen EfficientNet-Lite0 with its offline ImageNet weights, whose
  ``blocks.3`` feature maps are pooled 2 x 2 per sagittal slice (computed
  once: only the head trains), mean pooling, no position embedding.

It prints the held-out MAE next to predicting the training mean.

Run: ``python examples/ixi_brain_age.py``. Registration takes about 6 minutes
for the 136 scans with antspyx (``pip install 'slicelearn[registration-ants]'``)
or about 90 minutes with the default dipy backend (``--backend dipy``), once:
later runs read the cache.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import mean_absolute_error
from sklearn.model_selection import train_test_split

from slicelearn import SliceCNNRegressor
from slicelearn.data import VolumePreprocessor, read_cohort

DEFAULT_IXI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ixi"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ixi", type=Path, default=DEFAULT_IXI)
    parser.add_argument("--backend", default="ants", choices=["ants", "dipy"])
    parser.add_argument("--max-epochs", type=int, default=150)
    args = parser.parse_args()
    table = args.ixi / "participants.tsv"
    if not table.is_file():
        raise SystemExit(f"IXI sample not found: {table} (pass --ixi PATH)")
    paths, labels = read_cohort(table, target="age")
    ages = labels.astype(np.float32).ravel()
    brain_masks = {p: p.replace("/t1/", "/seg/").replace("_T1w", "_dlmuse") for p in paths}
    train_paths, test_paths, train_ages, test_ages = train_test_split(
        paths, ages, test_size=0.25, random_state=0
    )
    est = SliceCNNRegressor(
        encoder="efficientnet_lite0",
        weights="imagenet",
        freeze_encoder=True,
        feature_layer="blocks.3",
        feature_grid=2,
        pooling="mean",
        position_embedding=None,
        preprocessing=VolumePreprocessor(
            target="mni152",
            registration="affine",
            registration_backend=args.backend,
            mask=brain_masks,
            normalize="zscore_brain",
            cache_dir="auto",
        ),
        lr=1e-3,
        max_epochs=args.max_epochs,
        batch_size=16,
        iterator_train__num_workers=2,
        verbose=0,
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
