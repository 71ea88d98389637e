"""A fit with a TrainingCheckpoint, for tests/test_checkpoint.py (run as a subprocess).

Usage: checkpoint_fit.py CHECKPOINT OUT_JSON [SECONDS_PER_EPOCH]. Writes the
predictions and the epochs this process trained to OUT_JSON when it finishes.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).parent))
from conftest import fast_params

from slicelearn import SliceCNNRegressor
from slicelearn.callbacks import TrainingCheckpoint


class EpochCounter(Callback):
    """Counts the epochs run in this process; optionally slows each one down."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause
        self.epochs = 0

    def on_epoch_end(self, net, **kwargs) -> None:
        self.epochs += 1
        time.sleep(self.pause)


def main() -> None:
    checkpoint, out = sys.argv[1], Path(sys.argv[2])
    pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 8, 10, 9)).astype(np.float32)
    y = (X[:, :4].mean(axis=(1, 2, 3)) * 10 + 50).astype(np.float32)
    counter = EpochCounter(pause)
    est = SliceCNNRegressor(
        **fast_params(
            max_epochs=10,
            dropout=0.2,  # dropout draws random numbers: the resume must restore them
            callbacks=[("checkpoint", TrainingCheckpoint(checkpoint)), ("counter", counter)],
        )
    )
    est.fit(X, y)
    out.write_text(
        json.dumps(
            {
                "prediction": est.predict(X).tolist(),
                "epochs_here": counter.epochs,
                "history_epochs": [row["epoch"] for row in est.history],
                "valid_loss": [row["valid_loss"] for row in est.history],
            }
        )
    )


if __name__ == "__main__":
    main()
