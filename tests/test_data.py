"""Reading X: arrays, NIfTI files and images, RAS reorientation, and clear errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from slicelearn.data import load_image, load_volumes


def _save(path, data, affine=None):
    nib.save(
        nib.Nifti1Image(
            np.asarray(data, dtype=np.float32), np.eye(4) if affine is None else affine
        ),
        path,
    )
    return str(path)


def test_arrays_pass_through_as_float32():
    X = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)
    out = load_volumes(X)
    assert out.dtype == np.float32 and out.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(out, X)
    np.testing.assert_array_equal(load_volumes(X[:, None]), out)


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 2, 3, 4, 5), (2, 3, 4, 5, 6, 7)])
def test_arrays_of_the_wrong_rank_are_rejected(shape):
    with pytest.raises(ValueError, match="4D array"):
        load_volumes(np.zeros(shape))


def test_non_finite_voxels_name_the_index():
    X = np.zeros((4, 3, 3, 3))
    X[2, 1, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"X\[2\] contains NaN"):
        load_volumes(X)


def test_a_list_of_volumes_of_different_shapes_names_the_odd_one():
    volumes = [np.zeros((4, 5, 6), np.float32)] * 2 + [np.zeros((4, 5, 7), np.float32)]
    with pytest.raises(ValueError, match=r"X\[2\] has shape \(4, 5, 7\), but X\[0\] has"):
        load_volumes(volumes)


def test_non_numeric_input_is_a_type_error():
    with pytest.raises(TypeError, match="numbers"):
        load_volumes(np.array([["a"]]))
    with pytest.raises(TypeError, match="not a single path"):
        load_volumes("scan.nii.gz")
    with pytest.raises(TypeError, match="nibabel image"):
        load_image(42, 3)


def test_images_are_reoriented_to_ras(tmp_path):
    # Stored P-S-R like the IXI scans: array axes run posterior, superior, right.
    psr = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    data = np.zeros((4, 5, 6), dtype=np.float32)
    data[0, 4, 5] = 1.0  # most anterior (index 0 of a posterior-going axis), superior, right
    path = _save(tmp_path / "psr.nii.gz", data, psr)
    assert nib.aff2axcodes(nib.load(path).affine) == ("P", "S", "R")
    volume = load_image(path)
    assert volume.shape == (6, 4, 5)  # (R, A, S)
    # In RAS: right is the last x, anterior the last y, superior the last z.
    assert volume[5, 3, 4] == 1.0 and volume.sum() == 1.0
    np.testing.assert_array_equal(load_volumes([path])[0], volume)


def test_paths_and_images_stack_into_one_batch(tmp_path):
    data = np.random.default_rng(0).normal(size=(3, 4, 5, 6)).astype(np.float32)
    paths = [_save(tmp_path / f"s{i}.nii.gz", d) for i, d in enumerate(data)]
    np.testing.assert_allclose(load_volumes(paths), data)
    np.testing.assert_allclose(load_volumes([nib.load(p) for p in paths]), data)
    single = nib.Nifti1Image(data[0][..., None], np.eye(4))
    np.testing.assert_allclose(load_volumes([single]), data[:1])


def test_bad_files_are_named(tmp_path):
    good = _save(tmp_path / "good.nii.gz", np.ones((4, 5, 6)))
    missing = str(tmp_path / "missing.nii.gz")
    with pytest.raises(FileNotFoundError, match=r"X\[1\] \(.*missing.nii.gz\)"):
        load_volumes([good, missing])
    text = tmp_path / "notes.nii.gz"
    text.write_text("not an image")
    with pytest.raises(ValueError, match=r"X\[1\] \(.*notes.nii.gz\) is not a readable NIfTI"):
        load_volumes([good, str(text)])
    four_d = _save(tmp_path / "bold.nii.gz", np.ones((4, 5, 6, 3)))
    with pytest.raises(ValueError, match=r"bold.nii.gz.*shape \(4, 5, 6, 3\).*3D"):
        load_volumes([four_d])
    flat = _save(tmp_path / "slice.nii.gz", np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"slice.nii.gz.*3D"):
        load_volumes([flat])
    other = _save(tmp_path / "other.nii.gz", np.ones((4, 5, 7)))
    with pytest.raises(
        ValueError, match=r"X\[1\] \(.*other.nii.gz\) has shape \(4, 5, 7\).*resample"
    ):
        load_volumes([good, other])
    with pytest.raises(ValueError, match="empty"):
        load_volumes([])
