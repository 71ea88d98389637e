"""IXI brain age with trained encoders: ImageNet fine-tuning against training from scratch.

Training every encoder weight is too slow for 2 CPU cores (the small ``cnn2d``
alone takes about 3.7 s per volume-epoch there), so this part of the IXI table
is meant for one GPU. It runs in two steps:

1. ``export`` (CPU, where the IXI scans are) registers and caches the scans
   exactly as ``ixi_brain_age.py`` does, then writes them to one compressed
   ``.npz`` file. Intensities are quantised to 8 bits over [-4, 6] standard
   deviations of the brain so the file travels (about 30 MB for 136 scans);
   the largest rounding error is reported by the step.
2. ``run`` (GPU) cross-validates each configuration with the same 5 folds as
   ``ixi_brain_age.py`` and appends one JSON line per configuration as soon as
   it exists. A frozen ImageNet reference row comes first, so the effect of
   the 8-bit file can be read against the float16 CPU run of the same model.

Run::

    python benchmarks/ixi_finetune.py export --out ixi_mni2mm_uint8.npz
    python benchmarks/ixi_finetune.py run --volumes ixi_mni2mm_uint8.npz \\
        --out benchmarks/results/ixi_finetune.jsonl --budget-s 480

``--budget-s`` stops before a fold that would not finish in time, and the row
says which folds ran.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

IXI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ixi"
LOW, HIGH = -4.0, 6.0


def export(args: argparse.Namespace) -> None:
    from ixi_brain_age import registered_volumes

    from slicelearn.data import read_cohort

    paths, labels = read_cohort(args.ixi / "participants.tsv", target=["age", "sex"])
    volumes = registered_volumes(paths, args.cache)
    step = (HIGH - LOW) / 255
    quantised, worst, clipped = [], 0.0, []
    for i in range(len(volumes)):
        volume = np.asarray(volumes[i], dtype=np.float32)
        codes = np.round((np.clip(volume, LOW, HIGH) - LOW) / step).astype(np.uint8)
        inside = (volume >= LOW) & (volume <= HIGH)
        worst = max(worst, float(np.abs(codes * step + LOW - volume)[inside].max()))
        clipped.append(1.0 - float(inside.mean()))
        quantised.append(codes)
    np.savez_compressed(
        args.out,
        codes=np.stack(quantised),
        low=LOW,
        step=step,
        age=labels[:, 0].astype(np.float32),
        sex=labels[:, 1].astype(str),
    )
    print(
        json.dumps(
            {
                "step": "export",
                "n_subjects": len(paths),
                "shape": list(quantised[0].shape),
                "max_rounding_error_sd": round(worst, 4),
                "fraction_clipped": round(float(np.mean(clipped)), 6),
                "megabytes": round(args.out.stat().st_size / 1e6, 1),
            }
        )
    )


def run(args: argparse.Namespace) -> None:
    import torch
    from sklearn.metrics import mean_absolute_error
    from sklearn.model_selection import KFold

    from slicelearn import SliceCNNRegressor

    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")
    stored = np.load(args.volumes)
    volumes = stored["codes"].astype(np.float32) * float(stored["step"]) + float(stored["low"])
    ages = stored["age"]
    if args.quick:
        volumes, ages = volumes[:12], ages[:12]
    folds = 2 if args.quick else 5
    cv = KFold(folds, shuffle=True, random_state=0)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    start = time.perf_counter()

    configs = [
        # Reference: the frozen route of ixi_brain_age.py, on the 8-bit volumes.
        dict(
            label="efficientnet_lite0 (frozen)",
            encoder="efficientnet_lite0",
            weights="imagenet",
            freeze_encoder=True,
            lr=1e-3,
            batch_size=16,
            max_epochs=args.frozen_epochs,
        ),
        dict(
            label="efficientnet_lite0 (fine-tuned)",
            encoder="efficientnet_lite0",
            weights="imagenet",
            freeze_encoder=False,
            lr=args.lr,
            batch_size=8,
            max_epochs=args.epochs,
        ),
        dict(
            label="efficientnet_lite0 (trained from scratch)",
            encoder="efficientnet_lite0",
            weights=None,
            freeze_encoder=False,
            lr=args.lr,
            batch_size=8,
            max_epochs=args.epochs,
        ),
        dict(
            label=f"efficientnet_lite0 (fixed to {args.fix_up_to}, later layers fine-tuned)",
            encoder="efficientnet_lite0",
            weights="imagenet",
            freeze_encoder=args.fix_up_to,
            lr=args.lr,
            batch_size=8,
            max_epochs=args.epochs,
        ),
        dict(
            label="cnn2d (trained from scratch)",
            encoder="cnn2d",
            weights=None,
            freeze_encoder=False,
            lr=args.lr,
            batch_size=8,
            max_epochs=args.epochs,
        ),
    ]
    chosen = {"frozen": 0, "fine-tuned": 1, "scratch": 2, "partial": 3, "cnn2d": 4}
    configs = [configs[chosen[name]] for name in args.configs]
    position = None if args.position == "none" else args.position
    features = {}
    if args.feature_layer:
        features = dict(feature_layer=args.feature_layer, feature_grid=args.feature_grid)
    predicted = {c["label"]: np.full(len(ages), np.nan) for c in configs}
    seconds: dict[str, list[float]] = {c["label"]: [] for c in configs}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def record(row: dict) -> None:
        print(json.dumps(row), flush=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    # Folds outside, configurations inside: a run cut short by the budget still
    # compares every configuration on the same folds.
    for fold, (train, test) in enumerate(cv.split(volumes)):
        for config in configs:
            label = config["label"]
            elapsed = time.perf_counter() - start
            if elapsed + max(seconds[label], default=0.0) > args.budget_s:
                continue
            begin = time.perf_counter()
            params = {k: v for k, v in config.items() if k != "label"}
            est = SliceCNNRegressor(
                pooling="mean",
                position_embedding=position,
                random_state=0,
                verbose=0,
                precision="auto",  # bf16 forward passes on a GPU, as in the recorded runs
                **params,
                **features,
            )
            est.fit(volumes[train], ages[train])
            predicted[label][test] = est.predict(volumes[test])
            seconds[label].append(time.perf_counter() - begin)
            record(
                {
                    "fold": fold,
                    "encoder": label,
                    "mae": round(float(mean_absolute_error(ages[test], predicted[label][test])), 2),
                    "seconds": round(seconds[label][-1], 1),
                    "epochs_run": len(est.history),
                }
            )
    for config in configs:
        label, done = config["label"], ~np.isnan(predicted[config["label"]])
        row = {
            "task": "age",
            "model": "slice",
            "encoder": label,
            "weights": config["weights"],
            "pooling": "mean",
            "position_embedding": position,
            **features,
            "epochs": config["max_epochs"],
            "lr": config["lr"],
            "batch_size": config["batch_size"],
            "input": "8-bit export",
            "device": device,
            "folds_run": len(seconds[label]),
            "fold_mae": [
                round(float(mean_absolute_error(ages[t], predicted[label][t])), 2)
                for _, t in cv.split(volumes)
                if done[t].all()
            ],
            "seconds": round(sum(seconds[label]), 1),
        }
        if done.any():
            row["mae"] = round(float(mean_absolute_error(ages[done], predicted[label][done])), 2)
            row["r"] = round(float(np.corrcoef(ages[done], predicted[label][done])[0, 1]), 3)
        record(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    exporter = steps.add_parser("export", help="register, cache and write the 8-bit .npz")
    exporter.add_argument("--ixi", type=Path, default=IXI)
    exporter.add_argument(
        "--cache", type=Path, default=Path("~/slicelearn_data/cache").expanduser()
    )
    exporter.add_argument("--out", type=Path, required=True)
    runner = steps.add_parser("run", help="cross-validate the trained-encoder configurations")
    runner.add_argument("--volumes", type=Path, required=True)
    runner.add_argument("--out", type=Path, required=True)
    runner.add_argument("--epochs", type=int, default=20)
    runner.add_argument("--lr", type=float, default=1e-4, help="for the trained encoders")
    runner.add_argument(
        "--configs",
        nargs="+",
        default=["frozen", "fine-tuned", "scratch", "cnn2d"],
        choices=["frozen", "fine-tuned", "scratch", "partial", "cnn2d"],
    )
    runner.add_argument(
        "--fix-up-to",
        default="blocks.2",
        help="for 'partial': the encoder is fixed up to this layer and fine-tuned after it",
    )
    runner.add_argument("--feature-layer", default=None, help="e.g. blocks.3 (default: last)")
    runner.add_argument("--feature-grid", type=int, default=1)
    runner.add_argument(
        "--position", default="sinusoidal", choices=["none", "sinusoidal", "learned"]
    )
    runner.add_argument("--frozen-epochs", type=int, default=150)
    runner.add_argument("--budget-s", type=float, default=float("inf"))
    runner.add_argument("--quick", action="store_true", help="12 subjects, 2 folds")
    args = parser.parse_args()
    export(args) if args.step == "export" else run(args)


if __name__ == "__main__":
    main()
