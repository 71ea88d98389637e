"""IXI: the intracranial volume, alone and with the tissue fractions, 5 repeats of 5-fold CV.

``ixi_readouts.py`` measures the tissue fractions on the registered volumes,
which no longer hold each head's size. The intracranial volume is the brain
volume in the scan's own space: here the deepbet masks that
``ixi_routes.py --steps masks`` keeps, measured as the preprocessing records
``native_brain_ml`` (voxels above 0.5 times the voxel volume). The fractions
are ``TissueFeatures()`` on the default route's volumes (Atropos; computed
once and kept in ``--cache``). Three feature sets, fixed before any ran:

``tissue fractions``
    CSF, grey and white matter: the check that this script's linear models
    are the package's (``ixi_readouts.py``'s row of the same name).
``intracranial volume``
    the volume alone.
``tissue fractions + intracranial volume``
    the four features of ``TissueRegressor(intracranial_volume=True)``.

Each set is standardised on the training rows, then the tissue readouts'
computation: ridge with the penalty by leave-one-out among
``DEFAULT_ALPHAS`` (age), or L2 logistic regression with the inverse
penalty by stratified 5-fold CV (log loss) among ``DEFAULT_CS`` (sex). The
folds are ``ixi_readouts.py``'s (``KFold`` / ``StratifiedKFold``, shuffles 0
to 4). Rows go to ``--out`` as they exist; a rerun skips finished ones. Run::

    python benchmarks/accuracy/ixi_routes.py --steps masks --out /tmp/masks.jsonl
    python benchmarks/accuracy/ixi_intracranial_volume.py \\
        --out benchmarks/results/ixi_intracranial_volume.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

IXI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ixi"
VOLUMES = Path("~/slicelearn_data/registration/no-full-res-a/volumes/deepbet_affine.npy")
MASKS = Path("~/slicelearn_data/ixi_routes/masks")
FEATURE_SETS = (
    "tissue fractions",
    "intracranial volume",
    "tissue fractions + intracranial volume",
)


def intracranial_ml(paths: list[str], masks: Path) -> np.ndarray:
    """Each scan's deepbet brain volume in its own space (ml), as ``native_brain_ml``."""
    import nibabel as nib

    values = []
    for path in paths:
        mask_path = masks / (Path(path).name.replace("_T1w.nii.gz", "") + "_deepbet.nii.gz")
        if not mask_path.exists():
            raise SystemExit(f"{mask_path} is missing: run ixi_routes.py --steps masks first.")
        mask = nib.as_closest_canonical(nib.load(mask_path))
        voxel_ml = abs(float(np.linalg.det(mask.affine[:3, :3]))) / 1000
        values.append(float((np.asarray(mask.dataobj) > 0.5).sum()) * voxel_ml)
    return np.asarray(values)


def cached_fractions(volumes: np.ndarray, cache: Path) -> np.ndarray:
    """``TissueFeatures().transform(volumes)``, kept on disk (written whole, then renamed)."""
    digest = hashlib.sha256(volumes.tobytes()).hexdigest()[:12]
    # The name says how they were computed: fractions from Atropos before its
    # fixed seed (r=0) differ, and must not pass for these.
    path = cache / f"fractions_{digest}_n{len(volumes)}_mrf0.2_seeded.npy"
    if path.exists():
        return np.load(path)
    from slicelearn.tissue import TissueFeatures

    fractions = np.asarray(TissueFeatures().transform(volumes), dtype=np.float64)
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial.npy")
    np.save(partial, fractions)
    partial.replace(path)
    return fractions


def score(task: str, features: np.ndarray, target: np.ndarray, repeat: int) -> float:
    """Out-of-fold MAE (age) or ROC-AUC (sex) of the tissue readouts' linear model."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.metrics import mean_absolute_error, roc_auc_score
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from slicelearn.readout import DEFAULT_ALPHAS, DEFAULT_CS, LOGISTIC_TOL

    if task == "age":
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.asarray(DEFAULT_ALPHAS)))
        folds = KFold(5, shuffle=True, random_state=repeat)
        predicted = cross_val_predict(model, features, target, cv=folds)
        return float(mean_absolute_error(target, predicted))
    model = make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            Cs=np.asarray(DEFAULT_CS),
            cv=5,
            scoring="neg_log_loss",
            max_iter=5000,
            tol=LOGISTIC_TOL,
        ),
    )
    folds = StratifiedKFold(5, shuffle=True, random_state=repeat)
    proba = cross_val_predict(model, features, target, cv=folds, method="predict_proba")
    return float(roc_auc_score(target == np.unique(target)[1], proba[:, 1]))


def table(path: Path) -> str:
    """Mean ± SD over repeats, per task and feature set."""
    from ixi_readouts import summary_cells  # this folder's script

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    lines = []
    for task, metric in (("age", "MAE (years)"), ("sex", "ROC-AUC")):
        header = f"| {task}: features | repeats | {metric} | per repeat |"
        lines += [header, "| --- | --- | --- | --- |"]
        for name in FEATURE_SETS:
            values = [r["score"] for r in rows if r["task"] == task and r["model"] == name]
            if values:
                lines.append(f"| {name} | {summary_cells(values)} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=Path, default=VOLUMES)
    parser.add_argument("--masks", type=Path, default=MASKS)
    parser.add_argument("--cache", type=Path, default=Path("~/slicelearn_data/tissue"))
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/ixi_intracranial_volume.jsonl")
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--table", type=Path, default=None)
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return

    from slicelearn.data import read_cohort

    paths, labels = read_cohort(IXI / "participants.tsv", target=["age", "sex"])
    volumes = np.asarray(np.load(args.volumes.expanduser(), mmap_mode="r"), dtype=np.float32)
    if len(volumes) != len(paths):
        raise SystemExit(f"{args.volumes} holds {len(volumes)} volumes for {len(paths)} scans.")
    tiv = intracranial_ml(list(paths), args.masks.expanduser())[:, None]
    fractions = cached_fractions(volumes, args.cache.expanduser())
    features = {
        "tissue fractions": fractions,
        "intracranial volume": tiv,
        "tissue fractions + intracranial volume": np.column_stack([fractions, tiv]),
    }
    targets = {"age": labels[:, 0].astype(np.float64), "sex": labels[:, 1].astype(str)}
    done = set()
    if args.out.exists():
        done = {json.loads(line)["key"] for line in args.out.read_text().splitlines() if line}
    for task, target in targets.items():
        for name in FEATURE_SETS:
            for repeat in range(args.repeats):
                key = f"n{len(paths)}|{task}|{name}|repeat{repeat}"
                if key in done:
                    continue
                value = score(task, features[name], target, repeat)
                row = {"key": key, "task": task, "model": name, "repeat": repeat}
                row["score"] = round(value, 4)
                print(json.dumps(row), flush=True)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
