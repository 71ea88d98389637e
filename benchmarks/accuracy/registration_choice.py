"""antspyx or dipy for affine registration of native T1 MRI to MNI152 (2 mm)?

For each of the first ``--n-subjects`` IXI subjects (``participants.tsv`` order)
the native T1 (reoriented to RAS canonical with nibabel) is registered affinely
to nilearn's MNI152 2 mm template, and the same transform is applied with
nearest-neighbour interpolation to the subject's DLMUSE brain mask (labels > 0).
Each row of the output TSV is one (subject, condition, method) and records:

- ``reg_s``: wall time of the registration call alone (``time.perf_counter``);
- ``total_s``: wall time of converting the subject's images to the library's
  types, registering and warping the mask (what a user pays per subject);
- ``dice_before``: Dice between the MNI brain mask (> 0.5) and the subject's
  mask resampled to the template grid with the scanner affine only
  (``nilearn.image.resample_to_img``, nearest): the no-registration baseline;
- ``dice_after``: the same Dice after registration; ``warped_ml``: the volume
  of the warped mask (the MNI mask is 1883 mL);
- ``error``: the exception, if the method raised one (a failure).

Methods (``--methods``):

- ``ants-affinefast`` / ``ants-affine``: ``ants.registration(fixed, moving,
  type_of_transform="AffineFast" / "Affine")`` with every other argument at its
  default (Mattes MI, 32 bins, 20 % regular sampling, centre-of-mass start),
  ``--random-seed`` fixed through ``ants.config``, ITK limited to ``--threads``;
- ``ants-affine-dense``: ``"Affine"`` with ``aff_random_sampling_rate=1.0``
  (every voxel in the metric, as dipy's dense default);
- ``dipy-fast``: ``dipy.align.affine_registration`` (MI, 32 bins), pipeline
  centre of mass -> translation -> rigid -> affine, ``level_iters=[1000, 100,
  10]``, sigmas [3, 1, 0], factors [4, 2, 1], ``sampling_proportion=0.25``
  (dipy's sparse sampling is deterministic: it needs no seed);
- ``dipy-dense``: ``dipy-fast`` with dense sampling (``sampling_proportion=None``);
- ``dipy-default``: the same with dipy's defaults, ``level_iters=[1000, 500,
  100]`` and dense sampling.

Conditions (``--conditions``), because nilearn's template is skull-stripped
while the IXI volumes still have skull, face and neck:

- ``head``: moving = the whole-head T1, as acquired;
- ``brain``: moving = the T1 multiplied by the DLMUSE brain mask (an oracle
  skull strip: what the methods reach once the input is skull-stripped);
- ``fixedmask``: moving = the whole-head T1, but the similarity metric is
  restricted to the MNI brain mask in template space (ANTs ``mask=``, dipy
  ``static_mask=``): a way round the mismatch that needs no skull stripping.
  dipy uses the mask in its metric only with dense sampling (``dipy-dense``,
  ``dipy-default``):
  with ``sampling_proportion < 1`` it warns and keeps it only for the centre
  of mass and the intensity range, so ``dipy-fast`` here is nearly ``head``.

Run (about 10 minutes on 2 CPU cores for the default methods and conditions)::

    python benchmarks/accuracy/registration_choice.py --n-subjects 10 \\
        --out /tmp/registration_choice.tsv

and print the summary table of one or more result files with
``python benchmarks/accuracy/registration_choice.py --summarize /tmp/registration_choice.tsv``.
Needs ``pip install antspyx dipy`` and the IXI sample in ``../shared/data/ixi``
(IXI data: CC BY-SA 3.0, brain-development.org/ixi-dataset).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import statistics
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ixi"
METHODS = (
    "ants-affinefast",
    "ants-affine",
    "ants-affine-dense",
    "dipy-fast",
    "dipy-dense",
    "dipy-default",
)
CONDITIONS = ("head", "brain", "fixedmask")
FIELDS = (
    "subject",
    "condition",
    "method",
    "reg_s",
    "total_s",
    "dice_before",
    "dice_after",
    "warped_ml",
    "error",
)
SEED = 42


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean arrays of the same shape."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    denominator = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / denominator) if denominator else 1.0


def load_template():
    """MNI152 2 mm template (float array) and its brain mask (bool), with the affine."""
    from nilearn import datasets

    template = datasets.load_mni152_template(resolution=2)
    mask = datasets.load_mni152_brain_mask(resolution=2)
    if not np.allclose(template.affine, mask.affine) or template.shape != mask.shape:
        raise RuntimeError("MNI template and brain mask are on different grids")
    return template, np.asarray(mask.get_fdata() > 0.5)


def load_subject(data_dir: Path, subject: str):
    """RAS-canonical T1 (float32 nibabel image) and DLMUSE brain mask (uint8 image)."""
    import nibabel as nib

    t1 = nib.as_closest_canonical(nib.load(data_dir / "t1" / f"{subject}_T1w.nii.gz"))
    seg = nib.as_closest_canonical(nib.load(data_dir / "seg" / f"{subject}_dlmuse.nii.gz"))
    if not np.allclose(t1.affine, seg.affine) or t1.shape != seg.shape:
        raise RuntimeError(f"{subject}: T1 and label map are on different grids")
    t1 = nib.Nifti1Image(t1.get_fdata(dtype=np.float32), t1.affine)
    mask = nib.Nifti1Image((np.asarray(seg.dataobj) > 0).astype(np.uint8), seg.affine)
    return t1, mask


def dice_before(mask_img, template, template_mask: np.ndarray) -> float:
    """Dice of the native mask put on the template grid by the scanner affine alone."""
    from nilearn.image import resample_to_img

    on_grid = resample_to_img(mask_img, template, interpolation="nearest")
    return dice(on_grid.get_fdata() > 0.5, template_mask)


class AntsMethod:
    """``ants.registration`` with one ``type_of_transform`` and otherwise defaults."""

    def __init__(self, type_of_transform: str, template, template_mask: np.ndarray, **options):
        import ants

        ants.config._random_seed = SEED  # passed on as antsRegistration --random-seed
        self.ants = ants
        self.type_of_transform = type_of_transform
        self.options = options  # extra ants.registration keywords
        self.fixed = self.to_ants(template.get_fdata(dtype=np.float32), template.affine)
        self.fixed_mask = self.to_ants(template_mask.astype(np.float32), template.affine)

    def to_ants(self, data: np.ndarray, affine: np.ndarray):
        """nibabel (RAS) array + affine -> ANTsImage (LPS), via ants.from_nibabel_nifti."""
        import nibabel as nib

        img = nib.Nifti1Image(np.asarray(data, np.float32), affine)
        img.header.set_xyzt_units("mm", "sec")  # ants refuses or warns on 'unknown' units
        return self.ants.from_nibabel_nifti(img)

    def __call__(self, moving, mask_img, use_fixed_mask: bool):
        ants = self.ants
        start = time.perf_counter()
        moving_a = self.to_ants(moving.get_fdata(dtype=np.float32), moving.affine)
        mask_a = self.to_ants(mask_img.get_fdata(dtype=np.float32), mask_img.affine)
        reg_start = time.perf_counter()
        reg = ants.registration(
            self.fixed,
            moving_a,
            type_of_transform=self.type_of_transform,
            mask=self.fixed_mask if use_fixed_mask else None,
            **self.options,
        )
        reg_s = time.perf_counter() - reg_start
        warped = ants.apply_transforms(
            self.fixed, mask_a, reg["fwdtransforms"], interpolator="nearestNeighbor"
        )
        total_s = time.perf_counter() - start
        for path in set(reg["fwdtransforms"]) | set(reg["invtransforms"]):
            if os.path.isfile(path):
                os.remove(path)
        return warped.numpy() > 0.5, reg_s, total_s


class DipyMethod:
    """``dipy.align.affine_registration`` (MI) from centre of mass to full affine."""

    def __init__(self, level_iters, sampling_proportion, template, template_mask):
        from dipy.align import affine_registration
        from dipy.align.imaffine import AffineMap

        logging.getLogger("dipy").setLevel(logging.WARNING)  # silence per-step INFO lines
        self.register, self.affine_map = affine_registration, AffineMap
        self.level_iters = list(level_iters)
        self.sampling_proportion = sampling_proportion
        self.static = template.get_fdata(dtype=np.float32)
        self.static_affine = template.affine
        self.static_mask = template_mask.astype(np.int32)

    def __call__(self, moving, mask_img, use_fixed_mask: bool):
        start = time.perf_counter()
        moving_data = moving.get_fdata(dtype=np.float32)
        reg_start = time.perf_counter()
        _, affine = self.register(
            moving_data,
            self.static,
            moving_affine=moving.affine,
            static_affine=self.static_affine,
            pipeline=["center_of_mass", "translation", "rigid", "affine"],
            level_iters=self.level_iters,
            sigmas=[3.0, 1.0, 0.0],
            factors=[4, 2, 1],
            static_mask=self.static_mask if use_fixed_mask else None,
            nbins=32,
            sampling_proportion=self.sampling_proportion,
        )
        reg_s = time.perf_counter() - reg_start
        mapping = self.affine_map(
            affine,
            domain_grid_shape=self.static.shape,
            domain_grid2world=self.static_affine,
            codomain_grid_shape=mask_img.shape,
            codomain_grid2world=mask_img.affine,
        )
        warped = mapping.transform(mask_img.get_fdata(dtype=np.float32), interpolation="nearest")
        total_s = time.perf_counter() - start
        return warped > 0.5, reg_s, total_s


def make_method(name: str, template, template_mask):
    if name == "ants-affinefast":
        return AntsMethod("AffineFast", template, template_mask)
    if name == "ants-affine":
        return AntsMethod("Affine", template, template_mask)
    if name == "ants-affine-dense":
        return AntsMethod("Affine", template, template_mask, aff_random_sampling_rate=1.0)
    if name == "dipy-fast":
        return DipyMethod([1000, 100, 10], 0.25, template, template_mask)
    if name == "dipy-dense":
        return DipyMethod([1000, 100, 10], None, template, template_mask)
    if name == "dipy-default":
        return DipyMethod([1000, 500, 100], None, template, template_mask)
    raise ValueError(f"unknown method {name!r}; choose from {METHODS}")


def moving_image(condition: str, t1, mask_img):
    import nibabel as nib

    if condition == "brain":
        return nib.Nifti1Image(t1.get_fdata(dtype=np.float32) * mask_img.get_fdata(), t1.affine)
    if condition in ("head", "fixedmask"):
        return t1
    raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")


def read_subjects(data_dir: Path, n: int) -> list[str]:
    with open(data_dir / "participants.tsv", newline="") as f:
        return [row["participant_id"] for row in csv.DictReader(f, delimiter="\t")][:n]


def run(data_dir: Path, n_subjects: int, out: Path, methods, conditions) -> list[dict]:
    template, template_mask = load_template()
    runners = {name: make_method(name, template, template_mask) for name in methods}
    rows: list[dict] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, delimiter="\t")
        writer.writeheader()
        f.flush()
        for subject in read_subjects(data_dir, n_subjects):
            t1, mask_img = load_subject(data_dir, subject)
            before = dice_before(mask_img, template, template_mask)
            subject_rows = []
            for condition in conditions:
                moving = moving_image(condition, t1, mask_img)
                for name, method in runners.items():
                    row = {"subject": subject, "condition": condition, "method": name}
                    row["dice_before"] = f"{before:.4f}"
                    try:
                        warped, reg_s, total_s = method(moving, mask_img, condition == "fixedmask")
                        row.update(
                            reg_s=f"{reg_s:.3f}",
                            total_s=f"{total_s:.3f}",
                            dice_after=f"{dice(warped, template_mask):.4f}",
                            warped_ml=f"{warped.sum() * 8 / 1000:.1f}",  # 2 mm voxels
                            error="",
                        )
                    except Exception as exc:  # a failure is a result, not a crash
                        row.update(reg_s="", total_s="", dice_after="", warped_ml="")
                        row["error"] = f"{type(exc).__name__}: {exc}".replace("\t", " ")[:300]
                    print("\t".join(str(row[k]) for k in FIELDS), flush=True)
                    subject_rows.append(row)
            writer.writerows(subject_rows)  # after each subject: partial results survive
            f.flush()
            rows.extend(subject_rows)
    return rows


def summarize(rows: list[dict], threshold: float = 0.8) -> str:
    """Markdown table: one line per (condition, method), in order of appearance."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["condition"], row["method"]), []).append(row)
    lines = [
        "| condition | method | n | median s | max s | median Dice after | min Dice after "
        "| median Dice before | failures | Dice < 0.8 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (condition, method), group in groups.items():
        ok = [r for r in group if not r["error"]]
        secs = [float(r["total_s"]) for r in ok]
        after = [float(r["dice_after"]) for r in ok]
        before = [float(r["dice_before"]) for r in group]
        low = sum(d < threshold for d in after)
        lines.append(
            f"| {condition} | {method} | {len(group)} | "
            + (f"{statistics.median(secs):.1f} | {max(secs):.1f} | " if secs else "- | - | ")
            + (f"{statistics.median(after):.3f} | {min(after):.3f} | " if after else "- | - | ")
            + f"{statistics.median(before):.3f} | {len(group) - len(ok)} | {low} |"
        )
    return "\n".join(lines)


def read_rows(paths) -> list[dict]:
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            rows.extend(csv.DictReader(f, delimiter="\t"))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("registration_choice.tsv"))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="IXI sample folder")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["ants-affinefast", "ants-affine", "dipy-fast"],
        choices=METHODS,
    )
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--threads", type=int, default=2, help="ITK/OpenMP threads")
    parser.add_argument(
        "--summarize",
        nargs="+",
        type=Path,
        metavar="TSV",
        help="only print the summary table of existing result files",
    )
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(read_rows(args.summarize)))
        return
    if not (args.data / "participants.tsv").is_file():
        parser.exit(0, f"IXI sample not found in {args.data}: nothing to do\n")
    # Before ants/dipy are imported, so that ITK and OpenMP pick them up.
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    print("\t".join(FIELDS), flush=True)
    rows = run(args.data, args.n_subjects, args.out, args.methods, args.conditions)
    print(summarize(rows))


if __name__ == "__main__":
    main()
