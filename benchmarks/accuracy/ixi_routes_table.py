"""Markdown tables of ``benchmarks/results/ixi_routes.jsonl`` (written by ``ixi_routes.py``).

Run::

    python benchmarks/accuracy/ixi_routes_table.py benchmarks/results/ixi_routes.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROUTE_NAMES = {
    "whole_head": "whole head, resampled to the MNI grid, no registration (the old default)",
    "deepbet": "deepbet brain, resampled, no registration",
    "deepbet_rigid": "deepbet brain, rigid (ANTs)",
    "deepbet_affine": "deepbet brain, affine (ANTs)",
    "dlmuse_affine": "DLMUSE brain, affine (ANTs; the earlier recipe)",
}


def _mae(row: dict) -> str:
    return f"{row['mae']:.2f} ± {row['mae_sd']:.2f}"


def _auc(row: dict) -> str:
    if row.get("sex_auc") is None:
        return ""
    return f"{row['sex_auc']:.3f} ± {row['sex_auc_sd']:.3f}"


def main(path: str) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
    masks = [r for r in rows if r["step"] == "deepbet"]
    if masks:
        dice = np.array([r["dice_vs_dlmuse"] for r in masks])
        seconds = np.array([r["seconds"] for r in masks])
        print(
            f"deepbet on {len(masks)} scans: Dice against DLMUSE mean {dice.mean():.3f} "
            f"(min {dice.min():.3f}, median {np.median(dice):.3f}); seconds per scan median "
            f"{np.median(seconds):.1f} (mean {seconds.mean():.1f}, max {seconds.max():.1f})\n"
        )
    seconds = {r["route"]: r["seconds_per_scan_2_workers"] for r in rows if r["step"] == "volumes"}
    ridge = {r["key"]: r for r in rows if r["step"] == "ridge"}
    print(
        "| route | s/scan | ridge, Lite0 blocks.3 2x2 sagittal: MAE | sex AUC | voxels: MAE "
        "| voxels: sex AUC |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for route, name in ROUTE_NAMES.items():
        row = ridge.get(f"ridge:{route}:efficientnet_lite0:sagittal:grey:blocks.3@2")
        voxels = ridge.get(f"voxels:{route}")
        if row is None and voxels is None:
            continue
        print(
            f"| {name} | {seconds.get(route, '')} | {_mae(row) if row else ''} | "
            f"{_auc(row) if row else ''} | {_mae(voxels) if voxels else ''} | "
            f"{_auc(voxels) if voxels else ''} |"
        )
    print("\n| route | encoder | axes | input | features | MAE | r | sex AUC |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in sorted(
        (r for r in ridge.values() if r.get("features") != "voxels"), key=lambda r: r["mae"]
    ):
        print(
            f"| {row['route']} | {row['encoder']} | {row['axis']} | {row['input']} | "
            f"{row['features']} | {_mae(row)} | {row['r']:.3f} | {_auc(row)} |"
        )
    package = [r for r in rows if r["step"] == "package"]
    if package:
        print("\n| package estimator | route | MAE | sex AUC | fit s |")
        print("| --- | --- | --- | --- | --- |")
        for row in package:
            print(
                f"| {row['encoder']} {row['feature_layer']} {row['axis']} | {row['route']} | "
                f"{_mae(row)} | {_auc(row)} | {row['fit_seconds']} "
                f"({row['torch_threads']} torch thread(s), {row['fit_scans']} scans) |"
            )
    heads = [r for r in rows if r["step"] == "head"]
    if heads:
        print("\n| trained slice head | route | seed | MAE | r | s (5 folds) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for row in heads:
            print(
                f"| frozen Lite0 blocks.3 2x2, mean | {row['route']} | {row['seed']} | "
                f"{row['mae']:.2f} | {row['r']:.3f} | {row['seconds_5_folds']} |"
            )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/ixi_routes.jsonl")
