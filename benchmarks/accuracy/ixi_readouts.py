"""IXI: the package's readouts and their ensembles, 5 repeats of 5-fold CV, age and sex.

Every model is one of the package's estimators as a user builds it, on the
command line's default route (deepbet brain, ANTs affine of preprocessing
recipe 3, z-scored in the brain; volumes from ``registration_schedule.py``'s
``no-full-res:a`` run, bit-for-bit reproducible):

``ridge readout``
    ``SliceLinearRegressor`` / ``SliceLinearClassifier`` as ``slicelearn fit``
    builds them (EfficientNet-Lite0 ``blocks.3`` 2 x 2, sagittal, input
    smoothed by 1 voxel).
``voxels``
    ``VoxelLinearRegressor`` / ``VoxelLinearClassifier`` (4 mm blocks, no
    per-voxel scaling).
``mean(ridge, voxels)``
    ``EnsembleRegressor`` / ``EnsembleClassifier``, equal weights.
``stack(ridge, voxels)``
    the same with ``combine="stack"``: weights fitted to out-of-fold
    predictions inside each training fold (nested: the test fold never
    chooses them).
``brain encoder``
    ``BrainEncoderRegressor`` / ``BrainEncoderClassifier``: deepbet's
    brain-trained 3D encoder, its stages chosen inside each training fold
    among :data:`BRAIN_CANDIDATES` (``GridSearchCV``, inner 5-fold CV; the
    outer test fold never chooses).
``mean(ridge, brain encoder)``, ``mean(ridge, voxels, brain encoder)``
    equal-weight ensembles with that nested member.
``tissue fractions``, ``mean(ridge, tissue fractions)``
    ``TissueRegressor`` / ``TissueClassifier``: CSF, grey- and white-matter
    fractions of the brain from ANTs' Atropos (the classic baseline; the
    intracranial volume needs the scans' own space, which these arrays no
    longer hold), alone and averaged with the ridge readout.
``ridge readout + tissue covariates``
    the ridge readout with the three fractions joined to its slice features
    (``covariates=TissueFeatures()``; the block weighted to carry as much
    variance as the slice features, fixed before it ran).

No model here is chosen on these scores; the list was fixed before any of
them ran (the brain-encoder, tissue and covariate rows were added later, each
fixed before it ran).
Each row is one (task, model, repeat) with its out-of-fold score,
written as soon as it exists; a rerun skips finished rows. The slice
features are computed once per process and reused by every fold. Run::

    python benchmarks/accuracy/ixi_readouts.py --out benchmarks/results/ixi_readouts.jsonl
    python benchmarks/accuracy/ixi_readouts.py --table benchmarks/results/ixi_readouts.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

IXI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ixi"
VOLUMES = Path("~/slicelearn_data/registration/no-full-res-a/volumes/deepbet_affine.npy")
MODELS = (
    "ridge readout",
    "voxels",
    "mean(ridge, voxels)",
    "stack(ridge, voxels)",
    "brain encoder",
    "mean(ridge, brain encoder)",
    "mean(ridge, voxels, brain encoder)",
    "tissue fractions",
    "mean(ridge, tissue fractions)",
    "ridge readout + tissue covariates",
)
#: The deepbet encoder's stages and grids the inner CV chooses among.
BRAIN_CANDIDATES = {
    "feature_layers": [("down3",), ("down2", "down3"), ("down1", "down2", "down3")],
    "feature_grid": [1, 2],
}
TASKS = ("age", "sex")


def build(model: str, task: str):
    """The estimator named ``model`` for ``task``, as a user of the package builds it."""
    from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold

    from slicelearn import (
        BrainEncoderClassifier,
        BrainEncoderRegressor,
        EnsembleClassifier,
        EnsembleRegressor,
        TissueClassifier,
        TissueRegressor,
        VoxelLinearClassifier,
        VoxelLinearRegressor,
    )
    from slicelearn.presets import recommended_readout
    from slicelearn.tissue import TissueFeatures

    regression = task == "age"
    slices = recommended_readout("regression" if regression else "classification")
    voxels = (VoxelLinearRegressor if regression else VoxelLinearClassifier)()
    brain = GridSearchCV(
        (BrainEncoderRegressor if regression else BrainEncoderClassifier)(),
        BRAIN_CANDIDATES,
        cv=KFold(5, shuffle=True, random_state=0)
        if regression
        else StratifiedKFold(5, shuffle=True, random_state=0),
        scoring="neg_mean_absolute_error" if regression else "roc_auc",
    )
    if model == "ridge readout":
        return slices
    if model == "voxels":
        return voxels
    tissue = (TissueRegressor if regression else TissueClassifier)()
    if model == "brain encoder":
        return brain
    if model == "tissue fractions":
        return tissue
    if model == "ridge readout + tissue covariates":
        return slices.set_params(covariates=TissueFeatures())
    members = {
        "ridge": ("slices", slices),
        "voxels": ("voxels", voxels),
        "brain": ("brain", brain),
        "tissue": ("tissue", tissue),
    }
    chosen = [members[name] for name in members if name in model]
    ensemble = EnsembleRegressor if regression else EnsembleClassifier
    combine = "mean" if model.startswith("mean") else "stack"
    return ensemble(chosen, combine=combine)


def score(task: str, model, volumes: np.ndarray, target: np.ndarray, repeat: int) -> float:
    """Out-of-fold MAE (age) or ROC-AUC (sex) over one shuffled 5-fold split."""
    from sklearn.metrics import mean_absolute_error, roc_auc_score
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

    if task == "age":
        folds = KFold(5, shuffle=True, random_state=repeat)
        return float(
            mean_absolute_error(target, cross_val_predict(model, volumes, target, cv=folds))
        )
    folds = StratifiedKFold(5, shuffle=True, random_state=repeat)
    proba = cross_val_predict(model, volumes, target, cv=folds, method="predict_proba")
    return float(roc_auc_score(target == np.unique(target)[1], proba[:, 1]))


def summary_cells(values: np.ndarray) -> str:
    """``n | mean ± SD | each value``: the table cells of one model's repeats."""
    values = np.asarray(values, dtype=float)
    return (
        f"{len(values)} | {values.mean():.3f} ± {values.std():.3f} | "
        f"{', '.join(f'{v:.3f}' for v in values)}"
    )


