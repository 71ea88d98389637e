"""The command line's default fit on raw IXI scans, preprocessing included: wall time.

Runs ``slicelearn fit --data participants.tsv --target age`` (or ``--target
sex``, the default for classes) as a user does,
with nothing cached (a fresh ``--cache-dir``) and ``--workers`` processes for
the preprocessing, and times it from the outside. Every progress line of the
command is stamped with the seconds since the start, so the preprocessing
(deepbet, ANTs) and the model's training read apart. Needs ``../shared/data/ixi``
and the raw-T1 extras. Run on a quiet machine::

    python benchmarks/speed/default_fit_time.py \\
        --json benchmarks/results/default_fit_time.json
    python benchmarks/speed/default_fit_time.py --target sex \\
        --json benchmarks/results/default_fit_time_sex.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model

IXI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ixi"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ixi", type=Path, default=IXI)
    parser.add_argument("--target", choices=("age", "sex"), default="age")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more fit options")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        command = [
            sys.executable,
            "-m",
            "slicelearn.cli",
            "fit",
            "--data",
            str(args.ixi / "participants.tsv"),
            "--target",
            args.target,
            "--out",
            str(Path(folder) / "model.slm"),
            "--cache-dir",
            str(Path(folder) / "cache"),
            "--workers",
            str(args.workers),
            "--json",
            *args.extra,
        ]
        start = time.perf_counter()
        lines = []
        with subprocess.Popen(
            command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ
        ) as process:
            assert process.stderr is not None and process.stdout is not None
            for line in process.stderr:
                stamped = f"{time.perf_counter() - start:8.1f} s  {line.rstrip()}"
                lines.append(stamped)
                print(stamped, flush=True)
            metrics = json.loads(process.stdout.read() or "{}")
        seconds = time.perf_counter() - start
        if process.returncode:
            raise SystemExit(f"slicelearn fit failed ({process.returncode})")
        size = (Path(folder) / "model.slm").stat().st_size
    result = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "workers": args.workers,
        "command": " ".join(command[2:]),
        "wall_seconds": round(seconds, 1),
        "model_fit_seconds": metrics.get("seconds"),
        "scans": metrics.get("n"),
        "training_mae": metrics.get("mae"),
        "training_roc_auc": metrics.get("roc_auc"),
        "model_file_bytes": size,
        "stderr": lines,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "stderr"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
