"""The ``slicelearn`` command line: preprocess, fit, predict, evaluate, demo.

For users who do not write Python. ``--data`` is a BIDS root or a CSV/TSV
table with a ``path`` column; every command that trains writes a report
folder (metrics, predictions, figures, slice importance). Wrong input exits
with code 2 and a one-line message naming the problem.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from . import __version__
from ._progress import progress, reporting
from .data.registration import REGISTRATION_BACKENDS
from .presets import (
    FULL_FINE_TUNING,
    RECOMMENDED_MODEL,
    RECOMMENDED_PREPROCESSING,
    RECOMMENDED_READOUT,
)

__all__ = ["build_parser", "main"]

#: The command line's defaults: the recommended configuration
#: (:mod:`slicelearn.presets`), chosen by repeated cross-validation on the raw
#: IXI scans (docs/results.md). The default --readout depends on the task:
#: :data:`slicelearn.presets.RECOMMENDED_MODEL`.
DEFAULTS = {
    "encoder": RECOMMENDED_READOUT["encoder"],
    "axis": [RECOMMENDED_READOUT["axis"]],
    "skull_strip": RECOMMENDED_PREPROCESSING["skull_strip"],
    "registration": RECOMMENDED_PREPROCESSING["registration"],
    "registration_backend": RECOMMENDED_PREPROCESSING["registration_backend"],
    "grid": RECOMMENDED_PREPROCESSING["target"],
    "input_smoothing": RECOMMENDED_READOUT["input_smoothing"],
}

#: --readout network with --freeze-encoder: a pooling, position embedding and
#: head trained on cached slice features. By default (--no-freeze-encoder)
#: every weight trains, with :data:`slicelearn.presets.FULL_FINE_TUNING`.
NETWORK_DEFAULTS = {
    "pooling": "mean",
    "position_embedding": "none",
    "lr": 1e-3,
    "max_epochs": 150,
    "batch_size": 16,
}

#: --readout choices; several make an ensemble (--combine).
READOUTS = ("ridge", "voxels", "network")

#: The --readout models each model option applies to. An option written on the
#: command line that none of the chosen models reads is refused, not dropped.
OPTION_READOUTS = {
    "--encoder": ("ridge", "network"),
    "--weights": ("ridge", "network"),
    "--feature-layer": ("ridge", "network"),
    "--feature-grid": ("ridge", "network"),
    "--axis": ("ridge", "network"),
    "--input-smoothing": ("ridge",),
    "--pooling": ("network",),
    "--position-embedding": ("network",),
    "--freeze-encoder": ("network",),
    "--no-freeze-encoder": ("network",),
    "--lr": ("network",),
    "--max-epochs": ("network",),
    "--batch-size": ("network",),
    "--train-slices": ("network",),
    "--crop-to-brain": ("network",),
    "--no-crop-to-brain": ("network",),
}


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


def _is_regression(y: np.ndarray, task: str, where: Sequence[str] = ()) -> bool:
    """The task of ``y``; for ``--task auto``, refuse a numeric column with a few typos."""
    if task != "auto":
        return task == "regression"
    try:
        values = y.astype(float)
    except (TypeError, ValueError):
        _refuse_mostly_numeric(y, where)
        return False
    # Numbers are a regression target unless they look like a few class codes.
    return bool((values != np.round(values)).any() or len(np.unique(values)) > 10)


def _refuse_mostly_numeric(y: np.ndarray, where: Sequence[str]) -> None:
    """A column whose values are numbers but for a few is a typo, not a class label."""
    if y.ndim != 1:
        return
    bad = []
    for index, value in enumerate(y):
        try:
            float(value)
        except (TypeError, ValueError):
            bad.append(index)
    if not bad or len(bad) > len(y) // 2 or len(set(y.astype(str))) <= 10:
        return
    shown = ", ".join(
        f"{where[i] if i < len(where) else f'row {i}'}: {y[i]!r}" for i in bad[:5]
    ) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    raise UsageError(
        f"The target column is numeric in {len(y) - len(bad)} of {len(y)} rows but not in "
        f"{shown}. Correct those values, or give --task classification to treat every "
        "value as a class label."
    )


def _progress(enabled: bool) -> list:
    """Training progress: skorch's bar on a terminal, a line per epoch elsewhere."""
    if not enabled:
        return []
    if not sys.stderr.isatty():
        from .callbacks import EpochProgress

        return [("progress", EpochProgress())]
    from skorch.callbacks import ProgressBar

    return [("progress", ProgressBar())]


def _features(args: argparse.Namespace) -> dict:
    """``feature_layer`` and ``feature_grid``, with "auto" resolved for the chosen encoder."""
    from .nn import get_encoder_spec, list_encoders

    layer, grid = (None, 1)
    if args.encoder in list_encoders():
        layer, grid = get_encoder_spec(args.encoder).recommended_features
    if args.feature_layer != "auto":
        layer = None if args.feature_layer == "last" else args.feature_layer
    if args.feature_grid != "auto":
        grid = int(args.feature_grid)
    return {"feature_layer": layer, "feature_grid": grid}


def _check_extras(args: argparse.Namespace, masked: bool) -> None:
    """Fail early, in one line, when an option needs an extra that is not installed."""
    if getattr(args, "skull_strip", "none") == "deepbet" and not masked:
        try:
            import deepbet  # noqa: F401

            from .data.skullstrip import _verified_model_paths

            _verified_model_paths()
        except ImportError as exc:
            raise UsageError(
                f"--skull-strip deepbet needs the skullstrip extra ({exc}): "
                "pip install 'slicelearn[skullstrip]', or give masks with --mask-column, "
                "or --skull-strip none."
            ) from None
        except RuntimeError as exc:
            raise UsageError(str(exc)) from None
    registration = getattr(args, "registration", "none")
    if registration != "none" and getattr(args, "grid", "none") != "none":
        module, extra = {"ants": ("ants", "registration-ants"), "dipy": ("dipy", "registration")}[
            args.registration_backend
        ]
        # Found, not imported: ANTs must first be imported after its thread count is set
        # (slicelearn.data.registration), which keeps its registration reproducible.
        if importlib.util.find_spec(module) is None:
            raise UsageError(
                f"--registration {registration} with --registration-backend "
                f"{args.registration_backend} needs {module}: pip install 'slicelearn[{extra}]'."
            )


