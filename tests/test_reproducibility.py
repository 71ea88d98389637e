"""Same scan, same bytes: preprocessing and prediction repeat exactly across processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_scans

IXI = Path(__file__).resolve().parents[2] / "shared" / "data" / "ixi"


def _slicelearn(*argv) -> None:
    """Run the command in a fresh process, as a user would."""
    command = [sys.executable, "-m", "slicelearn.cli", *map(str, argv)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


def _cached_volumes(cache: Path) -> dict[str, bytes]:
    """Each cached volume's bytes, by the scan it came from."""
    import json

    volumes = {}
    for meta in sorted(cache.glob("*/*.json")):
        source = json.loads(meta.read_text())["source"]
        volumes[source] = meta.with_suffix(".npy").read_bytes()
    return volumes


def _generated_scan(folder: Path) -> tuple[str, str]:
    """A scan with its brain mask: the MNI152 head, moved and tilted off the template grid."""
    import nibabel as nib
    from scipy import ndimage

    from slicelearn.data import template_image

    head = template_image("mni152")
    brain = template_image("mni152", brain_mask=True)
    affine = head.affine.copy()
    affine[:3, 3] += (6.0, -4.0, 3.0)
    tilted = ndimage.rotate(head.get_fdata(), 4.0, axes=(1, 2), reshape=False, order=1)
    mask = ndimage.rotate(brain.get_fdata(), 4.0, axes=(1, 2), reshape=False, order=0) > 0.5
    scan, mask_path = folder / "sub-0_T1w.nii.gz", folder / "sub-0_mask.nii.gz"
    nib.save(nib.Nifti1Image(tilted.astype(np.float32) * 10 + 50, affine), scan)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), mask_path)
    return str(scan), str(mask_path)


def _preprocessed_twice(tmp_path: Path, table: Path, options: list[str]) -> list[dict]:
    """The cohort preprocessed by two processes, with 1 and with 2 workers."""
    runs = []
    for workers in (1, 2):
        cache = tmp_path / f"cache{workers}"
        _slicelearn(
            "preprocess", "--data", table, "--out", tmp_path / f"prep{workers}",
            "--cache-dir", cache, "--workers", workers, *options,
        )  # fmt: skip
        runs.append(_cached_volumes(cache))
    return runs


def test_ants_registration_gives_the_same_bytes_in_every_process(tmp_path):
    pytest.importorskip("ants")
    scan, mask = _generated_scan(tmp_path)
    table = tmp_path / "scans.csv"
    pd.DataFrame({"path": [scan, scan], "mask": [mask, mask]}).to_csv(table, index=False)
    options = ["--mask-column", "mask", "--registration", "affine"]
    first, second = _preprocessed_twice(tmp_path, table, options)
    assert first and first == second


@pytest.mark.skipif(not IXI.is_dir(), reason="needs ../shared/data/ixi (real IXI scans)")
def test_a_raw_ixi_scan_gives_the_same_volume_and_prediction_in_every_process(tmp_path):
    pytest.importorskip("ants")
    pytest.importorskip("deepbet")
    rows = pd.read_csv(IXI / "participants.tsv", sep="\t").head(2)
    table = tmp_path / "raw.csv"
    pd.DataFrame(
        {
            "participant_id": rows["participant_id"],
            "path": [str(IXI / p) for p in rows["path"]],
            "age": rows["age"],
        }
    ).to_csv(table, index=False)
    # The command line's default route: deepbet, ANTs affine, z-scored in the brain.
    first, second = _preprocessed_twice(tmp_path, table, [])
    assert len(first) == 2 and first == second
    # A model trained on them predicts the same numbers in two fresh processes.
    model = tmp_path / "age.slm"
    common = ["--data", table, "--cache-dir", tmp_path / "cache1"]
    _slicelearn("fit", *common, "--target", "age", "--out", model, "--no-progress")
    outputs = []
    for run in (1, 2):
        out = tmp_path / f"predicted{run}.csv"
        # From the volumes cached above (their bytes are checked): the model's part.
        _slicelearn("predict", "--model", model, *common[2:], "--data", table, "--out", out)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_predictions_repeat_exactly_across_processes(tmp_path):
    paths = write_scans(tmp_path, n=10, shape=(6, 34, 33))
    table = tmp_path / "cohort.csv"
    pd.DataFrame({"path": paths, "age": np.linspace(20, 80, 10)}).to_csv(table, index=False)
    fast = ["--grid", "none", "--skull-strip", "none", "--registration", "none"]
    model = tmp_path / "m.slm"
    cache = ["--cache-dir", tmp_path / "cache"]  # not the user's data home
    fit = ["fit", "--data", table, "--target", "age", "--out", model, "--no-progress"]
    _slicelearn(*fit, *fast, *cache)
    outputs = []
    for run in (1, 2):
        out = tmp_path / f"p{run}.csv"
        _slicelearn("predict", "--model", model, "--data", table, "--out", out, *cache)
        outputs.append(pd.read_csv(out)["predicted_age"].to_numpy())
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_a_killed_cohort_run_resumes_from_the_cache(tmp_path):
    import os
    import signal
    import time

    paths = write_scans(tmp_path, n=12, shape=(40, 48, 40), affine=np.diag([4.0, 4.0, 4.0, 1.0]))
    table = tmp_path / "cohort.csv"
    pd.DataFrame({"path": paths}).to_csv(table, index=False)
    cache = tmp_path / "cache"
    argv = [
        sys.executable, "-m", "slicelearn.cli", "preprocess", "--data", table,
        "--out", tmp_path / "prep", "--cache-dir", cache, "--skull-strip", "none",
        "--registration", "none", "--grid", "mni152",
    ]  # fmt: skip
    run = subprocess.Popen([str(a) for a in argv], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(list(cache.glob("*/*.json"))) < 3 and time.monotonic() < deadline:
        assert run.poll() is None, run.stderr.read()
        time.sleep(0.05)
    os.kill(run.pid, signal.SIGKILL)  # as a crash or a cluster's time limit would
    run.wait()
    finished = len(list(cache.glob("*/*.json")))
    assert 3 <= finished < 12
    again = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    cached = int(re.search(r"preprocessing: (\d+) of 12 scans cached", again.stderr).group(1))
    assert cached >= finished  # every scan finished before the kill is reused
    assert f"preprocessing {12 - cached}/{12 - cached}" in again.stderr
    # Every entry is whole: a write cut by the kill left at most a temporary file.
    from slicelearn.data.cache import VolumeCache

    store = VolumeCache(cache)
    keys = [meta.stem for meta in cache.glob("*/*.json")]
    assert len(keys) == 12 and all(store.get(key) is not None for key in keys)
