"""skorch callbacks that the estimators add by default.

:class:`RankZeroPrintLog` is skorch's epoch table, printed once in a
data-parallel run (by rank 0) instead of once per process.

:class:`RestoreBestWeights` keeps the weights of the epoch with the best
validation score and puts them back when training ends, without stopping
early: slice models often sit on a plateau for a while before position
information is picked up, and a patience-based stop would end them there.
Add skorch's ``EarlyStopping`` through ``callbacks`` to stop early as well.
"""

from __future__ import annotations

import copy
from typing import Any

from skorch.callbacks import Callback, PrintLog

__all__ = ["RankZeroPrintLog", "RestoreBestWeights"]


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
            self.best_state_ = copy.deepcopy(net.module_.state_dict())

    def on_train_end(self, net, **kwargs) -> None:
        if self.best_state_ is None or self.best_epoch_ == net.history[-1, "epoch"]:
            return
        net.module_.load_state_dict(self.best_state_)
        if net.verbose:
            print(f"Restored the weights of epoch {self.best_epoch_} (best {self.monitor}).")


class RankZeroPrintLog(PrintLog):
    """skorch's ``PrintLog``, printed by the first process of a data-parallel run only."""

    def _sink(self, text: str, verbose: int) -> None:
        from .distributed import print_on_rank_zero

        if verbose:
            print_on_rank_zero(text, flush=True)
