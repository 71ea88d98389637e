"""Real-data results on the IXI sample: brain age (5-fold MAE) and sex (ROC-AUC).

Data: ``../shared/data/ixi`` (136 labelled adults, native space, skull on;
IXI, CC BY-SA 3.0). Every scan is registered (affine, antspyx) to the MNI152
2 mm template after masking it with its DLMUSE brain mask, z-scored within
the brain, and cached on disk once (``--cache``). Then, with one shared
5-fold split (KFold, shuffled, seed 0):

- slice models with a frozen, ImageNet-pretrained EfficientNet-Lite0 (slice
  features encoded once and shared by all folds and configurations) for every
  pooling x position embedding;
- the same with a frozen, randomly initialised encoder (no ImageNet);
- the paper's small CNN trained from scratch (``cnn2d``, every weight trained);
- baselines: predicting the training mean, and ridge / linear SVR on the brain
  voxels (as nilearn's ``DecoderRegressor`` does);
- sex classification ROC-AUC for the best slice configuration and a logistic
  regression on voxels.

Each result is appended to ``--out`` (JSON lines) as soon as it exists, so a
partial run keeps what it finished. Run::

    python benchmarks/accuracy/ixi_brain_age.py --out benchmarks/results/ixi.jsonl

``--quick`` runs 12 subjects, 2 folds and 2 epochs, as a smoke test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

IXI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ixi"


def registered_volumes(paths: list[str], cache: Path):
    """The IXI scans as every IXI benchmark reads them: brain-masked (DLMUSE), affinely
    registered with ANTs to the MNI152 2 mm template, z-scored in the brain, cached."""
    from slicelearn.data import VolumePreprocessor

    masks = {p: p.replace("/t1/", "/seg/").replace("_T1w", "_dlmuse") for p in paths}
    prep = VolumePreprocessor(
        target="mni152",
        registration="affine",
        registration_backend="ants",
        mask=masks,
        normalize="zscore_brain",
        cache_dir=cache,
    ).fit(paths)
    return prep.transform(paths)


def record(out: Path, row: dict) -> None:
    print(json.dumps(row), flush=True)
    with out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ixi", type=Path, default=IXI)
    parser.add_argument("--cache", type=Path, default=Path("~/slicelearn_data/cache").expanduser())
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ixi.jsonl"))
    parser.add_argument("--epochs", type=int, default=150, help="epochs for frozen-encoder heads")
    parser.add_argument("--scratch-epochs", type=int, default=40)
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="run only these parts: preprocess frozen random scratch baselines sex",
    )
    parser.add_argument("--feature-layer", default=None, help="e.g. blocks.3 (frozen parts)")
    parser.add_argument("--feature-grid", type=int, default=1)
    parser.add_argument("--poolings", nargs="+", default=["mean", "max", "attention"])
    parser.add_argument(
        "--positions", nargs="+", default=["none", "learned", "sinusoidal"], help="embeddings"
    )
    parser.add_argument("--embed-dims", nargs="+", type=int, default=[32])
    parser.add_argument("--dropouts", nargs="+", type=float, default=[0.0])
    parser.add_argument("--train-slices", type=float, default=None, help="slice sampling")
    parser.add_argument("--crop-empty-slices", action="store_true")
    parser.add_argument(
        "--freeze", default="all", help="'all', or a layer to fine-tune after (partial)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random_state of the slice models")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    import torch
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.metrics import mean_absolute_error, roc_auc_score
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR
    from torch.utils.data import DataLoader

    from slicelearn import SliceCNNClassifier, SliceCNNRegressor
    from slicelearn.data import VolumeDataset, read_cohort, template_image

    torch.set_num_threads(2)
    paths, labels = read_cohort(args.ixi / "participants.tsv", target=["age", "sex"])
    ages = labels[:, 0].astype(np.float32)
    sexes = labels[:, 1].astype(str)
    folds, epochs, scratch_epochs = 5, args.epochs, args.scratch_epochs
    if args.quick:
        paths, ages, sexes = paths[:12], ages[:12], sexes[:12]
        folds, epochs, scratch_epochs = 2, 2, 1
    volumes = registered_volumes(paths, args.cache)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    parts = set(args.only or ["frozen", "random", "scratch", "baselines", "sex"])

    start = time.perf_counter()
    for _ in DataLoader(VolumeDataset(volumes), batch_size=4, num_workers=2):
        pass
    record(
        args.out,
        {
            "step": "preprocess",
            "n_subjects": len(paths),
            "seconds": round(time.perf_counter() - start, 1),
        },
    )

    cv = KFold(folds, shuffle=True, random_state=0)
    # Registered scans live on the template grid: its brain mask selects the voxels.
    brain = template_image("mni152", brain_mask=True).get_fdata() > 0.5

    def evaluate(name: str, estimator, X, **info) -> float:
        begin = time.perf_counter()
        predicted = cross_val_predict(estimator, X, ages, cv=cv)
        fold_mae = [
            float(mean_absolute_error(ages[test], predicted[test])) for _, test in cv.split(X)
        ]
        mae = float(mean_absolute_error(ages, predicted))
        record(
            args.out,
            {
                "task": "age",
                "model": name,
                **info,
                "mae": round(mae, 2),
                "fold_mae": [round(m, 2) for m in fold_mae],
                "r": round(float(np.corrcoef(ages, predicted)[0, 1]), 3),
                "seconds": round(time.perf_counter() - begin, 1),
            },
        )
        return mae

    common = dict(lr=1e-3, batch_size=16, verbose=0, random_state=args.seed)
    # Slice-model options beyond the grid, recorded in the rows they change.
    options = {}
    if args.feature_layer or args.feature_grid != 1:
        options = dict(feature_layer=args.feature_layer, feature_grid=args.feature_grid)
    if args.train_slices:
        options["train_slices"] = args.train_slices
    if args.crop_empty_slices:
        options["crop_empty_slices"] = True
    freeze = True if args.freeze == "all" else args.freeze
    results = {}
    if "frozen" in parts or "random" in parts:
        for weights in [
            w for w, part in (("imagenet", "frozen"), (None, "random")) if part in parts
        ]:
            grid = itertools.product(
                args.poolings,
                [None if p == "none" else p for p in args.positions],
                args.embed_dims,
                args.dropouts,
            )
            for pooling, position, embed_dim, dropout in grid:
                # Rows record the head's size only where it differs from the default.
                head = {k: v for k, v in (("embed_dim", embed_dim), ("dropout", dropout)) if v}
                head = {} if head == {"embed_dim": 32} else head
                est = SliceCNNRegressor(
                    encoder="efficientnet_lite0",
                    weights=weights,
                    freeze_encoder=freeze,
                    pooling=pooling,
                    position_embedding=position,
                    embed_dim=embed_dim,
                    dropout=dropout,
                    max_epochs=epochs,
                    **options,
                    **common,
                )
                results[(weights, pooling, position)] = evaluate(
                    "slice",
                    est,
                    volumes,
                    encoder="efficientnet_lite0 (frozen)"
                    if freeze is True
                    else f"efficientnet_lite0 (fixed to {freeze}, later layers fine-tuned)",
                    weights=weights,
                    pooling=pooling,
                    position_embedding=position,
                    epochs=epochs,
                    **options,
                    **head,
                    **({"random_state": args.seed} if args.seed else {}),
                )

    if "baselines" in parts:
        record(
            args.out,
            {
                "task": "age",
                "model": "mean",
                "mae": round(
                    float(
                        np.mean(
                            [
                                mean_absolute_error(
                                    ages[test], np.full(len(test), ages[train].mean())
                                )
                                for train, test in cv.split(paths)
                            ]
                        )
                    ),
                    2,
                ),
            },
        )
        voxels = np.stack([volumes[i] for i in range(len(volumes))])[:, brain]
        evaluate(
            "ridge on voxels",
            make_pipeline(StandardScaler(), RidgeCV(np.logspace(-1, 6, 15))),
            voxels,
            n_features=int(voxels.shape[1]),
        )
        evaluate(
            "linear SVR on voxels",
            make_pipeline(StandardScaler(), SVR(kernel="linear", C=1e-3)),
            voxels,
            n_features=int(voxels.shape[1]),
        )

    if "scratch" in parts:
        est = SliceCNNRegressor(
            encoder="cnn2d",
            weights=None,
            pooling="mean",
            position_embedding="sinusoidal",
            max_epochs=scratch_epochs,
            iterator_train__num_workers=1,
            **common,
        )
        evaluate(
            "slice",
            est,
            volumes,
            encoder="cnn2d (trained from scratch)",
            weights=None,
            pooling="mean",
            position_embedding="sinusoidal",
            epochs=scratch_epochs,
        )

    if "sex" in parts:
        strat = StratifiedKFold(folds, shuffle=True, random_state=0)
        best = min(
            ((k, v) for k, v in results.items() if k[0] == "imagenet"),
            key=lambda kv: kv[1],
            default=(("imagenet", "mean", "sinusoidal"), None),
        )[0]
        clf = SliceCNNClassifier(
            encoder="efficientnet_lite0",
            weights="imagenet",
            freeze_encoder=True,
            **options,
            pooling=best[1],
            position_embedding=best[2],
            max_epochs=epochs,
            **common,
        )
        begin = time.perf_counter()
        proba = cross_val_predict(clf, volumes, sexes, cv=strat, method="predict_proba")[:, 1]
        record(
            args.out,
            {
                "task": "sex",
                "model": "slice",
                "pooling": best[1],
                "position_embedding": best[2],
                **options,
                "positive": "M",
                "roc_auc": round(float(roc_auc_score(sexes == "M", proba)), 3),
                "seconds": round(time.perf_counter() - begin, 1),
            },
        )
        voxels = np.stack([volumes[i] for i in range(len(volumes))])[:, brain]
        logistic = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=8, cv=3, max_iter=2000))
        proba = cross_val_predict(logistic, voxels, sexes, cv=strat, method="predict_proba")[:, 1]
        record(
            args.out,
            {
                "task": "sex",
                "model": "logistic regression on voxels",
                "roc_auc": round(float(roc_auc_score(sexes == "M", proba)), 3),
            },
        )


if __name__ == "__main__":
    main()
