"""Does the simulated AD cohort test AD detection? AD-vs-CN ROC-AUC of two models.

On :func:`slicelearn.datasets.make_atrophy_cohort` (default, literature-sized
AD effect; subjects aged 60-85, half of them AD, the two groups age-matched),
this reports the cross-validated ROC-AUC of

- ``slice_linear``: :class:`slicelearn.SliceLinearClassifier` with its
  defaults (frozen ImageNet EfficientNet-Lite0, ``blocks.3`` features pooled
  2x2 on sagittal slices, averaged over slices, logistic readout with the
  penalty chosen by inner CV), fed the volumes as an array ``(n, X, Y, Z)``;
- ``voxel_logistic``: a logistic regression on every brain voxel
  (``StandardScaler`` then ``LogisticRegressionCV``, L2, penalty by
  stratified inner 5-fold CV on the log-loss). With far more voxels than
  subjects, the L2 solution lies in the span of the training volumes, so the
  pipeline fits it in the coordinates of an exact rotation onto that span
  (``PCA`` keeping every component, no whitening): the same model as on the
  raw standardised voxels, in seconds instead of minutes;
- ``region_logistic``: a hand-made reference, a logistic regression on four
  image measures of the regions the simulator acts in (hippocampal and
  AD-signature-cortex intensity, dark voxels around the ventricles and in the
  brain; see ``_RegionFeatures``). It shows how much of the effect a model
  that looks in the right places can read from the images.

Each is scored by repeated stratified 4-fold CV (``--repeats`` shufflings,
AUC of the pooled out-of-fold scores per repeat), at each ``--voxel-sizes``
and each simulation ``--seeds``. ``--control`` adds, at 4 mm, the same
cohorts with the AD effect switched off (``effects={"ad": False}``: same
subjects, same labels, no disease in the images), where every model must sit
near 0.5; ``--registered`` adds, at 4 mm, the same cohorts without the random
head position (``effects={"pose": False}``, as after a perfect rigid
registration; the smooth anatomical deformation stays). Every result is
appended to ``--out`` as one JSON line as soon as it exists. Run (niced, as
on the shared development machine)::

    nice -n 10 python benchmarks/accuracy/ad_simulation.py \\
        --out benchmarks/results/ad_simulation.jsonl

2 mm volumes are 8x bigger; ``--n-subjects-2mm`` sets a smaller cohort there
if the machine is slow.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def _cv_aucs(make_model, X, y, repeats: int, seed: int) -> tuple[list[float], float]:
    """ROC-AUC of the out-of-fold scores of each repeat of stratified 4-fold CV."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    aucs, start = [], time.perf_counter()
    for repeat in range(repeats):
        folds = StratifiedKFold(4, shuffle=True, random_state=1000 * seed + repeat)
        scores = np.empty(len(y))
        for train, test in folds.split(np.zeros(len(y)), y):
            model = make_model().fit(X[train], y[train])
            scores[test] = model.decision_function(X[test])
        aucs.append(float(roc_auc_score(y, scores)))
    return aucs, time.perf_counter() - start


def _slice_linear():
    from slicelearn import SliceLinearClassifier

    return SliceLinearClassifier()


def _voxel_logistic():
    import warnings

    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
    return make_pipeline(
        StandardScaler(),
        PCA(whiten=False, svd_solver="full"),  # exact rotation onto the training span
        LogisticRegressionCV(
            Cs=np.logspace(-7, 1, 17), cv=5, scoring="neg_log_loss", max_iter=5000
        ),
    )


class _RegionFeatures:
    """A few image measures of the regions the simulator acts in (a hand-made reference).

    Per volume, relative to its bright-tissue level (95th percentile in the
    brain): the mean intensity in the hippocampal ellipsoids and in the
    AD-signature cortex, the dark (CSF-like) voxels in a box around the lateral
    ventricles, and the dark fraction of the whole brain. Only the template's
    regions are used, not the simulator's ground truth.
    """

    def __init__(self, voxel_size: int) -> None:
        from slicelearn.datasets.atrophy import load_atrophy_template

        template = load_atrophy_template(voxel_size)
        affine, shape = template.affine, template.t1.shape
        x, y, z = (affine[:3, :3] @ np.indices(shape).reshape(3, -1) + affine[:3, 3:4]).reshape(
            3, *shape
        )
        self.brain = template.brain_mask.get_fdata() > 0.5
        self.hippocampi = template.hippocampi.get_fdata() > 0.5
        self.cortex = template.ad_cortex.get_fdata() > 0.5
        self.ventricle_box = (np.abs(x) < 30) & (y > -45) & (y < 30) & (z > 0) & (z < 35)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        rows = []
        for volume in X:
            level = np.percentile(volume[self.brain], 95)
            rows.append(
                [
                    volume[self.hippocampi].mean() / level,
                    volume[self.cortex].mean() / level,
                    (volume[self.ventricle_box] < 0.5 * level).sum(),
                    (volume[self.brain] < 0.5 * level).mean(),
                ]
            )
        return np.asarray(rows)


