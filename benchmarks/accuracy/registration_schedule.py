"""IXI: does the ANTs affine schedule's last level pay, and does preprocessing repeat bit for bit?

The default route (deepbet masks, ANTs affine to the 2 mm MNI152 template,
z-scored in the brain) is computed for all 136 scans under named ANTs affine
schedules, each into its own folder, twice for ``ants-default`` (the
determinism check). For every run:
seconds a scan (2 workers), the SHA-256 of the volumes, and the ridge readout
(the command line's default model when these runs were made) in 5 repeats of 5-fold CV, so a faster
schedule is judged against the repeat spread. Masks come from
``ixi_routes.py --steps masks``. Run::

    python benchmarks/accuracy/registration_schedule.py \\
        --runs no-full-res:a ants-default:a ants-default:b
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ixi_routes

#: ANTs affine schedules: iterations at shrink factors 6, 4, 2, 1 of the 2 mm
#: template grid. "ants-default" is ANTs' own (slicelearn's before recipe 3);
#: "no-full-res" skips the 10 iterations at full resolution (slicelearn's
#: :data:`~slicelearn.data.registration.ANTS_ITERATIONS` since recipe 3).
SCHEDULES = {
    "ants-default": (2100, 1200, 1200, 10),
    "no-full-res": (2100, 1200, 1200, 0),
}


def volumes_for(schedule: str, paths, masks, work: Path, out: Path) -> np.ndarray:
    import os

    from slicelearn.data import registration

    # One ITK thread, as slicelearn sets before its own first import of ants.
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    default = registration.ANTS_ITERATIONS
    # DataLoader workers fork after this, so they inherit the schedule.
    registration.ANTS_ITERATIONS = SCHEDULES[schedule]
    try:
        return np.asarray(
            ixi_routes.step_volumes("deepbet_affine", paths, masks, work, out, set()),
            dtype=np.float32,
        )
    finally:
        registration.ANTS_ITERATIONS = default


def ridge_cv(volumes: np.ndarray, ages: np.ndarray, repeats: int = 5) -> dict:
    from sklearn.metrics import mean_absolute_error
    from sklearn.model_selection import KFold, cross_val_predict

    from slicelearn.presets import recommended_readout

    readout = recommended_readout()
    maes = [
        mean_absolute_error(
            ages,
            cross_val_predict(readout, volumes, ages, cv=KFold(5, shuffle=True, random_state=r)),
        )
        for r in range(repeats)
    ]
    return {
        "mae": round(float(np.mean(maes)), 3),
        "mae_sd": round(float(np.std(maes)), 3),
        "mae_per_repeat": [round(float(m), 3) for m in maes],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", nargs="+", default=["no-full-res:a", "ants-default:a", "ants-default:b"]
    )
    parser.add_argument("--work", type=Path, default=Path("~/slicelearn_data/registration"))
    parser.add_argument("--masks", type=Path, default=Path("~/slicelearn_data/ixi_routes/masks"))
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/registration_schedule.jsonl")
    )
    args = parser.parse_args()

    import torch

    from slicelearn.data import read_cohort

    torch.set_num_threads(2)
    paths, labels = read_cohort(ixi_routes.IXI / "participants.tsv", target=["age", "sex"])
    ages = labels[:, 0].astype(np.float64)
    masks = {
        p: str(
            args.masks.expanduser() / (Path(p).name.replace("_T1w.nii.gz", "") + "_deepbet.nii.gz")
        )
        for p in paths
    }
    for run in args.runs:
        schedule, _, name = run.partition(":")
        work = args.work.expanduser() / f"{schedule}-{name}"
        timing = work / "timing.jsonl"
        begin = time.perf_counter()
        volumes = volumes_for(schedule, paths, masks, work, timing)
        seconds = time.perf_counter() - begin
        row = {
            "run": run,
            "schedule": schedule,
            "aff_iterations": list(SCHEDULES[schedule]),
            "seconds_per_scan_2_workers": json.loads(timing.read_text().splitlines()[-1])[
                "seconds_per_scan_2_workers"
            ]
            if timing.exists()
            else round(seconds / len(paths), 2),
            "sha256": hashlib.sha256(np.ascontiguousarray(volumes).tobytes()).hexdigest()[:16],
            **ridge_cv(volumes, ages),
        }
        print(json.dumps(row), flush=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
