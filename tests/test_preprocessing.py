"""VolumePreprocessor and the on-disk cache."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import write_scans

from slicelearn.data import PreprocessedVolumes, VolumeCache, VolumePreprocessor, load_image
from slicelearn.data.cache import resolve_cache_dir
from slicelearn.datasets import get_data_home


def _blob_scan(path, world_centre, affine, shape):
    """A scan holding one bright Gaussian blob at a world coordinate (mm)."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    distance2 = ((world - np.asarray(world_centre)) ** 2).sum(-1)
    data = (100 + 1000 * np.exp(-distance2 / (2 * 6.0**2))).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), path)
    return str(path)


def test_default_puts_scans_on_the_mni_grid_z_scored(tmp_path):
    (path,) = write_scans(tmp_path, n=1)
    prep = VolumePreprocessor(cache_dir=None).fit([path])
    assert prep.output_shape_ == (99, 117, 95)
    volume = prep.transform([path])[0]
    assert volume.shape == (99, 117, 95) and volume.dtype == np.float32
    assert abs(volume.mean()) < 1e-4 and abs(volume.std() - 1) < 1e-3


def test_reorientation_and_resampling_keep_world_positions(tmp_path):
    # Stored P-S-R at 4 mm, like a sagittal acquisition; blob at MNI (30, -20, 10) mm.
    affine = np.array([[0, 0, 4.0, -60], [-4.0, 0, 0, 70], [0, 4.0, 0, -50], [0, 0, 0, 1]])
    path = _blob_scan(tmp_path / "psr.nii.gz", (30, -20, 10), affine, (36, 30, 30))
    assert nib.aff2axcodes(affine) == ("P", "S", "R")
    prep = VolumePreprocessor(cache_dir=None).fit([path])
    volume = prep.transform([path])[0]
    peak = np.unravel_index(volume.argmax(), volume.shape)
    peak_mm = prep.target_image_.affine @ np.append(peak, 1)
    np.testing.assert_allclose(peak_mm[:3], (30, -20, 10), atol=2.0)


def test_the_3mm_grid_keeps_world_positions_and_its_template_mask(tmp_path):
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = (-75, -100, -60)
    path = _blob_scan(tmp_path / "scan.nii.gz", (30, -20, 10), affine, (100, 120, 100))
    prep = VolumePreprocessor(
        target="mni152_3mm", mask="template", normalize="zscore_brain", cache_dir=None
    ).fit([path])
    assert prep.output_shape_ == (67, 79, 64)
    np.testing.assert_allclose(np.diag(prep.target_image_.affine)[:3], 3.0)
    volume = prep.transform([path])[0]
    assert volume.shape == (67, 79, 64)
    peak = np.unravel_index(volume.argmax(), volume.shape)
    peak_mm = prep.target_image_.affine @ np.append(peak, 1)
    np.testing.assert_allclose(peak_mm[:3], (30, -20, 10), atol=3.0)
    # The template's brain mask on the same grid: zero outside, the blob inside.
    assert prep.shared_mask_.shape == (67, 79, 64)
    assert (volume[~prep.shared_mask_] == 0).all() and prep.shared_mask_[peak]


def test_target_shape_and_voxel_size_centre_the_grid_on_each_scan(tmp_path):
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (500, -300, 40)  # far from the origin: the grid follows the scan
    path = _blob_scan(tmp_path / "off.nii.gz", (520, -280, 60), affine, (41, 41, 41))
    prep = VolumePreprocessor(
        target=None, target_shape=(15, 16, 17), voxel_size=3.0, cache_dir=None
    ).fit([path])
    volume = prep.transform([path])[0]
    assert volume.shape == (15, 16, 17)
    peak = np.unravel_index(volume.argmax(), volume.shape)
    np.testing.assert_allclose(peak, (7, 7.5, 8), atol=1.0)


def test_no_target_keeps_the_native_grid(tmp_path):
    (path,) = write_scans(tmp_path, n=1)
    prep = VolumePreprocessor(target=None, normalize=None, cache_dir=None).fit([path])
    assert prep.keeps_native_grid and prep.output_shape_ == (12, 14, 10)
    np.testing.assert_allclose(prep.transform([path])[0], load_image(path), rtol=1e-6)


def test_shared_mask_crop_and_brain_zscore(tmp_path):
    (path,) = write_scans(tmp_path, n=1, shape=(20, 20, 20))
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[5:12, 6:15, 4:9] = 1
    mask_path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, np.diag([2.0, 2.0, 2.0, 1.0])), mask_path)
    reference = str(path)
    prep = VolumePreprocessor(
        target=reference,
        mask=str(mask_path),
        crop=True,
        crop_margin=1,
        normalize="zscore_brain",
        cache_dir=None,
    ).fit([path])
    assert prep.output_shape_ == (9, 11, 7)
    volume = prep.transform([path])[0]
    inside = prep.shared_mask_[prep.crop_box_]
    assert volume.shape == (9, 11, 7)
    np.testing.assert_array_equal(volume[~inside], 0)
    assert abs(volume[inside].mean()) < 1e-4 and abs(volume[inside].std() - 1) < 1e-3


