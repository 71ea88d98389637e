"""The ``slicelearn`` command line: fit, predict, evaluate, demo.

For users who do not write Python. ``--data`` is a BIDS root or a CSV/TSV
table with a ``path`` column; every command that trains writes a report
folder (metrics, predictions, figures, slice importance). Wrong input exits
with code 2 and a one-line message naming the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__

__all__ = ["build_parser", "main"]

#: The recommended configuration, the best measured on IXI brain age
#: (docs/results.md): a frozen ImageNet EfficientNet-Lite0 (slice features are
#: computed once) with its blocks.3 features pooled 2x2, mean pooling, and no
#: position embedding (the 2x2 grid keeps in-slice position; slice position
#: did not help on IXI with these features).
DEFAULTS = {
    "encoder": "efficientnet_lite0",
    "pooling": "mean",
    "position_embedding": "none",
    "lr": 1e-3,
    "max_epochs": 150,
    "batch_size": 16,
}


#: Per encoder, the recommended (feature_layer, feature_grid); others use the whole encoder.
RECOMMENDED_FEATURES = {"efficientnet_lite0": ("blocks.3", 2)}


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


def _is_regression(y: np.ndarray, task: str) -> bool:
    if task != "auto":
        return task == "regression"
    try:
        values = y.astype(float)
    except (TypeError, ValueError):
        return False
    # Numbers are a regression target unless they look like a few class codes.
    return bool((values != np.round(values)).any() or len(np.unique(values)) > 10)


def _progress(enabled: bool) -> list:
    if not enabled:
        return []
    from skorch.callbacks import ProgressBar

    return [("progress", ProgressBar())]


def _features(args: argparse.Namespace) -> dict:
    """``feature_layer`` and ``feature_grid``, with "auto" resolved for the chosen encoder."""
    layer, grid = RECOMMENDED_FEATURES.get(args.encoder, (None, 1))
    if args.feature_layer != "auto":
        layer = None if args.feature_layer == "last" else args.feature_layer
    if args.feature_grid != "auto":
        grid = int(args.feature_grid)
    return {"feature_layer": layer, "feature_grid": grid}


def _estimator(args: argparse.Namespace, regression: bool):
    from .data import VolumePreprocessor
    from .estimators import SliceCNNClassifier, SliceCNNRegressor

    weights = None if args.weights == "none" else args.weights
    preprocessing = None
    if getattr(args, "grid", "none") != "none":
        preprocessing = VolumePreprocessor(
            target=args.grid,
            registration="affine" if args.registration else None,
            cache_dir=args.cache_dir,
        )
    kind = SliceCNNRegressor if regression else SliceCNNClassifier
    return kind(
        encoder=args.encoder,
        weights=weights,
        freeze_encoder=args.freeze_encoder,
        pooling=args.pooling,
        position_embedding=None if args.position_embedding == "none" else args.position_embedding,
        axis=args.axis,
        **_features(args),
        preprocessing=preprocessing,
        lr=args.lr,
        max_epochs=args.max_epochs,
        batch_size=args.batch_size,
        random_state=args.seed,
        verbose=1 if args.verbose else 0,
        callbacks=_progress(args.progress),
        # Training reads through iterator_train; prediction, validation and the
        # frozen encoder's one feature pass read through iterator_valid.
        iterator_train__num_workers=args.workers,
        iterator_valid__num_workers=args.workers,
    )


def _load(args: argparse.Namespace, target: str | None) -> tuple[list[str], np.ndarray | None]:
    from .data import read_cohort

    try:
        if target is None:  # predict: only paths are needed
            paths, _ = read_cohort(args.data, target=[], path_column=args.path_column)
            return paths, None
        return read_cohort(args.data, target=target, path_column=args.path_column)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc


def _metrics(regression: bool, y: np.ndarray, prediction: np.ndarray) -> dict:
    from .report import classification_metrics, regression_metrics

    if regression:
        return regression_metrics(y.astype(float), prediction)
    # predict_proba's columns follow the sorted labels, as the classifier's classes_ do.
    return classification_metrics(y.astype(str), prediction, np.unique(y.astype(str)))


def _predict(estimator, regression: bool, X) -> np.ndarray:
    return estimator.predict(X) if regression else estimator.predict_proba(X)


def _labelled(args: argparse.Namespace) -> tuple[list[str], np.ndarray, bool]:
    """Scan paths, targets (float for regression, str labels otherwise), and the task."""
    paths, y = _load(args, args.target)
    regression = _is_regression(y, args.task)
    return paths, (y.astype(np.float32) if regression else y.astype(str)), regression


def cmd_fit(args: argparse.Namespace) -> int:
    paths, y, regression = _labelled(args)
    estimator = _estimator(args, regression)
    start = time.perf_counter()
    estimator.fit(paths, y)
    prediction = _predict(estimator, regression, paths)
    metrics = {
        "split": "training",
        "n": len(paths),
        "target": args.target,
        "seconds": round(time.perf_counter() - start, 1),
        **_metrics(regression, y, prediction),
    }
    from .model_files import save_model

    # The progress bar reports training only; a safe model file stores no callbacks.
    estimator.set_params(callbacks=None)
    save_model(estimator, args.out, metadata={"target": args.target})
    if args.report:
        from .report import write_report

        write_report(args.report, estimator, paths, y, prediction, metrics, ids=paths)
    print(f"Saved the model to {args.out}. Training-set metrics: {json.dumps(metrics)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from .model_files import load_model, model_info

    model_path = Path(args.model)
    if not model_path.is_file():
        raise UsageError(f"Model file {model_path} does not exist.")
    with model_path.open("rb") as handle:
        is_pickle = handle.read(1) == b"\x80"  # a model file may be hundreds of MB
    if is_pickle:
        raise UsageError(
            f"{model_path} is a pickle, which older versions of this command wrote. "
            "Pickles can run code when loaded, so the command reads only safe model files: "
            "refit with 'slicelearn fit', or, if you trust the file, load it in Python "
            "with pickle and save it with slicelearn.model_files.save_model."
        )
    try:
        info = model_info(model_path)
        estimator = load_model(model_path)
    except (ValueError, TypeError) as exc:  # TypeError: an untrusted type in the file
        raise UsageError(f"{model_path} is not a slicelearn model file: {exc}") from exc
    regression = info["task"] == "regression"
    target = info["metadata"].get("target", "target")
    paths, _ = _load(args, None)
    try:
        prediction = _predict(estimator, regression, paths)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    table = pd.DataFrame({"path": paths})
    if regression:
        table[f"predicted_{target}"] = prediction
    else:
        table[f"predicted_{target}"] = estimator.classes_[prediction.argmax(axis=1)]
        for index, label in enumerate(estimator.classes_):
            table[f"p_{label}"] = prediction[:, index]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    print(f"Wrote {len(table)} predictions to {args.out}.")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

    paths, y, regression = _labelled(args)
    splitter = KFold if regression else StratifiedKFold
    cv = splitter(args.cv, shuffle=True, random_state=args.seed)
    estimator = _estimator(args, regression)
    start = time.perf_counter()
    method = "predict" if regression else "predict_proba"
    prediction = cross_val_predict(estimator, paths, y, cv=cv, method=method)
    metrics = {
        "split": f"{args.cv}-fold cross-validation",
        "n": len(paths),
        "target": args.target,
        "seconds": round(time.perf_counter() - start, 1),
        **_metrics(regression, y, prediction),
    }
    if args.report:
        from .report import write_report

        # The figures and slice importance need one model: fit it on all the data.
        estimator.fit(paths, y)
        write_report(args.report, estimator, paths, y, prediction, metrics, ids=paths)
    print(json.dumps(metrics))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate an ageing cohort, fit brain age on 3/4 of it, evaluate on the rest."""
    from .datasets import make_atrophy_cohort
    from .estimators import SliceCNNRegressor
    from .report import regression_metrics, write_report

    start = time.perf_counter()
    X, _, labels = make_atrophy_cohort(
        args.n_subjects, voxel_size=4, return_arrays=True, random_state=args.seed
    )
    ages = labels["age"].to_numpy(np.float32)
    n_train = max(round(0.75 * len(X)), 1)
    weights = "imagenet" if args.encoder == "efficientnet_lite0" else None
    features = _features(args)
    where = features["feature_layer"] or "last layer"
    print(
        f"slicelearn {__version__} demo: a simulated cohort of {len(X)} T1 volumes "
        f"{X.shape[1:]} (4 mm; ageing and AD effects, see docs/simulator.md); brain age "
        f"trained on {n_train}, tested on {len(X) - n_train}.\n"
        f"Model: {args.encoder} (weights={weights}, {'frozen' if weights else 'trained'}; "
        f"features from {where}, pooled {features['feature_grid']}x{features['feature_grid']}), "
        f"{args.pooling} pooling, "
        f"{'no' if args.position_embedding == 'none' else args.position_embedding} "
        "position embedding.",
        flush=True,
    )
    est = SliceCNNRegressor(
        encoder=args.encoder,
        weights=weights,
        freeze_encoder=weights is not None,
        pooling=args.pooling,
        position_embedding=None if args.position_embedding == "none" else args.position_embedding,
        **features,
        lr=1e-3,
        max_epochs=args.max_epochs,
        batch_size=16,
        random_state=args.seed,
        verbose=0,
        callbacks=_progress(args.progress),
    )
    est.fit(X[:n_train], ages[:n_train])
    predictions = est.predict(X[n_train:])
    elapsed = time.perf_counter() - start
    y_test = ages[n_train:]
    metrics = regression_metrics(y_test, predictions)
    baseline = float(np.mean(np.abs(y_test - ages[:n_train].mean())))
    write_report(
        args.report,
        est,
        X[n_train:],
        y_test,
        predictions,
        {**metrics, "baseline_mae": baseline, "seconds": round(elapsed, 1)},
    )
    print(
        f"\nBrain age on held-out simulated subjects: MAE = {metrics['mae']:.2f} years, "
        f"r = {metrics['pearson_r']:.2f} (predicting the training mean: MAE = "
        f"{baseline:.2f}); {elapsed:.0f} s. Report: {args.report}"
    )
    return 0


