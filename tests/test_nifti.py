"""Tests for segreg_lite.nifti: pairing, slicing, every bad input, and the save/load round trip."""
from __future__ import annotations

import pathlib

import nibabel as nib
import numpy as np
import torch
import pytest

from segreg_lite.labels import SEG4_NAMES, rescale_unit
from segreg_lite.nifti import load_nifti_folder, read_nifti_array, save_nifti_folder

SHAPE = (16, 20)


def _save(path: pathlib.Path, arr) -> pathlib.Path:
    nib.save(nib.Nifti1Image(np.asarray(arr), np.eye(4)), str(path))
    return path


def _pair(folder, case, img, lab, ext=".nii.gz"):
    folder.mkdir(parents=True, exist_ok=True)
    _save(folder / f"{case}_image{ext}", np.asarray(img, np.float32))
    _save(folder / f"{case}_label{ext}", np.asarray(lab, np.uint8))


def _slice(rng, shape=SHAPE):
    img = rng.random(shape).astype(np.float32) * 300 + 20
    lab = rng.integers(0, 5, shape).astype(np.uint8)
    return img, lab


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((3, 1, *SHAPE)).astype(np.float32)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = 0.0, 1.0  # min 0, max 1 so the rescale is the identity
    labels = rng.integers(0, 5, (3, *SHAPE))
    paths = save_nifti_folder(tmp_path / "out", images, labels, names=["b", "a", "c"], spacing=(0.5, 2.0))
    assert [p.name for p in paths] == ["b_image.nii.gz", "b_label.nii.gz", "a_image.nii.gz",
                                       "a_label.nii.gz", "c_image.nii.gz", "c_label.nii.gz"]
    lab_img = nib.load(str(paths[1]))
    assert lab_img.get_data_dtype() == np.uint8 and lab_img.header.get_zooms()[:2] == (0.5, 2.0)
    data = load_nifti_folder(tmp_path / "out")
    assert data.subjects == ["a", "b", "c"]  # sorted by case name
    order = [1, 0, 2]
    np.testing.assert_allclose(data.images, images[order], atol=1e-6)
    np.testing.assert_array_equal(data.labels, labels[order])
    assert data.images.dtype == torch.float32 and data.labels.dtype == torch.int64
    assert data.label_names == SEG4_NAMES
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)  # no temp files


def test_save_wide_labels_and_bad_input(tmp_path):
    rng = np.random.default_rng(1)
    imgs = rng.random((2, *SHAPE))  # (N, H, W) accepted too
    labs = np.zeros((2, *SHAPE), int)
    labs[:, 0, 0] = 300
    paths = save_nifti_folder(tmp_path, imgs, labs)
    assert paths[0].name == "case000_image.nii.gz" and nib.load(str(paths[1])).get_data_dtype() == np.int16
    with pytest.raises(ValueError, match=r"images \(2, 16, 20\) and labels \(2, 16, 21\)"):
        save_nifti_folder(tmp_path, imgs, np.zeros((2, 16, 21), int))
    with pytest.raises(ValueError, match="names must be 2 distinct"):
        save_nifti_folder(tmp_path, imgs, labs, names=["x", "x"])
    with pytest.raises(ValueError, match=r"labels: label values \[-1\]"):
        save_nifti_folder(tmp_path, imgs, labs - 1)


def test_save_is_atomic(tmp_path, monkeypatch):
    def torn_write(self, data):  # a write killed halfway through
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(pathlib.Path, "write_bytes", torn_write)
    with pytest.raises(KeyboardInterrupt):
        save_nifti_folder(tmp_path, np.random.default_rng(0).random((1, 1, *SHAPE)), np.zeros((1, *SHAPE), int))
    assert list(tmp_path.iterdir()) == []  # neither a partial .nii.gz nor a temp file


def test_pairing_custom_suffix_and_mixed_extensions(tmp_path):
    rng = np.random.default_rng(2)
    img, lab = _slice(rng)
    _save(tmp_path / "sub-01_T1w.nii.gz", img)
    _save(tmp_path / "sub-01_dseg.nii", lab.astype(np.uint8))  # .nii label for a .nii.gz image
    data = load_nifti_folder(tmp_path, image_pattern="*_T1w.nii*", label_suffix=("_T1w", "_dseg"))
    assert data.subjects == ["sub-01"]
    np.testing.assert_allclose(data.images[0, 0], rescale_unit(img), atol=1e-6)
    np.testing.assert_array_equal(data.labels[0], lab)
    # Only the last occurrence of the image tag is swapped: 'x_image_2_image' -> 'x_image_2_label'.
    _pair(tmp_path / "b", "x_image_2", img, lab)
    assert load_nifti_folder(tmp_path / "b").subjects == ["x_image_2"]
    assert load_nifti_folder(tmp_path / "b", image_pattern="*.nii.gz").subjects == ["x_image_2"]
    _save(tmp_path / "b" / "notes.nii.gz", img)
    with pytest.raises(ValueError, match="notes.nii.gz: name does not contain '_image'"):
        load_nifti_folder(tmp_path / "b", image_pattern="*.nii.gz")


