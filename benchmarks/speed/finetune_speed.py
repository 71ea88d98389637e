"""Full fine-tuning on the CPU: the speed of each lever, alone and combined, side by side.

The network is the paper's, trained end to end: ImageNet EfficientNet-Lite0 on
every sagittal slice, a sinusoidal position embedding, mean pooling and the
MLP head (``slicelearn.nn.SliceNet``). Every figure is measured in this run,
interleaved with the reference (all 91 slices of the full 91 x 109 x 91 grid,
float32): a training step (forward, backward, Adam) on a batch of volumes and
a prediction, in volumes per second, and each lever's ratio to the reference.

Levers:

- ``train_slices``: each training step encodes k random slices of a volume
  (``SliceNet(train_slices=k)``); prediction still uses every slice;
- ``crop``: volumes cut to the box that holds the brain in any volume
  (``SliceNet(crop_box=...)``; the estimators' ``crop_to_content=True``);
- ``bf16``: bfloat16 autocast of the forward pass (weights, optimiser and
  loss in float32); only worth it where the CPU computes bf16 natively
  (``slicelearn.precision.native_bf16()``), which the run reports;
- ``no channels-last``: the default's channels-last memory turned off;
- ``3 mm``: the volumes resampled to a 3 mm grid (2/3 of each side; the command
  line's ``--grid mni152_3mm`` registers straight onto nilearn's 3 mm template).

Volumes: the default route's registered IXI volumes where they exist
(``ixi_routes.py --steps masks volumes``), otherwise the MNI152 template's
brain with noise, on the same grid with the same empty border. Run::

    python benchmarks/speed/finetune_speed.py --json benchmarks/results/finetune_speed.json

``--profile`` also prints the operators that take the reference's training
step (torch.profiler), which is where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _machine import cpu_model
from scipy import ndimage

ROUTE = Path("~/slicelearn_data/ixi_routes/volumes/deepbet_affine.npy").expanduser()


def load_volumes(n: int) -> tuple[np.ndarray, str]:
    if ROUTE.exists():
        return np.load(ROUTE, mmap_mode="r")[:n].astype(np.float32), f"IXI {ROUTE.name}"
    from slicelearn.data import template_image

    template = template_image("mni152_91x109x91").get_fdata().astype(np.float32)
    brain = template_image("mni152_91x109x91", brain_mask=True).get_fdata() > 0.5
    template = (template - template[brain].mean()) / template[brain].std()
    noise = np.random.default_rng(0).normal(scale=0.1, size=(n, *brain.shape))
    volumes = np.where(brain, template + noise, 0).astype(np.float32)
    return volumes, "MNI152 brain with noise"


def net(volumes: np.ndarray, **options) -> torch.nn.Module:
    from slicelearn.nn import SliceNet

    return SliceNet(
        "efficientnet_lite0",
        "imagenet",
        pooling="mean",
        position_embedding="sinusoidal",
        **options,
    )


def autocast(bf16: bool):
    if bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_seconds(model, volumes: torch.Tensor, batch: int, bf16: bool) -> float:
    """Seconds per volume of one training step (forward, backward, Adam)."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    start = time.perf_counter()
    for begin in range(0, len(volumes), batch):
        with autocast(bf16):
            loss = model(volumes[begin : begin + batch]).float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / len(volumes)


def predict_seconds(model, volumes: torch.Tensor, bf16: bool) -> float:
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode(), autocast(bf16):
        model(volumes)
    return (time.perf_counter() - start) / len(volumes)


def configurations(
    volumes: np.ndarray, slices: int, bf16: bool
) -> dict[str, tuple[dict, np.ndarray, bool]]:
    """name -> (SliceNet options, input volumes, bf16); the bf16 rows only if ``bf16``."""
    from slicelearn.data.slices import occupied_box

    box = occupied_box(volumes)
    coarse = np.stack([ndimage.zoom(v, 2 / 3, order=1) for v in volumes]).astype(np.float32)
    coarse_box = occupied_box(coarse)
    rows = {
        "reference": ({}, volumes, False),
        f"train_slices={slices}": ({"train_slices": slices}, volumes, False),
        "crop": ({"crop_box": box}, volumes, False),
        "bf16": ({}, volumes, True),
        "no channels-last": ({"channels_last": False}, volumes, False),
        "3 mm": ({}, coarse, False),
        f"train_slices={slices} + crop": (
            {"train_slices": slices, "crop_box": box},
            volumes,
            False,
        ),
        f"train_slices={slices} + crop + bf16": (
            {"train_slices": slices, "crop_box": box},
            volumes,
            True,
        ),
        f"3 mm + train_slices={slices} + crop (the recipe on the 3 mm grid)": (
            {"train_slices": slices, "crop_box": coarse_box},
            coarse,
            False,
        ),
        f"3 mm + train_slices={slices * 2 // 3} + crop": (
            {"train_slices": slices * 2 // 3, "crop_box": coarse_box},
            coarse,
            False,
        ),
    }
    return {name: row for name, row in rows.items() if bf16 or not row[2]}


def profile_reference(volumes: np.ndarray, batch: int) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    model = net(volumes)
    data = torch.from_numpy(volumes[:batch])
    train_seconds(model, data, batch, False)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_seconds(model, data, batch, False)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [
        {"op": e.key, "share": round(e.self_cpu_time_total / total, 3), "calls": e.count}
        for e in events[:15]
    ]


def main() -> None:
    from slicelearn.precision import native_bf16

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=8, help="volumes per measurement")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--slices", type=int, default=16, help="train_slices of the recipe")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure the bf16 rows (default: where the CPU computes bf16 natively; emulated, "
        "one training step takes minutes)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    volumes, source = load_volumes(args.volumes)
    bf16 = native_bf16() if args.bf16 is None else args.bf16
    configs = configurations(volumes, args.slices, bf16)
    models = {name: net(v, **options) for name, (options, v, _) in configs.items()}
    tensors = {name: torch.from_numpy(v) for name, (_, v, _) in configs.items()}
    train: dict[str, list[float]] = {name: [] for name in configs}
    predict: dict[str, list[float]] = {name: [] for name in configs}
    for name, (_, _, bf16) in configs.items():  # warm-up: allocator, kernels, weights
        train_seconds(models[name], tensors[name][: args.batch], args.batch, bf16)
    for _ in range(args.repeats):
        for name, (_, _, bf16) in configs.items():
            train[name].append(train_seconds(models[name], tensors[name], args.batch, bf16))
            predict[name].append(predict_seconds(models[name], tensors[name], bf16))
    reference_train = statistics.median(train["reference"])
    reference_predict = statistics.median(predict["reference"])
    rows = []
    for name, (options, v, _) in configs.items():
        t, p = statistics.median(train[name]), statistics.median(predict[name])
        rows.append(
            {
                "lever": name,
                "input_shape": list(v.shape[1:]),
                "crop_box": options.get("crop_box"),
                "train_s_per_volume": round(t, 3),
                "train_speedup": round(reference_train / t, 2),
                "predict_s_per_volume": round(p, 3),
                "predict_speedup": round(reference_predict / p, 2),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "native_bf16": native_bf16(),
        "threads": args.threads,
        "torch": torch.__version__,
        "volumes": source,
        "batch": args.batch,
        "repeats": args.repeats,
        "rows": rows,
    }
    if args.profile:
        result["reference_training_profile"] = profile_reference(volumes, args.batch)
        for row in result["reference_training_profile"]:
            print(json.dumps(row))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
