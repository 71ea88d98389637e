"""IXI brain age: the paper's model fine-tuned end to end on the CPU, on every fold.

Gupta et al.'s model, every encoder weight trained: ImageNet EfficientNet-Lite0
on the sagittal slices, a position embedding, a pooling and the MLP head
(``SliceCNNRegressor(freeze_encoder=False)``), with the speed levers of
``benchmarks/speed/finetune_speed.py`` (slices sampled per step, the volumes cut to
the brain's box, a cosine learning-rate schedule over a fixed number of
epochs): ``slicelearn.presets.FULL_FINE_TUNING``, fixed before any fold ran.
Nothing here is chosen by the scores it writes.

On the same folds (``KFold(5, shuffle=True, random_state=seed)``, the folds
of the ridge readout's repeats in ``docs/results.md``), beside it:

- ``ridge readout``: the command line's default model when the grid was
  planned (``SliceLinearRegressor``: frozen Lite0 ``blocks.3`` 2 x 2, input smoothed
  by 1 voxel, ridge with the penalty chosen by internal CV);
- ``voxel ridge``: ridge on the 4 mm brain voxels (the 2 mm volumes smoothed
  by 1 voxel, 2 x 2 x 2 blocks averaged, no per-voxel standardisation), the
  penalty chosen by leave-one-out inside the training fold;
- ``fine-tuned + ridge readout``: the two predictions averaged with equal
  weights (fixed before running);
- ``brain encoder``: ``ixi_readouts.py``'s deepbet encoder readout (its
  stages and grid chosen inside the training fold);
- ``fine-tuned + ridge readout + voxel ridge`` and ``... + brain encoder``:
  three members averaged with equal weights (the readouts issue's ensembles
  with the network as a member; each fixed before it was computed).

Input (``--volumes``): the recommended route's volumes (deepbet, ANTs
affine, z-scored in the brain) as preprocessing recipe 3 computes them, bit
for bit the same on every run (SHA-256 ``ff3202254daf...``), from
``registration_schedule.py --runs no-full-res:a``. The grid's first rows
(input ``deepbet_affine@4404aedce21f``) ran on volumes of the earlier,
non-reproducible route (``ixi_routes.py --steps masks volumes --routes
deepbet_affine``); ``--table --input`` keeps one input's rows apart.
Every (seed, fold, model) is one JSON line, appended as soon as it exists; a
run that is stopped resumes where it was. Run::

    python benchmarks/accuracy/ixi_full_finetune.py --seeds 0 1 2 \\
        --out benchmarks/results/ixi_full_finetune.jsonl
    python benchmarks/accuracy/ixi_full_finetune.py --seeds 0 --ablations \\
        --out benchmarks/results/ixi_full_finetune.jsonl
    python benchmarks/accuracy/ixi_full_finetune.py --seeds 0 \\
        --levers "no brain crop" float32 "every slice per step" "3 mm grid" "6 epochs" "24 epochs"
    python benchmarks/accuracy/ixi_full_finetune.py \\
        --table benchmarks/results/ixi_full_finetune.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import time
from pathlib import Path

import numpy as np

from slicelearn.precision import resolve_precision
from slicelearn.presets import FULL_FINE_TUNING, full_fine_tuning

IXI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ixi"
ROUTE = Path("~/slicelearn_data/registration/no-full-res-a/volumes/deepbet_affine.npy").expanduser()

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

#: The speed levers' accuracy, each alone (``--levers``, one seed): the recipe
#: with one lever changed, taken out (every slice, no crop, float32) or pushed
#: further (3 mm, half or twice the epochs). "float32" matters only where
#: ``precision="auto"`` trains in bf16 (it did on the grid's native-bf16 CPU
#: before the float32 lever; each row now records its precisions).
LEVERS = {
    "every slice per step": dict(train_slices=None),
    "no brain crop": dict(crop_to_content=False),
    "float32": dict(precision="fp32"),
    "3 mm grid": {},  # the recipe on ROUTE_3MM's volumes
    # The epochs lever: half and twice the recipe's cosine schedule (the
    # schedule follows max_epochs), to see where 12 epochs sits on the curve.
    "6 epochs": dict(max_epochs=6),
    "24 epochs": dict(max_epochs=24),
}

#: Levers that change the input, not the estimator: the same scans through
#: the same route onto another grid (``ixi_routes.py --steps masks volumes
#: --routes deepbet_affine_3mm``: ``VolumePreprocessor(target="mni152_3mm")``,
#: the command line's ``--grid mni152_3mm``). Not a lever taken out: one added.
ROUTE_3MM = Path("~/slicelearn_data/ixi_routes/volumes/deepbet_affine_3mm.npy").expanduser()


def fine_tuned(seed: int, threads: int, task: str = "age", **changes):
    import torch

    from slicelearn import SliceCNNClassifier, SliceCNNRegressor

    torch.set_num_threads(threads)
    estimator = SliceCNNRegressor if task == "age" else SliceCNNClassifier
    return estimator(**full_fine_tuning(**changes), random_state=seed, verbose=0)


def ridge_readout(task: str = "age"):
    """The slice readout (``recommended_readout``): ridge (age) or logistic regression (sex)."""
    from slicelearn.presets import recommended_readout

    return recommended_readout("regression" if task == "age" else "classification")


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


def voxel_ridge(task: str = "age"):
    """Ridge (age) or L2 logistic regression (sex) on the voxels, the penalty chosen inside."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV

    if task == "age":
        return RidgeCV(alphas=np.logspace(0, 7, 29))
    return LogisticRegressionCV(Cs=np.logspace(-7, 0, 15), scoring="neg_log_loss", max_iter=5000)


