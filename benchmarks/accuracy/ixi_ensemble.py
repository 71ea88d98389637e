"""Averaging frozen-feature readouts across encoders and axes on IXI, repeated CV.

Each member is the package's readout computation (standardised slice-averaged
frozen features, ridge with its penalty by leave-one-out for age, L2 logistic
regression for sex) on one (encoder, axis) of the default route's volumes
(``benchmarks/accuracy/ixi_routes.py``: deepbet brain, ANTs affine, z-scored in the
brain; grey slices, ``blocks.3`` pooled 2 x 2). Every member is cross-validated
on the same shuffled 5-fold splits, so the average of the members' out-of-fold
predictions is an out-of-fold prediction of the equal-weight ensemble: no
weight and no member is chosen on the scores. The ensembles are fixed here,
before any of them ran:

``lite0_3axes``
    EfficientNet-Lite0 on sagittal, coronal and axial slices (3 members).
``3encoders_sagittal``
    Lite0, Lite1 and Lite2 on sagittal slices (3 members).
``all_9``
    The three encoders on the three axes (9 members).
``all_9+voxels``
    Those and ridge / logistic regression on every brain voxel (10 members).

Run (the features are cached under ``--work``; about 40 minutes on one core
the first time, then minutes)::

    python benchmarks/accuracy/ixi_ensemble.py --out benchmarks/results/ixi_ensemble.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from ixi_routes import IXI, RowSpace, record, step_features, voxel_matrix

ENCODERS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
AXES = ("sagittal", "coronal", "axial")
ENSEMBLES = {
    "lite0_3axes": [("efficientnet_lite0", a) for a in AXES],
    "3encoders_sagittal": [(e, "sagittal") for e in ENCODERS],
    "all_9": [(e, a) for e in ENCODERS for a in AXES],
    "all_9+voxels": [(e, a) for e in ENCODERS for a in AXES] + ["voxels"],
}


def out_of_fold(X: np.ndarray, ages: np.ndarray, sexes: np.ndarray, repeat: int):
    """Age predictions and sex probabilities of one member, out of fold, for one shuffle."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def scaled():
        return [StandardScaler()] + ([RowSpace()] if X.shape[1] > X.shape[0] else [])

    age = cross_val_predict(
        make_pipeline(*scaled(), RidgeCV(np.logspace(-1, 7, 17))),
        X,
        ages,
        cv=KFold(5, shuffle=True, random_state=repeat),
    )
    sex = cross_val_predict(
        make_pipeline(
            *scaled(),
            LogisticRegressionCV(Cs=np.logspace(-5, 1, 7), scoring="neg_log_loss", max_iter=5000),
        ),
        X,
        sexes,
        cv=StratifiedKFold(5, shuffle=True, random_state=repeat),
        method="predict_proba",
    )[:, 1]
    return age, sex


def summary(ages, sexes, age_runs, sex_runs) -> dict:
    from sklearn.metrics import mean_absolute_error, roc_auc_score

    maes = [mean_absolute_error(ages, p) for p in age_runs]
    aucs = [roc_auc_score(sexes, p) for p in sex_runs]
    return {
        "mae": round(float(np.mean(maes)), 3),
        "mae_sd": round(float(np.std(maes)), 3),
        "mae_per_repeat": [round(float(m), 3) for m in maes],
        "r": round(float(np.mean([np.corrcoef(ages, p)[0, 1] for p in age_runs])), 3),
        "sex_auc": round(float(np.mean(aucs)), 4),
        "sex_auc_sd": round(float(np.std(aucs)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ixi", type=Path, default=IXI)
    parser.add_argument("--work", type=Path, default=Path("~/slicelearn_data/ixi_routes"))
    parser.add_argument("--route", default="deepbet_affine")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ixi_ensemble.jsonl"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from slicelearn.data import read_cohort

    torch.set_num_threads(args.threads)
    work = args.work.expanduser()
    volume_file = work / "volumes" / f"{args.route}.npy"
    if not volume_file.exists():
        raise SystemExit(
            f"{volume_file} is missing: run benchmarks/accuracy/ixi_routes.py --steps masks "
            f"volumes --routes {args.route} first."
        )
    volumes = np.load(volume_file, mmap_mode="r")
    _, labels = read_cohort(args.ixi / "participants.tsv", target=["age", "sex"])
    ages = labels[:, 0].astype(np.float64)
    sexes = (labels[:, 1].astype(str) == "M").astype(int)

    members: dict = {}
    for encoder in ENCODERS:
        for axis in AXES:
            start = time.perf_counter()
            features = step_features(volumes, args.route, encoder, axis, "grey", work)
            members[(encoder, axis)] = features["blocks.3@2"]
            print(f"{encoder} {axis}: features in {time.perf_counter() - start:.0f} s", flush=True)
    members["voxels"] = voxel_matrix(volumes, args.route)

    predictions: dict = {}
    for member, X in members.items():
        runs = [out_of_fold(X, ages, sexes, repeat) for repeat in range(args.repeats)]
        predictions[member] = runs
        name = member if isinstance(member, str) else ":".join(member)
        record(
            args.out,
            {
                "key": f"member:{args.route}:{name}",
                "route": args.route,
                "member": name,
                "features": "voxels" if member == "voxels" else "blocks.3@2 grey",
                **summary(ages, sexes, [a for a, _ in runs], [s for _, s in runs]),
            },
        )
    for name, chosen in ENSEMBLES.items():
        age_runs = [np.mean([predictions[m][r][0] for m in chosen], 0) for r in range(args.repeats)]
        sex_runs = [np.mean([predictions[m][r][1] for m in chosen], 0) for r in range(args.repeats)]
        record(
            args.out,
            {
                "key": f"ensemble:{args.route}:{name}",
                "route": args.route,
                "ensemble": name,
                "members": [m if isinstance(m, str) else ":".join(m) for m in chosen],
                **summary(ages, sexes, age_runs, sex_runs),
            },
        )
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
