"""The ``slicelearn`` command line.

``slicelearn demo`` fits a slice model on the built-in simulated task (no
download) and prints held-out metrics next to the predict-the-mean
baseline.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np
from sklearn.metrics import mean_absolute_error, r2_score

from . import __version__
from .datasets import make_slice_position_task
from .estimators import SliceCNNRegressor

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    shape = (args.n_slices, 32, 32)
    task = {"blob_sigma": 3.0, "blob_amplitude": 3.0}
    X_train, y_train = make_slice_position_task(
        args.n_subjects, shape, random_state=args.seed, **task
    )
    X_test, y_test = make_slice_position_task(
        max(args.n_subjects // 2, 2), shape, random_state=args.seed + 1, **task
    )
    weights = "imagenet" if args.encoder == "efficientnet_lite0" else None
    print(
        f"slicelearn {__version__} demo: {len(X_train)} training and {len(X_test)} test "
        f"volumes of {shape}; target = index of the sagittal slice holding a blob.\n"
        f"Model: {args.encoder} (weights={weights}, frozen), {args.pooling} pooling, "
        f"{args.position_embedding} position embedding.",
        flush=True,
    )
    est = SliceCNNRegressor(
        encoder=args.encoder,
        weights=weights,
        freeze_encoder=weights is not None,
        pooling=args.pooling,
        position_embedding=args.position_embedding,
        lr=1e-3,
        max_epochs=args.max_epochs,
        random_state=args.seed,
        verbose=1,
    )
    start = time.perf_counter()
    est.fit(X_train, y_train)
    predictions = est.predict(X_test)
    elapsed = time.perf_counter() - start
    baseline = mean_absolute_error(y_test, np.full_like(y_test, y_train.mean()))
    print(
        f"\nHeld-out R2 = {r2_score(y_test, predictions):.3f}, "
        f"MAE = {mean_absolute_error(y_test, predictions):.2f} slices "
        f"(predicting the training mean: MAE = {baseline:.2f}); {elapsed:.0f} s."
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``slicelearn`` command."""
    parser = argparse.ArgumentParser(
        prog="slicelearn",
        description="Position-encoded 2D-slice models for 3D MRI.",
    )
    parser.add_argument("--version", action="version", version=f"slicelearn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="fit and evaluate on a built-in simulated task (no download)"
    )
    demo.add_argument("--n-subjects", type=int, default=160, help="training volumes")
    demo.add_argument("--n-slices", type=int, default=16, help="sagittal slices per volume")
    demo.add_argument("--max-epochs", type=int, default=30)
    demo.add_argument(
        "--encoder", default="efficientnet_lite0", help="encoder name (default: %(default)s)"
    )
    demo.add_argument("--pooling", default="max", choices=["mean", "max", "attention"])
    demo.add_argument(
        "--position-embedding", default="sinusoidal", choices=["learned", "sinusoidal", "none"]
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``slicelearn`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "position_embedding", None) == "none":
        args.position_embedding = None
    if getattr(args, "n_subjects", 2) < 2:
        print("slicelearn: error: --n-subjects must be at least 2", file=sys.stderr)
        return 2
    return args.handler(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