def brain_encoder(task: str = "age"):
    """deepbet's encoder readout as ``ixi_readouts.py`` builds it: stages and grid chosen inside."""
    from ixi_readouts import build  # this folder's script

    return build("brain encoder", task)


#: Per task: the target column, the score and the fold splitter. Age rows keep
#: the keys they had before sex was added (no task in the key).
TASKS = {
    "age": {
        "column": 0,
        "score": "mae",
        "key": "",
        "readout": "ridge readout",
        "voxels": "voxel ridge",
    },
    "sex": {
        "column": 1,
        "score": "auc",
        "key": "sex|",
        "readout": "logistic readout",
        "voxels": "voxel logistic",
    },
}


def score(task: str, predicted: np.ndarray, truth: np.ndarray) -> float:
    """MAE in years (age) or ROC-AUC of P(male) (sex)."""
    if task == "age":
        return mae(predicted, truth)
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(truth == "M", predicted)), 4)


def splits(task: str, seed: int, y: np.ndarray):
    """The outer folds: shuffled 5-fold (age), stratified by sex (sex), as the readout repeats."""
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = KFold if task == "age" else StratifiedKFold
    return splitter(5, shuffle=True, random_state=seed).split(y, y)


def load(args) -> tuple[np.ndarray, np.ndarray, str]:
    """The volumes, the target of ``args.task`` (ages, or "F"/"M") and the input's name."""
    from slicelearn.data import read_cohort

    _, labels = read_cohort(args.ixi / "participants.tsv", target=["age", "sex"])
    volumes, name = load_volumes(args.volumes)
    target = labels[:, TASKS[args.task]["column"]]
    target = target.astype(np.float64) if args.task == "age" else target.astype(str)
    return volumes, target, name