def _preprocessing(args: argparse.Namespace, cohort) -> Any:
    """The VolumePreprocessor the options describe, or None for arrays kept as they are."""
    from .data import VolumePreprocessor

    grid = None if args.grid == "none" else args.grid
    skull_strip = None if args.skull_strip == "none" else args.skull_strip
    masks = dict(zip(cohort.paths, cohort.masks)) if cohort.masks else None
    registration = None if args.registration == "none" or grid is None else args.registration
    if grid is None and masks is None and skull_strip is None:
        return None  # scans keep their grid; the network z-scores each volume
    if registration and args.registration_backend == "ants" and not (masks or skull_strip):
        print(
            "slicelearn: warning: ANTs registers whole heads poorly (median Dice 0.72 on IXI, "
            "docs/registration_choice.md); skull-strip first or use --registration-backend dipy.",
            file=sys.stderr,
        )
    return VolumePreprocessor(
        target=grid,
        registration=registration,
        registration_backend=args.registration_backend,
        skull_strip=skull_strip,
        mask=masks,
        normalize="zscore_brain" if (masks or skull_strip) else "zscore",
        cache_dir=None if args.cache_dir == "none" else args.cache_dir,
    )


def _recipe(preprocessing: Any, cohort) -> str:
    """One sentence that says what was done to each scan."""
    if preprocessing is None:
        return "scans used on their own grid, reoriented to RAS, z-scored by the model"
    steps = ["reoriented to RAS"]
    if preprocessing.mask is not None:
        steps.append("masked with the given brain masks")
    elif preprocessing.skull_strip:
        steps.append(f"skull-stripped ({preprocessing.skull_strip})")
    else:
        steps.append("whole head (no brain mask: skull, face and head size reach the model)")
    if preprocessing.registration:
        steps.append(
            f"{preprocessing.registration} registration to {preprocessing.target} "
            f"({preprocessing.registration_backend})"
        )
    elif preprocessing.target is not None:
        steps.append(f"resampled to the {preprocessing.target} grid without registration")
    steps.append(
        "z-scored in the brain" if preprocessing.normalize == "zscore_brain" else "z-scored"
    )
    return ", ".join(steps)


#: Below this many scans the trained network gets no validation split: a fifth
#: of a smaller cohort is too few scans to choose an epoch by (a pilot of 30
#: restored an almost untrained model), so it trains for the fixed schedule.
SMALL_COHORT = 100


def _written_options(tokens: Sequence[str], options: Sequence[str]) -> set[str]:
    """Which of ``options`` are written in ``tokens``, as argparse reads them (prefixes too)."""
    written = set()
    for token in tokens:
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        matches = [name] if name in options else [o for o in options if o.startswith(name)]
        if len(matches) == 1:
            written.add(matches[0])
    return written


def _chosen_readouts(
    args: argparse.Namespace, regression: bool | None = None
) -> tuple[str, ...] | None:
    """The --readout models of this command: as written, or the task's default.

    ``None`` while that default is not known: no --readout, --task auto, and
    the target column not read yet (``regression`` is ``None``).
    """
    if args.readout:
        return tuple(dict.fromkeys(args.readout))
    if regression is None:
        if args.task == "auto":
            return None
        regression = args.task == "regression"
    return RECOMMENDED_MODEL["regression" if regression else "classification"]


def _check_options_apply(
    args: argparse.Namespace, tokens: Sequence[str], regression: bool | None = None
) -> None:
    """Refuse model options that none of the chosen --readout models reads, saying why.

    Without --readout, the models are the task's default; with --task auto
    that is known once the target column is read, so the check waits for it.
    """
    readouts = _chosen_readouts(args, regression)
    if readouts is None:
        return
    trained = f"--readout {' '.join(readouts)}"
    remedy = "add the readout"
    if not args.readout:
        task = (
            args.task if regression is None else ("regression" if regression else "classification")
        )
        trained += f" (the default for {task})"
        remedy = "name the readouts to train with --readout"
    for option in sorted(_written_options(tokens, tuple(OPTION_READOUTS))):
        users = OPTION_READOUTS[option]
        if not set(users) & set(readouts):
            raise UsageError(
                f"{option} applies to --readout {' or '.join(users)}, and this command "
                f"trains {trained}: leave it out, or {remedy}."
            )
    if "network" in readouts and len(set(args.axis)) > 1:
        raise UsageError(
            f"--readout network slices along one --axis, and this command trains {trained}: "
            "give one --axis, or --readout ridge, which joins the features of several."
        )
    if len(readouts) == 1 and _written_options(tokens, ("--combine",)):
        raise UsageError(
            "--combine says how several --readout models make one ensemble; this command "
            f"trains one, {trained}."
        )


def _estimator(args: argparse.Namespace, regression: bool, preprocessing: Any, n_scans: int):
    """The model the options describe: one readout, or several as an ensemble."""
    readouts = _chosen_readouts(args, regression)
    members = [
        (readout, _readout(readout, args, regression, preprocessing, n_scans))
        for readout in readouts
    ]
    if len(members) == 1:
        return members[0][1]
    from .ensemble import EnsembleClassifier, EnsembleRegressor

    kind = EnsembleRegressor if regression else EnsembleClassifier
    return kind(members, combine=args.combine)


def _networks(estimator: Any) -> list[Any]:
    """The slice networks in a model: itself, or an ensemble's members."""
    from .estimators import SliceCNNClassifier, SliceCNNRegressor

    members = getattr(estimator, "estimators_", [estimator])
    return [m for m in members if isinstance(m, (SliceCNNClassifier, SliceCNNRegressor))]