def test_per_subject_masks_follow_their_scans(tmp_path):
    paths = write_scans(tmp_path, n=2, shape=(10, 10, 10))
    masks = {}
    for index, path in enumerate(paths):
        mask = np.zeros((10, 10, 10), np.uint8)
        mask[index : index + 4] = 1
        masks[path] = str(tmp_path / f"mask{index}.nii.gz")
        nib.save(nib.Nifti1Image(mask, np.diag([2.0, 2.0, 2.0, 1.0])), masks[path])
    prep = VolumePreprocessor(target=None, mask=masks, normalize=None, cache_dir=None).fit(paths)
    for index, volume in enumerate(prep.transform(paths)):
        nonzero_x = np.flatnonzero(volume.any(axis=(1, 2)))
        assert nonzero_x.tolist() == list(range(index, index + 4))
    (tmp_path / "more").mkdir()
    (other,) = write_scans(tmp_path / "more", n=1, shape=(10, 10, 10))
    with pytest.raises(KeyError, match="No mask given for .*more"):
        prep.preprocess(other)


def test_percentile_clipping_bounds_the_output(tmp_path):
    (path,) = write_scans(tmp_path, n=1)
    raw = load_image(path)
    prep = VolumePreprocessor(
        target=None, normalize=None, clip_percentiles=(5, 95), cache_dir=None
    ).fit([path])
    volume = prep.transform([path])[0]
    low, high = np.percentile(raw, (5, 95))
    assert volume.min() == pytest.approx(low, rel=1e-5)
    assert volume.max() == pytest.approx(high, rel=1e-5)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"normalize": "minmax"}, "normalize"),
        ({"normalize": "zscore_brain"}, "needs a mask"),
        ({"crop": True}, "shared mask"),
        ({"registration": "affine", "target": None}, "template target"),
        ({"target": None, "target_shape": (4, 4, 4)}, "go together"),
        ({"clip_percentiles": (90, 10)}, "clip_percentiles"),
        ({"target": "mni305"}, "mni152"),
    ],
)
def test_invalid_parameters_fail_in_fit(params, message):
    prep = VolumePreprocessor(**params)  # __init__ only stores
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        prep.fit()


def test_bad_scans_are_named(tmp_path):
    zeros = tmp_path / "zeros.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 6), np.float32), np.eye(4)), zeros)
    nan = tmp_path / "nan.nii.gz"
    data = np.ones((6, 6, 6), np.float32)
    data[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), nan)
    prep = VolumePreprocessor(target=None, cache_dir=None).fit([str(zeros)])
    with pytest.raises(ValueError, match=r"X\[3\] \(.*zeros.nii.gz\) is all zeros"):
        prep.preprocess(str(zeros), 3)
    with pytest.raises(ValueError, match=r"nan.nii.gz\) contains NaN"):
        prep.preprocess(str(nan), 0)


def test_transform_is_lazy(tmp_path, count_preprocess):
    paths = write_scans(tmp_path, n=4)
    prep = VolumePreprocessor(target=None, cache_dir=None).fit(paths)
    volumes = prep.transform(paths)
    assert isinstance(volumes, PreprocessedVolumes) and count_preprocess == []
    assert volumes.shape == (4, 12, 14, 10)
    view = volumes[[3, 1]]
    assert isinstance(view, PreprocessedVolumes) and view.items == [paths[3], paths[1]]
    assert count_preprocess == []
    view[0]
    assert count_preprocess == [paths[3]]
    # scikit-learn's CV indexing keeps the view lazy.
    from sklearn.utils import _safe_indexing

    subset = _safe_indexing(volumes, np.array([0, 2]))
    assert isinstance(subset, PreprocessedVolumes) and subset.items == [paths[0], paths[2]]
    assert count_preprocess == [paths[3]]


