"""Tests for segreg_lite.oasis on tiny fake archives with the real layout (no network)."""
from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import pytest

from segreg_lite import oasis
from segreg_lite.labels import SEG4_NAMES

SUBJECTS = ["OASIS_OAS1_0003_MR1", "OASIS_OAS1_0001_MR1", "OASIS_OAS1_0002_MR1"]  # unsorted on purpose
SEG24_NAMES = ["Unknown"] + [f"Region-{i}" for i in range(1, 24)]
SHAPE = (16, 20)


def _save(path: Path, arr: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(arr[..., None], np.eye(4)), str(path))  # trailing singleton, like the real files


def make_tree(root: Path) -> dict:
    """Write 3 subjects + label tables; returns the arrays written, keyed by subject."""
    rng = np.random.default_rng(0)
    truth = {}
    for s in SUBJECTS:
        (root / s).mkdir(parents=True)
        img = rng.random(SHAPE).astype(np.float32)
        img.flat[0], img.flat[1] = 0.0, 1.0  # min 0, max 1: the per-slice rescale is the identity
        seg4 = rng.integers(0, 5, SHAPE).astype(np.uint8)
        seg24 = rng.integers(0, 24, SHAPE).astype(np.uint8)
        _save(root / s / "slice_norm.nii.gz", img)
        _save(root / s / "slice_orig.nii.gz", img * 255)
        _save(root / s / "slice_seg4.nii.gz", seg4)
        _save(root / s / "slice_seg24.nii.gz", seg24)
        truth[s] = (img, seg4, seg24)
    seg4 = "".join(f"{i} {n.replace(' ', '-')} 0 0 0 0\n" for i, n in enumerate(SEG4_NAMES))
    (root / "seg4_labels.txt").write_text(seg4)
    lut = "#No. Label Name:  R G B A\n\n" + "".join(f"  {i:2d}  {n}   10 20 30 0\n" for i, n in enumerate(SEG24_NAMES))
    (root / "seg24_labels.txt").write_text(lut)
    return truth


def make_tar(src: Path, tar_path: Path, extra=()) -> Path:
    """Tar ``src``'s contents at the archive root (like the real file), plus extra TarInfo members."""
    with tarfile.open(tar_path, "w") as tf:
        for p in sorted(src.rglob("*")):
            tf.add(p, arcname=str(p.relative_to(src)), recursive=False)
        for info, data in extra:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return tar_path


@pytest.fixture()
def archive(tmp_path):
    truth = make_tree(tmp_path / "src")
    return make_tar(tmp_path / "src", tmp_path / "oasis.tar"), truth


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_round_trip_seg4(archive, tmp_path):
    tar, truth = archive
    root = oasis.extract_oasis2d(tar, tmp_path / "out")
    data = oasis.load_oasis2d(root)
    assert data.subjects == sorted(SUBJECTS)
    assert data.images.shape == (3, 1, *SHAPE) and data.images.dtype == torch.float32
    assert data.labels.shape == (3, *SHAPE) and data.labels.dtype == torch.int64
    assert data.label_names == SEG4_NAMES
    for i, s in enumerate(sorted(SUBJECTS)):
        np.testing.assert_allclose(data.images[i, 0], truth[s][0], atol=1e-6)
        np.testing.assert_array_equal(data.labels[i], truth[s][1])
    assert _leftovers(tmp_path) == []  # no temporary extraction folder left behind
    assert oasis.load_oasis2d(root, max_subjects=2).subjects == sorted(SUBJECTS)[:2]


def test_seg24_names_and_values(archive, tmp_path):
    tar, truth = archive
    data = oasis.load_oasis2d(oasis.extract_oasis2d(tar, tmp_path / "out"), labels="seg24")
    assert data.label_names == tuple(SEG24_NAMES)
    for i, s in enumerate(sorted(SUBJECTS)):
        np.testing.assert_array_equal(data.labels[i], truth[s][2])
    with pytest.raises(ValueError, match="seg4' or 'seg24"):
        oasis.load_oasis2d(tmp_path / "out", labels="aseg")


def test_label_values_validated(tmp_path):
    make_tree(tmp_path)
    s = sorted(SUBJECTS)[1]
    _save(tmp_path / s / "slice_seg4.nii.gz", np.full(SHAPE, 5, np.uint8))
    with pytest.raises(ValueError, match=rf"{s}.*slice_seg4.*\[5\]"):
        oasis.load_oasis2d(tmp_path, require_marker=False)
    _save(tmp_path / s / "slice_seg24.nii.gz", np.full(SHAPE, 24, np.uint8))  # table has 0..23
    with pytest.raises(ValueError, match=r"slice_seg24.*\[24\]"):
        oasis.load_oasis2d(tmp_path, labels="seg24", require_marker=False)


