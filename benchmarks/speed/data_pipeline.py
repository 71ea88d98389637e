"""File-backed cohorts: peak memory, cache speed-up and loading throughput.

Writes synthetic 91 x 109 x 91 scans (uncompressed int16 NIfTI on the FSL
MNI152 2 mm grid) to a temporary folder, then, in a fresh process per setting:

1. **fit**: one estimator with a tiny encoder and
   ``VolumePreprocessor(target="mni152_91x109x91")`` trains two epochs on N
   scans (cold cache, then warm cache); it reports each epoch's seconds and the
   peak resident memory of the process and its DataLoader workers;
2. **load**: reads every scan once through ``VolumeDataset`` in a DataLoader
   with 0 and with 2 workers, from a cold and from a warm cache, and reports
   volumes/s for loading plus preprocessing alone.

Each result is appended to ``--out`` (JSON lines) as soon as it exists.

Run (about an hour on 2 CPU cores; ``--sizes 50`` for a smoke run)::

    python benchmarks/speed/data_pipeline.py --sizes 500 2000 \
        --out benchmarks/results/data_pipeline.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = (91, 109, 91)
FSL_AFFINE = np.array([[2.0, 0, 0, -90], [0, 2.0, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])


def write_cohort(folder: Path, n: int) -> list[str]:
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = (rng.random(SHAPE) * 1000).astype(np.int16)
    paths = []
    for index in range(n):
        path = folder / f"sub-{index:05d}_T1w.nii"
        if not path.exists():
            data = base + np.int16(index % 500)  # distinct content, distinct cache keys
            nib.save(nib.Nifti1Image(data, FSL_AFFINE), path)
        paths.append(str(path))
    return paths


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024  # Linux reports kB


def run_fit(paths: list[str], cache: Path, workers: int) -> dict:
    import torch
    from skorch.callbacks import Callback
    from torch import nn

    from slicelearn import SliceCNNRegressor
    from slicelearn.data import VolumePreprocessor

    class Tiny(nn.Module):
        out_features = 4

        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(1, 4, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten()
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

    class EpochClock(Callback):
        def initialize(self):
            self.seconds = []
            return self

        def on_epoch_begin(self, net, **kwargs):
            self.start = time.perf_counter()

        def on_epoch_end(self, net, **kwargs):
            self.seconds.append(time.perf_counter() - self.start)

    clock = EpochClock()
    est = SliceCNNRegressor(
        encoder=Tiny(),
        weights=None,
        embed_dim=8,
        attention_heads=2,
        head_hidden=8,
        pooling="mean",
        position_embedding="sinusoidal",
        preprocessing=VolumePreprocessor(target="mni152_91x109x91", cache_dir=cache),
        max_epochs=2,
        batch_size=8,
        train_split=None,
        verbose=0,
        random_state=0,
        callbacks=[("clock", clock)],
        iterator_train__num_workers=workers,
    )
    ages = np.linspace(20, 80, len(paths)).astype(np.float32)
    est.fit(paths, ages)
    return {
        "epoch_seconds": [round(s, 1) for s in clock.seconds],
        "cache_speedup": round(clock.seconds[0] / clock.seconds[1], 2),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def run_load(paths: list[str], cache: Path, workers: int) -> dict:
    from torch.utils.data import DataLoader

    from slicelearn.data import VolumeDataset, VolumePreprocessor

    prep = VolumePreprocessor(target="mni152_91x109x91", cache_dir=cache).fit(paths)
    dataset = VolumeDataset(prep.transform(paths))
    start = time.perf_counter()
    for _ in DataLoader(dataset, batch_size=8, num_workers=workers):
        pass
    seconds = time.perf_counter() - start
    return {
        "volumes_per_s": round(len(paths) / seconds, 1),
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def child(args: argparse.Namespace) -> None:
    paths = write_cohort(args.data, args.n)
    runner = run_fit if args.child == "fit" else run_load
    result = runner(paths, args.cache, args.workers)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--load-size", type=int, default=200, help="scans for the load test")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/data_pipeline.jsonl"))
    parser.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: temp)")
    parser.add_argument("--child", choices=["fit", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    scratch = args.tmp or Path(tempfile.mkdtemp(prefix="slicelearn-bench-"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = scratch / "scans"

    def record(kind: str, n: int, workers: int, cache: Path) -> None:
        command = [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--n",
            str(n),
            "--workers",
            str(workers),
            "--data",
            str(data),
            "--cache",
            str(cache),
        ]
        state = "warm" if cache.exists() and any(cache.iterdir()) else "cold"
        start = time.perf_counter()
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result = {
            "test": kind,
            "n_volumes": n,
            "workers": workers,
            "cache": state,
            **json.loads(output.strip().splitlines()[-1]),
            "wall_s": round(time.perf_counter() - start, 1),
        }
        print(json.dumps(result), flush=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(result) + "\n")

    write_cohort(data, max([*args.sizes, args.load_size]))
    try:
        for workers in (0, 2):
            cache = scratch / f"cache-load-{workers}"
            shutil.rmtree(cache, ignore_errors=True)
            record("load", args.load_size, workers, cache)  # cold
            record("load", args.load_size, workers, cache)  # warm
        for n in args.sizes:
            cache = scratch / f"cache-fit-{n}"
            shutil.rmtree(cache, ignore_errors=True)
            record("fit", n, 2, cache)
    finally:
        if args.tmp is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
