"""Raw T1 to a brain-age prediction with the command line's default model: seconds per stage.

The default route of ``slicelearn fit``/``predict`` for brain age: deepbet
brain extraction, ANTs affine registration to MNI152 (reproducible: one ITK
thread, a fixed seed), resampling of the mask, z-scoring in the brain, then
the default model (``slicelearn.presets.recommended_model()``): the
fine-tuned slice network's prediction averaged with the ridge readout's
(smoothing by 1 voxel, frozen EfficientNet-Lite0 ``blocks.3`` features, the
ridge). Each raw IXI scan goes through it once, uncached; every stage is
timed in this process (the library's functions wrapped with timers, nothing
rewritten):

- ``read``: the NIfTI read, reorientation to RAS and the voxel check;
- ``deepbet``, ``registration`` (the ANTs affine fit and the scan's warp),
  ``mask resampling`` (the same transform applied to the mask),
  ``normalisation``;
- ``fine-tuned network``: the network member's prediction from the
  preprocessed volume (every slice through the whole encoder);
- ``smoothing``, ``features + readout``: the ridge member's.

The network is trained for ``--network-epochs`` (1 by default) on the
``--train`` volumes: its weights do not change what a prediction costs, and
a full fit takes minutes (``ixi_full_finetune.py --fit-all`` times that).

Then cohort throughput: the same scans preprocessed by 2 DataLoader workers
(one ITK thread each), then predicted, wall time per scan. Last, what
reproducibility costs: ANTs' affine on the same scans in a fresh process with
ITK on one thread (reproducible) and on two (ANTs' own default here, not
reproducible), seconds per scan. Needs
``../shared/data/ixi`` and the default route's volumes of
``registration_schedule.py --runs no-full-res:a`` (to fit the model). Run::

    python benchmarks/speed/raw_to_prediction.py --scans 6 \\
        --json benchmarks/results/raw_to_prediction.json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import statistics
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model

IXI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ixi"
ROUTE = Path("~/slicelearn_data/registration/no-full-res-a/volumes/deepbet_affine.npy").expanduser()
SECONDS: dict[str, float] = collections.defaultdict(float)


@contextlib.contextmanager
def timed(stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        SECONDS[stage] += time.perf_counter() - start


def wrap(module, name: str, stage: str) -> None:
    original = getattr(module, name)

    def timed_call(*args, **kwargs):
        with timed(stage):
            return original(*args, **kwargs)

    setattr(module, name, timed_call)


def instrument() -> None:
    """Time the library's stages where they are called (their modules' attributes)."""
    import slicelearn.data.preprocessing as preprocessing
    import slicelearn.data.registration as registration
    import slicelearn.data.skullstrip as skullstrip

    wrap(skullstrip, "brain_mask", "deepbet")
    wrap(preprocessing, "load_nifti", "read")
    wrap(preprocessing, "check_voxels", "read")
    wrap(preprocessing.VolumePreprocessor, "_normalize", "normalisation")
    original_register = registration.register

    def register(*args, **kwargs):
        with timed("registration"):
            registered, apply = original_register(*args, **kwargs)

        def timed_apply(*a, **k):
            with timed("mask resampling"):
                return apply(*a, **k)

        return registered, timed_apply

    registration.register = register


def default_model(n_train: int, network_epochs: int):
    """The command line's default brain-age model, fitted on registered volumes of the route."""
    from slicelearn.data import read_cohort
    from slicelearn.presets import recommended_model

    _, labels = read_cohort(IXI / "participants.tsv", target=["age"])
    volumes = np.load(ROUTE, mmap_mode="r")[:n_train].astype(np.float32)
    model = recommended_model("regression").set_params(network__max_epochs=network_epochs)
    return model.fit(volumes, labels[:n_train, 0].astype(np.float32))


def registration_seconds(scans: list[str], itk_threads: int) -> float:
    """Median seconds of the ANTs affine per scan, in a fresh process with this many ITK threads."""
    import os
    import subprocess
    import sys

    code = f"""
import json, time, statistics, nibabel as nib
from slicelearn.data import brain_mask, template_image
from slicelearn.data import registration
registration._ITK_THREADS = "SLICELEARN_BENCHMARK_UNUSED"  # keep the thread count given below
times = []
for path in {scans!r}:
    scan = nib.as_closest_canonical(nib.load(path))
    mask = brain_mask(scan, "deepbet")
    start = time.perf_counter()
    registration.register(scan, template_image("mni152"), "affine", moving_mask=mask,
                          backend="ants")
    times.append(time.perf_counter() - start)
print(json.dumps(statistics.median(times)))
"""
    env = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": str(itk_threads)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    import torch
    from scipy import ndimage
    from torch.utils.data import DataLoader

    from slicelearn.data import VolumeDataset, read_cohort
    from slicelearn.presets import recommended_preprocessing

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=6, help="raw scans to time (not trained on)")
    parser.add_argument("--train", type=int, default=40, help="volumes the model is fitted on")
    parser.add_argument(
        "--network-epochs", type=int, default=1, help="epochs of the network member's fit"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = default_model(args.train, args.network_epochs)
    network, readout = model.named_estimators_["network"], model.named_estimators_["ridge"]
    paths, _ = read_cohort(IXI / "participants.tsv", target=["age"])
    scans = paths[args.train : args.train + args.scans]
    prep = recommended_preprocessing(cache_dir=None).fit(scans)
    prep.load(scans[0])  # warm-up: deepbet's model, the template, ITK
    instrument()
    rows = []
    for path in scans:
        SECONDS.clear()
        start = time.perf_counter()
        volume = prep.load(path)
        preprocessing = time.perf_counter() - start
        with timed("fine-tuned network"):
            network.predict(volume[None])
        with timed("smoothing"):
            ndimage.gaussian_filter(volume, readout.input_smoothing)
        with timed("features + readout"):
            readout.predict(volume[None])  # smooths again inside: counted in both
        SECONDS["features + readout"] -= SECONDS["smoothing"]
        SECONDS["other preprocessing"] = (
            preprocessing
            - sum(SECONDS[s] for s in ("read", "deepbet", "registration", "mask resampling"))
            - SECONDS["normalisation"]
        )
        model_stages = ("fine-tuned network", "smoothing", "features + readout")
        total = preprocessing + sum(SECONDS[stage] for stage in model_stages)
        rows.append({"scan": Path(path).name, **dict(SECONDS), "total": total})
        print(
            json.dumps(
                {k: round(v, 2) if isinstance(v, float) else v for k, v in rows[-1].items()}
            ),
            flush=True,
        )
    stages = [k for k in rows[0] if k != "scan"]
    median = {stage: round(statistics.median(r[stage] for r in rows), 2) for stage in stages}
    cohort_start = time.perf_counter()
    loader = DataLoader(VolumeDataset(prep.transform(scans)), batch_size=None, num_workers=2)
    volumes = np.stack([v.numpy() for v, _ in loader])
    model.predict(volumes)
    per_scan_two_workers = (time.perf_counter() - cohort_start) / len(scans)
    itk = {f"{n}_thread": round(registration_seconds(scans, n), 2) for n in (1, 2)}
    result = {
        "cpu": cpu_model(),
        "ants_affine_seconds_per_scan_by_itk_threads": itk,
        "threads": args.threads,
        "scans": len(scans),
        "median_seconds_per_stage": median,
        "cohort_seconds_per_scan_2_workers": round(per_scan_two_workers, 2),
        "rows": [
            {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows
        ],
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