def _progress_option(parser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=sys.stderr.isatty(),
        help="progress bars (default: when writing to a terminal)",
    )


def _architecture_options(group) -> None:
    """Encoder, pooling, position embedding and slice features: shared by every subcommand."""
    group.add_argument("--encoder", default=DEFAULTS["encoder"])
    group.add_argument(
        "--pooling", default=DEFAULTS["pooling"], choices=["mean", "max", "attention"]
    )
    group.add_argument(
        "--position-embedding",
        default=DEFAULTS["position_embedding"],
        choices=["none", "learned", "sinusoidal"],
    )
    _feature_options(group)


def _grid(value: str) -> str:
    if value != "auto" and not (value.isdigit() and int(value) >= 1):
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {value!r}")
    return value


def _feature_options(group) -> None:
    group.add_argument(
        "--feature-layer",
        default="auto",
        help="encoder layer the slice features come from, e.g. blocks.3 (efficientnet_lite0) "
        "or layer3 (resnet); 'last' takes the whole encoder; 'auto' (default) is blocks.3 "
        "for efficientnet_lite0 (best on IXI, docs/results.md) and 'last' otherwise",
    )
    group.add_argument(
        "--feature-grid",
        type=_grid,
        default="auto",
        help="average-pool each slice's feature map to this grid per side; 'auto' (default) "
        "is 2 for efficientnet_lite0 and 1 otherwise",
    )


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    _architecture_options(group)
    group.add_argument("--weights", default="imagenet", help="imagenet, none, or a state-dict path")
    group.add_argument(
        "--freeze-encoder",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep the encoder fixed (slice features are computed once)",
    )
    group.add_argument("--axis", default="sagittal", choices=["sagittal", "coronal", "axial"])
    group.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    group.add_argument("--max-epochs", type=int, default=DEFAULTS["max_epochs"])
    group.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    group.add_argument("--verbose", action="store_true", help="print skorch's epoch table")
    _progress_option(group)
    prep = parser.add_argument_group("preprocessing")
    prep.add_argument(
        "--grid",
        default="mni152",
        help="target grid: mni152, mni152_91x109x91, or none (keep the scans' grid)",
    )
    prep.add_argument(
        "--registration",
        action="store_true",
        help="affine registration to the template (needs slicelearn[registration])",
    )
    prep.add_argument("--cache-dir", default="auto", help="preprocessed-volume cache")