def _preprocessors(estimator: Any) -> list[Any]:
    """The fitted preprocessors of a model: its own, or each ensemble member's."""
    members = getattr(estimator, "estimators_", [estimator])
    found = [getattr(m, "preprocessor_", None) for m in members]
    return [p for p in found if p is not None]


def _readout(
    readout: str, args: argparse.Namespace, regression: bool, preprocessing: Any, n_scans: int
):
    from .estimators import SliceCNNClassifier, SliceCNNRegressor
    from .readout import SliceLinearClassifier, SliceLinearRegressor
    from .voxels import VoxelLinearClassifier, VoxelLinearRegressor

    weights = None if args.weights == "none" else args.weights
    axes = tuple(dict.fromkeys(args.axis))
    if readout == "voxels":
        kind = VoxelLinearRegressor if regression else VoxelLinearClassifier
        return kind(preprocessing=preprocessing)
    if readout == "ridge":
        kind = SliceLinearRegressor if regression else SliceLinearClassifier
        return kind(
            encoder=args.encoder,
            weights=weights,
            **_features(args),
            axis=axes[0] if len(axes) == 1 else axes,
            input_smoothing=args.input_smoothing,
            preprocessing=preprocessing,
            num_workers=args.workers,
        )
    kind = SliceCNNRegressor if regression else SliceCNNClassifier
    settings = _network_settings(args, n_scans)
    callbacks = settings.pop("callbacks", None) or []
    return kind(
        **settings,
        encoder=args.encoder,
        weights=weights,
        axis=axes[0],
        preprocessing=preprocessing,
        random_state=args.seed,
        verbose=1 if args.verbose else 0,
        callbacks=[*callbacks, *_progress(args.progress)],
        # Training reads through iterator_train; prediction, validation and the
        # frozen encoder's one feature pass read through iterator_valid.
        iterator_train__num_workers=args.workers,
        iterator_valid__num_workers=args.workers,
    )


def _network_settings(args: argparse.Namespace, n_scans: int) -> dict[str, Any]:
    """Training settings of --readout network: the frozen encoder's, or full fine-tuning's.

    Options the user gave win; the others come from the route's recipe
    (:data:`NETWORK_DEFAULTS`, or :data:`slicelearn.presets.FULL_FINE_TUNING`).
    """
    from .presets import full_fine_tuning

    given = {
        "pooling": args.pooling,
        "position_embedding": args.position_embedding,
        "lr": args.lr,
        "max_epochs": args.max_epochs,
        "batch_size": args.batch_size,
        "train_slices": args.train_slices,
        "crop_to_content": args.crop_to_brain,
    }
    given = {name: value for name, value in given.items() if value is not None}
    if "position_embedding" in given and given["position_embedding"] == "none":
        given["position_embedding"] = None
    if not args.freeze_encoder:
        # The recipe's features (the whole encoder) unless asked otherwise.
        features = _features(args)
        if args.feature_layer != "auto":
            given["feature_layer"] = features["feature_layer"]
        if args.feature_grid != "auto":
            given["feature_grid"] = features["feature_grid"]
        recipe = full_fine_tuning(**given)
        for name in ("encoder", "weights"):  # the command line's own options say these
            recipe.pop(name)
        return recipe
    settings = {**NETWORK_DEFAULTS, **_features(args), **given, "freeze_encoder": True}
    if settings["position_embedding"] == "none":
        settings["position_embedding"] = None
    if n_scans < SMALL_COHORT:
        settings["train_split"] = None
        print(
            f"slicelearn: {n_scans} scans are too few for a validation split to choose an "
            f"epoch (under {SMALL_COHORT}): the network trains for all "
            f"{settings['max_epochs']} epochs on every training scan.",
            file=sys.stderr,
        )
    return settings


#: Each loaded scan's place in the user's table (``cohort.where``), by path: errors
#: raised below the command line name scans as ``X[i] (path)``, and the command
#: reports them as the table line and participant instead.
_WHERE: dict[str, str] = {}


def _in_user_terms(message: str) -> str:
    """``message`` with each ``X[i] (path)`` of a loaded scan replaced by its table line."""
    import re

    def place(match: re.Match) -> str:
        where = _WHERE.get(match.group(1))
        return f"{where}, {match.group(1)}" if where else match.group(0)

    return re.sub(r"X\[\d+\] \(([^)]+)\)", place, message)


def _load(args: argparse.Namespace, target: str | list[str]):
    cohort = _read_cohort(args, target)
    _WHERE.update(zip(cohort.paths, cohort.where))
    return cohort


def _read_cohort(args: argparse.Namespace, target: str | list[str]):
    from .data import load_cohort

    try:
        return load_cohort(
            args.data,
            target=target,
            path_column=args.path_column,
            mask_column=getattr(args, "mask_column", None),
            group_column=getattr(args, "group_column", None),
        )
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc


def _preprocess_all(preprocessing: Any, cohort, workers: int, qc: str | None = None) -> None:
    """Preprocess (and cache) every scan up front, with a counter a person can follow;
    then write the QC folder if asked."""
    if preprocessing is None:
        if qc:
            raise UsageError("--qc needs a template grid (--grid mni152).")
        return
    fitted = clone(preprocessing).fit(cohort.paths)
    if preprocessing.cache_dir is not None:
        _count_through(fitted, cohort, workers)
    if qc:
        from .qc import write_qc

        table = write_qc(qc, fitted, cohort.paths, cohort.ids)
        flagged = table.loc[table["flagged"], "id"].tolist()
        print(
            f"QC: {Path(qc) / 'index.html'}; {len(flagged)} of {len(table)} scans flagged"
            + (
                f" ({', '.join(flagged[:10])}{', ...' if len(flagged) > 10 else ''})"
                if flagged
                else ""
            ),
            file=sys.stderr,
        )


