"""Reports of a fitted model: metrics, figures, and slice importance.

This module owns what the command line writes into a report folder:
``metrics.json``, ``predictions.csv``, a predicted-vs-true plot (regression)
or ROC curve (classification), learning curves from the skorch history, and
a slice-importance map.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from . import inspection
from ._files import write_atomic

__all__ = [
    "classification_metrics",
    "json_ready",
    "regression_metrics",
    "slice_model",
    "write_report",
]


def json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities as None, so that it is valid JSON."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R² and Pearson r."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "r2": float(r2_score(y_true, y_pred)),
        # Undefined for a constant prediction (the training-mean baseline).
        "pearson_r": float(np.corrcoef(y_true, y_pred)[0, 1])
        if len(y_true) > 1 and np.ptp(y_pred) > 0 and np.ptp(y_true) > 0
        else float("nan"),
    }


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray
) -> dict[str, Any]:
    """Accuracy, balanced accuracy and ROC-AUC (one-vs-rest for several classes)."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

    predicted = classes[proba.argmax(axis=1)]
    metrics: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, predicted)),
        "classes": [str(c) for c in classes],
    }
    if len(set(y_true)) > 1:
        if len(classes) == 2:
            metrics["roc_auc"] = float(roc_auc_score(y_true == classes[1], proba[:, 1]))
        else:
            metrics["roc_auc"] = float(
                roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
            )
    return metrics


#: Scans whose slice importance the report averages (occlusion runs the network
#: once per slice and scan).
IMPORTANCE_SCANS = 16


def _slice_profile(
    estimator: Any, X: Any, max_subjects: int = IMPORTANCE_SCANS
) -> tuple[np.ndarray, str]:
    """Mean slice importance of the first scans, normalised to sum 1, and what it measures.

    :func:`slicelearn.inspection.default_method`: attention weights with
    attention pooling, leave-one-slice-out otherwise, each slice's term of a
    linear readout.
    """
    subset = X[: min(len(X), max_subjects)]
    method = inspection.default_method(estimator)
    importance = inspection.slice_importance(estimator, subset, method).mean(axis=0)
    total = importance.sum()
    return (importance / total if total > 0 else importance), inspection.DESCRIPTIONS[method]


def _volume_batch(estimator: Any, X: Any, max_subjects: int) -> np.ndarray:
    """The first volumes of X as one array, read the way the estimator reads them."""
    subset = X[: min(len(X), max_subjects)]
    return np.stack(list(estimator.iter_volumes(subset)))