def test_trailing_singleton_and_num_classes(tmp_path):
    rng = np.random.default_rng(3)
    img, lab = _slice(rng)
    _pair(tmp_path, "c", img[..., None], (lab % 3)[..., None])  # (H, W, 1) counts as a slice
    data = load_nifti_folder(tmp_path, num_classes=3)
    assert data.images.shape == (1, 1, *SHAPE) and data.label_names == ("class 0", "class 1", "class 2")
    assert read_nifti_array(tmp_path / "c_image.nii.gz").shape == SHAPE


def test_3d_slicing(tmp_path):
    rng = np.random.default_rng(4)
    vol = rng.random((*SHAPE, 6)).astype(np.float32)
    lab = np.zeros((*SHAPE, 6), np.uint8)
    lab[3:9, 4:12, 2] = 1
    lab[5, 5, 4] = 3
    _pair(tmp_path, "case01", vol, lab)
    with pytest.raises(ValueError, match=r"case01_image.nii.gz is a 3D volume \(16, 20, 6\): cut it into 2D slices .*"
                                         r"load_nifti_folder\(folder, slice_axis=2\)"):
        load_nifti_folder(tmp_path)
    data = load_nifti_folder(tmp_path, slice_axis=2)  # default: slices with foreground
    assert data.subjects == ["case01:z=2", "case01:z=4"]
    np.testing.assert_allclose(data.images[1, 0], rescale_unit(vol[:, :, 4]), atol=1e-6)
    np.testing.assert_array_equal(data.labels[1], lab[:, :, 4])
    data = load_nifti_folder(tmp_path, slice_axis=0, slices=[0, 15])
    assert data.subjects == ["case01:x=0", "case01:x=15"] and data.images.shape == (2, 1, 20, 6)
    np.testing.assert_array_equal(data.labels[1], lab[15])
    with pytest.raises(ValueError, match=r"slices \[16\] out of range 0..15"):
        load_nifti_folder(tmp_path, slice_axis=0, slices=[16])
    with pytest.raises(ValueError, match="slice_axis must be 0, 1 or 2"):
        load_nifti_folder(tmp_path, slice_axis=3)
    _pair(tmp_path, "case01", vol, np.zeros_like(lab))
    with pytest.raises(ValueError, match="case01_label.nii.gz: no slice along axis 1 has foreground"):
        load_nifti_folder(tmp_path, slice_axis=1)