def _count_through(fitted: Any, cohort, workers: int) -> None:
    """Preprocess the scans the cache lacks, one progress line per scan on stderr."""
    from torch.utils.data import DataLoader, Subset

    from .data import VolumeDataset
    from .data.cache import resolve_cache_dir

    total = len(cohort.paths)
    missing = [i for i, path in enumerate(cohort.paths) if not fitted.is_cached(path)]
    if len(missing) < total:
        print(
            f"preprocessing: {total - len(missing)} of {total} scans cached in "
            f"{resolve_cache_dir(fitted.cache_dir)}",
            file=sys.stderr,
        )
    if not missing:
        return
    volumes = Subset(VolumeDataset(fitted.transform(cohort.paths)), missing)
    loader = DataLoader(volumes, batch_size=None, num_workers=workers)
    counter = progress("preprocessing", len(missing))
    for done, (index, _) in enumerate(zip(missing, loader), start=1):
        counter.update(done, cohort.ids[index])
    counter.close()


def _write_report(args, estimator, cohort, y, prediction, metrics: dict) -> None:
    """The report folder of ``fit`` or ``evaluate``, its axes in the target's terms."""
    from .report import write_report

    write_report(
        args.report,
        estimator,
        cohort.paths,
        y,
        prediction,
        metrics,
        ids=cohort.ids,
        target=args.target,
        unit=_unit(args.target),
    )


def _unit(target: str) -> str | None:
    """The unit of a target column, where its name says it (ages are in years)."""
    return "years" if "age" in target.lower().replace("_", " ").split() else None


def _print_result(args: argparse.Namespace, summary: str, metrics: dict) -> None:
    """The summary on stdout; with ``--json``, the metrics alone on stdout (summary on stderr)."""
    if getattr(args, "json", False):
        print(summary, file=sys.stderr)
        print(_dumps(metrics))
    else:
        print(summary)


def _dumps(metrics: dict) -> str:
    from .report import json_ready

    return json.dumps(json_ready(metrics))


def _metrics(regression: bool, y: np.ndarray, prediction: np.ndarray) -> dict:
    from .report import classification_metrics, regression_metrics

    if regression:
        return regression_metrics(y.astype(float), prediction)
    # predict_proba's columns follow the sorted labels, as the classifier's classes_ do.
    return classification_metrics(y.astype(str), prediction, np.unique(y.astype(str)))


def _predict(estimator, regression: bool, X) -> np.ndarray:
    return estimator.predict(X) if regression else estimator.predict_proba(X)


def _labelled(args: argparse.Namespace):
    """The cohort, its targets (float for regression, str labels otherwise), and the task."""
    cohort = _load(args, args.target)
    regression = _is_regression(cohort.y, args.task, cohort.where)
    y = cohort.y.astype(np.float32) if regression else cohort.y.astype(str)
    return cohort, y, regression


def _compare_with_baseline(metrics: dict, baseline: dict, regression: bool) -> str:
    """A line comparing the model with the baseline; a warning when it is not better."""
    if regression:
        line = (
            f"MAE {metrics['mae']:.2f} against {baseline['mae']:.2f} for predicting the "
            "training mean"
        )
        worse = metrics["mae"] >= 0.95 * baseline["mae"]
    else:
        line = (
            f"balanced accuracy {metrics['balanced_accuracy']:.3f} against "
            f"{baseline['balanced_accuracy']:.3f} for predicting the majority class"
        )
        worse = metrics["balanced_accuracy"] <= baseline["balanced_accuracy"] + 0.02
    if worse:
        print(
            f"slicelearn: warning: the model is not better than the baseline ({line}): it "
            "learned nothing useful. Check the preprocessing (--qc), the target, and the "
            "cohort size.",
            file=sys.stderr,
        )
    return line


def _prepared(args: argparse.Namespace):
    """Cohort, targets, task and preprocessing of a fit or evaluate command."""
    cohort, y, regression = _labelled(args)
    if args.readout is None and args.task == "auto":
        # The default model is known now that the target column is read.
        _check_options_apply(args, getattr(args, "argv", ()), regression)
    _check_extras(args, masked=cohort.masks is not None)
    preprocessing = _preprocessing(args, cohort)
    print(
        f"slicelearn {__version__}: {len(cohort.paths)} scans, target {args.target!r} "
        f"({'regression' if regression else 'classification'}); preprocessing: "
        f"{_recipe(preprocessing, cohort)}.",
        file=sys.stderr,
    )
    _preprocess_all(preprocessing, cohort, args.workers, getattr(args, "qc", None))
    return cohort, y, regression, preprocessing


def cmd_fit(args: argparse.Namespace) -> int:
    cohort, y, regression, preprocessing = _prepared(args)
    estimator = _estimator(args, regression, preprocessing, len(cohort.paths))
    start = time.perf_counter()
    estimator.fit(cohort.paths, y, groups=np.asarray(cohort.groups))
    prediction = _predict(estimator, regression, cohort.paths)
    metrics = {
        "split": "training",
        "n": len(cohort.paths),
        "target": args.target,
        "seconds": round(time.perf_counter() - start, 1),
        "preprocessing": _recipe(preprocessing, cohort),
        **_metrics(regression, y, prediction),
    }
    baseline = _baseline_on_training(regression, y)
    metrics["baseline"] = baseline
    line = _compare_with_baseline(metrics, baseline, regression)
    from .model_files import save_model

    # The progress bar reports training only; a safe model file stores no callbacks.
    for network in _networks(estimator):
        network.set_params(callbacks=None)
    metadata = {"target": args.target, "training_scans": _training_ranges(cohort.paths)}
    save_model(estimator, args.out, metadata=metadata)
    if args.report:
        _write_report(args, estimator, cohort, y, prediction, metrics)
    summary = (
        f"Saved the model to {args.out}. On the training scans: {line} (training-set figures "
        "flatter a model: use 'slicelearn evaluate' for honest ones)."
    )
    if args.report:
        summary += f" Report and metrics.json: {args.report}"
    _print_result(args, summary, metrics)
    return 0