def test_cache_reuses_volumes_across_instances_and_keys_on_content_and_recipe(
    tmp_path, count_preprocess
):
    paths = write_scans(tmp_path, n=2)
    cache_dir = tmp_path / "cache"
    first = VolumePreprocessor(target=None, cache_dir=cache_dir).fit(paths)
    fresh = first.transform(paths)[0]
    again = VolumePreprocessor(target=None, cache_dir=cache_dir).fit(paths).transform(paths)[0]
    assert count_preprocess == [paths[0]]  # a new instance (a new process) hits the cache
    np.testing.assert_array_equal(fresh, again)
    # What the first epoch sees equals what later epochs read back (float16).
    expected = VolumePreprocessor(target=None, cache_dir=None).fit(paths).preprocess(paths[0])
    np.testing.assert_array_equal(fresh, expected.astype(np.float16))
    del count_preprocess[1:]
    assert len(VolumeCache(cache_dir)) == 1

    VolumePreprocessor(target=None, normalize=None, cache_dir=cache_dir).fit(paths).transform(
        paths
    )[0]
    assert len(count_preprocess) == 2  # another recipe, another key
    data = nib.load(paths[0]).get_fdata() * 2
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), paths[0])
    first.transform(paths)[0]
    assert len(count_preprocess) == 3  # new content, new key
    assert len(VolumeCache(cache_dir)) == 3


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_metadata", "bad_metadata"])
def test_damaged_cache_entries_are_rebuilt(tmp_path, count_preprocess, damage):
    (path,) = write_scans(tmp_path, n=1)
    cache_dir = tmp_path / "cache"
    prep = VolumePreprocessor(target=None, cache_dir=cache_dir).fit([path])
    good = prep.transform([path])[0]
    (array_path,) = cache_dir.glob("*/*.npy")
    meta_path = array_path.with_suffix(".json")
    if damage == "truncate":
        array_path.write_bytes(array_path.read_bytes()[:-100])
    elif damage == "flip":
        raw = bytearray(array_path.read_bytes())
        raw[-10] ^= 0xFF
        array_path.write_bytes(bytes(raw))
    elif damage == "no_metadata":
        meta_path.unlink()  # as if the writer died between the two renames
    else:
        meta_path.write_text(json.dumps({"shape": [1], "dtype": "float16", "crc32": 0}))
    restarted = VolumePreprocessor(target=None, cache_dir=cache_dir).fit([path])
    rebuilt = restarted.transform([path])[0]
    assert len(count_preprocess) == 2
    np.testing.assert_array_equal(rebuilt, good)
    reread = VolumePreprocessor(target=None, cache_dir=cache_dir).fit([path]).transform([path])[0]
    assert len(count_preprocess) == 2
    np.testing.assert_array_equal(reread, good)


def test_failed_write_leaves_no_entry(tmp_path, monkeypatch):
    cache = VolumeCache(tmp_path / "cache")

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", explode)
    with pytest.raises(OSError, match="disk full"):
        cache.put("ab" * 32, np.ones((3, 3, 3)))
    assert cache.get("ab" * 32) is None
    assert list((tmp_path / "cache").rglob("*")) == [tmp_path / "cache" / "ab"]


def test_auto_cache_dir_uses_the_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SLICELEARN_DATA", str(tmp_path / "home"))
    assert resolve_cache_dir("auto") == tmp_path / "home" / "cache"
    assert resolve_cache_dir(None) is None
    # An empty variable means unset, for the cache as for downloads.
    monkeypatch.setenv("SLICELEARN_DATA", "")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert resolve_cache_dir("auto") == tmp_path / "user" / "slicelearn_data" / "cache"
    assert get_data_home() == tmp_path / "user" / "slicelearn_data"


def test_scans_on_the_template_grid_are_not_registered_again(tmp_path, monkeypatch):
    from slicelearn.data import registration, template_image

    template = template_image("mni152")
    path = tmp_path / "registered.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(template.get_fdata(), np.float32), template.affine), path)

    def must_not_run(*args, **kwargs):
        raise AssertionError("registered a scan that is on the template grid already")

    monkeypatch.setattr(registration, "register", must_not_run)
    for transform in ("rigid", "affine"):
        prep = VolumePreprocessor(registration=transform, cache_dir=None).fit([str(path)])
        assert prep.preprocess(str(path)).shape == template.shape


def test_skull_strip_masks_each_scan_with_its_extracted_brain(tmp_path, monkeypatch):
    from slicelearn.data import skullstrip

    (path,) = write_scans(tmp_path, n=1, shape=(20, 22, 18))
    calls = []

    def fake_mask(image, method, index=0, **kwargs):
        calls.append(method)
        data = np.zeros(image.shape, np.uint8)
        data[5:15, 5:17, 4:14] = 1
        return nib.Nifti1Image(data, image.affine)

    monkeypatch.setattr(skullstrip, "brain_mask", fake_mask)
    prep = VolumePreprocessor(
        target=None, skull_strip="deepbet", normalize="zscore_brain", cache_dir=None
    ).fit([path])
    volume = prep.preprocess(path)
    assert calls == ["deepbet"]
    inside = np.zeros(volume.shape, bool)
    inside[5:15, 5:17, 4:14] = True
    assert (volume[~inside] == 0).all() and abs(volume[inside].mean()) < 1e-5
    with pytest.raises(ValueError, match="cannot go with a shared mask"):
        VolumePreprocessor(skull_strip="deepbet", mask="template").fit()
