"""Real anatomy: the estimators read IXI T1 scans (native space, P-S-R, skull on)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pytest
from conftest import fast_params

from slicelearn import SliceCNNRegressor
from slicelearn.data import load_volumes

IXI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ixi"

pytestmark = pytest.mark.skipif(
    not (IXI / "participants.tsv").is_file(),
    reason=f"the IXI sample is not at {IXI} (it lives beside the repository, never in it)",
)


def _participants(n: int) -> tuple[list[str], np.ndarray]:
    rows = (IXI / "participants.tsv").read_text().splitlines()
    header = rows[0].split("\t")
    records = [dict(zip(header, row.split("\t"))) for row in rows[1 : n + 1]]
    return [str(IXI / r["path"]) for r in records], np.array([float(r["age"]) for r in records])


def test_ixi_scans_load_as_ras_volumes():
    paths, _ = _participants(3)
    volumes = load_volumes(paths)
    # Stored 120 x 120 x 90 in P-S-R order; RAS canonical puts the 90 right-left voxels first.
    assert volumes.shape == (3, 90, 120, 120)
    assert volumes.dtype == np.float32 and volumes.max() > 100


def test_regressor_fits_and_predicts_ages_from_ixi_paths():
    paths, ages = _participants(6)
    est = SliceCNNRegressor(**fast_params(max_epochs=1, train_split=None, batch_size=2))
    est.fit(paths, ages)
    assert est.n_slices_ == 90
    predictions = est.predict(paths)
    assert predictions.shape == (6,) and np.isfinite(predictions).all()
    # The output bias starts at the mean age, so predictions sit near it after one epoch.
    assert abs(predictions.mean() - ages.mean()) < 20


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _scan_and_mask(n: int):
    paths, _ = _participants(n)
    masks = {p: p.replace("/t1/", "/seg/").replace("_T1w", "_dlmuse") for p in paths}
    return paths, masks


def test_preprocessing_puts_ixi_on_the_mni_grid_in_ras():
    import nibabel as nib

    from slicelearn.data import VolumePreprocessor, template_image

    paths, masks = _scan_and_mask(2)
    prep = VolumePreprocessor(mask=masks, normalize=None, cache_dir=None).fit(paths)
    template = template_image("mni152")
    assert prep.output_shape_ == template.shape == (99, 117, 95)
    assert nib.aff2axcodes(prep.target_image_.affine) == ("R", "A", "S")
    mni_brain = template_image("mni152", brain_mask=True).get_fdata() > 0.5
    for volume in prep.transform(paths):
        # The scanner affine alone already puts IXI brains near the template's.
        assert _dice(volume > 0, mni_brain) > 0.7


@pytest.mark.parametrize(("backend", "module"), [("dipy", "dipy"), ("ants", "ants")])
def test_registration_puts_brain_extracted_ixi_scans_on_the_template_brain(backend, module):
    pytest.importorskip(module, reason=f"the {backend} backend is not installed")
    from slicelearn.data import VolumePreprocessor, template_image

    (path,), masks = _scan_and_mask(1)
    mni_brain = template_image("mni152", brain_mask=True).get_fdata() > 0.5
    before = VolumePreprocessor(mask=masks, normalize=None, cache_dir=None).fit([path])
    registered = VolumePreprocessor(
        registration="affine",
        registration_backend=backend,
        mask=masks,
        normalize=None,
        cache_dir=None,
    ).fit([path])
    # The subject mask is warped with its scan, so the non-zero voxels are its brain.
    dice_after = _dice(registered.transform([path])[0] != 0, mni_brain)
    dice_before = _dice(before.transform([path])[0] > 0, mni_brain)
    assert dice_after > 0.8 and dice_after > dice_before, (dice_after, dice_before)


def test_dipy_registers_whole_head_scans_with_the_template_mask():
    pytest.importorskip("dipy", reason="the dipy backend is not installed")
    import nibabel as nib

    from slicelearn.data import template_image
    from slicelearn.data.io import load_nifti
    from slicelearn.data.registration import register_affine

    (path,), masks = _scan_and_mask(1)
    scan = nib.as_closest_canonical(load_nifti(path))  # skull and neck on
    _, apply = register_affine(
        scan, template_image("mni152"), template_mask=template_image("mni152", brain_mask=True)
    )
    warped = apply(nib.as_closest_canonical(load_nifti(masks[path])), "nearest")
    mni_brain = template_image("mni152", brain_mask=True).get_fdata() > 0.5
    assert warped.shape == (99, 117, 95)
    assert _dice(warped.get_fdata() > 0.5, mni_brain) > 0.85


def test_deepbet_masks_agree_with_dlmuse():
    import nibabel as nib

    from slicelearn.data import brain_mask

    paths, masks = _scan_and_mask(2)
    for path in paths:
        mask = brain_mask(path)
        scan = nib.load(path)
        assert mask.shape == scan.shape and np.allclose(mask.affine, scan.affine)
        reference = np.asarray(nib.load(masks[path]).dataobj) > 0
        assert _dice(np.asarray(mask.dataobj) > 0, reference) > 0.9


def test_command_line_on_five_raw_scans(tmp_path):
    import json

    import pandas as pd

    from slicelearn.cli import main
    from slicelearn.model_files import model_info

    paths, ages = _participants(5)
    table = tmp_path / "raw.tsv"
    pd.DataFrame(
        {
            "participant_id": [Path(p).name.split("_T1w")[0] for p in paths],
            "path": paths,
            "age": ages,
        }
    ).to_csv(table, sep="\t", index=False)
    cache = tmp_path / "cache"
    argv = ["--data", table, "--cache-dir", cache, "--no-progress"]
    fit = ["fit", "--target", "age", "--out", tmp_path / "age.slm", "--qc", tmp_path / "qc"]
    assert main([str(a) for a in [*fit, *argv, "--report", tmp_path / "report"]]) == 0
    qc = pd.read_csv(tmp_path / "qc" / "qc.csv")
    assert len(qc) == 5 and (qc["dice_template_brain"] > 0.9).all()
    # The brain in the scan's own space (deepbet's mask): adult brains, 0.9 to 1.9 L.
    assert qc["brain_ml_native"].between(900, 1900).all(), qc["brain_ml_native"]
    # What the reader sees, HTML entities (the apostrophe) decoded.
    page = html.unescape((tmp_path / "qc" / "index.html").read_text())
    assert (
        "ml in the scan's own space" in page and "on the template grid after registration" in page
    )
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert "skull-stripped (deepbet), affine registration" in metrics["preprocessing"]
    out = tmp_path / "predicted.csv"
    predict = ["predict", "--model", tmp_path / "age.slm", "--data", table, "--out", out]
    assert main([str(a) for a in predict]) == 0
    predicted = pd.read_csv(out)
    assert predicted["participant_id"].tolist() == qc["id"].tolist()
    # The default brain-age model (the fine-tuned network and the ridge readout,
    # averaged), read back from its file, predicts what the fitted model did,
    # and on its training scans it beats their mean.
    fitted = pd.read_csv(tmp_path / "report" / "predictions.csv")
    np.testing.assert_allclose(predicted["predicted_age"], fitted["predicted"], rtol=1e-5)
    assert metrics["mae"] < metrics["baseline"]["mae"]
    assert model_info(tmp_path / "age.slm")["class"] == "slicelearn.ensemble.EnsembleRegressor"
