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

    python benchmarks/accuracy/ixi_finetune.py export --out ixi_mni2mm_uint8.npz
    python benchmarks/accuracy/ixi_finetune.py run --volumes ixi_mni2mm_uint8.npz \\
        --out benchmarks/results/ixi_finetune.jsonl --budget-s 480

``--budget-s`` stops before a fold that would not finish in time, and the row
says which folds ran.

On the CPU, partial fine-tuning runs on the command line's input instead: a
route's ``.npy`` volumes written by ``ixi_routes.py --steps masks volumes``
(deepbet + ANTs affine, z-scored in the brain), over several seeds, each with
its own shuffle of the 5 folds. Every fold is one resumable JSON line, so the
run can be stopped and started again::

    python benchmarks/accuracy/ixi_finetune.py run \
        --volumes ~/slicelearn_data/ixi_routes/volumes/deepbet_affine.npy \
        --out benchmarks/results/ixi_partial_cpu.jsonl --configs partial \
        --feature-layer blocks.3 --feature-grid 2 --position none \
        --lr 3e-4 --epochs 30 --seeds 0 1 2 --fit-all
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

IXI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ixi"
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
    torch.set_num_threads(args.threads)
    volumes, ages, source = load_volumes(args)
    if args.quick:
        volumes, ages = volumes[:12], ages[:12]
    folds = 2 if args.quick else 5
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"

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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = done_keys(args.out)

    def record(row: dict) -> None:
        print(json.dumps(row), flush=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    def estimator(config: dict, seed: int):
        params = {k: v for k, v in config.items() if k != "label"}
        return SliceCNNRegressor(
            pooling="mean",
            position_embedding=position,
            random_state=seed,
            verbose=0,
            precision="auto",  # bf16 forward passes on a GPU, as in the recorded runs
            **params,
            **features,
        )

    # Seeds outside (each its own shuffle of the folds and its own initialisation),
    # folds next, configurations inside: a run cut short still compares every
    # configuration on the same folds. Each fold is one resumable row.
    start = time.perf_counter()
    for seed in args.seeds:
        cv = KFold(folds, shuffle=True, random_state=seed)
        predicted = {c["label"]: np.full(len(ages), np.nan) for c in configs}
        seconds: dict[str, list[float]] = {c["label"]: [] for c in configs}
        for fold, (train, test) in enumerate(cv.split(volumes)):
            for config in configs:
                label = config["label"]
                key = f"{source}|{label}|seed{seed}|fold{fold}|{args.epochs}ep|lr{config['lr']}"
                if key in done:
                    row = done[key]
                    predicted[label][test] = row["predicted"]
                    seconds[label].append(row["seconds"])
                    continue
                elapsed = time.perf_counter() - start
                if elapsed + max(seconds[label], default=0.0) > args.budget_s:
                    continue
                begin = time.perf_counter()
                est = estimator(config, seed).fit(volumes[train], ages[train])
                predicted[label][test] = est.predict(volumes[test])
                seconds[label].append(time.perf_counter() - begin)
                record(
                    {
                        "key": key,
                        "seed": seed,
                        "fold": fold,
                        "encoder": label,
                        "n_train": len(train),
                        "mae": round(
                            float(mean_absolute_error(ages[test], predicted[label][test])), 3
                        ),
                        "seconds": round(seconds[label][-1], 1),
                        "epochs_run": len(est.history),
                        "threads": torch.get_num_threads(),
                        "predicted": [round(float(v), 3) for v in predicted[label][test]],
                    }
                )
        for config in configs:
            label, finished = config["label"], ~np.isnan(predicted[config["label"]])
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
                "input": source,
                "device": device,
                "seed": seed,
                "folds_run": len(seconds[label]),
                "fold_mae": [
                    round(float(mean_absolute_error(ages[t], predicted[label][t])), 3)
                    for _, t in cv.split(volumes)
                    if finished[t].all()
                ],
                "seconds": round(sum(seconds[label]), 1),
            }
            if finished.all():
                row["key"] = f"{source}|{label}|seed{seed}|summary|{args.epochs}ep|lr{config['lr']}"
                if row["key"] in done:
                    continue
            if finished.any():
                row["mae"] = round(
                    float(mean_absolute_error(ages[finished], predicted[label][finished])), 3
                )
                row["r"] = round(
                    float(np.corrcoef(ages[finished], predicted[label][finished])[0, 1]), 3
                )
            record(row)

    if args.fit_all:
        # What a user pays: one fit on every scan, the fixed trunk's maps included.
        for config in configs:
            key = f"{source}|{config['label']}|fit_all|{args.epochs}ep|lr{config['lr']}"
            if key in done:
                continue
            begin = time.perf_counter()
            est = estimator(config, args.seeds[0]).fit(volumes, ages)
            record(
                {
                    "key": key,
                    "step": "fit_all",
                    "encoder": config["label"],
                    "n_train": len(ages),
                    "fit_seconds": round(time.perf_counter() - begin, 1),
                    "epochs_run": len(est.history),
                    "threads": torch.get_num_threads(),
                    "device": device,
                }
            )


def done_keys(out: Path) -> dict[str, dict]:
    if not out.exists():
        return {}
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return {row["key"]: row for row in rows if "key" in row}


def load_volumes(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    """The 8-bit export (ages inside), or a route's ``.npy`` from ``ixi_routes.py``."""
    if args.volumes.suffix == ".npy":
        from slicelearn.data import read_cohort

        _, labels = read_cohort(args.ixi / "participants.tsv", target=["age", "sex"])
        volumes = np.load(args.volumes).astype(np.float32)
        return volumes, labels[:, 0].astype(np.float32), f"route {args.volumes.stem}"
    stored = np.load(args.volumes)
    volumes = stored["codes"].astype(np.float32) * float(stored["step"]) + float(stored["low"])
    return volumes, stored["age"], "8-bit export"


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
    runner.add_argument("--ixi", type=Path, default=IXI, help="ages for a route's .npy volumes")
    runner.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="each its own fold shuffle and init"
    )
    runner.add_argument("--threads", type=int, default=2, help="torch threads")
    runner.add_argument(
        "--fit-all", action="store_true", help="after CV, time one fit on every scan"
    )
    args = parser.parse_args()
    export(args) if args.step == "export" else run(args)


if __name__ == "__main__":
    main()
