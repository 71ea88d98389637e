"""skorch callbacks of the estimators: checkpoints, the epoch log, best weights, the schedule.

:class:`TrainingCheckpoint` writes the training state after every epoch,
atomically, and lets ``fit`` resume from it after an interruption.

:class:`RankZeroPrintLog` is skorch's epoch table, printed once in a
data-parallel run (by rank 0) instead of once per process.

:class:`RestoreBestWeights` keeps the weights of the epoch with the best
validation score and puts them back when training ends, without stopping
early: slice models often sit on a plateau for a while before position
information is picked up, and a patience-based stop would end them there.
Add skorch's ``EarlyStopping`` through ``callbacks`` to stop early as well.

:class:`CosineLRSchedule` anneals the learning rate over the net's
``max_epochs`` as they are when training begins (full fine-tuning's schedule).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skorch.callbacks import Callback, LRScheduler, PrintLog
from skorch.utils import Ansi
from torch import nn

from ._files import write_atomic

__all__ = [
    "CosineLRSchedule",
    "EpochProgress",
    "RankZeroPrintLog",
    "RestoreBestWeights",
    "TrainingCheckpoint",
    "resume_training",
]


class CosineLRSchedule(LRScheduler):
    """Cosine annealing of the learning rate from ``lr`` towards 0 over the net's ``max_epochs``.

    skorch's ``LRScheduler(policy="CosineAnnealingLR", T_max=n)`` fixes the
    schedule's length when it is built. This one reads ``max_epochs`` when
    training begins, so ``set_params(max_epochs=...)``, a grid search over
    it, or an ensemble's ``network__max_epochs`` keep the schedule whole. A
    resumed fit continues it (skorch counts the epochs in the history).

    Examples
    --------
    >>> import numpy as np
    >>> from slicelearn import SliceCNNRegressor
    >>> from slicelearn.callbacks import CosineLRSchedule
    >>> X = np.random.default_rng(0).normal(size=(4, 6, 32, 32)).astype(np.float32)
    >>> est = SliceCNNRegressor(encoder="cnn2d", weights=None, max_epochs=4, lr=0.1,
    ...                         train_split=None, verbose=0,
    ...                         callbacks=[("lr_schedule", CosineLRSchedule())])
    >>> [round(lr, 3) for lr in est.fit(X, np.arange(4.0)).history[:, "event_lr"]]
    [0.1, 0.085, 0.05, 0.015]
    """

    def __init__(self) -> None:
        super().__init__(policy="CosineAnnealingLR")

    def _get_param_names(self) -> list[str]:
        # skorch takes every attribute for a parameter; this schedule has none
        # of its own (its length is the net's), so clones are built bare.
        return []

    def _get_scheduler(self, net: Any, policy: Any, **scheduler_kwargs: Any) -> Any:
        scheduler_kwargs.setdefault("T_max", net.max_epochs)
        return super()._get_scheduler(net, policy, **scheduler_kwargs)


class RestoreBestWeights(Callback):
    """Restore the module weights of the best epoch when training ends.

    Parameters
    ----------
    monitor : str, default="valid_loss"
        History key whose ``<monitor>_best`` flag marks an improvement (set
        by skorch's scoring callbacks).
    """

    def __init__(self, monitor: str = "valid_loss") -> None:
        self.monitor = monitor

    def initialize(self) -> RestoreBestWeights:
        self.best_epoch_ = None
        self.best_state_: dict[str, Any] | None = None
        return self

    def on_epoch_end(self, net, **kwargs) -> None:
        if net.history[-1].get(f"{self.monitor}_best"):
            self.best_epoch_ = net.history[-1, "epoch"]
            # Parameters that do not train (a frozen encoder's) cannot change,
            # so only the rest is copied at each improvement.
            self.best_state_ = {
                name: value.detach().clone()
                for name, value in net.module_.state_dict(keep_vars=True).items()
                if not (isinstance(value, nn.Parameter) and not value.requires_grad)
            }

    def on_train_end(self, net, **kwargs) -> None:
        if self.best_state_ is None or self.best_epoch_ == net.history[-1, "epoch"]:
            return
        net.module_.load_state_dict(self.best_state_, strict=False)
        if net.verbose:
            print(f"Restored the weights of epoch {self.best_epoch_} (best {self.monitor}).")

    def __getstate__(self) -> dict[str, Any]:
        # Once training has ended the best weights are the module's own; a
        # pickled estimator would otherwise carry a second copy of them (as
        # skorch's EarlyStopping, drop it).
        state = self.__dict__.copy()
        state["best_state_"] = None
        return state


class RankZeroPrintLog(PrintLog):
    """skorch's ``PrintLog``, printed by the first process of a data-parallel run only.

    Best values are coloured on a terminal only: in a log file or a pipe the
    table is plain text, with no ANSI codes.
    """

    def format_row(self, row, key, color):
        if sys.stdout.isatty():
            return super().format_row(row, key, color)
        return str(super().format_row(row, key, color="")).replace(Ansi.ENDC.value, "")

    def _sink(self, text: str, verbose: int) -> None:
        from .distributed import print_on_rank_zero

        if verbose:
            print_on_rank_zero(text, flush=True)


class EpochProgress(Callback):
    """A progress line per training epoch on stderr: epochs done, time spent, time left.

    For logs and pipes, where skorch's ``ProgressBar`` would redraw a bar.
    """

    def on_train_begin(self, net, X=None, y=None, **kwargs) -> None:
        from ._progress import Progress

        self.start_epoch_ = len(net.history)
        self.progress_ = Progress("training epoch", net.max_epochs)

    def on_epoch_end(self, net, **kwargs) -> None:
        loss = net.history[-1].get("train_loss")
        what = "" if loss is None else f"training loss {loss:.4g}"
        self.progress_.update(len(net.history) - self.start_epoch_, what)

    def on_train_end(self, net, X=None, y=None, **kwargs) -> None:
        self.progress_.close()


class TrainingCheckpoint(Callback):
    """Write the training state after every epoch, and let ``fit`` resume from it.

    After each epoch the network and optimiser weights, the history, the
    random-number state and the best epoch kept by :class:`RestoreBestWeights`
    go to one file, written to a temporary name and renamed into place, so
    a kill at any moment leaves the previous complete checkpoint. When ``fit``
    starts and the file exists (``resume=True``), it continues from there:
    on the CPU, with the same ``random_state``, the final model equals that of
    an uninterrupted run. A checkpoint written for other parameters or other
    training data is refused with an error naming the file. The file is
    removed when training ends normally.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file.
    resume : bool, default=True
        Continue from an existing checkpoint at ``fit``.

    Examples
    --------
    >>> from slicelearn import SliceCNNRegressor
    >>> from slicelearn.callbacks import TrainingCheckpoint
    >>> est = SliceCNNRegressor(callbacks=[TrainingCheckpoint("run/age.ckpt")])
    """

    def __init__(self, path: str | os.PathLike, resume: bool = True) -> None:
        self.path = path
        self.resume = resume

    def on_epoch_end(self, net, **kwargs) -> None:
        state = {
            "fingerprint": getattr(self, "fingerprint_", None),  # None: never resumed
            "epochs": len(net.history),
            "module": net.module_.state_dict(),
            "optimizer": net.optimizer_.state_dict(),
            "history": _plain(list(net.history)),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "best": _best_weights_state(net),
        }
        write_atomic(self.path, lambda handle: torch.save(state, handle))

    def on_train_end(self, net, **kwargs) -> None:
        Path(self.path).unlink(missing_ok=True)

    def restore(self, net, X: Any, y: Any) -> int:
        """Load the checkpoint into ``net``; return the number of epochs it holds (0: none).

        ``fit`` calls this before training on ``X``, ``y``: it also records what
        this fit's checkpoints are written for (``fingerprint_``), so that a
        checkpoint is resumed only by a fit with the same parameters and data.
        """
        self.fingerprint_ = fingerprint = training_fingerprint(net, X, y)
        path = Path(self.path)
        if not (self.resume and path.is_file()):
            return 0
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(
                f"Checkpoint {path} cannot be read ({exc}); delete it to train from the start."
            ) from exc
        if state.get("fingerprint") != fingerprint:
            raise ValueError(
                f"Checkpoint {path} was written for other parameters or training data; "
                "delete it, or give this run another checkpoint path."
            )
        from skorch.history import History

        net.module_.load_state_dict(state["module"])
        net.optimizer_.load_state_dict(state["optimizer"])
        net.history = History(state["history"])
        torch.set_rng_state(state["rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        for _, callback in net.callbacks_:
            if isinstance(callback, RestoreBestWeights) and state["best"] is not None:
                callback.best_epoch_, callback.best_state_ = state["best"]
            _restore_best_score(callback, net.history)
        return int(state["epochs"])


def resume_training(net: Any, X: Any, y: Any, fit_params: dict[str, Any]) -> dict[str, Any]:
    """Restore ``net``'s :class:`TrainingCheckpoint`, if it has one; the fit's remaining epochs.

    Returns ``fit_params`` with ``epochs`` lowered by the epochs the
    checkpoint holds (unchanged when there is no checkpoint to resume).
    """
    for _, callback in net.callbacks_:
        if isinstance(callback, TrainingCheckpoint):
            done = callback.restore(net, X, y)
            if done:
                epochs = fit_params.get("epochs", net.max_epochs)
                return {**fit_params, "epochs": max(epochs - done, 0)}
    return fit_params


def training_fingerprint(net: Any, X: Any, y: Any) -> str:
    """What a checkpoint must match to be resumed: class, parameters, training data."""
    ignored = {"callbacks", "verbose", "device", "warm_start"}
    params = {
        name: _stable_repr(value)
        for name, value in sorted(net.get_params(deep=False).items())
        if name not in ignored and not name.startswith(("_", "callbacks__"))
    }
    digest = hashlib.sha256(f"{type(net).__name__}:{params}:{len(X)}".encode())
    digest.update(np.ascontiguousarray(np.asarray(y).astype(str)).tobytes())
    return digest.hexdigest()


def _stable_repr(value: Any) -> str:
    """A representation that is the same in every process (no memory addresses)."""
    if inspect.isclass(value) or inspect.isfunction(value):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, nn.Module):
        state = value.state_dict()
        shapes = {k: tuple(t.shape) for k, t in state.items()}
        return f"{type(value).__qualname__}{shapes}"
    if hasattr(value, "get_params"):
        params = {k: _stable_repr(v) for k, v in sorted(value.get_params(deep=False).items())}
        return f"{type(value).__qualname__}{params}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_stable_repr(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_stable_repr(v)}" for k, v in sorted(value.items())) + "}"
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return repr(value)
    if hasattr(value, "__dict__"):  # e.g. ValidSplit: its repr holds an address
        fields = {k: _stable_repr(v) for k, v in sorted(vars(value).items())}
        return f"{type(value).__qualname__}{fields}"
    return repr(value)


def _restore_best_score(callback, history) -> None:
    """Scoring callbacks' best score so far, from the history's ``<name>_best`` flags.

    skorch's EpochScoring does this itself at train begin; PassthroughScoring
    (``valid_loss``) does not, and would call the first resumed epoch the best.
    """
    name = getattr(callback, "name_", None) or getattr(callback, "name", None)
    if not (hasattr(callback, "best_score_") and isinstance(name, str)):
        return
    best = [row[name] for row in history if row.get(f"{name}_best")]
    if best:
        callback.best_score_ = best[-1]


def _best_weights_state(net) -> tuple[int, dict] | None:
    for _, callback in net.callbacks_:
        if isinstance(callback, RestoreBestWeights) and callback.best_state_ is not None:
            return callback.best_epoch_, callback.best_state_
    return None


def _plain(value: Any) -> Any:
    """History values as plain Python (numpy scalars become floats), for weights_only loads."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value
