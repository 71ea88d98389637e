"""IXI brain age: the paper's model fine-tuned end to end on the CPU, on every fold.

Gupta et al.'s model, every encoder weight trained: ImageNet EfficientNet-Lite0
on the sagittal slices, a position embedding, a pooling and the MLP head
(``SliceCNNRegressor(freeze_encoder=False)``), with the speed levers of
``benchmarks/finetune_speed.py`` (slices sampled per step, the volumes cut to
the brain's box, a cosine learning-rate schedule over a fixed number of
epochs): ``slicelearn.presets.FULL_FINE_TUNING``, fixed before any fold ran.
Nothing here is chosen by the scores it writes.

On the same folds (``KFold(5, shuffle=True, random_state=seed)``, the folds
of the ridge readout's repeats in ``docs/results.md``), beside it:

- ``ridge readout``: the command line's default model
  (``SliceLinearRegressor``: frozen Lite0 ``blocks.3`` 2 x 2, input smoothed
  by 1 voxel, ridge with the penalty chosen by internal CV);
- ``voxel ridge``: ridge on the 4 mm brain voxels (the 2 mm volumes smoothed
  by 1 voxel, 2 x 2 x 2 blocks averaged, no per-voxel standardisation), the
  penalty chosen by leave-one-out inside the training fold;
- ``fine-tuned + ridge readout``: the two predictions averaged with equal
  weights (fixed before running).

Input: the default route's volumes (deepbet, ANTs affine, z-scored in the
brain), from ``ixi_routes.py --steps masks volumes --routes deepbet_affine``.
Every (seed, fold, model) is one JSON line, appended as soon as it exists; a
run that is stopped resumes where it was. Run::

    python benchmarks/ixi_full_finetune.py --seeds 0 1 2 \\
        --out benchmarks/results/ixi_full_finetune.jsonl
    python benchmarks/ixi_full_finetune.py --seeds 0 --ablations \\
        --out benchmarks/results/ixi_full_finetune.jsonl
    python benchmarks/ixi_full_finetune.py --table benchmarks/results/ixi_full_finetune.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

from slicelearn.presets import FULL_FINE_TUNING, full_fine_tuning

IXI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ixi"
ROUTE = Path("~/slicelearn_data/ixi_routes/volumes/deepbet_affine.npy").expanduser()

#: The fine-tuning recipe (``slicelearn.presets.FULL_FINE_TUNING``), fixed before
#: the grid ran; each row's key records it.
RECIPE = dict(FULL_FINE_TUNING)

#: Nested choice (``--nested``): the candidates, each a change to the recipe,
#: compared inside each outer training fold. "as run" is the grid's recipe
#: before the regressor scaled its target (its outer rows are the grid's
#: "fine-tuned" rows); "scaled target" is the regressor's default since.
CANDIDATES = {
    "fine-tuned": dict(scale_target=False),
    "fine-tuned, scaled target": dict(scale_target=True),
}

#: The paper's ablations, each one change to the recipe (run on one seed).
ABLATIONS = {
    "random init": dict(weights=None),
    "no position embedding": dict(position_embedding=None),
    "learned position embedding": dict(position_embedding="learned"),
    "attention pooling": dict(pooling="attention"),
}


def fine_tuned(seed: int, threads: int, **changes):
    import torch

    from slicelearn import SliceCNNRegressor

    torch.set_num_threads(threads)
    return SliceCNNRegressor(**full_fine_tuning(**changes), random_state=seed, verbose=0)


def ridge_readout():
    from slicelearn import SliceLinearRegressor

    return SliceLinearRegressor(
        encoder="efficientnet_lite0",
        weights="imagenet",
        feature_layer="blocks.3",
        feature_grid=2,
        input_smoothing=1.0,
    )


def voxel_matrix(volumes: np.ndarray) -> np.ndarray:
    """4 mm brain voxels: smoothed by 1 voxel, 2 x 2 x 2 blocks averaged, the brain kept."""
    from scipy import ndimage

    rows = []
    for volume in volumes:
        smooth = ndimage.gaussian_filter(np.asarray(volume, np.float32), 1.0)
        x, y, z = (s // 2 * 2 for s in smooth.shape)
        blocks = smooth[:x, :y, :z].reshape(x // 2, 2, y // 2, 2, z // 2, 2).mean(axis=(1, 3, 5))
        rows.append(blocks.ravel())
    matrix = np.stack(rows)
    brain = (np.abs(matrix) > 1e-6).any(axis=0)
    return matrix[:, brain]


def voxel_ridge():
    from sklearn.linear_model import RidgeCV

    return RidgeCV(alphas=np.logspace(0, 7, 29))


def load(args) -> tuple[np.ndarray, np.ndarray, str]:
    from slicelearn.data import read_cohort

    _, labels = read_cohort(args.ixi / "participants.tsv", target=["age", "sex"])
    volumes = np.load(args.volumes).astype(np.float32)
    digest = hashlib.sha256(volumes.tobytes()).hexdigest()[:12]
    return volumes, labels[:, 0].astype(np.float64), f"{args.volumes.stem}@{digest}"


def read_rows(out: Path) -> dict[str, dict]:
    if not out.exists():
        return {}
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return {row["key"]: row for row in rows if "key" in row}


def recipe_key(change: dict) -> str:
    """The recipe in a row's key; the grid's first rows predate ``scale_target``."""
    recipe = {**RECIPE, **change}
    if recipe.get("scale_target") is False:
        del recipe["scale_target"]
    return json.dumps(recipe, sort_keys=True)


def run(args) -> None:
    """Every (seed, fold): the baselines, the fine-tuned models, their average with ridge.

    With ``--nested`` the fine-tuned model is chosen among :data:`CANDIDATES`
    inside the outer training fold: it is split once more (``KFold(5,
    shuffle=True, random_state=seed)`` on its scans, first split: 87 or 88 to
    train, 22 to validate), each candidate is fitted on the inner part and
    scored (MAE) on the inner validation scans, and the one with the lower
    inner MAE is refitted on the whole training fold and predicts the test
    fold, which no choice has seen.
    """
    from sklearn.model_selection import KFold

    volumes, ages, source = load(args)
    voxels = voxel_matrix(volumes)
    done = read_rows(args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def record(row: dict) -> None:
        print(json.dumps({k: v for k, v in row.items() if k != "predicted"}), flush=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        done[row["key"]] = row

    def fitted(key, label, build, X, train, test, base, **extra) -> np.ndarray:
        """The test predictions of ``build()`` fitted on ``train``: from the file, or run now."""
        if key in done:
            return np.asarray(done[key]["predicted"])
        begin = time.perf_counter()
        estimator = build().fit(X[train], ages[train])
        fit_seconds = time.perf_counter() - begin
        predicted = np.asarray(estimator.predict(X[test]), dtype=np.float64)
        row = {"key": key, "model": label, **base, "mae": mae(predicted, ages[test])}
        row["fit_seconds"] = round(fit_seconds, 1)
        row["predict_seconds"] = round(time.perf_counter() - begin - fit_seconds, 1)
        record({**row, **extra, "predicted": [round(float(v), 3) for v in predicted]})
        return predicted

    def tuned(label, change, seed, train, test, base, stage=""):
        key = f"{source}|{stage}{label}|seed{seed}|fold{base['fold']}|{recipe_key(change)}"
        build = lambda: fine_tuned(seed, args.threads, **change)  # noqa: E731
        recipe = {**RECIPE, **change}
        return fitted(key, label, build, volumes, train, test, base, recipe=recipe)

    configs = {"fine-tuned": CANDIDATES["fine-tuned"]}
    if args.ablations:
        configs = {
            f"fine-tuned, {name}": {**CANDIDATES["fine-tuned, scaled target"], **change}
            for name, change in ABLATIONS.items()
        }
    for seed in args.seeds:
        folds = KFold(5, shuffle=True, random_state=seed).split(volumes)
        for fold, (train, test) in enumerate(folds):
            base = {"input": source, "seed": seed, "fold": fold, "n_train": len(train)}
            predicted = {
                label: fitted(
                    f"{source}|{label}|seed{seed}|fold{fold}", label, build, X, train, test, base
                )
                for label, build, X in [
                    ("ridge readout", ridge_readout, volumes),
                    ("voxel ridge", voxel_ridge, voxels),
                ]
            }
            if not args.nested:
                for label, change in configs.items():
                    predicted[label] = tuned(label, change, seed, train, test, base)
            else:
                inner_train, inner_valid = next(
                    KFold(5, shuffle=True, random_state=seed).split(train)
                )
                inner_base = {**base, "stage": "inner", "n_train": len(inner_train)}
                inner = {
                    label: mae(
                        tuned(
                            label,
                            change,
                            seed,
                            train[inner_train],
                            train[inner_valid],
                            inner_base,
                            stage="inner|",
                        ),
                        ages[train[inner_valid]],
                    )
                    for label, change in CANDIDATES.items()
                }
                chosen = min(inner, key=inner.get)
                label = "fine-tuned, nested choice"
                predicted[label] = tuned(chosen, CANDIDATES[chosen], seed, train, test, base)
                key = f"{source}|{label}|seed{seed}|fold{fold}"
                if key not in done:
                    values = [round(float(v), 3) for v in predicted[label]]
                    record(
                        {
                            "key": key,
                            "model": label,
                            **base,
                            "chosen": chosen,
                            "inner_mae": inner,
                            "mae": mae(predicted[label], ages[test]),
                            "predicted": values,
                        }
                    )
            for label in [name for name in predicted if name.startswith("fine-tuned")]:
                key = f"{source}|{label} + ridge readout|seed{seed}|fold{fold}"
                if key in done:
                    continue
                average = (predicted[label] + predicted["ridge readout"]) / 2
                record(
                    {
                        "key": key,
                        "model": f"{label} + ridge readout",
                        **base,
                        "mae": mae(average, ages[test]),
                        "predicted": [round(float(v), 3) for v in average],
                    }
                )
    if args.fit_all:
        change = CANDIDATES["fine-tuned, scaled target"]
        key = f"{source}|fit_all|" + recipe_key(change)
        if key not in done:
            begin = time.perf_counter()
            fine_tuned(args.seeds[0], args.threads, **change).fit(volumes, ages)
            record(
                {
                    "key": key,
                    "model": "fine-tuned, fit on all scans",
                    "n_train": len(ages),
                    "fit_seconds": round(time.perf_counter() - begin, 1),
                    "threads": args.threads,
                }
            )


def mae(predicted: np.ndarray, truth: np.ndarray) -> float:
    return round(float(np.abs(np.asarray(predicted) - truth).mean()), 3)


def table(path: Path) -> list[str]:
    """Per seed: each model's pooled MAE over its folds, and the ridge readout's on those folds."""
    from collections import defaultdict

    from sklearn.model_selection import KFold

    from slicelearn.data import read_cohort

    _, labels = read_cohort(IXI / "participants.tsv", target=["age", "sex"])
    ages = labels[:, 0].astype(np.float64)
    rows = [r for r in read_rows(path).values() if "fold" in r and r.get("stage") != "inner"]
    by = defaultdict(dict)
    for row in rows:
        by[(row["model"], row["seed"])][row["fold"]] = row
    lines = [
        "| seed | model | folds run | fold MAEs | pooled MAE | ridge readout, same folds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for seed in sorted({seed for _, seed in by}):
        splits = list(KFold(5, shuffle=True, random_state=seed).split(ages))
        ridge = by.get(("ridge readout", seed), {})

        def pooled(folds: dict, keep, splits=splits) -> float:
            errors = [np.asarray(folds[f]["predicted"]) - ages[splits[f][1]] for f in sorted(keep)]
            return float(np.abs(np.concatenate(errors)).mean()) if errors else float("nan")

        for model in sorted(model for model, s in by if s == seed):
            folds = by[(model, seed)]
            fold_maes = ", ".join(f"{folds[f]['mae']:.2f}" for f in sorted(folds))
            mark = "" if len(folds) == 5 else " (partial)"
            same = set(folds) & set(ridge)
            lines.append(
                f"| {seed} | {model} | {len(folds)} of 5{mark} | {fold_maes} | "
                f"{pooled(folds, folds):.2f} | {pooled(ridge, same):.2f} ({len(same)} folds) |"
            )
    return lines


def write_into(document: Path, lines: list[str], stamp: str) -> None:
    """Replace the table between ``<!-- full-finetune-table -->`` markers of ``document``."""
    begin, end = "<!-- full-finetune-table -->", "<!-- /full-finetune-table -->"
    text = document.read_text()
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    if not tail and end not in rest:
        raise ValueError(f"{document} has no {begin} ... {end} block.")
    document.write_text(head + begin + "\n" + stamp + "\n\n" + "\n".join(lines) + "\n" + end + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=Path, default=ROUTE)
    parser.add_argument("--ixi", type=Path, default=IXI)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/ixi_full_finetune.jsonl")
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ablations", action="store_true", help="the paper's ablations instead")
    parser.add_argument("--fit-all", action="store_true", help="then time a fit on all scans")
    parser.add_argument(
        "--nested", action="store_true", help="choose among CANDIDATES inside each training fold"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--table", type=Path, default=None, help="print the table of a results file"
    )
    parser.add_argument("--docs", type=Path, help="with --table: write it into this Markdown file")
    parser.add_argument("--stamp", default="", help="with --docs: the line above the table")
    args = parser.parse_args()
    if args.table:
        lines = table(args.table)
        print("\n".join(lines))
        if args.docs:
            write_into(args.docs, lines, args.stamp)
    else:
        run(args)


if __name__ == "__main__":
    main()
