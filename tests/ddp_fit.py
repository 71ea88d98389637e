"""One process of a data-parallel fit, for tests/test_distributed.py (run by torchrun).

Rank 0 writes the epoch losses and the predictions to the JSON file named
on the command line.
"""

import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from conftest import fast_params

from slicelearn import SliceCNNRegressor
from slicelearn.feature_cache import shared_feature_cache


def main() -> None:
    out, pooling, position = sys.argv[1], sys.argv[2], sys.argv[3]
    frozen = sys.argv[4:] == ["frozen"]
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 8, 10, 9)).astype(np.float32)
    y = (X[:, :4].mean(axis=(1, 2, 3)) * 10 + 50).astype(np.float32)
    est = SliceCNNRegressor(
        **fast_params(
            pooling=pooling,
            position_embedding=None if position == "none" else position,
            max_epochs=4,
            batch_size=8,
            train_split=None,
            device=os.environ.get("DDP_FIT_DEVICE", "cpu"),
            freeze_encoder=frozen,
            verbose=1,
        )
    )
    est.fit(X, y)
    encoded = shared_feature_cache().computed  # volumes this process ran the encoder on
    prediction = est.predict(X)
    counts = [None] * dist.get_world_size()
    dist.all_gather_object(counts, encoded)
    if dist.get_rank() == 0:
        # One process may predict alone, on volumes no process has encoded.
        unseen = rng.normal(size=(3, 8, 10, 9)).astype(np.float32)
        assert np.isfinite(est.predict(unseen)).all()
        with open(out, "w") as handle:
            json.dump(
                {
                    "world_size": dist.get_world_size(),
                    "train_loss": [row["train_loss"] for row in est.history],
                    "batches": [row["train_batch_count"] for row in est.history],
                    "prediction": prediction.tolist(),
                    "encoded_per_process": counts,
                },
                handle,
            )
    dist.barrier()
    dist.destroy_process_group()
    # Everything is written. In about one run in six under pytest, a C++
    # thread still being torn down at interpreter exit aborted the process
    # ("terminate called without an active exception") after this point;
    # ending here keeps the test about training, not torch's shutdown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