def _region_logistic():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ad_simulation.jsonl"))
    parser.add_argument("--voxel-sizes", type=int, nargs="+", default=[4, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-subjects", type=int, default=160)
    parser.add_argument("--n-subjects-2mm", type=int, default=None, help="default: --n-subjects")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--models", nargs="+", default=["region_logistic", "voxel_logistic", "slice_linear"]
    )
    parser.add_argument("--control", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--registered",
        action=argparse.BooleanOptionalAction,
        default=True,
        help='also at 4 mm with effects={"pose": False}, as after a perfect rigid registration',
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args()

    import torch

    import slicelearn
    from slicelearn.datasets.atrophy import load_atrophy_template, make_atrophy_cohort

    if args.threads:
        torch.set_num_threads(args.threads)
    models = {
        "slice_linear": _slice_linear,
        "voxel_logistic": _voxel_logistic,
        "region_logistic": _region_logistic,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # 4 mm first (quick), the 2 mm runs last.
    sizes = sorted(args.voxel_sizes, reverse=True)
    runs = [(4, s, "default") for s in args.seeds if 4 in sizes]
    if args.control and 4 in sizes:
        runs += [(4, s, "ad_off") for s in args.seeds]
    if args.registered and 4 in sizes:
        runs += [(4, s, "no_pose") for s in args.seeds]
    runs += [(v, s, "default") for v in sizes if v != 4 for s in args.seeds]
    settings = {"default": None, "ad_off": {"ad": False}, "no_pose": {"pose": False}}
    for voxel_size, seed, condition in runs:
        n = args.n_subjects
        if voxel_size == 2 and args.n_subjects_2mm:
            n = args.n_subjects_2mm
        start = time.perf_counter()
        X, _, labels = make_atrophy_cohort(
            n,
            voxel_size=voxel_size,
            age_range=(60.0, 85.0),
            ad_fraction=0.5,
            effects=settings[condition],
            return_arrays=True,
            random_state=seed,
        )
        simulate_s = time.perf_counter() - start
        y = (labels["diagnosis"] == "AD").to_numpy().astype(int)
        mask = load_atrophy_template(voxel_size).brain_mask.get_fdata() > 0.5
        for name in args.models:
            if name == "voxel_logistic":
                data = X[:, mask]
            elif name == "region_logistic":
                data = _RegionFeatures(voxel_size)(X)
            else:
                data = X
            aucs, seconds = _cv_aucs(models[name], data, y, args.repeats, seed)
            record = {
                "benchmark": "ad_simulation",
                "model": name,
                "voxel_size_mm": voxel_size,
                "simulation_seed": seed,
                "condition": condition,
                "effects": settings[condition] or "all on",
                "n_subjects": n,
                "n_ad": int(y.sum()),
                # Ages are drawn independently for both groups: a chance age
                # difference is a (small) signal even with the AD effect off.
                "age_mean_ad_minus_cn": round(
                    float(labels["age"][y == 1].mean() - labels["age"][y == 0].mean()), 2
                ),
                "age_range": [60.0, 85.0],
                "cv": f"stratified 4-fold x {args.repeats} repeats",
                "auc_mean": round(float(np.mean(aucs)), 4),
                "auc_sd": round(float(np.std(aucs, ddof=1)), 4) if len(aucs) > 1 else None,
                "aucs": [round(a, 4) for a in aucs],
                "n_features": int(data[0].size) if name == "voxel_logistic" else None,
                "simulate_s": round(simulate_s, 1),
                "cv_s": round(seconds, 1),
                "torch_threads": torch.get_num_threads(),
                "slicelearn": slicelearn.__version__,
                "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
                "date": time.strftime("%Y-%m-%d %H:%M"),
            }
            print(json.dumps(record), flush=True)
            with args.out.open("a") as f:
                f.write(json.dumps(record) + "\n")
        del X


if __name__ == "__main__":
    main()