def _scan_profile(path: str) -> dict[str, list[float]]:
    """Voxel size, field of view (mm) and the 99th intensity percentile of a raw scan."""
    import nibabel as nib

    image = nib.as_closest_canonical(nib.load(path))
    voxel = [float(v) for v in image.header.get_zooms()[:3]]
    fov = [float(n * v) for n, v in zip(image.shape[:3], voxel)]
    data = np.asarray(image.dataobj, dtype=np.float32)
    return {"voxel_mm": voxel, "fov_mm": fov, "p99": [float(np.percentile(data, 99))]}


def _training_ranges(paths: list[str]) -> dict[str, list[list[float]]]:
    """Per measure of :func:`_scan_profile`, its [min, max] over the training scans."""
    profiles = [_scan_profile(p) for p in paths]
    return {
        key: [[min(v), max(v)] for v in zip(*(prof[key] for prof in profiles))]
        for key in profiles[0]
    }


#: How far beyond the training range a scan may be before predict warns (a factor).
_RANGE_TOLERANCE = {"voxel_mm": 1.25, "fov_mm": 1.25, "p99": 2.0}


def _unlike_training(path: str, ranges: dict) -> list[str]:
    """What about a scan lies far outside the training scans' ranges."""
    profile = _scan_profile(path)
    found = []
    for key, bounds in ranges.items():
        factor = _RANGE_TOLERANCE.get(key, 1.5)
        for value, (low, high) in zip(profile[key], bounds):
            if value < low / factor or value > high * factor:
                found.append(f"{key} {value:.3g} (training {low:.3g} to {high:.3g})")
    return found


def _baseline_on_training(regression: bool, y: np.ndarray) -> dict:
    if regression:
        return _metrics(True, y, np.full(len(y), float(np.mean(y))))
    _, counts = np.unique(y, return_counts=True)
    proba = np.tile(counts / counts.sum(), (len(y), 1))
    return _metrics(False, y, proba)


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
        message = str(exc)
        if str(model_path) not in message:
            message = f"{model_path} is not a slicelearn model file: {message}"
        raise UsageError(message) from exc
    regression = info["task"] == "regression"
    target = info["metadata"].get("target", "target")
    try:  # the table's own target values, where it has them, go beside the predictions
        cohort = _load(args, [target])
        truth = cohort.y[:, 0]
    except UsageError:
        cohort, truth = _load(args, []), None
    preprocessors = _preprocessors(estimator)
    preprocessor = preprocessors[0] if preprocessors else None
    _warn_about_other_software(model_path, info, preprocessor)
    if preprocessor is not None and preprocessor.mask is not None and not preprocessor.skull_strip:
        # The model was trained on given masks: these scans need theirs.
        if cohort.masks is None:
            raise UsageError(
                f"{model_path} was trained on scans with given brain masks; give these "
                "scans' masks too (--mask-column, or BIDS derivatives)."
            )
    for member_preprocessor in preprocessors:
        # The cache is this machine's, not the one the model was trained on
        # (read when used: the preprocessor's fitted state does not depend on it).
        member_preprocessor.set_params(
            cache_dir=None if args.cache_dir == "none" else args.cache_dir
        )
        if cohort.masks is not None:
            member_preprocessor.set_params(mask=dict(zip(cohort.paths, cohort.masks)))
            member_preprocessor.fit(cohort.paths)
    if preprocessor is not None:
        # An ensemble's members preprocess alike: their scans come from one cache.
        _preprocess_all(preprocessor, cohort, args.workers)
    ranges = info["metadata"].get("training_scans")
    if ranges:
        for scan_id, path in zip(cohort.ids, cohort.paths):
            unlike = _unlike_training(path, ranges)
            if unlike:
                print(
                    f"slicelearn: warning: {scan_id} is far from the training scans: "
                    f"{'; '.join(unlike)}. Its prediction may not be trustworthy.",
                    file=sys.stderr,
                )
    try:
        prediction = _predict(estimator, regression, cohort.paths)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    table = pd.DataFrame({"participant_id": cohort.ids, "path": cohort.paths})
    if truth is not None:
        table[target] = truth.astype(float) if regression else truth
    if regression:
        table[f"predicted_{target}"] = prediction
        if truth is not None:
            table["error"] = prediction - truth.astype(float)
    else:
        table[f"predicted_{target}"] = estimator.classes_[prediction.argmax(axis=1)]
        if truth is not None:
            table["correct"] = table[f"predicted_{target}"].astype(str) == truth.astype(str)
        for index, label in enumerate(estimator.classes_):
            table[f"p_{label}"] = prediction[:, index]
    from ._files import write_atomic

    # Whole or not at all: a run killed while writing leaves the previous file.
    write_atomic(args.out, lambda handle: table.to_csv(handle, index=False))
    print(f"Wrote {len(table)} predictions to {args.out}.")
    return 0


def _warn_about_other_software(model_path: Path, info: dict, preprocessor: Any) -> None:
    """Warn when this machine's preprocessing or network code differs from the model's."""
    from .provenance import preprocessing_packages, preprocessing_provenance, version_differences

    packages = ("slicelearn", "torch", "timm")
    if preprocessor is not None:
        packages = tuple(dict.fromkeys((*preprocessing_packages(preprocessor), *packages)))
    differences = version_differences(info["versions"], packages)
    recorded = info.get("preprocessing_provenance") or {}
    if preprocessor is not None and recorded.get("recipe") is not None:
        here = preprocessing_provenance(preprocessor)["recipe"]
        if recorded["recipe"] != here:
            differences.append(f"preprocessing recipe {recorded['recipe']} there, {here} here")
    template = recorded.get("template")
    if template and preprocessor is not None:
        here = preprocessing_provenance(preprocessor)["template"]
        if here and here["sha256"] != template["sha256"]:
            differences.append(
                f"template {template['name']} {template['sha256'][:12]} there, "
                f"{here['sha256'][:12]} here"
            )
    if differences:
        print(
            f"slicelearn: warning: {model_path} was made with other software than this "
            f"machine runs ({'; '.join(differences)}): predictions can differ from what the "
            "same scans gave there.",
            file=sys.stderr,
        )