def load_volumes(path: Path, n: int | None = None) -> tuple[np.ndarray, str]:
    """The volumes of ``path`` and the input's name (its stem and content digest).

    ``n``: the cohort's size, which a lever's volumes on another grid must match.
    """
    volumes = np.load(path).astype(np.float32)
    if n is not None and len(volumes) != n:
        raise SystemExit(f"{path} holds {len(volumes)} volumes, not the cohort's {n}.")
    digest = hashlib.sha256(volumes.tobytes()).hexdigest()[:12]
    return volumes, f"{path.stem}@{digest}"


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

    task = args.task
    if args.nested and task != "age":
        raise SystemExit("--nested chooses the regressor's head units: it applies to --task age.")
    volumes, ages, source = load(args)
    source = TASKS[task]["key"] + source
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
        if task == "age":
            predicted = np.asarray(estimator.predict(X[test]), dtype=np.float64)
        else:  # P(male), the column of "M" in the estimator's classes
            classes = list(estimator.classes_)
            predicted = estimator.predict_proba(X[test])[:, classes.index("M")]
        metric = TASKS[task]["score"]
        row = {"key": key, "model": label, **base, metric: score(task, predicted, ages[test])}
        row["fit_seconds"] = round(fit_seconds, 1)
        row["predict_seconds"] = round(time.perf_counter() - begin - fit_seconds, 1)
        record({**row, **extra, "predicted": [round(float(v), 3) for v in predicted]})
        return predicted

    def tuned(label, change, seed, train, test, base, stage=""):
        key = f"{source}|{stage}{label}|seed{seed}|fold{base['fold']}|{recipe_key(change)}"
        inputs, extra = volumes, {}
        if label in grid_levers:  # the same scans on another grid: its digest joins the key
            inputs, name = grid_levers[label]
            key, extra = f"{key}|{name}", {"lever_input": name}
        build = lambda: fine_tuned(seed, args.threads, task, **change)  # noqa: E731
        recipe = {**RECIPE, **change}
        # What the recipe's precision means on this machine. On a CPU with
        # native bf16, "auto" trained in bf16 until the float32 lever and in
        # float32 since; without it, "auto" is float32 throughout.
        asked = recipe.get("precision", "auto")
        precisions = {
            f"{step}_precision": resolve_precision(asked, "cpu", training)
            for step, training in [("training", True), ("prediction", False)]
        }
        return fitted(
            key, label, build, inputs, train, test, base, recipe=recipe, **extra, **precisions
        )

    configs = {args.candidate: CANDIDATES[args.candidate]} if task == "age" else {"fine-tuned": {}}
    grid_levers = {
        f"fine-tuned, {name}": load_volumes(path, len(volumes))
        for name, path in [("3 mm grid", args.volumes_3mm)]
        if name in (args.levers or [])
    }
    if args.ablations or args.levers:
        changes = ABLATIONS if args.ablations else {n: LEVERS[n] for n in args.levers}
        configs = {
            f"fine-tuned, {name}": {**CANDIDATES["fine-tuned, scaled target"], **change}
            for name, change in changes.items()
        }
    for seed in args.seeds:
        for fold, (train, test) in enumerate(splits(task, seed, ages)):
            base = {"input": source, "seed": seed, "fold": fold, "n_train": len(train)}
            if task != "age":
                base["task"] = task
            predicted = {
                label: fitted(
                    f"{source}|{label}|seed{seed}|fold{fold}", label, build, X, train, test, base
                )
                for label, build, X in [
                    (TASKS[task]["readout"], lambda: ridge_readout(task), volumes),
                    (TASKS[task]["voxels"], lambda: voxel_ridge(task), voxels),
                    ("brain encoder", lambda: brain_encoder(task), volumes),
                ]
            }
            # A user who picks another grid gets both members of the default on
            # it: the readout averaged with a grid lever's network is fitted on
            # the lever's volumes.
            readout = TASKS[task]["readout"]
            partner = {}  # a grid lever's label -> its readout's; the rest use ``readout``
            for label, (inputs, name) in grid_levers.items():
                partner[label] = f"{readout}, {label.removeprefix('fine-tuned, ')}"
                predicted[partner[label]] = fitted(
                    f"{source}|{partner[label]}|seed{seed}|fold{fold}|{name}",
                    partner[label],
                    lambda: ridge_readout(task),
                    inputs,
                    train,
                    test,
                    base,
                    lever_input=name,
                )
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
                key = f"{source}|{label} + {readout}|seed{seed}|fold{fold}"
                extra = {}
                if label in grid_levers:
                    extra["lever_input"] = grid_levers[label][1]
                    key += f"|{extra['lever_input']}"
                if key in done:
                    continue
                average = (predicted[label] + predicted[partner.get(label, readout)]) / 2
                record(
                    {
                        "key": key,
                        "model": f"{label} + {readout}",
                        **base,
                        **extra,
                        TASKS[task]["score"]: score(task, average, ages[test]),
                        "predicted": [round(float(v), 3) for v in average],
                    }
                )
            if args.ablations or args.levers:
                continue
            # The readouts issue's ensembles with the fine-tuned network as one more
            # member: network, slice readout and voxels or the brain encoder, equal
            # weights (each fixed before it was computed).
            third_members = [TASKS[task]["voxels"], "brain encoder"]
            for label, third in itertools.product(
                [name for name in predicted if name.startswith("fine-tuned")], third_members
            ):
                model = f"{label} + {readout} + {third}"
                key = f"{source}|{model}|seed{seed}|fold{fold}"
                if key in done:
                    continue
                members = (predicted[label], predicted[readout], predicted[third])
                average = sum(members) / 3
                record(
                    {
                        "key": key,
                        "model": model,
                        **base,
                        TASKS[task]["score"]: score(task, average, ages[test]),
                        "predicted": [round(float(v), 3) for v in average],
                    }
                )
    if args.fit_all:
        change = CANDIDATES["fine-tuned, scaled target"] if task == "age" else {}
        # What precision="auto" trains in here: the key's recipe leaves it to the machine.
        precision = resolve_precision({**RECIPE, **change}.get("precision", "auto"), "cpu", True)
        key = f"{source}|fit_all|" + recipe_key(change)
        if precision == "fp32":  # since auto trains in float32 on the CPU
            key += "|training fp32"
        if key not in done:
            begin = time.perf_counter()
            fine_tuned(args.seeds[0], args.threads, task, **change).fit(volumes, ages)
            record(
                {
                    "key": key,
                    "model": "fine-tuned, fit on all scans",
                    "n_train": len(ages),
                    "fit_seconds": round(time.perf_counter() - begin, 1),
                    "threads": args.threads,
                    "training_precision": precision,
                }
            )


def mae(predicted: np.ndarray, truth: np.ndarray) -> float:
    return round(float(np.abs(np.asarray(predicted) - truth).mean()), 3)


