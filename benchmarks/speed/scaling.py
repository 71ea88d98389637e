"""Scaling out on one machine: 2 processes against 1, for DDP training and a Dask search.

- **DDP**: the same training script under ``torchrun`` with 1 process (all
  threads) and with 2 processes (threads split between them), same global
  batch; reports training volumes/s of each and the ratio. Full-size volumes
  (91 x 109 x 91) and a ResNet-18 slice model trained end to end.
- **Dask**: a ``GridSearchCV`` (4 configurations x 2 folds) with ``n_jobs=1``
  and on a ``distributed.LocalCluster`` of 2 single-threaded workers, scans
  passed as paths; reports seconds of each and the ratio.

On a 2-core machine both "2 processes" runs have no more cores than the
single process, so the ratios show the cost or gain of process parallelism
against thread parallelism, not of more hardware. Run::

    python benchmarks/speed/scaling.py --json benchmarks/results/scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (91, 109, 91)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ddp_worker(out: Path, n_volumes: int, epochs: int, batch: int) -> None:
    """One torchrun process: fit, then rank 0 writes the training rate."""
    import torch
    import torch.distributed as dist

    from slicelearn import SliceCNNRegressor

    # Content does not change the speed: random volumes, as every process draws them.
    X = np.random.default_rng(0).normal(size=(n_volumes, *SHAPE)).astype(np.float32)
    ages = np.linspace(20, 80, n_volumes)
    est = SliceCNNRegressor(
        encoder="resnet18",
        weights=None,
        pooling="mean",
        position_embedding=None,
        max_epochs=1,
        batch_size=batch,
        train_split=None,
        verbose=0,
        random_state=0,
        device="cpu",
    )
    est.fit(X, ages)  # warm-up epoch, joins the group
    start = time.perf_counter()
    est.partial_fit(X, ages, epochs=epochs)
    seconds = time.perf_counter() - start
    if dist.get_rank() == 0:
        out.write_text(
            json.dumps(
                {
                    "processes": dist.get_world_size(),
                    "threads_per_process": torch.get_num_threads(),
                    "volumes_per_s": n_volumes * epochs / seconds,
                }
            )
        )
    dist.barrier()
    dist.destroy_process_group()


def ddp_rate(n_processes: int, threads: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "rate.json"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={n_processes}",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            __file__,
            "--ddp-worker",
            str(out),
            "--volumes",
            str(args.volumes),
            "--epochs",
            str(args.epochs),
            "--batch",
            str(args.batch),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        return json.loads(out.read_text())


def dask_search_seconds(workers: int | None) -> float:
    """Seconds for a 4-configuration, 2-fold search; ``None`` workers means n_jobs=1."""
    import joblib
    from sklearn.model_selection import GridSearchCV, KFold

    from slicelearn import SliceCNNRegressor
    from slicelearn.datasets import make_atrophy_cohort

    with tempfile.TemporaryDirectory() as folder:
        images, participants = make_atrophy_cohort(16, voxel_size=4, random_state=0)
        paths = []
        for index, image in enumerate(images):
            path = Path(folder) / f"sub-{index:02d}_T1w.nii.gz"
            image.to_filename(path)
            paths.append(str(path))
        search = GridSearchCV(
            SliceCNNRegressor(
                encoder="cnn2d",
                weights=None,
                max_epochs=6,
                batch_size=4,
                train_split=None,
                verbose=0,
                random_state=0,
                device="cpu",
            ),
            {"pooling": ["mean", "attention"], "position_embedding": [None, "sinusoidal"]},
            cv=KFold(2),
            n_jobs=1 if workers is None else -1,
        )
        ages = participants["age"].to_numpy()
        if workers is None:
            start = time.perf_counter()
            search.fit(paths, ages)
            return time.perf_counter() - start
        import distributed

        with (
            distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address=None,
                # torch sizes its own thread pool to all cores at import,
                # whatever dask's threads_per_worker says.
                env={"OMP_NUM_THREADS": "1"},
            ) as cluster,
            distributed.Client(cluster),
        ):
            start = time.perf_counter()
            with joblib.parallel_backend("dask"):
                search.fit(paths, ages)
            return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4, help="global batch")
    parser.add_argument("--ddp-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ddp_worker:
        ddp_worker(args.ddp_worker, args.volumes, args.epochs, args.batch)
        return
    cores = os.cpu_count() or 1
    one = ddp_rate(1, cores, args)
    two = ddp_rate(2, max(cores // 2, 1), args)
    print(
        f"DDP: 1 process {one['volumes_per_s']:.3f}, 2 processes {two['volumes_per_s']:.3f} vol/s"
    )
    serial = dask_search_seconds(None)
    parallel = dask_search_seconds(2)
    print(f"Dask search: n_jobs=1 {serial:.1f} s, 2 workers {parallel:.1f} s")
    results = {
        "cpu_count": cores,
        "ddp": {
            "volume_shape": list(SHAPE),
            "global_batch": args.batch,
            "one_process": one,
            "two_processes": two,
            "speedup": round(two["volumes_per_s"] / one["volumes_per_s"], 2),
        },
        "dask_search": {
            "configurations": 4,
            "folds": 2,
            "n_jobs_1_seconds": round(serial, 1),
            "two_workers_seconds": round(parallel, 1),
            "speedup": round(serial / parallel, 2),
        },
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
