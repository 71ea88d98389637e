"""IXI: slices enlarged before a frozen ImageNet encoder (1x, 1.5x, 2x), every layer, nested.

ImageNet encoders learned objects at about 224 pixels; a 2 mm sagittal slice
is 117 x 95. ``slice_scale`` resizes each slice (bilinear) before the
encoder, which adds no information, only scale. For each scale, every
volume of the recommended route (``registration_schedule.py``'s
``no-full-res:a`` volumes, smoothed by 1 voxel as the ridge readout smooths
them) goes once through EfficientNet-Lite0; the maps of ``blocks.2`` to
``blocks.6`` and ``bn2`` are caught on the way, average-pooled 1 x 1 and
2 x 2 per slice and averaged over the slices (the ridge readout's features;
the script checks that its ``blocks.3`` 2 x 2 features at 1x are the
package's ``SliceLinearRegressor`` features). Then, in 5 repeats of 5-fold
CV (``KFold(5, shuffle=True, random_state=repeat)``, the readouts' folds):

- every (scale, layer, grid) as a probe: standardised features, ridge with
  the penalty by leave-one-out (the readout's computation);
- ``nested choice``: the (scale, layer, grid) chosen inside each outer
  training fold by an inner 5-fold CV, refitted there and scored once on the
  outer test fold;
- the default (1x, ``blocks.3``, 2 x 2) on the same folds.

Also the encoding seconds per scan at each scale (2 torch threads). Rows go
to ``--out`` (JSON lines) as they exist; a rerun skips finished ones. Each
scale's features are kept in ``--cache`` as soon as they exist, so a run
stopped during a later scale starts from that scale. Run::

    python benchmarks/accuracy/ixi_slice_scale.py --out benchmarks/results/ixi_slice_scale.jsonl
    python benchmarks/accuracy/ixi_slice_scale.py --table benchmarks/results/ixi_slice_scale.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np

IXI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ixi"
VOLUMES = Path("~/slicelearn_data/registration/no-full-res-a/volumes/deepbet_affine.npy")
SCALES = (1.0, 1.5, 2.0)
LAYERS = ("blocks.2", "blocks.3", "blocks.4", "blocks.5", "blocks.6", "bn2")
GRIDS = (1, 2)
DEFAULT = (1.0, "blocks.3", 2)


def encode(volumes: np.ndarray, scale: float) -> tuple[dict[tuple[str, int], np.ndarray], float]:
    """Slice-averaged features of every (layer, grid) at ``scale``, and seconds per scan."""
    import torch
    import torch.nn.functional as F

    from slicelearn.data.transforms import smooth_volume
    from slicelearn.nn import SliceNet

    net = SliceNet(
        "efficientnet_lite0",
        "imagenet",
        position_embedding=None,
        freeze_encoder=True,
        feature_layer="bn2",  # the whole trunk; earlier maps caught on the way
        slice_scale=scale,
    ).eval()
    # The encoder as the readout evaluates it: batch norms folded into the convolutions.
    encoder = net._inference_encoder()
    blocks, last = encoder.trunk[2], encoder.trunk[4]
    taps = {f"blocks.{i}": blocks[i] for i in range(2, 7)} | {"bn2": last}
    caught: dict[str, list[torch.Tensor]] = {layer: [] for layer in taps}
    for layer, module in taps.items():
        module.register_forward_hook(
            lambda _module, _inputs, output, layer=layer: caught[layer].append(output)
        )
    rows: dict[tuple[str, int], list[np.ndarray]] = {
        (layer, grid): [] for layer in LAYERS for grid in GRIDS
    }
    start = time.perf_counter()
    for volume in volumes:
        smoothed = torch.as_tensor(smooth_volume(np.asarray(volume, np.float32), 1.0))
        for maps in caught.values():
            maps.clear()
        with torch.inference_mode():
            # As the readout encodes: the volume standardised and sliced, each
            # slice resized; the slices of the empty border (one value) encoded
            # once; the rest in chunks, every layer's maps kept.
            flat = net._encoder_input(net.to_slices(smoothed[None]))
            pixels = flat.flatten(1)
            border = (pixels.amax(1) == pixels.amin(1)).nonzero().squeeze(1)
            if len(border) and len(pixels[border, 0].unique()) > 1:
                border = border[:0]  # empty slices of several values: encode each
            inside = torch.ones(len(flat), dtype=torch.bool)
            inside[border] = False
            varying = inside.nonzero().squeeze(1)
            for chunk in varying.split(16):
                encoder(flat[chunk])
            if len(border):
                encoder(flat[border[:1]])
        for layer in LAYERS:
            maps = torch.cat(caught[layer]).float()
            full = torch.empty(len(flat), *maps.shape[1:])
            full[varying] = maps[: len(varying)]
            full[border] = maps[len(varying) :]  # one border slice's maps, for each
            maps = full
            for grid in GRIDS:
                pooled = F.adaptive_avg_pool2d(maps, grid).flatten(1)  # (slices, C * grid^2)
                rows[(layer, grid)].append(pooled.mean(0).numpy())
    seconds = (time.perf_counter() - start) / len(volumes)
    return {key: np.stack(value) for key, value in rows.items()}, seconds


def cached_encoding(
    folder: Path, digest: str, volumes: np.ndarray, scale: float
) -> tuple[dict[tuple[str, int], np.ndarray], float]:
    """:func:`encode`, kept on disk per (volumes, scale): a stopped run resumes by scale.

    The file is written under a temporary name and renamed when complete, so
    a run killed while writing leaves no file that passes for a whole one.
    """
    path = folder / f"features_{digest}_n{len(volumes)}_scale{scale:g}.npz"
    if path.exists():
        with np.load(path) as stored:
            seconds = float(stored["seconds_per_scan"])
            by_layer = {
                (layer, grid): stored[f"{layer}|{grid}"] for layer in LAYERS for grid in GRIDS
            }
        return by_layer, seconds
    by_layer, seconds = encode(volumes, scale)
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    arrays = {f"{layer}|{grid}": value for (layer, grid), value in by_layer.items()}
    np.savez(partial, seconds_per_scan=seconds, **arrays)
    partial.replace(path)
    return by_layer, seconds


def ridge_mae(features: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """The readout's computation: standardise on the training rows, ridge by leave-one-out."""
    from sklearn.linear_model import RidgeCV

    from slicelearn.readout import DEFAULT_ALPHAS

    mean, scale = features[train].mean(0), features[train].std(0)
    scale = np.where(scale > 0, scale, 1.0)
    model = RidgeCV(alphas=np.asarray(DEFAULT_ALPHAS)).fit(
        (features[train] - mean) / scale, y[train]
    )
    return float(np.abs(model.predict((features[test] - mean) / scale) - y[test]).mean())