def table(path: Path, task: str = "age", source: str | None = None) -> list[str]:
    """Per seed: each model's pooled score over its folds, and the readout's on those folds.

    ``source`` keeps the rows of one input (``"deepbet_affine@4404aedce21f"``,
    as in a row's ``"input"``); without it every row counts, and rows of
    several inputs are refused, since their folds hold different volumes.
    """
    from collections import defaultdict

    from slicelearn.data import read_cohort

    _, labels = read_cohort(IXI / "participants.tsv", target=["age", "sex"])
    y = labels[:, TASKS[task]["column"]]
    y = y.astype(np.float64) if task == "age" else y.astype(str)
    rows = [
        r
        for r in read_rows(path).values()
        if "fold" in r and r.get("stage") != "inner" and r.get("task", "age") == task
    ]
    prefix = TASKS[task]["key"]
    if source is not None:
        rows = [r for r in rows if r["input"] in (source, prefix + source)]
    inputs = sorted({r["input"].removeprefix(prefix) for r in rows})
    if len(inputs) > 1:
        raise SystemExit(f"{path} holds rows of several inputs; choose one with --input: {inputs}")
    by = defaultdict(dict)
    for row in rows:
        by[(row["model"], row["seed"])][row["fold"]] = row
    metric, readout = TASKS[task]["score"], TASKS[task]["readout"]
    name = "MAE" if metric == "mae" else "ROC-AUC"
    lines = [
        f"| seed | model | folds run | fold {name}s | pooled {name} | {readout}, same folds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for seed in sorted({seed for _, seed in by}):
        tests = [test for _, test in splits(task, seed, y)]
        baseline = by.get((readout, seed), {})

        def pooled(folds: dict, keep, tests=tests) -> float:
            if not keep:
                return float("nan")
            keep = sorted(keep)
            predicted = np.concatenate([np.asarray(folds[f]["predicted"]) for f in keep])
            return score(task, predicted, np.concatenate([y[tests[f]] for f in keep]))

        digits = 2 if metric == "mae" else 3
        for model in sorted(model for model, s in by if s == seed):
            folds = by[(model, seed)]
            per_fold = ", ".join(f"{folds[f][metric]:.{digits}f}" for f in sorted(folds))
            mark = "" if len(folds) == 5 else " (partial)"
            same = set(folds) & set(baseline)
            lines.append(
                f"| {seed} | {model} | {len(folds)} of 5{mark} | {per_fold} | "
                f"{pooled(folds, folds):.{digits}f} | {pooled(baseline, same):.{digits}f} "
                f"({len(same)} folds) |"
            )
    return lines


def write_into(document: Path, lines: list[str], stamp: str, marker: str) -> None:
    """Replace the table between ``<!-- marker -->`` and ``<!-- /marker -->`` in ``document``."""
    begin, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    text = document.read_text()
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    if not tail and end not in rest:
        raise ValueError(f"{document} has no {begin} ... {end} block.")
    document.write_text(head + begin + "\n" + stamp + "\n\n" + "\n".join(lines) + "\n" + end + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=Path, default=ROUTE)
    parser.add_argument(
        "--volumes-3mm", type=Path, default=ROUTE_3MM, help="the '3 mm grid' lever's volumes"
    )
    parser.add_argument("--ixi", type=Path, default=IXI)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/ixi_full_finetune.jsonl")
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--task", choices=list(TASKS), default="age", help="brain age (MAE) or sex (ROC-AUC)"
    )
    parser.add_argument("--ablations", action="store_true", help="the paper's ablations instead")
    parser.add_argument(
        "--levers",
        nargs="+",
        choices=list(LEVERS),
        default=None,
        help="the recipe with one speed lever changed (taken out, or pushed further: '3 mm grid', "
        "'6 epochs', '24 epochs'), each (instead of the recipe)",
    )
    parser.add_argument("--fit-all", action="store_true", help="then time a fit on all scans")
    parser.add_argument(
        "--nested", action="store_true", help="choose among CANDIDATES inside each training fold"
    )
    parser.add_argument(
        "--candidate",
        choices=list(CANDIDATES),
        default="fine-tuned, scaled target",
        help="without --nested: the one recipe to run (age; the regressor's default since it "
        "was chosen in every nested fold)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--table", type=Path, default=None, help="print the table of a results file"
    )
    parser.add_argument("--docs", type=Path, help="with --table: write it into this Markdown file")
    parser.add_argument("--stamp", default="", help="with --docs: the line above the table")
    parser.add_argument("--input", help="with --table: the rows of this input only")
    parser.add_argument(
        "--marker", default="full-finetune-table", help="with --docs: the block to replace"
    )
    args = parser.parse_args()
    if args.table:
        lines = table(args.table, args.task, args.input)
        print("\n".join(lines))
        if args.docs:
            write_into(args.docs, lines, args.stamp, args.marker)
    else:
        run(args)


if __name__ == "__main__":
    main()