def _folds(args: argparse.Namespace, regression: bool, y: np.ndarray, groups: list[str]):
    """Shuffled K-fold splits in which no subject is on both sides."""
    from .splits import grouped_folds

    n_groups = len(set(groups))
    if args.cv < 2:
        raise UsageError(
            f"--cv {args.cv}: cross-validation needs at least 2 folds (each scan is "
            "predicted by a model trained on the other folds)."
        )
    if n_groups < args.cv:
        raise UsageError(f"--cv {args.cv} needs at least {args.cv} subjects; there are {n_groups}.")
    return grouped_folds(
        args.cv, y, np.asarray(groups), stratified=not regression, random_state=args.seed
    )


def _cross_validated(estimator, paths: list[str], y: np.ndarray, folds, method: str, groups):
    """Each scan's prediction by the model fitted on the other folds; a line per fold."""
    counter = progress("cross-validation fold", len(folds))
    parts = []
    for number, (train, test) in enumerate(folds, start=1):
        fitted = clone(estimator).fit([paths[i] for i in train], y[train], groups=groups[train])
        parts.append((test, getattr(fitted, method)([paths[i] for i in test])))
        counter.update(number, f"{len(train)} scans trained, {len(test)} predicted")
    counter.close()
    first = parts[0][1]
    prediction = np.empty((len(y), *first.shape[1:]), dtype=first.dtype)
    for test, part in parts:
        prediction[test] = part
    return prediction


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.model_selection import cross_val_predict

    cohort, y, regression, preprocessing = _prepared(args)
    folds = _folds(args, regression, y, cohort.groups)
    # The training folds are what the network trains on.
    n_train = min(len(train) for train, _ in folds)
    estimator = _estimator(args, regression, preprocessing, n_train)
    start = time.perf_counter()
    method = "predict" if regression else "predict_proba"
    groups = np.asarray(cohort.groups)
    prediction = _cross_validated(estimator, cohort.paths, y, folds, method, groups)
    dummy = DummyRegressor() if regression else DummyClassifier(strategy="prior")
    baseline_prediction = cross_val_predict(
        dummy, np.zeros((len(y), 1)), y, cv=folds, method=method
    )
    metrics = {
        "split": f"{args.cv}-fold cross-validation, grouped by subject",
        "n": len(cohort.paths),
        "subjects": len(set(cohort.groups)),
        "target": args.target,
        "seconds": round(time.perf_counter() - start, 1),
        "preprocessing": _recipe(preprocessing, cohort),
        **_metrics(regression, y, prediction),
        "baseline": _metrics(regression, y, baseline_prediction),
    }
    line = _compare_with_baseline(metrics, metrics["baseline"], regression)
    if args.report:
        from .report import slice_model

        # The figures of predictions are cross-validated; the slice importance
        # needs one model, refitted on all the data.
        if slice_model(estimator) is not None:
            metrics["refit_on_all_data"] = ["slice_importance.png", "slice_importance.csv"]
        estimator.fit(cohort.paths, y, groups=groups)
        _write_report(args, estimator, cohort, y, prediction, metrics)
    summary = f"Cross-validated ({metrics['split']}, {metrics['n']} scans): {line}."
    if args.report:
        summary += f" Report and metrics.json: {args.report}"
    _print_result(args, summary, metrics)
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    cohort = _load(args, [])
    _check_extras(args, masked=cohort.masks is not None)
    preprocessing = _preprocessing(args, cohort)
    if preprocessing is None:
        raise UsageError("Nothing to do: give a --grid, masks or --skull-strip.")
    print(
        f"slicelearn {__version__}: preprocessing {len(cohort.paths)} scans: "
        f"{_recipe(preprocessing, cohort)}; cache: {preprocessing.cache_dir}.",
        file=sys.stderr,
    )
    qc = str(Path(args.out) / "qc") if args.qc else None
    _preprocess_all(preprocessing, cohort, args.workers, qc)
    _write_provenance(Path(args.out), preprocessing, cohort)
    return 0


def _write_provenance(folder: Path, preprocessing: Any, cohort) -> None:
    """``provenance.json``: what preprocessed these scans, as a model file records it."""
    from ._files import write_atomic
    from .provenance import preprocessing_provenance

    record = {
        **preprocessing_provenance(clone(preprocessing).fit(cohort.paths)),
        "scans": len(cohort.paths),
    }
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1).encode()
    write_atomic(folder / "provenance.json", lambda handle: handle.write(text))
    print(f"Provenance: {folder / 'provenance.json'}", file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> int:
    """Simulate an ageing cohort, fit brain age on 3/4 of it, evaluate on the rest."""
    from .datasets import make_atrophy_cohort
    from .estimators import SliceCNNRegressor
    from .report import regression_metrics, write_report

    start = time.perf_counter()
    args.pooling = args.pooling or NETWORK_DEFAULTS["pooling"]
    args.position_embedding = args.position_embedding or NETWORK_DEFAULTS["position_embedding"]
    if args.progress:
        print(
            f"simulating {args.n_subjects} subjects from the MNI152 template...",
            file=sys.stderr,
            flush=True,
        )
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
        target="age",
        unit="years",
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
        default=True,
        help="progress on stderr of every long step: preprocessing, encoding, folds, "
        "training epochs and prediction (a bar on a terminal, lines elsewhere)",
    )