def cross_validated(features: np.ndarray, y: np.ndarray, folds: list) -> float:
    """Pooled out-of-fold MAE."""
    errors = [ridge_mae(features, y, train, test) * len(test) for train, test in folds]
    return float(np.sum(errors) / len(y))


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    seconds = {r["scale"]: r["seconds_per_scan"] for r in rows if r["kind"] == "encoding"}
    scores: dict[str, list[float]] = {}
    for row in rows:
        if row["kind"] == "cv":
            scores.setdefault(row["model"], []).append(row["mae"])
    lines = [
        "| model | repeats | MAE (years) | per repeat |",
        "| --- | --- | --- | --- |",
    ]
    for model, values in sorted(scores.items(), key=lambda item: np.mean(item[1])):
        values_array = np.array(values)
        lines.append(
            f"| {model} | {len(values)} | {values_array.mean():.2f} ± {values_array.std():.2f} | "
            f"{', '.join(f'{v:.2f}' for v in values)} |"
        )
    lines.append("")
    lines.append(
        "Encoding seconds per scan (2 threads): "
        + ", ".join(f"{scale:g}x {value:.2f} s" for scale, value in sorted(seconds.items()))
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=Path, default=VOLUMES)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/ixi_slice_scale.jsonl")
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="first N scans only (a smoke test)")
    parser.add_argument("--table", type=Path, default=None)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("~/slicelearn_data/slice_scale"),
        help="where each scale's features are kept (a stopped run resumes by scale)",
    )
    args = parser.parse_args()
    if args.table:
        print(table(args.table))
        return

    import torch
    from sklearn.model_selection import KFold

    from slicelearn.data import read_cohort
    from slicelearn.presets import recommended_readout

    torch.set_num_threads(2)
    _, labels = read_cohort(IXI / "participants.tsv", target=["age"])
    n = args.limit or len(labels)
    volumes = np.asarray(np.load(args.volumes.expanduser(), mmap_mode="r")[:n], dtype=np.float32)
    y = labels[:n, 0].astype(np.float64)
    done = set()
    if args.out.exists():
        done = {json.loads(line)["key"] for line in args.out.read_text().splitlines() if line}

    def write(row: dict) -> None:
        print(json.dumps(row), flush=True)
        with args.out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    features = {}
    digest = hashlib.sha256(volumes.tobytes()).hexdigest()[:12]
    for scale in SCALES:
        by_layer, seconds = cached_encoding(args.cache.expanduser(), digest, volumes, scale)
        features.update({(scale, *key): value for key, value in by_layer.items()})
        key = f"n{n}|encoding|{scale}"
        if key not in done:
            write({"key": key, "kind": "encoding", "scale": scale, "seconds_per_scan": seconds})
    # The probe's default features are the package's readout features.
    readout = recommended_readout().fit(volumes[:12], y[:12])
    np.testing.assert_allclose(readout.feature_mean_, features[DEFAULT][:12].mean(0), rtol=2e-3)

    candidates = list(features)
    for repeat in range(args.repeats):
        folds = list(KFold(5, shuffle=True, random_state=repeat).split(volumes))
        for candidate in candidates:
            name = f"{candidate[0]:g}x {candidate[1]} {candidate[2]}x{candidate[2]}"
            key = f"n{n}|cv|{name}|repeat{repeat}"
            if key not in done:
                mae = cross_validated(features[candidate], y, folds)
                write({"key": key, "kind": "cv", "model": name, "repeat": repeat, "mae": mae})
        key = f"n{n}|cv|nested choice|repeat{repeat}"
        if key in done:
            continue
        errors, chosen = [], []
        for train, test in folds:
            inner = list(KFold(5, shuffle=True, random_state=repeat).split(train))
            inner_mae = {
                c: np.mean([ridge_mae(features[c], y, train[a], train[b]) for a, b in inner])
                for c in candidates
            }
            best = min(inner_mae, key=inner_mae.get)
            chosen.append(f"{best[0]:g}x {best[1]} {best[2]}x{best[2]}")
            errors.append(ridge_mae(features[best], y, train, test) * len(test))
        mae = float(np.sum(errors) / len(y))
        write(
            {
                "key": key,
                "kind": "cv",
                "model": "nested choice",
                "repeat": repeat,
                "mae": mae,
                "chosen": chosen,
            }
        )


if __name__ == "__main__":
    main()
