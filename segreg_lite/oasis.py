"""Real data for Colab: the neurite-OASIS 2D slices, downloaded at run time and checked.

The archive (about 24 MB) holds 414 OASIS-1 subjects, one coronal 160 x 192 slice each
(``OASIS_OAS1_XXXX_MR1/slice_norm.nii.gz`` with ``slice_seg4.nii.gz`` / ``slice_seg24.nii.gz``),
and FreeSurfer colour tables at its root. It is never bundled: the OASIS data use terms forbid
redistribution, so :func:`download_oasis2d` fetches it into a cache and verifies it (a tar with
the expected layout, no member leaving the target folder, a checksum given or recorded on first
download), and :func:`load_oasis2d` reads it into arrays.

Extraction is done here, member by member, after every member has been checked, from the one
open file that was hashed and checked, so it is equally safe on every Python this package
supports (tarfile's ``data`` filter exists only from 3.11.4 / 3.12) and nothing can swap the
file between the checks and the extraction. It goes to a temporary folder renamed into place
once complete, with a marker file written last; :func:`load_oasis2d` refuses a folder without
the marker, and :func:`download_oasis2d` replaces an incomplete extraction in its cache.

References: A. Hoopes, M. Hoffmann, B. Fischl, J. Guttag, A. V. Dalca, "HyperMorph: Amortized
Hyperparameter Learning for Image Registration", IPMI 2021 (the 2D slices). D. S. Marcus et al.,
"Open Access Series of Imaging Studies (OASIS): Cross-sectional MRI Data in Young, Middle Aged,
Nondemented, and Demented Older Adults", J. Cogn. Neurosci. 19(9), 2007 (the scans).
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import warnings
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import torch

from segreg_lite.container import Data
from segreg_lite.io import read_json, write_json
from segreg_lite.labels import SEG4_NAMES, check_image, check_labels, rescale_unit
from segreg_lite.nifti import read_nifti_array

OASIS_URL = "https://surfer.nmr.mgh.harvard.edu/ftp/data/neurite/data/neurite-oasis.2d.v1.0.tar"
USER_AGENT = "segreg-lite/0.1 (+research download)"
SUBJECT_GLOB = "OASIS_OAS1_*_MR1"
MARKER = ".segreg_lite_extracted.json"  # written last: its presence means the folder is complete
#: SHA-256 of the archive at OASIS_URL, to be pinned here as soon as it is known; while it is
#: None the first download is unverified (download_oasis2d warns) and its hash is recorded.
OASIS_SHA256: str | None = None


class UnverifiedDownload(UserWarning):
    """The archive was downloaded without a known checksum to verify it against."""


def default_cache_dir() -> Path:
    """``$SEGREG_CACHE`` if set, else ``~/.cache/segreg_lite``."""
    return Path(os.environ.get("SEGREG_CACHE") or Path.home() / ".cache" / "segreg_lite")


def _stream_hash(f: BinaryIO, alg: str = "sha256") -> str:
    """The hash of an open file from its start; leaves it at the start."""
    f.seek(0)
    h = hashlib.new(alg)
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    f.seek(0)
    return h.hexdigest()


def _file_hash(path: Path, alg: str = "sha256") -> str:
    with open(path, "rb") as f:
        return _stream_hash(f, alg)


def _verify(path: Path, expected: str, hint: str = "", f: BinaryIO | None = None) -> None:
    """Check ``path`` (read through ``f`` if given) against ``expected`` (``'<hex>'`` = sha256,
    or ``'md5:<hex>'`` etc.)."""
    alg, _, want = expected.rpartition(":")
    got = _stream_hash(f, alg.lower() or "sha256") if f is not None else _file_hash(path, alg.lower() or "sha256")
    if got != want.lower():
        raise ValueError(f"{path}: checksum mismatch: expected {expected}, got {alg + ':' if alg else ''}{got}{hint}")


def _check_members(tf: tarfile.TarFile, archive: Path, target: Path) -> int:
    """Refuse unsafe members, a truncated archive and a wrong layout before extracting anything;
    returns the number of subjects (folders with a slice_norm image)."""
    root = os.path.abspath(target)
    parts_seen: dict[tuple[str, ...], set[str]] = {}
    files: dict[tuple[str, ...], str] = {}  # a file's path -> its member name
    folders: dict[tuple[str, ...], str] = {}  # a folder's path (named, or implied by what lies below) -> a member
    for m in tf.getmembers():
        dest = os.path.normpath(os.path.join(root, m.name))
        if os.path.isabs(m.name) or os.path.commonpath([root, dest]) != root:
            raise ValueError(f"{archive}: archive member '{m.name}' would land outside {target}")
        if not (m.isfile() or m.isdir()):
            raise ValueError(f"{archive}: archive member '{m.name}' is a link or device; refusing to extract")
        parts = tuple(p for p in PurePosixPath(m.name).parts if p != ".")
        (files if m.isfile() else folders).setdefault(parts, m.name)
        for i in range(1, len(parts)):
            folders.setdefault(parts[:i], m.name)
        if m.isfile() and len(parts) >= 2 and fnmatch.fnmatch(parts[-2], SUBJECT_GLOB):
            parts_seen.setdefault(parts[:-1], set()).add(parts[-1])
    # A file and a folder of one name cannot both be extracted (it failed as "File exists").
    both = sorted(files.keys() & folders.keys())
    if both:
        name = "/".join(both[0])
        raise ValueError(f"{archive}: archive member '{name}' is both a file and a folder ('{files[both[0]]}' and "
                         f"'{folders[both[0]]}'); the archive is damaged or not the OASIS download: delete it and "
                         f"download again")
    # tarfile stops quietly at a torn header, so a cut download would list fewer members without
    # error; a complete tar ends with a zero block right after its last member.
    tf.fileobj.seek(tf.offset)
    end = tf.fileobj.read(tarfile.BLOCKSIZE)
    if len(end) < tarfile.BLOCKSIZE or end.strip(b"\0"):
        raise ValueError(f"{archive}: tar archive is truncated (download interrupted?); delete it and download again")
    subjects = sum("slice_norm.nii.gz" in f for f in parts_seen.values())
    if not any({"slice_norm.nii.gz", "slice_seg4.nii.gz"} <= f for f in parts_seen.values()):
        raise ValueError(f"{archive}: not the neurite-OASIS 2D layout (no {SUBJECT_GLOB}/slice_norm.nii.gz "
                         f"with slice_seg4.nii.gz); is this the right file?")
    return subjects


def _extract_members(tf: tarfile.TarFile, dest: Path) -> None:
    """Write the (checked) regular files and folders of ``tf`` below ``dest``, nothing else: no
    links, devices or permission bits from the archive (what tarfile's ``data`` filter does,
    written out so that it holds on every Python)."""
    root = os.path.abspath(dest)
    for m in tf.getmembers():
        parts = [p for p in PurePosixPath(m.name).parts if p not in (".", "")]
        path = os.path.normpath(os.path.join(root, *parts)) if parts else root
        if os.path.commonpath([root, path]) != root:  # checked already; kept next to the write
            raise ValueError(f"archive member '{m.name}' would land outside {dest}")
        if m.isdir():
            os.makedirs(path, exist_ok=True)
        elif m.isfile():
            os.makedirs(os.path.dirname(path), exist_ok=True)
            src = tf.extractfile(m)
            with open(path, "wb") as out:
                shutil.copyfileobj(src, out)
            os.chmod(path, 0o644)


def extract_oasis2d(archive: str | os.PathLike, target_dir: str | os.PathLike, *,
                    expected_sha256: str | None = None, replace_incomplete: bool = False) -> Path:
    """Check the archive and extract it to ``target_dir``; returns ``target_dir``.

    Checks, in order, on one open file: the checksum (if given), that it is a readable and
    complete tar, that no member is a link/device or lands outside ``target_dir``, and the OASIS
    layout. Extraction goes to a temporary sibling renamed onto ``target_dir`` only on success,
    with the marker written last. A complete ``target_dir`` (marker present) is reused as is. An
    incomplete one is a FileExistsError, unless ``replace_incomplete`` (the download cache's
    own folder), which deletes it, and leftovers of killed extractions, and extracts again.
    """
    archive, target = Path(archive), Path(target_dir)
    if (target / MARKER).is_file():
        return target
    if replace_incomplete:
        for stale in target.parent.glob(f".{target.name}.*.partial"):  # killed extractions
            shutil.rmtree(stale, ignore_errors=True)
        if target.is_dir():
            shutil.rmtree(target)
    if target.exists():
        raise FileExistsError(f"{target} exists but is not a complete extraction (no {MARKER}); delete it and try again")
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    with open(archive, "rb") as f:  # opened once: hashed, checked and extracted from the same file
        if expected_sha256:
            _verify(archive, expected_sha256, f=f)
        sha256 = _stream_hash(f)
        try:
            tf = tarfile.open(fileobj=f, mode="r:*")
            subjects = _check_members(tf, archive, target)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ValueError(f"{archive}: not a readable tar archive ({err}); the server may have sent "
                             f"an HTML page or the download was cut, delete it and download again") from err
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
        try:
            _extract_members(tf, tmp)
            write_json(tmp / MARKER, {"archive": archive.name, "sha256": sha256, "subjects": subjects})
            os.replace(tmp, target)
        except (tarfile.TarError, EOFError) as err:
            raise ValueError(f"{archive}: tar archive could not be extracted ({err}); "
                             f"delete it and download again") from err
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def download_oasis2d(cache_dir: str | os.PathLike | None = None, *, url: str = OASIS_URL,
                     known_hash: str | None = None, progress: bool = True) -> Path:
    """Download (once) and extract neurite-OASIS 2D into ``cache_dir``; returns the extracted folder.

    ``known_hash`` is a sha256 hex digest (or ``'md5:<hex>'``); for :data:`OASIS_URL` it defaults
    to :data:`OASIS_SHA256`. Without one, the first download is unverified, and an
    :class:`UnverifiedDownload` warning says so; its sha256 is recorded in
    ``<archive>.sha256.json`` and every later use of the cached archive is verified against that
    record. An incomplete extraction in the cache (a killed run) is removed and redone. Please
    follow the OASIS data use terms: do not redistribute the data.
    """
    import pooch  # only the download path needs it

    if known_hash is None and url == OASIS_URL:
        known_hash = OASIS_SHA256
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    fname = url.rstrip("/").rsplit("/", 1)[-1]
    target = cache / fname.removesuffix(".tar")
    if (target / MARKER).is_file():
        return target  # already extracted: works offline, even if the archive was deleted
    record = cache / f"{fname}.sha256.json"
    downloader = pooch.HTTPDownloader(progressbar=progress, headers={"User-Agent": USER_AGENT})
    archive = Path(pooch.retrieve(url, known_hash=known_hash, fname=fname, path=cache, downloader=downloader))
    if known_hash:
        _verify(archive, known_hash)
    recorded = None
    if record.is_file():
        held = read_json(record, "checksum record")
        recorded = held.get("sha256") if isinstance(held, dict) else None
        if not isinstance(recorded, str):
            raise ValueError(f"{record}: damaged checksum record (no sha256); delete it and {archive} to download again")
    try:
        extract_oasis2d(archive, target, expected_sha256=recorded, replace_incomplete=True)
    except ValueError as err:
        if recorded and "checksum mismatch" in str(err):
            raise ValueError(f"{err} (recorded in {record} at first download; delete both to download again)") from None
        if recorded is None and not known_hash:
            archive.unlink(missing_ok=True)  # unverified and unusable: let the next call download again
        raise
    if recorded is None:
        sha256 = json.loads((target / MARKER).read_text())["sha256"]
        write_json(record, {"url": url, "file": fname, "sha256": sha256})
        if not known_hash:
            warnings.warn(f"{archive} was downloaded unverified: segreg-lite has no known checksum for it yet. Its "
                          f"SHA-256 is {sha256}; it is recorded in {record} and later uses are checked against it. "
                          "Compare it with a trusted source if you can.", UnverifiedDownload, stacklevel=2)
    return target


def read_label_table(path: str | os.PathLike) -> tuple[str, ...]:
    """Names from a FreeSurfer colour table (lines ``index name R G B A``, ``#`` comments).

    Returns names indexed by label value; gaps in the indices are named ``"label i"``.
    """
    names: dict[int, str] = {}
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 2 or not fields[0].isdigit():
            raise ValueError(f"{path}:{lineno}: expected 'index name R G B A', got {line!r}")
        names[int(fields[0])] = fields[1]
    if not names:
        raise ValueError(f"{path}: no labels found")
    return tuple(names.get(i, f"label {i}") for i in range(max(names) + 1))


def _data_root(root: Path) -> Path:
    """``root`` if it holds the subject folders, else its one subfolder that does."""
    if not root.is_dir():
        raise FileNotFoundError(f"OASIS folder {root} does not exist; see download_oasis2d")
    if any(root.glob(SUBJECT_GLOB)):
        return root
    inner = [d for d in root.iterdir() if d.is_dir() and any(d.glob(SUBJECT_GLOB))]
    if len(inner) != 1:
        raise FileNotFoundError(f"no {SUBJECT_GLOB} folders in {root}; pass the folder download_oasis2d returned")
    return inner[0]


def _check_complete(given: Path, root: Path, subjects: list[str]) -> None:
    """Refuse a folder without the extraction marker, or with fewer subjects than it records."""
    marker = next((d / MARKER for d in (given, root) if (d / MARKER).is_file()), None)
    if marker is None:
        raise ValueError(f"{given} has no {MARKER}: it was not made by extract_oasis2d, or its extraction did not "
                         "finish, and an incomplete folder would load only some subjects. Extract it again "
                         "(download_oasis2d does), or pass require_marker=False if you made it yourself and know it "
                         "is complete")
    held = read_json(marker, "extraction marker")
    expected = held.get("subjects") if isinstance(held, dict) else None
    if isinstance(expected, int) and len(subjects) != expected:
        raise ValueError(f"{root} holds {len(subjects)} of the {expected} subjects it was extracted with: files were "
                         "removed since; delete the folder and extract it again")


def load_oasis2d(root: str | os.PathLike, *, labels: str = "seg4", max_subjects: int | None = None,
                 progress: bool = False, require_marker: bool = True) -> Data:
    """Load the extracted neurite-OASIS 2D slices, subjects in sorted order.

    ``labels``: ``"seg4"`` (the package's 5-class table) or ``"seg24"`` (names read from
    ``seg24_labels.txt``). The folder must hold the marker that :func:`extract_oasis2d` writes
    last, and every subject it counted (``require_marker=False`` skips the check, for a folder
    you extracted yourself). Returns a :class:`~segreg_lite.data.Data`: images float32
    (N, 1, H, W) in [0, 1] (min-max per slice), labels int64 (N, H, W), subject ids, label names.
    """
    if labels not in ("seg4", "seg24"):
        raise ValueError(f"labels must be 'seg4' or 'seg24', got {labels!r}")
    given = Path(root)
    root = _data_root(given)
    subjects = sorted(d.name for d in root.glob(SUBJECT_GLOB) if (d / "slice_norm.nii.gz").is_file())
    if require_marker:
        _check_complete(given, root, subjects)
    names = SEG4_NAMES if labels == "seg4" else read_label_table(root / "seg24_labels.txt")
    if max_subjects is not None:
        subjects = subjects[: max(int(max_subjects), 0)]
    if not subjects:
        raise FileNotFoundError(f"no {SUBJECT_GLOB}/slice_norm.nii.gz in {root}")
    from tqdm.auto import tqdm

    images, labs = [], []
    for s in tqdm(subjects, desc="OASIS 2D", disable=not progress):
        img_path, lab_path = root / s / "slice_norm.nii.gz", root / s / f"slice_{labels}.nii.gz"
        img, lab = read_nifti_array(img_path), read_nifti_array(lab_path)  # (H, W) after squeeze
        if img.ndim != 2 or img.shape != lab.shape:
            raise ValueError(f"{s}: expected matching 2D image and label, got {img.shape} and {lab.shape}")
        if images and img.shape != images[0].shape:
            raise ValueError(f"{img_path}: shape {img.shape} differs from {subjects[0]}'s {images[0].shape}")
        images.append(rescale_unit(check_image(img, name=str(img_path))))
        labs.append(check_labels(lab, len(names), name=str(lab_path)))
    return Data(torch.from_numpy(np.stack(images)[:, None]).float(), torch.from_numpy(np.stack(labs)).long(),
                subjects, tuple(names), f"neurite-OASIS 2D, {len(subjects)} subjects")