def test_missing_folder_and_no_match(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope does not exist"):
        load_nifti_folder(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(FileNotFoundError, match=r"match the pattern '\*_image.nii\*'"):
        load_nifti_folder(tmp_path)


def test_unpaired_files(tmp_path):
    rng = np.random.default_rng(5)
    img, lab = _slice(rng)
    _pair(tmp_path, "ok", img, lab)
    _save(tmp_path / "lonely_image.nii.gz", img)
    with pytest.raises(ValueError, match=r"images without a label file.*\['lonely_image.nii.gz'\]"):
        load_nifti_folder(tmp_path)
    (tmp_path / "lonely_image.nii.gz").unlink()
    _save(tmp_path / "orphan_label.nii.gz", lab)
    with pytest.raises(ValueError, match=r"label files without an image.*\['orphan_label.nii.gz'\]"):
        load_nifti_folder(tmp_path)
    # a label whose image exists but is left out by a narrower pattern is not an orphan
    _save(tmp_path / "orphan_image.nii.gz", img)
    assert load_nifti_folder(tmp_path, image_pattern="ok_image.nii*").subjects == ["ok"]


@pytest.mark.parametrize("case, match", [
    ("4d", r"bad_image.nii.gz: expected a 2D slice or 3D volume, got shape \(16, 20, 3, 2\)"),
    ("shape", r"bad_image.nii.gz has shape \(16, 20\) but its label .*bad_label.nii.gz has shape \(16, 21\)"),
    ("values", r"bad_label.nii.gz: label values \[7\] are outside the table 0..4"),
    ("nan", r"bad_image.nii.gz \(bad\): image contains NaN"),
    ("constant", r"bad_image.nii.gz \(bad\): image is constant"),
    ("unreadable", r"bad_image.nii.gz: not a readable NIfTI file"),
])
def test_bad_files(tmp_path, case, match):
    rng = np.random.default_rng(6)
    img, lab = _slice(rng)
    _pair(tmp_path, "good", img, lab)
    if case == "4d":
        img, lab = rng.random((*SHAPE, 3, 2)), np.zeros((*SHAPE, 3, 2))
    elif case == "shape":
        lab = np.zeros((16, 21))
    elif case == "values":
        lab = lab.copy()
        lab[2, 3] = 7
    elif case == "nan":
        img = img.copy()
        img[1, 1] = np.nan
    elif case == "constant":
        img = np.full(SHAPE, 3.0)
    _pair(tmp_path, "bad", img, lab)
    if case == "unreadable":
        (tmp_path / "bad_image.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(ValueError, match=match):
        load_nifti_folder(tmp_path)


def test_differing_slice_shapes(tmp_path):
    rng = np.random.default_rng(7)
    _pair(tmp_path, "a", *_slice(rng))
    _pair(tmp_path, "b", *_slice(rng, (12, 20)))
    shapes = r"\(16, 20\): 1 slices \(e.g. a\); \(12, 20\): 1 slices \(e.g. b\)"
    with pytest.raises(ValueError, match=shapes + ".*resample or crop"):
        load_nifti_folder(tmp_path)


def _header_only(path: pathlib.Path, shape, dtype, gz=True, slope=None) -> pathlib.Path:
    """A NIfTI file that is all header: it declares ``shape`` x ``dtype`` (scaled by ``slope``)
    but holds no data."""
    import gzip

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    if slope is not None:
        hdr.set_slope_inter(slope, 0.0)
    hdr.set_data_offset(352)
    block = hdr.binaryblock + b"\0" * 4
    path.write_bytes(gzip.compress(block, mtime=0) if gz else block)
    return path


@pytest.mark.parametrize("shape, dtype, said", [
    ((20000, 20000), np.float32, r"declares a 20000x20000 float32 image, 1.6 GB in memory, over the limit of 536.9 MB"),
    ((32000, 32000), np.float64, r"declares a 32000x32000 float64 image, 8.2 GB in memory, over the limit"),
])
def test_a_tiny_file_declaring_a_huge_image_is_refused_before_reading(tmp_path, shape, dtype, said):
    import tracemalloc

    path = _header_only(tmp_path / "bomb_image.nii.gz", shape, dtype)
    assert path.stat().st_size < 100  # the 56-byte file
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=f"bomb_image.nii.gz: the header {said}.*MAX_NIFTI_BYTES"):
            read_nifti_array(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # nothing of the declared size was allocated


def test_header_checks_before_the_data(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"cplx.nii.gz: the header declares data of type complex64"):
        read_nifti_array(_header_only(tmp_path / "cplx.nii.gz", (4, 4), np.complex64))
    with pytest.raises(ValueError, match=r"short.nii: truncated: the header declares a 64x64 float32 image .* but the file holds 352 bytes"):
        read_nifti_array(_header_only(tmp_path / "short.nii", (64, 64), np.float32, gz=False))
    # a cut .nii.gz cannot be measured before reading: the read fails with a reason, never an empty one
    with pytest.raises(ValueError, match=r"cut.nii.gz: the NIfTI data cannot be read \(\w+: .+\)"):
        read_nifti_array(_header_only(tmp_path / "cut.nii.gz", (64, 64), np.float32))
    # the limit is documented and changeable
    good = _save(tmp_path / "good.nii.gz", np.ones((16, 16), np.float32))
    monkeypatch.setattr("segreg_lite.nifti.MAX_NIFTI_BYTES", 512)
    with pytest.raises(ValueError, match=r"16x16 float32 image, 1.0 KB in memory, over the limit of 512 bytes"):
        read_nifti_array(good)
    monkeypatch.setattr("segreg_lite.nifti.MAX_NIFTI_BYTES", 2048)
    assert read_nifti_array(good).shape == (16, 16)


def test_a_huge_header_in_a_folder_fails_before_any_data_is_read(tmp_path):
    rng = np.random.default_rng(8)
    _pair(tmp_path, "a", *_slice(rng))
    _header_only(tmp_path / "b_image.nii.gz", (20000, 20000), np.float32)
    _save(tmp_path / "b_label.nii.gz", np.zeros(SHAPE, np.uint8))
    with pytest.raises(ValueError, match="b_image.nii.gz: the header declares a 20000x20000 float32 image"):
        load_nifti_folder(tmp_path)


def test_the_size_limit_counts_the_scaled_array(tmp_path, monkeypatch):
    # Issue 24: scaled-integer NIfTI bypassed the limit (a 1 MB file drove a 2.5 GB peak): nibabel
    # turns int8 data with scl_slope into float64, 8 times its stored size.
    import tracemalloc

    bomb = _header_only(tmp_path / "scaled_image.nii.gz", (1100, 1100, 256), np.int8, slope=2.0)  # 310 MB stored
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"scaled_image.nii.gz: the header declares a 1100x1100x256 int8 image scaled "
                                             r"to float64, 2.5 GB in memory, over the limit of 536.9 MB"):
            read_nifti_array(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20
    # a real file: 64x64 int16 is 8 KB stored, 32 KB once scaled; the limit sits between
    monkeypatch.setattr("segreg_lite.nifti.MAX_NIFTI_BYTES", 16 * 2**10)
    img = nib.Nifti1Image(np.arange(64 * 64, dtype=np.int16).reshape(64, 64), np.eye(4))
    nib.save(img, str(tmp_path / "plain.nii.gz"))
    assert read_nifti_array(tmp_path / "plain.nii.gz").dtype == np.int16
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, str(tmp_path / "slope.nii.gz"))
    with pytest.raises(ValueError, match=r"slope.nii.gz: the header declares a 64x64 int16 image scaled to float64, 32.8 KB"):
        read_nifti_array(tmp_path / "slope.nii.gz")
    monkeypatch.setattr("segreg_lite.nifti.MAX_NIFTI_BYTES", 32 * 2**10)
    assert read_nifti_array(tmp_path / "slope.nii.gz").dtype == np.float64  # what the check counted


def test_a_3d_folder_on_the_command_line_says_how_to_slice_it(tmp_path, capsys):
    # Issue 24: the message asked for slice_axis, which the command line cannot pass; it now says
    # how, and the way it names works.
    from segreg_lite.cli import main

    rng = np.random.default_rng(5)
    vols = tmp_path / "vols"
    for case in ("a", "b", "c"):
        lab = np.zeros((32, 32, 4), np.uint8)
        lab[8:20, 8:20, 1:3] = 1
        _pair(vols, case, rng.random((32, 32, 4)).astype(np.float32), lab)
    assert main(["run", "--data", str(vols), "--methods", "supervised", "--smoke", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a_image.nii.gz is a 3D volume (32, 32, 4)" in err
    assert "load_nifti_folder(folder, slice_axis=2)" in err and "save_nifti_folder(new_folder, data.images, data.labels)" in err
    assert "--data new_folder" in err and not (tmp_path / "r").exists()
    data = load_nifti_folder(vols, slice_axis=2)  # what it says to do
    save_nifti_folder(tmp_path / "slices", data.images, data.labels)
    again = load_nifti_folder(tmp_path / "slices")  # what --data reads
    assert again.images.shape == (6, 1, 32, 32) and torch.equal(again.labels, data.labels)


def test_links_that_lead_nowhere_are_named(tmp_path):
    # Issue 24: dangling or looping symlinked image/label pairs were skipped without a word.
    rng = np.random.default_rng(6)
    for case in ("a", "b", "c"):
        _pair(tmp_path, case, *_slice(rng))
    (tmp_path / "d_image.nii.gz").symlink_to(tmp_path / "gone" / "d_image.nii.gz")  # dangling pair
    (tmp_path / "d_label.nii.gz").symlink_to(tmp_path / "gone" / "d_label.nii.gz")
    (tmp_path / "e_image.nii.gz").symlink_to("e_label.nii.gz")  # a loop of two links
    (tmp_path / "e_label.nii.gz").symlink_to("e_image.nii.gz")
    with pytest.warns(UserWarning, match=r"4 NIfTI file\(s\) are symbolic links that lead nowhere .*: d_image.nii.gz, "
                                         r"d_label.nii.gz, e_image.nii.gz, e_label.nii.gz; fix or remove"):
        data = load_nifti_folder(tmp_path)
    assert data.subjects == ["a", "b", "c"]
    (tmp_path / "b_label.nii.gz").unlink()
    (tmp_path / "b_label.nii.gz").symlink_to("nowhere.nii.gz")  # half a pair: its image is refused, after the warning
    with pytest.warns(UserWarning, match="b_label.nii.gz"), pytest.raises(ValueError, match=r"images without a label file .*b_image"):
        load_nifti_folder(tmp_path)