def _architecture_options(group, network_only: str = " (--readout network)") -> None:
    """Encoder, pooling, position embedding and slice features: shared by every subcommand.

    ``network_only`` marks the options that only the trained network reads
    (empty for ``demo``, whose model is always the network).
    """
    from .nn import POOLINGS, POSITION_EMBEDDINGS, list_encoders

    group.add_argument(
        "--encoder",
        default=DEFAULTS["encoder"],
        help=f"2D slice encoder: {', '.join(list_encoders())}, or timm:<model>",
    )
    group.add_argument(
        "--pooling",
        default=None,
        choices=list(POOLINGS),
        help=f"how the trained network combines its slices{network_only} (default: "
        f"{NETWORK_DEFAULTS['pooling']})",
    )
    default = f"{NETWORK_DEFAULTS['position_embedding']}"
    if network_only:  # fit and evaluate fine-tune unless --freeze-encoder
        default = f"{FULL_FINE_TUNING['position_embedding']}; {default} with --freeze-encoder"
    group.add_argument(
        "--position-embedding",
        default=None,
        choices=["none", *(p for p in POSITION_EMBEDDINGS if p is not None)],
        help=f"slice-index embedding of the trained network{network_only} (default: {default})",
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
        help="encoder layer the slice features come from, e.g. blocks.3 (efficientnet_lite*) "
        "or layer3 (resnet); 'last' takes the whole encoder; 'auto' is the encoder's "
        "recommended layer (blocks.3 for the efficientnet_lite encoders, best on IXI, "
        "docs/results.md; the last layer for others)",
    )
    group.add_argument(
        "--feature-grid",
        type=_grid,
        default="auto",
        help="average-pool each slice's feature map to this grid per side; 'auto' is the "
        "encoder's recommended grid (2 for the efficientnet_lite encoders, 1 for others)",
    )


def _model_options(parser: argparse.ArgumentParser) -> None:
    from .nn import AXES

    group = parser.add_argument_group("model")
    group.add_argument(
        "--readout",
        nargs="+",
        default=None,
        choices=READOUTS,
        help="ridge: a linear model (ridge; logistic regression for classes) on the frozen "
        "slice features averaged over slices, its penalty chosen by internal CV (features and "
        "readout: about 0.3 s a scan on 2 cores); voxels: the same linear model "
        "on the brain's voxels, smoothed and averaged to 4 mm (no encoder runs); network: "
        "Gupta et al.'s slice network, by default fine-tuned end to end (12 epochs: 243 s "
        "for 136 scans on 2 CPU cores; see --freeze-encoder). Several make "
        "an ensemble (--combine), e.g. --readout ridge voxels (default: "
        f"{' '.join(RECOMMENDED_MODEL['regression'])} for regression (brain age 5.64 years "
        "MAE on IXI against 6.34 for ridge alone, docs/results.md), "
        f"{' '.join(RECOMMENDED_MODEL['classification'])} for classification (sex ROC-AUC "
        "0.944 on IXI against 0.900 for the fine-tuned network and 0.808 for ridge; no "
        "encoder runs))",
    )
    group.add_argument(
        "--combine",
        default="mean",
        choices=("mean", "stack"),
        help="how several --readout models are combined: mean, their predictions (class "
        "probabilities) averaged; stack, weights fitted to out-of-fold predictions inside "
        "the training scans (5 more fits of each)",
    )
    _architecture_options(group)
    group.add_argument(
        "--weights",
        default=RECOMMENDED_READOUT["weights"],
        help="encoder weights: imagenet, none, or a state dict",
    )
    group.add_argument(
        "--freeze-encoder",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="--readout network: keep the encoder fixed and train the pooling, position "
        "embedding and head on slice features computed once (fast, and less accurate: "
        "docs/results.md); by default (--no-freeze-encoder) every weight is fine-tuned, "
        "the paper's model with slicelearn.presets.FULL_FINE_TUNING's recipe",
    )
    group.add_argument(
        "--axis",
        nargs="+",
        default=DEFAULTS["axis"],
        choices=list(AXES),
        help="slicing axis; several join their features (--readout ridge; --readout network "
        "reads one)",
    )
    group.add_argument(
        "--input-smoothing",
        type=float,
        default=DEFAULTS["input_smoothing"],
        metavar="VOXELS",
        help="Gaussian smoothing (sigma, in voxels of the preprocessed grid) of every scan "
        "before its slices are encoded (--readout ridge). Frozen ImageNet features react "
        "strongly to sharpness: unsmoothed, a half-voxel resampling of the test scans "
        "raised the IXI MAE from 6.4 to 18.8 years; with 1, to 6.8. 0 turns it off",
    )
    fine = FULL_FINE_TUNING
    group.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"learning rate (--readout network; default: {fine['lr']:g} with a cosine "
        f"schedule; {NETWORK_DEFAULTS['lr']:g} with --freeze-encoder)",
    )
    group.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help=f"training epochs (--readout network; default: {fine['max_epochs']}; "
        f"{NETWORK_DEFAULTS['max_epochs']} with --freeze-encoder)",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"volumes per batch (--readout network; default: {fine['batch_size']}; "
        f"{NETWORK_DEFAULTS['batch_size']} with --freeze-encoder)",
    )
    group.add_argument(
        "--train-slices",
        type=int,
        default=None,
        help="slices of each volume encoded per training step, drawn at random; prediction "
        f"uses all (--readout network; default: {fine['train_slices']}; all with "
        "--freeze-encoder)",
    )
    group.add_argument(
        "--crop-to-brain",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="cut every volume to the box that holds the brain in the training scans "
        "(--readout network; default: on; off with --freeze-encoder)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed of training and of the CV folds")
    group.add_argument(
        "--workers", type=int, default=0, help="processes that read and preprocess scans"
    )
    group.add_argument("--verbose", action="store_true", help="print skorch's epoch table")
    _progress_option(group)
    _preprocessing_options(parser)