def test_read_label_table_gaps_and_errors(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("# comment\n0 Unknown 0 0 0 0\n2 Two 1 1 1 0  # trailing\n")
    assert oasis.read_label_table(p) == ("Unknown", "label 1", "Two")
    p.write_text("zero Unknown\n")
    with pytest.raises(ValueError, match="t.txt:1"):
        oasis.read_label_table(p)


def test_checksum(archive, tmp_path):
    tar, _ = archive
    with pytest.raises(ValueError, match=r"oasis.tar: checksum mismatch: expected 0{64}, got [0-9a-f]{64}"):
        oasis.extract_oasis2d(tar, tmp_path / "out", expected_sha256="0" * 64)
    assert not (tmp_path / "out").exists()
    good = hashlib.sha256(tar.read_bytes()).hexdigest()
    assert oasis.extract_oasis2d(tar, tmp_path / "out", expected_sha256=good) == tmp_path / "out"


def _offsets(tar: Path) -> tuple[int, int]:
    """(start of the 4th member's header, end of the last member's data) in a plain tar."""
    with tarfile.open(tar) as tf:
        members = tf.getmembers()
    return members[3].offset, members[-1].offset_data + -(-members[-1].size // 512) * 512


@pytest.mark.parametrize("damage", ["html", "garbage", "half", "cut_header", "no_end"])
def test_corrupt_or_truncated(archive, tmp_path, damage):
    tar, _ = archive
    raw, (header, end) = tar.read_bytes(), _offsets(tar)
    bad = {
        "html": b"<html><body>Please use a browser</body></html>\n",
        "garbage": bytes(range(256)) * 8,
        "half": raw[: len(raw) // 2],  # cut in the middle
        "cut_header": raw[: header + 100],  # cut inside a later member's header
        "no_end": raw[:end],  # every member whole, end-of-archive blocks missing
    }[damage]
    tar.write_bytes(bad)
    with pytest.raises(ValueError, match=r"oasis.tar: .*(tar archive|truncated)"):
        oasis.extract_oasis2d(tar, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def _member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = b"pwned\n", link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, (data if kind == tarfile.REGTYPE else None)


@pytest.mark.parametrize("member, message", [
    (_member("../evil.txt"), "'../evil.txt' would land outside"),
    (_member("OASIS_OAS1_0001_MR1/../../evil.txt"), "would land outside"),
    (_member("/tmp/segreg_evil_abs.txt"), "'/tmp/segreg_evil_abs.txt' would land outside"),
    (_member("evil_link", tarfile.SYMTYPE, link="/etc/passwd"), "'evil_link' is a link or device"),
    (_member("evil_hard", tarfile.LNKTYPE, link="seg4_labels.txt"), "'evil_hard' is a link or device"),
    (_member("evil_dev", tarfile.CHRTYPE), "'evil_dev' is a link or device"),
])
def test_unsafe_members_refused(tmp_path, member, message):
    make_tree(tmp_path / "src")
    tar = make_tar(tmp_path / "src", tmp_path / "oasis.tar", extra=[member])
    target = tmp_path / "a" / "out"
    with pytest.raises(ValueError, match=message):
        oasis.extract_oasis2d(tar, target)
    assert not (tmp_path / "a").exists()  # checked before anything was created
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/segreg_evil_abs.txt").exists()


def test_wrong_layout(tmp_path):
    make_tree(tmp_path / "src")
    for s in SUBJECTS:
        (tmp_path / "src" / s / "slice_seg4.nii.gz").unlink()
    tar = make_tar(tmp_path / "src", tmp_path / "oasis.tar")
    with pytest.raises(ValueError, match="not the neurite-OASIS 2D layout"):
        oasis.extract_oasis2d(tar, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_reuse_and_incomplete_target(archive, tmp_path):
    tar, _ = archive
    out = oasis.extract_oasis2d(tar, tmp_path / "out")
    (out / "sentinel").write_text("kept")
    tar.unlink()  # a reused folder needs neither the archive nor a new extraction
    assert oasis.extract_oasis2d(tar, out) == out and (out / "sentinel").read_text() == "kept"
    (out / oasis.MARKER).unlink()
    with pytest.raises(FileExistsError, match="not a complete extraction"):
        oasis.extract_oasis2d(tar, out)


def test_nested_root_is_found(tmp_path):
    make_tree(tmp_path / "wrap" / "inner")
    assert len(oasis.load_oasis2d(tmp_path / "wrap", require_marker=False).subjects) == 3
    with pytest.raises(FileNotFoundError, match="does not exist"):
        oasis.load_oasis2d(tmp_path / "nowhere")


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGREG_CACHE", str(tmp_path))
    assert oasis.default_cache_dir() == tmp_path
    monkeypatch.delenv("SEGREG_CACHE")
    assert oasis.default_cache_dir() == Path.home() / ".cache" / "segreg_lite"


class FakeRetrieve:
    """Stands in for pooch.retrieve: 'downloads' a local file if the cache lacks it."""

    def __init__(self, source: Path):
        self.source, self.calls = source, []

    def __call__(self, url, known_hash=None, fname=None, path=None, downloader=None, **kwargs):
        self.calls.append({"url": url, "known_hash": known_hash, "downloader": downloader})
        dest = Path(path) / fname
        dest.parent.mkdir(parents=True, exist_ok=True)  # pooch creates the cache folder too
        if not dest.exists():
            shutil.copy(self.source, dest)
        return str(dest)


def test_download_records_and_verifies_hash(archive, tmp_path, monkeypatch):
    import pooch

    tar, _ = archive
    fake = FakeRetrieve(tar)
    monkeypatch.setattr(pooch, "retrieve", fake)
    cache = tmp_path / "cache"
    with pytest.warns(oasis.UnverifiedDownload, match=r"downloaded unverified: segreg-lite has no known checksum"):
        out = oasis.download_oasis2d(cache, progress=False)
    assert out == cache / "neurite-oasis.2d.v1.0"
    assert len(oasis.load_oasis2d(out).subjects) == 3
    dl = fake.calls[0]["downloader"]
    assert isinstance(dl, pooch.HTTPDownloader)
    assert dl.kwargs["headers"]["User-Agent"] == "segreg-lite/0.1 (+research download)"
    assert fake.calls[0]["url"] == oasis.OASIS_URL
    cached = cache / "neurite-oasis.2d.v1.0.tar"
    record = json.loads((cache / "neurite-oasis.2d.v1.0.tar.sha256.json").read_text())
    assert record["sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()

    assert oasis.download_oasis2d(cache, progress=False) == out and len(fake.calls) == 1  # reused, no fetch

    shutil.rmtree(out)
    with open(cached, "ab") as f:
        f.write(b"\0" * 512)  # tampered after the first download
    with pytest.raises(ValueError, match=rf"checksum mismatch: expected {record['sha256']}.*recorded in"):
        oasis.download_oasis2d(cache, progress=False)
    assert not out.exists()


def test_download_known_hash_and_html(archive, tmp_path, monkeypatch):
    import pooch

    tar, _ = archive
    monkeypatch.setattr(pooch, "retrieve", FakeRetrieve(tar))
    with pytest.raises(ValueError, match="checksum mismatch: expected md5:0+, got md5:"):
        oasis.download_oasis2d(tmp_path / "c1", known_hash="md5:" + "0" * 32, progress=False)
    md5 = hashlib.md5(tar.read_bytes()).hexdigest()
    assert (oasis.download_oasis2d(tmp_path / "c2", known_hash=f"md5:{md5}", progress=False) / oasis.MARKER).is_file()

    html = tmp_path / "page.html"
    html.write_text("<html>not the archive</html>")
    monkeypatch.setattr(pooch, "retrieve", FakeRetrieve(html))
    with pytest.raises(ValueError, match="not a readable tar archive"):
        oasis.download_oasis2d(tmp_path / "c3", progress=False)
    # the unusable file is dropped and no hash recorded, so the next call downloads again
    assert sorted(p.name for p in (tmp_path / "c3").iterdir()) == []


def test_load_refuses_a_folder_without_the_marker(archive, tmp_path):
    # Issue 14: a folder without the completion marker loaded 3 of 7 subjects without a word.
    make_tree(tmp_path / "manual")
    with pytest.raises(ValueError, match=r"manual has no \.segreg_lite_extracted\.json.*require_marker=False"):
        oasis.load_oasis2d(tmp_path / "manual")
    assert len(oasis.load_oasis2d(tmp_path / "manual", require_marker=False).subjects) == 3
    tar, _ = archive
    out = oasis.extract_oasis2d(tar, tmp_path / "out")
    assert json.loads((out / oasis.MARKER).read_text())["subjects"] == 3
    shutil.rmtree(out / sorted(SUBJECTS)[0])  # a subject lost after extraction
    with pytest.raises(ValueError, match="holds 2 of the 3 subjects it was extracted with"):
        oasis.load_oasis2d(out)


def test_an_incomplete_extraction_in_the_cache_is_redone(archive, tmp_path, monkeypatch):
    import pooch

    tar, truth = archive
    monkeypatch.setattr(pooch, "retrieve", FakeRetrieve(tar))
    cache = tmp_path / "cache"
    with pytest.warns(oasis.UnverifiedDownload):
        out = oasis.download_oasis2d(cache, progress=False)
    # a run killed mid-extraction: the folder lacks its marker and a temporary folder is left
    (out / oasis.MARKER).unlink()
    shutil.rmtree(out / sorted(SUBJECTS)[2])
    (cache / ".neurite-oasis.2d.v1.0.x1y2.partial" / "OASIS_OAS1_0001_MR1").mkdir(parents=True)
    assert oasis.download_oasis2d(cache, progress=False) == out  # verified against the record: no warning
    assert oasis.load_oasis2d(out).subjects == sorted(SUBJECTS)
    assert sorted(p.name for p in cache.iterdir()) == ["neurite-oasis.2d.v1.0", "neurite-oasis.2d.v1.0.tar",
                                                       "neurite-oasis.2d.v1.0.tar.sha256.json"]
    # a folder the user named is never deleted: it stays an error
    (out / oasis.MARKER).unlink()
    with pytest.raises(FileExistsError, match="not a complete extraction"):
        oasis.extract_oasis2d(tar, out)


def test_a_pinned_checksum_is_used_by_default(archive, tmp_path, monkeypatch):
    import warnings

    import pooch

    tar, _ = archive
    monkeypatch.setattr(pooch, "retrieve", FakeRetrieve(tar))
    monkeypatch.setattr(oasis, "OASIS_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="checksum mismatch: expected 0{64}"):
        oasis.download_oasis2d(tmp_path / "c1", progress=False)
    monkeypatch.setattr(oasis, "OASIS_SHA256", hashlib.sha256(tar.read_bytes()).hexdigest())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # verified: no 'unverified' warning
        assert (oasis.download_oasis2d(tmp_path / "c2", progress=False) / oasis.MARKER).is_file()


def test_extraction_is_safe_without_the_data_filter_and_opens_the_archive_once(tmp_path, monkeypatch):
    # Python < 3.11.4 has no tarfile.data_filter; extraction must not depend on it, nor on
    # extractall, and must read the archive through the one file it checked.
    import builtins

    make_tree(tmp_path / "src")
    suid = tarfile.TarInfo("OASIS_OAS1_0001_MR1/setuid_tool")
    suid.size, suid.mode = 3, 0o4755
    tar = make_tar(tmp_path / "src", tmp_path / "oasis.tar", extra=[(suid, b"#!\n")])
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    monkeypatch.setattr(tarfile.TarFile, "extractall", lambda *a, **k: pytest.fail("extractall used"))
    monkeypatch.setattr(tarfile.TarFile, "extract", lambda *a, **k: pytest.fail("extract used"))
    opened, real_open, real_tar_open = [], builtins.open, tarfile.open

    def counting_open(file, *args, **kwargs):
        if str(file) == str(tar):
            opened.append("open")
        return real_open(file, *args, **kwargs)

    def counting_tar_open(*args, **kwargs):
        opened.append("tarfile.open" + ("(fileobj)" if kwargs.get("fileobj") is not None else f"({args[0]})"))
        return real_tar_open(*args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(tarfile, "open", counting_tar_open)
    out = oasis.extract_oasis2d(tar, tmp_path / "out", expected_sha256=hashlib.sha256(tar.read_bytes()).hexdigest())
    assert opened == ["open", "tarfile.open(fileobj)"]
    assert (out / "OASIS_OAS1_0001_MR1" / "setuid_tool").stat().st_mode & 0o7777 == 0o644
    assert len(oasis.load_oasis2d(out).subjects) == 3
    for member, message in [(_member("../evil.txt"), "would land outside"),
                            (_member("evil_link", tarfile.SYMTYPE, link="/etc/passwd"), "link or device")]:
        bad = make_tar(tmp_path / "src", tmp_path / "bad.tar", extra=[member])
        with pytest.raises(ValueError, match=message):
            oasis.extract_oasis2d(bad, tmp_path / "bad")
        assert not (tmp_path / "bad").exists() and not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("member, message", [
    (_member("seg4_labels.txt/inner"), "'seg4_labels.txt' is both a file and a folder ('seg4_labels.txt' and 'seg4_labels.txt/inner')"),
    (_member("OASIS_OAS1_0001_MR1"), "'OASIS_OAS1_0001_MR1' is both a file and a folder"),
    (_member("seg24_labels.txt", tarfile.DIRTYPE), "'seg24_labels.txt' is both a file and a folder"),
])
def test_a_file_and_a_folder_of_one_name_is_named(tmp_path, member, message):
    # Issue 24: an archive holding a file and a folder of the same name failed with "File exists".
    make_tree(tmp_path / "src")
    tar = make_tar(tmp_path / "src", tmp_path / "oasis.tar", extra=[member])
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        oasis.extract_oasis2d(tar, tmp_path / "a" / "out")
    assert "delete it and download again" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "a").exists()  # checked before anything was created
