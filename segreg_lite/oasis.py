"""Real data for Colab: the neurite-OASIS 2D slices, downloaded at run time and checked.

The archive (about 24 MB) holds 414 OASIS-1 subjects, one coronal 160 x 192 slice each
(``OASIS_OAS1_XXXX_MR1/slice_norm.nii.gz`` with ``slice_seg4.nii.gz`` / ``slice_seg24.nii.gz``),
and FreeSurfer colour tables at its root. It is never bundled: the OASIS data use terms forbid
redistribution, so :func:`download_oasis2d` fetches it into a cache and verifies it (a tar with
the expected layout, no member leaving the target folder, a checksum given or recorded on first
download), and :func:`load_oasis2d` reads it into arrays.

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
from pathlib import Path, PurePosixPath

import numpy as np

from segreg_lite.io import write_json
from segreg_lite.labels import SEG4_NAMES, check_image, check_labels, rescale_unit
from segreg_lite.nifti import read_nifti_array

OASIS_URL = "https://surfer.nmr.mgh.harvard.edu/ftp/data/neurite/data/neurite-oasis.2d.v1.0.tar"
USER_AGENT = "segreg-lite/0.1 (+research download)"
SUBJECT_GLOB = "OASIS_OAS1_*_MR1"
MARKER = ".segreg_lite_extracted.json"  # written last: its presence means the folder is complete


def default_cache_dir() -> Path:
    """``$SEGREG_CACHE`` if set, else ``~/.cache/segreg_lite``."""
    return Path(os.environ.get("SEGREG_CACHE") or Path.home() / ".cache" / "segreg_lite")


def _file_hash(path: Path, alg: str = "sha256") -> str:
    h = hashlib.new(alg)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, expected: str, hint: str = "") -> None:
    """Check ``path`` against ``expected`` (``'<hex>'`` = sha256, or ``'md5:<hex>'`` etc.)."""
    alg, _, want = expected.rpartition(":")
    got = _file_hash(path, alg.lower() or "sha256")
    if got != want.lower():
        raise ValueError(f"{path}: checksum mismatch: expected {expected}, got {alg + ':' if alg else ''}{got}{hint}")


def _check_members(tf: tarfile.TarFile, archive: Path, target: Path) -> None:
    """Refuse unsafe members, a truncated archive and a wrong layout before extracting anything."""
    root = os.path.abspath(target)
    parts_seen: dict[tuple[str, ...], set[str]] = {}
    for m in tf.getmembers():
        dest = os.path.normpath(os.path.join(root, m.name))
        if os.path.isabs(m.name) or os.path.commonpath([root, dest]) != root:
            raise ValueError(f"{archive}: archive member '{m.name}' would land outside {target}")
        if not (m.isfile() or m.isdir()):
            raise ValueError(f"{archive}: archive member '{m.name}' is a link or device; refusing to extract")
        parts = tuple(p for p in PurePosixPath(m.name).parts if p != ".")
        if m.isfile() and len(parts) >= 2 and fnmatch.fnmatch(parts[-2], SUBJECT_GLOB):
            parts_seen.setdefault(parts[:-1], set()).add(parts[-1])
    # tarfile stops quietly at a torn header, so a cut download would list fewer members without
    # error; a complete tar ends with a zero block right after its last member.
    tf.fileobj.seek(tf.offset)
    end = tf.fileobj.read(tarfile.BLOCKSIZE)
    if len(end) < tarfile.BLOCKSIZE or end.strip(b"\0"):
        raise ValueError(f"{archive}: tar archive is truncated (download interrupted?); delete it and download again")
    if not any({"slice_norm.nii.gz", "slice_seg4.nii.gz"} <= f for f in parts_seen.values()):
        raise ValueError(f"{archive}: not the neurite-OASIS 2D layout (no {SUBJECT_GLOB}/slice_norm.nii.gz "
                         f"with slice_seg4.nii.gz); is this the right file?")


def extract_oasis2d(archive: str | os.PathLike, target_dir: str | os.PathLike, *,
                    expected_sha256: str | None = None) -> Path:
    """Check the archive and extract it to ``target_dir``; returns ``target_dir``.

    Checks, in order: the checksum (if given), that it is a readable and complete tar, that no
    member is a link/device or lands outside ``target_dir``, and the OASIS layout. Extraction goes
    to a temporary sibling renamed onto ``target_dir`` only on success. A complete
    ``target_dir`` (marker present) is reused as is; an incomplete one is an error.
    """
    archive, target = Path(archive), Path(target_dir)
    if (target / MARKER).is_file():
        return target
    if target.exists():
        raise FileExistsError(f"{target} exists but is not a complete extraction; delete it and try again")
    if not archive.is_file():
        raise FileNotFoundError(f"archive {archive} does not exist")
    if expected_sha256:
        _verify(archive, expected_sha256)
    try:
        with tarfile.open(archive, "r:*") as tf:
            _check_members(tf, archive, target)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ValueError(f"{archive}: not a readable tar archive ({err}); the server may have sent "
                         f"an HTML page or the download was cut, delete it and download again") from err
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        with tarfile.open(archive, "r:*") as tf:
            # The data filter (Python >= 3.11.4 / 3.12) repeats the safety checks inside tarfile.
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(tmp, **kwargs)
        write_json(tmp / MARKER, {"archive": archive.name, "sha256": _file_hash(archive)})
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

    ``known_hash`` is a sha256 hex digest (or ``'md5:<hex>'``). Without it, the sha256 of the
    first download that passes the checks is recorded in ``<archive>.sha256.json`` and every
    later use of the cached archive is verified against that record. Please follow the OASIS data
    use terms: do not redistribute the data.
    """
    import pooch  # only the download path needs it

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
    if record.is_file():
        recorded = json.loads(record.read_text())["sha256"]
        _verify(archive, recorded, hint=f" (recorded in {record} at first download; delete both to download again)")
    try:
        extract_oasis2d(archive, target)
    except ValueError:
        if not record.is_file() and not known_hash:
            archive.unlink(missing_ok=True)  # unverified and unusable: let the next call download again
        raise
    if not record.is_file():
        write_json(record, {"url": url, "file": fname, "sha256": _file_hash(archive)})
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


def load_oasis2d(root: str | os.PathLike, *, labels: str = "seg4", max_subjects: int | None = None,
                 progress: bool = False) -> dict:
    """Load the extracted neurite-OASIS 2D slices, subjects in sorted order.

    ``labels``: ``"seg4"`` (the package's 5-class table) or ``"seg24"`` (names read from
    ``seg24_labels.txt``). Returns ``{"images": float32 (N, 1, H, W) in [0, 1] (min-max per
    slice), "labels": int64 (N, H, W), "subjects": list[str], "label_names": tuple[str, ...]}``.
    """
    if labels not in ("seg4", "seg24"):
        raise ValueError(f"labels must be 'seg4' or 'seg24', got {labels!r}")
    root = _data_root(Path(root))
    names = SEG4_NAMES if labels == "seg4" else read_label_table(root / "seg24_labels.txt")
    subjects = sorted(d.name for d in root.glob(SUBJECT_GLOB) if (d / "slice_norm.nii.gz").is_file())
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
    return {
        "images": np.stack(images)[:, None],  # (N, 1, H, W)
        "labels": np.stack(labs),  # (N, H, W)
        "subjects": subjects,
        "label_names": tuple(names),
    }