def table(path: Path) -> str:
    """Mean ± SD over repeats, and repeats won against the ridge readout, per task."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = []
    for task in TASKS:
        metric = "MAE (years)" if task == "age" else "ROC-AUC"
        better = np.less if task == "age" else np.greater
        lines += [
            f"| {task}: model | repeats | {metric} | per repeat | better than the ridge readout |",
            "| --- | --- | --- | --- | --- |",
        ]
        by_model = {
            m: {r["repeat"]: r["score"] for r in rows if r["task"] == task and r["model"] == m}
            for m in MODELS
        }
        reference = by_model["ridge readout"]
        for model, scores in by_model.items():
            if not scores:
                continue
            values = np.array([scores[k] for k in sorted(scores)])
            shared = sorted(set(scores) & set(reference))
            wins = sum(bool(better(scores[k], reference[k])) for k in shared)
            lines.append(
                f"| {model} | {summary_cells(values)} | "
                f"{'—' if model == 'ridge readout' else f'{wins} of {len(shared)}'} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=Path, default=VOLUMES)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ixi_readouts.jsonl"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--limit", type=int, default=None, help="first N scans only (a smoke test)")
    parser.add_argument(
        "--table", type=Path, default=None, help="print the table of a results file"
    )
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return

    from slicelearn.data import read_cohort

    paths, labels = read_cohort(IXI / "participants.tsv", target=["age", "sex"])
    volumes = np.load(args.volumes.expanduser(), mmap_mode="r")
    if len(volumes) != len(paths):
        raise SystemExit(f"{args.volumes} holds {len(volumes)} volumes for {len(paths)} scans.")
    n = args.limit or len(paths)
    volumes = np.asarray(volumes[:n], dtype=np.float32)
    targets = {"age": labels[:n, 0].astype(np.float64), "sex": labels[:n, 1].astype(str)}
    done = set()
    if args.out.exists():
        done = {json.loads(line)["key"] for line in args.out.read_text().splitlines() if line}
    source = f"{args.volumes.expanduser().parent.parent.name}/{args.volumes.name}"
    for task in args.tasks:
        for model in args.models:
            for repeat in range(args.repeats):
                key = f"{source}|n{n}|{task}|{model}|repeat{repeat}"
                if key in done:
                    continue
                start = time.perf_counter()
                value = score(task, build(model, task), volumes, targets[task], repeat)
                row = {
                    "key": key,
                    "volumes": source,
                    "n": n,
                    "task": task,
                    "model": model,
                    "repeat": repeat,
                    "score": round(value, 4),
                    "seconds": round(time.perf_counter() - start, 1),
                }
                print(json.dumps(row), flush=True)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
