"""Does augmentation help the frozen ridge readout on IXI? Training copies and test-time copies.

Input: a route's volumes from ``ixi_routes.py`` (default: deepbet + ANTs
affine, the command line's input). Model: the package's
``SliceLinearRegressor`` / ``SliceLinearClassifier`` (Lite0 ``blocks.3`` 2x2,
sagittal), with ``augmentation=VolumeAugmenter(...)``. Each row is 5 repeats
(shuffle seeds 0-4) of 5-fold CV, pooled MAE (and sex ROC-AUC) per repeat,
written to ``--out`` as soon as it exists; rows already there are skipped.

    python benchmarks/accuracy/ixi_augment.py \\
        --volumes ~/slicelearn_data/ixi_routes/volumes/deepbet_affine.npy \\
        --out benchmarks/results/ixi_augment.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

IXI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ixi"

#: Augmenters compared (name -> VolumeAugmenter parameters).
AUGMENTERS = {
    "spatial+intensity": dict(max_rotation=5.0, max_shift=3.0, intensity=0.1),
    "spatial": dict(max_rotation=5.0, max_shift=3.0, intensity=0.0),
    "intensity": dict(max_rotation=0.0, max_shift=0.0, intensity=0.1),
}
#: (label, augment_copies used in training (0: none), test-time copies). Test-time
#: copies alone (a readout trained without copies) scored 16.5 years in the first
#: run of this script; the readouts now refuse that combination.
USES = (("none", 0, 0), ("train", 4, 0), ("train+tta", 4, 4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=Path, required=True)
    parser.add_argument("--ixi", type=Path, default=IXI)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--augmenters", nargs="+", default=list(AUGMENTERS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, help="first N subjects (smoke test)")
    parser.add_argument(
        "--input-smoothing", type=float, default=0.0, help="the readouts' input_smoothing"
    )
    parser.add_argument(
        "--uses", nargs="+", default=[u[0] for u in USES], help="which rows of USES to run"
    )
    args = parser.parse_args()

    import torch
    from sklearn.base import clone
    from sklearn.metrics import mean_absolute_error, roc_auc_score
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

    from slicelearn import SliceLinearClassifier, SliceLinearRegressor
    from slicelearn.data import VolumeAugmenter, read_cohort

    torch.set_num_threads(args.threads)
    _, labels = read_cohort(args.ixi / "participants.tsv", target=["age", "sex"])
    ages = labels[:, 0].astype(np.float64)
    sexes = (labels[:, 1].astype(str) == "M").astype(int)
    volumes = np.load(args.volumes, mmap_mode="r")
    if len(volumes) != len(ages):
        raise SystemExit(f"{args.volumes}: {len(volumes)} volumes, participants.tsv {len(ages)}.")
    if args.limit:
        volumes, ages, sexes = volumes[: args.limit], ages[: args.limit], sexes[: args.limit]
    volumes = np.ascontiguousarray(volumes, dtype=np.float32)

    done = set()
    if args.out.exists():
        done = {json.loads(line)["key"] for line in args.out.read_text().splitlines() if line}
    for name in args.augmenters:
        augmenter = VolumeAugmenter(**AUGMENTERS[name])
        for use, copies, tta in USES:
            if use not in args.uses or (use == "none" and name != args.augmenters[0]):
                continue  # the unaugmented baseline once
            key = f"{args.volumes.stem}|{'-' if use == 'none' else name}|{use}"
            if args.input_smoothing:
                key += f"|smooth{args.input_smoothing:g}"
            if key in done:
                continue
            common = dict(
                input_smoothing=args.input_smoothing,
                augmentation=None if use == "none" else augmenter,
                augment_copies=copies,
                test_time_augmentation=tta,
            )
            maes, rs, aucs = [], [], []
            start = time.perf_counter()
            for repeat in range(args.repeats):
                predicted = cross_val_predict(
                    clone(SliceLinearRegressor(**common)),
                    volumes,
                    ages,
                    cv=KFold(5, shuffle=True, random_state=repeat),
                )
                maes.append(float(mean_absolute_error(ages, predicted)))
                rs.append(float(np.corrcoef(ages, predicted)[0, 1]))
                proba = cross_val_predict(
                    clone(SliceLinearClassifier(**common)),
                    volumes,
                    sexes,
                    cv=StratifiedKFold(5, shuffle=True, random_state=repeat),
                    method="predict_proba",
                )[:, 1]
                aucs.append(float(roc_auc_score(sexes, proba)))
                print(key, repeat, round(maes[-1], 3), round(aucs[-1], 4), flush=True)
            row = {
                "key": key,
                "volumes": str(args.volumes),
                "augmenter": None if use == "none" else AUGMENTERS[name],
                "input_smoothing": args.input_smoothing,
                "augment_copies": copies,
                "test_time_augmentation": tta,
                "repeats": args.repeats,
                "mae": round(float(np.mean(maes)), 3),
                "mae_sd": round(float(np.std(maes)), 3),
                "mae_per_repeat": [round(m, 3) for m in maes],
                "r": round(float(np.mean(rs)), 3),
                "sex_auc": round(float(np.mean(aucs)), 4),
                "sex_auc_sd": round(float(np.std(aucs)), 4),
                "seconds": round(time.perf_counter() - start, 1),
                "threads": args.threads,
            }
            with args.out.open("a") as stream:
                stream.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
