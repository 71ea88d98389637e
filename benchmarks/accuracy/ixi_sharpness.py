"""How much does the frozen-feature ridge readout depend on image sharpness? IXI brain age.

A ridge readout (``SliceLinearRegressor``'s computation: Lite0 ``blocks.3``
2x2 sagittal features averaged over slices, standardised, penalty by
leave-one-out) is trained on one version of the default route's volumes and
tested, in 5 repeats of 5-fold CV, on the same test scans transformed: shifted
by a whole voxel (exact), by half a voxel (linear or cubic interpolation,
which blurs), or blurred. Then the same with every volume smoothed first
(Gaussian sigma 1 voxel, the readouts' ``input_smoothing=1``). One JSON row
per (training input, test input) in ``--out``.

    python benchmarks/accuracy/ixi_sharpness.py \\
        --volumes ~/slicelearn_data/ixi_routes/volumes/deepbet_affine.npy \\
        --out benchmarks/results/ixi_sharpness.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

IXI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ixi"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=Path, required=True)
    parser.add_argument("--ixi", type=Path, default=IXI)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch
    from scipy import ndimage
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    from slicelearn import SliceLinearRegressor
    from slicelearn.data import read_cohort
    from slicelearn.readout import DEFAULT_ALPHAS

    torch.set_num_threads(args.threads)
    _, labels = read_cohort(args.ixi / "participants.tsv", target=["age", "sex"])
    ages = labels[:, 0].astype(float)
    volumes = np.load(args.volumes, mmap_mode="r")
    readout = SliceLinearRegressor()
    readout._nets = readout._encoders()

    def features(transform) -> np.ndarray:
        transformed = np.stack([transform(np.asarray(v, np.float32)) for v in volumes])
        return readout._pooled_features(transformed, reset=True)

    blur, shift = ndimage.gaussian_filter, ndimage.shift
    inputs = {
        "original": lambda v: v,
        "shift 1 voxel (exact)": lambda v: shift(v, (0, 1, 0), order=1, mode="constant"),
        "shift 0.5 voxel (linear)": lambda v: shift(v, (0, 0.5, 0), order=1, mode="constant"),
        "shift 0.5 voxel (cubic)": lambda v: shift(v, (0, 0.5, 0), order=3, mode="constant"),
        "blur sigma 0.5": lambda v: blur(v, 0.5),
        "sigma1": lambda v: blur(v, 1.0),
        "sigma1 + blur 0.5": lambda v: blur(blur(v, 1.0), 0.5),
        "sigma1 + shift 0.5 linear": lambda v: shift(blur(v, 1.0), (0, 0.5, 0), order=1),
    }
    F = {name: features(transform) for name, transform in inputs.items()}
    pairs = [("original", name) for name in list(inputs)[:5]]
    pairs += [("sigma1", name) for name in list(inputs)[5:]] + [("sigma1", "original")]
    for train, test in pairs:
        maes = []
        for repeat in range(5):
            predicted = np.zeros(len(ages))
            for fit_rows, test_rows in KFold(5, shuffle=True, random_state=repeat).split(ages):
                mean, scale = F[train][fit_rows].mean(0), F[train][fit_rows].std(0)
                scale[scale == 0] = 1
                ridge = RidgeCV(alphas=np.asarray(DEFAULT_ALPHAS))
                ridge.fit((F[train][fit_rows] - mean) / scale, ages[fit_rows])
                predicted[test_rows] = ridge.predict((F[test][test_rows] - mean) / scale)
            maes.append(float(np.abs(predicted - ages).mean()))
        row = {
            "train": train,
            "test": test,
            "mae": round(float(np.mean(maes)), 3),
            "per_repeat": [round(m, 3) for m in maes],
        }
        with args.out.open("a") as stream:
            stream.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