def _learning_curves(history: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = history[:, "epoch"]
    for key in ("train_loss", "valid_loss"):
        values = [row.get(key) for row in history]
        if any(v is not None for v in values):
            ax.plot(epochs, values, label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _importance_map(
    importance: np.ndarray, mean_volume: np.ndarray, axis: str, how: str, scans: str, path: Path
) -> None:
    import textwrap

    import matplotlib.pyplot as plt

    from .nn.slicenet import slice_axis_dim

    dim = slice_axis_dim(axis) - 1
    # Show the slicing axis horizontally: a view along another axis, through the centre.
    view_dim = (dim + 1) % 3
    image = np.take(mean_volume, mean_volume.shape[view_dim] // 2, axis=view_dim)
    if dim > view_dim:
        dim -= 1
    image = image if dim == 1 else image.T
    overlay = np.broadcast_to(importance[None, :], image.shape)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(6.5, 6.8), height_ratios=[2, 1], sharex=True, layout="constrained"
    )
    top.imshow(image, cmap="gray", aspect="auto", origin="lower")
    shown = top.imshow(overlay, cmap="hot", alpha=0.45, aspect="auto", origin="lower")
    fig.colorbar(shown, ax=[top, bottom], label="share of importance", shrink=0.8)
    top.set_title(f"Which {axis} slices the prediction rests on ({scans})", fontsize=10)
    top.set_yticks([])
    bottom.bar(np.arange(len(importance)), importance, color="tab:red")
    caption = "\n".join(textwrap.wrap(f"Importance: {how}; shares sum to 1.", 80))
    bottom.set_xlabel(f"{axis} slice index\n\n{caption}", fontsize=8)
    bottom.set_ylabel("importance")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def slice_model(estimator: Any) -> Any:
    """The model whose slices a report weighs: the estimator, or an ensemble's first slice member.

    ``None`` for a model without slices (a voxel readout, or an ensemble of them).
    """
    members = getattr(estimator, "estimators_", None)
    if members is None:
        members = [m for _, m in getattr(estimator, "estimators", [])] or [estimator]
    return next((m for m in members if hasattr(m, "axis")), None)


def write_report(
    folder: str | Path,
    estimator: Any,
    X: Any,
    y_true: np.ndarray,
    prediction: np.ndarray,
    metrics: dict[str, Any],
    ids: list[str] | None = None,
    target: str = "target",
    unit: str | None = None,
) -> Path:
    """Write metrics, predictions and figures of a fitted estimator to ``folder``.

    ``estimator`` is a slice network, a linear readout (which has no
    learning curves) or an ensemble of them. The slice importance comes from
    :func:`slice_model`'s model; a voxel readout alone has none. ``target``
    and ``unit`` (e.g. ``"age"``, ``"years"``) label the figures' axes;
    without a unit, the axes say the table's units.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_ready(metrics), indent=2).encode()
    write_atomic(folder / "metrics.json", lambda handle: handle.write(text))
    is_classifier = prediction.ndim == 2
    table = pd.DataFrame({"id": ids if ids is not None else range(len(y_true)), "true": y_true})
    if is_classifier:
        classes = estimator.classes_
        table["predicted"] = classes[prediction.argmax(axis=1)]
        for index, label in enumerate(classes):
            table[f"p_{label}"] = prediction[:, index]
    else:
        table["predicted"] = prediction
    write_atomic(folder / "predictions.csv", lambda handle: table.to_csv(handle, index=False))

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    if is_classifier and len(estimator.classes_) == 2 and len(set(y_true)) > 1:
        from sklearn.metrics import roc_curve

        fpr, tpr, _ = roc_curve(y_true == estimator.classes_[1], prediction[:, 1])
        ax.plot(fpr, tpr, label=f"AUC = {metrics.get('roc_auc', float('nan')):.3f}")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right")
        figure_name = "roc.png"
    elif not is_classifier:
        ax.scatter(y_true, prediction, s=12, alpha=0.7)
        low, high = (
            float(min(y_true.min(), prediction.min())),
            float(max(y_true.max(), prediction.max())),
        )
        ax.plot([low, high], [low, high], "k--", lw=0.8)
        units = unit or "units of the table"
        ax.set_xlabel(f"true {target} ({units})")
        ax.set_ylabel(f"predicted {target} ({units})")
        mae = f"{metrics['mae']:.2f}" + (f" {unit}" if unit else "")
        ax.set_title(f"MAE = {mae}, r = {metrics['pearson_r']:.2f} ({len(y_true)} scans)")
        figure_name = "predicted_vs_true.png"
    else:
        figure_name = None
    if figure_name:
        fig.tight_layout()
        fig.savefig(folder / figure_name, dpi=120)
    plt.close(fig)

    members = getattr(estimator, "estimators_", [estimator])
    history = next((m.history for m in members if getattr(m, "history", None)), None)
    if history is not None and len(history):
        _learning_curves(history, folder / "learning_curves.png")
    weighed = slice_model(estimator)
    if weighed is None:
        return folder
    importance, how = _slice_profile(weighed, X)
    if weighed is not estimator:  # an ensemble: say whose prediction the slices move
        names = [name for name, _ in getattr(estimator, "estimators", [])]
        name = names[members.index(weighed)] if weighed in members else "slice"
        how = f"{how} (the ensemble's {name!r} member alone)"
    estimator = weighed
    used = min(len(X), IMPORTANCE_SCANS)
    scans = f"mean over the first {used} of {len(X)} scans"
    if used == len(X):
        scans = f"mean over all {used} scans"
    mean_volume = _volume_batch(estimator, X, IMPORTANCE_SCANS).mean(0)
    axis = estimator.axis if isinstance(estimator.axis, str) else estimator.axis[0]
    _importance_map(importance, mean_volume, axis, how, scans, folder / "slice_importance.png")
    np.savetxt(folder / "slice_importance.csv", importance, delimiter=",", header="importance")
    return folder
