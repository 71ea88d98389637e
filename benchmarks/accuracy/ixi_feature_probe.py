"""Which layer of a frozen ImageNet encoder carries brain age? A linear probe on IXI.

For every stage of EfficientNet-Lite0 (``blocks.2`` to ``blocks.6`` and the
last layer ``bn2``), each sagittal slice's feature map is average-pooled to
1x1 and to 2x2, the slices are averaged, and a ridge regression (RidgeCV,
standardised features) is cross-validated with the same 5 folds as
``ixi_brain_age.py``. A probe, not a slice model: it ranks layers in minutes,
and ``ixi_brain_age.py --feature-layer`` then trains the slice model on the
chosen one.

Input: the 8-bit export of ``ixi_finetune.py export``. Run::

    python benchmarks/accuracy/ixi_feature_probe.py --volumes ixi_mni2mm_uint8.npz \\
        --out benchmarks/results/ixi_feature_probe.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--axis", default="sagittal", choices=["sagittal", "coronal", "axial"])
    args = parser.parse_args()

    import torch
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import mean_absolute_error
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from slicelearn.nn import SliceNet

    torch.set_num_threads(2)
    stored = np.load(args.volumes)
    codes, step, low = stored["codes"], float(stored["step"]), float(stored["low"])
    ages = stored["age"]
    net = SliceNet(
        "efficientnet_lite0",
        "imagenet",
        axis=args.axis,
        position_embedding=None,
        freeze_encoder=True,
        feature_layer="bn2",  # the whole trunk, unpooled maps caught on the way
    ).eval()
    blocks, last = net.encoder.trunk[2], net.encoder.trunk[4]
    taps = {f"blocks.{i}": blocks[i] for i in range(2, 7)} | {"bn2": last}
    caught: dict[str, torch.Tensor] = {}
    for layer, module in taps.items():
        module.register_forward_hook(
            lambda _module, _inputs, output, layer=layer: caught.__setitem__(layer, output)
        )
    features: dict[tuple[str, int], list[np.ndarray]] = {
        (layer, grid): [] for layer in taps for grid in (1, 2)
    }
    start = time.perf_counter()
    with torch.inference_mode():
        for codes_one in codes:
            volume = torch.from_numpy(codes_one.astype(np.float32) * step + low)[None]
            net.encode(volume)
            for (layer, grid), rows in features.items():
                pooled = torch.nn.functional.adaptive_avg_pool2d(caught[layer], grid)
                rows.append(pooled.flatten(1).mean(0).numpy())
    encode_seconds = time.perf_counter() - start
    cv = KFold(5, shuffle=True, random_state=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for (layer, grid), rows in features.items():
        X = np.stack(rows)
        model = make_pipeline(StandardScaler(), RidgeCV(np.logspace(-1, 7, 17)))
        predicted = cross_val_predict(model, X, ages, cv=cv)
        row = {
            "probe": "ridge on slice-averaged frozen features",
            "axis": args.axis,
            "feature_layer": layer,
            "feature_grid": grid,
            "n_features": int(X.shape[1]),
            "mae": round(float(mean_absolute_error(ages, predicted)), 2),
            "r": round(float(np.corrcoef(ages, predicted)[0, 1]), 3),
            "encode_seconds_all_layers": round(encode_seconds, 1),
        }
        print(json.dumps(row), flush=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