def _preprocessing_options(parser: argparse.ArgumentParser) -> None:
    prep = parser.add_argument_group("preprocessing")
    prep.add_argument(
        "--grid",
        default=DEFAULTS["grid"],
        help="target grid: mni152 (2 mm), mni152_3mm (3 mm: the network trains 1.7 and predicts "
        "2.5 times as fast, but the brain-age default was 1.2 years worse on IXI; "
        "docs/results.md), mni152_91x109x91 (the paper's FSL 2 mm grid), or none (keep the "
        "scans' grid)",
    )
    prep.add_argument(
        "--skull-strip",
        default=DEFAULTS["skull_strip"],
        choices=["none", "deepbet"],
        help="brain extraction of scans without a given mask (deepbet: offline, about 2-7 s a "
        "scan, pip install 'slicelearn[skullstrip]'); none keeps the whole head, whose skull, "
        "face and size then reach the model",
    )
    prep.add_argument(
        "--registration",
        nargs="?",
        const="affine",
        default=DEFAULTS["registration"],
        choices=["none", "rigid", "affine"],
        help="registration to the template: rigid keeps head and brain size, affine scales "
        "them to the template's, none only resamples the scan onto the template grid; a bare "
        "--registration means affine; scans already on the template grid are not registered "
        "again",
    )
    prep.add_argument(
        "--registration-backend",
        default=DEFAULTS["registration_backend"],
        choices=sorted(REGISTRATION_BACKENDS),
        help="ants: about 4 s a scan, for brain-extracted scans "
        "(pip install 'slicelearn[registration-ants]'); dipy: about 40 s, also whole heads "
        "(pip install 'slicelearn[registration]')",
    )
    _cache_option(prep)


def _cache_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--cache-dir",
        default="auto",
        help="preprocessed-volume cache, shared by preprocess, evaluate, fit and predict: auto "
        "(the data home's cache: $SLICELEARN_DATA/cache, or ~/slicelearn_data/cache when "
        "SLICELEARN_DATA is unset), a folder, or none",
    )


def _data_options(parser: argparse.ArgumentParser, target: bool) -> None:
    parser.add_argument(
        "--data",
        required=True,
        help="BIDS root (masks are taken from derivatives/*/sub-*/anat/*_desc-brain_mask.nii* "
        "when every scan has one), or a CSV/TSV table with a path column",
    )
    parser.add_argument("--path-column", default="path", help="table column of scan paths")
    parser.add_argument(
        "--mask-column", default=None, help="table column of brain-mask paths (optional)"
    )
    if target:
        parser.add_argument("--target", required=True, help="target column, e.g. age")
        parser.add_argument(
            "--task",
            default="auto",
            choices=["auto", "regression", "classification"],
            help="auto: regression for numbers with more than 10 values, else classes",
        )


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it has one that its help does not already state."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.required
            or action.default is None
            or action.default is False
            or ("default:" in text)
        ):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``slicelearn`` command."""
    parser = argparse.ArgumentParser(
        prog="slicelearn",
        description="Position-encoded 2D-slice models for 3D MRI.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"slicelearn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help, description=help, formatter_class=_HelpFormatter
        )

    fit = command("fit", "train a model on a cohort and save it")
    _data_options(fit, target=True)
    fit.add_argument(
        "--out", required=True, help="model file to write (a safe .slm file, no pickle)"
    )
    fit.add_argument("--report", help="report folder (metrics.json, figures, predictions)")
    fit.add_argument(
        "--json", action="store_true", help="print the metrics as JSON on stdout, and nothing else"
    )
    fit.add_argument("--qc", help="also write preprocessing QC pictures and measures here")
    _model_options(fit)
    fit.set_defaults(handler=cmd_fit)

    preprocess = command(
        "preprocess", "preprocess and cache a cohort, with QC pictures and measures"
    )
    _data_options(preprocess, target=False)
    preprocess.add_argument(
        "--out",
        required=True,
        help="folder for qc/ and the provenance file; the preprocessed scans go to the cache "
        "(--cache-dir), where evaluate, fit and predict find them",
    )
    preprocess.add_argument(
        "--qc", action="store_true", help="write qc/: a PNG per scan, qc.csv and index.html"
    )
    preprocess.add_argument(
        "--workers", type=int, default=0, help="processes that read and preprocess scans"
    )
    _progress_option(preprocess)
    _preprocessing_options(preprocess)
    preprocess.set_defaults(handler=cmd_preprocess)

    predict = command("predict", "predict with a saved model")
    predict.add_argument("--model", required=True, help="model file written by 'slicelearn fit'")
    _data_options(predict, target=False)
    predict.add_argument("--out", required=True, help="CSV of predictions to write")
    predict.add_argument(
        "--workers", type=int, default=0, help="processes that read and preprocess scans"
    )
    _cache_option(predict)
    _progress_option(predict)
    predict.set_defaults(handler=cmd_predict)

    evaluate = command("evaluate", "cross-validated metrics, next to a baseline")
    _data_options(evaluate, target=True)
    evaluate.add_argument("--cv", type=int, default=5, help="number of folds")
    evaluate.add_argument(
        "--group-column",
        default=None,
        help="table column naming each scan's subject, so that no subject is on both sides "
        "of a split; unset: participant_id for tables, the participant for BIDS",
    )
    evaluate.add_argument("--report", help="report folder (metrics.json, figures, predictions)")
    evaluate.add_argument(
        "--json", action="store_true", help="print the metrics as JSON on stdout, and nothing else"
    )
    evaluate.add_argument("--qc", help="also write preprocessing QC pictures and measures here")
    _model_options(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    demo = command("demo", "fit and evaluate on a built-in simulated cohort")
    demo.add_argument("--n-subjects", type=int, default=240, help="simulated subjects")
    demo.add_argument("--max-epochs", type=int, default=100, help="training epochs")
    _architecture_options(demo, network_only="")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulation and training")
    demo.add_argument("--report", default="slicelearn-demo-report", help="report folder")
    _progress_option(demo)
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``slicelearn`` command; returns the exit code."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(tokens)
    _WHERE.clear()
    if getattr(args, "n_subjects", 4) < 4:
        print("slicelearn: error: --n-subjects must be at least 4", file=sys.stderr)
        return 2
    try:
        if args.command in ("fit", "evaluate"):
            args.argv = tokens
            _check_options_apply(args, tokens)
        with reporting(getattr(args, "progress", True)):
            return args.handler(args)
    except (UsageError, FileNotFoundError, ValueError, ImportError) as exc:
        # Bad input (a missing scan, a malformed table, a wrong option value,
        # a missing optional extra): one line naming the problem, not a traceback.
        print(f"slicelearn: error: {_in_user_terms(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