def _data_options(parser: argparse.ArgumentParser, target: bool) -> None:
    parser.add_argument("--data", required=True, help="BIDS root, or CSV/TSV with a path column")
    parser.add_argument("--path-column", default="path")
    if target:
        parser.add_argument("--target", required=True, help="target column, e.g. age")
        parser.add_argument(
            "--task", default="auto", choices=["auto", "regression", "classification"]
        )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``slicelearn`` command."""
    parser = argparse.ArgumentParser(
        prog="slicelearn", description="Position-encoded 2D-slice models for 3D MRI."
    )
    parser.add_argument("--version", action="version", version=f"slicelearn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="train a model and save it")
    _data_options(fit, target=True)
    fit.add_argument(
        "--out", required=True, help="model file to write (a safe .slm file, no pickle)"
    )
    fit.add_argument("--report", help="report folder (metrics, figures)")
    _model_options(fit)
    fit.set_defaults(handler=cmd_fit)

    predict = commands.add_parser("predict", help="predict with a saved model")
    predict.add_argument("--model", required=True)
    _data_options(predict, target=False)
    predict.add_argument("--out", required=True, help="CSV of predictions to write")
    predict.set_defaults(handler=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="cross-validated metrics")
    _data_options(evaluate, target=True)
    evaluate.add_argument("--cv", type=int, default=5)
    evaluate.add_argument("--report", help="report folder (metrics, figures)")
    _model_options(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    demo = commands.add_parser("demo", help="fit and evaluate on a built-in simulated cohort")
    demo.add_argument("--n-subjects", type=int, default=240, help="simulated subjects")
    demo.add_argument("--max-epochs", type=int, default=100)
    _architecture_options(demo)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--report", default="slicelearn-demo-report", help="report folder")
    _progress_option(demo)
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``slicelearn`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "n_subjects", 4) < 4:
        print("slicelearn: error: --n-subjects must be at least 4", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except (UsageError, FileNotFoundError, ValueError) as exc:
        # Bad input (a missing scan, a malformed table, a wrong option value):
        # one line naming the problem, not a traceback.
        print(f"slicelearn: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
