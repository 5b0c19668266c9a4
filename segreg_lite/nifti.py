"""Your own data: a folder of NIfTI image/label pairs, read as 2D slices, and the writer for it.

A folder holds ``<case>_image.nii.gz`` next to ``<case>_label.nii.gz`` (``.nii`` works too).
:func:`load_nifti_folder` returns the same layout as :func:`segreg_lite.oasis.load_oasis2d`, so
anything that trains on OASIS trains on your folder; :func:`save_nifti_folder` writes one (the
book exports the synthetic cohort with it as a worked "own data" example).

Arrays are read and written in stored voxel order, with no reorientation: a slice saved as
``(H, W)`` loads as ``(H, W)``. Labels use the seg4 table (``segreg_lite.labels``) unless you pass
another ``num_classes``.

Every file's header is checked before any of its data is read (:func:`check_nifti_header`): its
dimensions, its data type (integers, floats or booleans) and the size its data would take in
memory, against :data:`MAX_NIFTI_BYTES`. A header costs a few hundred bytes, so without this a
56-byte file declaring a 20000 x 20000 float32 image would make the reader allocate 1.6 GB
before failing. Raise the limit for larger volumes: ``segreg_lite.nifti.MAX_NIFTI_BYTES = 2**31``.
"""
from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from segreg_lite.container import Data
from segreg_lite.io import atomic_path
from segreg_lite.labels import NUM_CLASSES, SEG4_NAMES, check_image, check_labels, rescale_unit

_NIFTI_EXTS = (".nii.gz", ".nii")

#: The most memory one file's data may declare (bytes, after intensity scaling): 512 MiB holds a
#: 512 x 512 x 512 float32 volume. A module attribute, read at every call: set it to change it.
MAX_NIFTI_BYTES: int = 512 * 2**20


def _reason(err: Exception) -> str:
    """An exception as one line that is never empty (a MemoryError has no message)."""
    return f"{type(err).__name__}: {' '.join(str(err).split()) or 'no message'}"


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # unreachable


def _scaled_dtype(dtype: np.dtype, slope, inter) -> np.dtype:
    """The dtype nibabel returns for data stored as ``dtype`` and scaled by ``slope``/``inter``
    (None or 1/0: not scaled): int8 or int16 with a slope becomes float32 or float64, 8 times the
    memory of int8 at most. Found by nibabel's own rule on one element, so it never disagrees."""
    from nibabel.volumeutils import apply_read_scaling

    return apply_read_scaling(np.zeros(1, dtype), slope, inter).dtype


def check_nifti_header(path: str | os.PathLike, header, *, max_bytes: int | None = None,
                       scaling: tuple | None = None) -> tuple[tuple[int, ...], np.dtype]:
    """Check a NIfTI ``header`` (of the file ``path``) before its data is read: every dimension at
    least 1, a numeric data type, the size of the array in memory (as it will be read: scaled by
    ``scaling``, the ``(slope, inter)`` the reader applies, default the header's) at most
    ``max_bytes`` (default :data:`MAX_NIFTI_BYTES`) and, for an uncompressed file, the data
    present in the file. Returns the shape and the stored dtype; a ValueError naming the file
    says what is wrong."""
    limit = MAX_NIFTI_BYTES if max_bytes is None else max_bytes
    shape = tuple(int(v) for v in header.get_data_shape())
    dtype = np.dtype(header.get_data_dtype())
    dims = "x".join(map(str, shape)) or "()"
    if not shape or min(shape) < 1:
        raise ValueError(f"{path}: the header declares an empty image (dimensions {dims})")
    if dtype.kind not in "biuf" or dtype.fields is not None:
        raise ValueError(f"{path}: the header declares data of type {dtype} ({header.get_data_dtype()!r}); "
                         "images and labels must hold integers or floats")
    # nibabel moves the scaling out of a loaded header (scl_slope reads nan there) into img.dataobj,
    # so the reader passes it: without it, int8 data with a slope (a 1 MB .nii.gz) went by its
    # stored size and became a float64 array 8 times larger, a 2.5 GB peak.
    if scaling is None:
        scaling = header.get_slope_inter() if hasattr(header, "get_slope_inter") else (None, None)
    out = _scaled_dtype(dtype, *scaling)
    declared = float(np.prod(shape, dtype=np.float64)) * out.itemsize
    if declared > limit:
        kind = f"{dtype} image" + (f" scaled to {out}" if out != dtype else "")
        raise ValueError(f"{path}: the header declares a {dims} {kind}, {_size(declared)} in memory, over the "
                         f"limit of {_size(limit)} (segreg_lite.nifti.MAX_NIFTI_BYTES; raise it for larger volumes)")
    if not str(path).endswith(".gz"):
        offset = int(header.get_data_offset()) if hasattr(header, "get_data_offset") else 0
        need, have = offset + int(np.prod(shape)) * dtype.itemsize, os.path.getsize(path)
        if have < need:
            raise ValueError(f"{path}: truncated: the header declares a {dims} {dtype} image ({_size(need)} with the "
                             f"header) but the file holds {_size(have)}")
    return shape, dtype


def read_nifti_array(path: str | os.PathLike) -> np.ndarray:
    """Read a NIfTI file's array, dropping trailing singleton axes beyond the second.

    ``(H, W, 1)`` becomes ``(H, W)`` and ``(X, Y, Z, 1)`` becomes ``(X, Y, Z)``: scanners and
    converters often add such axes and they carry no data. The header is checked first
    (:func:`check_nifti_header`, against :data:`MAX_NIFTI_BYTES`); unreadable files and headers
    that fail the checks raise ValueError naming the file.
    """
    import nibabel as nib  # imported here so that importing segreg_lite stays cheap

    try:
        img = nib.load(str(path), mmap=False)  # reads the header only
    except Exception as err:  # nibabel raises several types; the user needs the file name
        raise ValueError(f"{path}: not a readable NIfTI file ({_reason(err)})") from None
    proxy = img.dataobj
    check_nifti_header(path, img.header, scaling=(getattr(proxy, "slope", None), getattr(proxy, "inter", None)))
    try:
        arr = np.asarray(img.dataobj)
    except Exception as err:
        raise ValueError(f"{path}: the NIfTI data cannot be read ({_reason(err)})") from None
    while arr.ndim > 2 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr


def _split_nifti_name(name: str) -> tuple[str, str] | None:
    """``'a_image.nii.gz'`` -> ``('a_image', '.nii.gz')``; None for non-NIfTI names."""
    for ext in _NIFTI_EXTS:
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], ext
    return None


def _swap_last(stem: str, old: str, new: str) -> str | None:
    """Replace the last occurrence of ``old`` in ``stem`` (None if absent)."""
    i = stem.rfind(old)
    return None if i < 0 else stem[:i] + new + stem[i + len(old):]


def _find_partner(folder: Path, stem: str, ext: str, old: str, new: str) -> Path | None:
    """The existing file named ``stem`` with ``old`` -> ``new``, same extension preferred."""
    swapped = _swap_last(stem, old, new)
    if swapped is None:
        return None
    for e in (ext, *[x for x in _NIFTI_EXTS if x != ext]):
        if (folder / (swapped + e)).is_file():
            return folder / (swapped + e)
    return None


def _pair_files(folder: Path, image_pattern: str, label_suffix: tuple[str, str]) -> list[tuple[str, Path, Path]]:
    """Match every image to its label; returns ``(case, image, label)`` sorted by case name."""
    img_tag, lab_tag = label_suffix
    if not img_tag or not lab_tag or img_tag == lab_tag:
        raise ValueError(f"label_suffix must be two different non-empty strings, got {label_suffix!r}")
    # A link that leads nowhere (its target gone, or a loop of links) is not a file: say so, by
    # name, rather than leave its pair out without a word.
    broken = sorted(p.name for p in folder.iterdir() if p.is_symlink() and not p.exists() and _split_nifti_name(p.name))
    if broken:
        warnings.warn(f"{folder}: {len(broken)} NIfTI file(s) are symbolic links that lead nowhere (a missing target or "
                      f"a loop of links), read as absent, so their pairs are left out: {', '.join(broken[:8])}"
                      f"{' and more' if len(broken) > 8 else ''}; fix or remove the links", stacklevel=3)
    images = sorted(p for p in folder.glob(image_pattern) if p.is_file())
    if not images:
        raise FileNotFoundError(f"no files in {folder} match the pattern {image_pattern!r}")
    pairs, unlabeled, cases = [], [], {}
    for img in images:
        split = _split_nifti_name(img.name)
        if split is None:
            raise ValueError(f"{img}: matched {image_pattern!r} but is not a .nii or .nii.gz file")
        stem, ext = split
        if stem.rfind(lab_tag) > stem.rfind(img_tag):
            continue  # a label caught by a broad pattern such as '*.nii*'
        if img_tag not in stem:
            raise ValueError(f"{img}: name does not contain {img_tag!r}, so its label cannot be found")
        label = _find_partner(folder, stem, ext, img_tag, lab_tag)
        if label is None:
            unlabeled.append(img.name)
            continue
        case = _swap_last(stem, img_tag, "") or stem
        if case in cases:
            raise ValueError(f"{img} and {cases[case]} give the same case name {case!r}; keep one")
        cases[case] = img
        pairs.append((case, img, label))
    if unlabeled:
        raise ValueError(f"images without a label file (expected {img_tag!r} -> {lab_tag!r} in the name) "
                         f"in {folder}: {unlabeled}")
    # A label is orphaned only if no image of that name exists at all: labels of images that a
    # narrower image_pattern leaves out on purpose are not errors.
    orphans = [p.name for p in sorted(folder.iterdir()) if p.is_file()
               and (s := _split_nifti_name(p.name)) and s[0].rfind(lab_tag) > s[0].rfind(img_tag)
               and _find_partner(folder, s[0], s[1], lab_tag, img_tag) is None]
    if orphans:
        raise ValueError(f"label files without an image (expected {lab_tag!r} -> {img_tag!r}) "
                         f"in {folder}: {orphans}")
    return sorted(pairs)


def load_nifti_folder(folder: str | os.PathLike, *, image_pattern: str = "*_image.nii*",
                      label_suffix: tuple[str, str] = ("_image", "_label"), num_classes: int = NUM_CLASSES,
                      slice_axis: int | None = None, slices: Sequence[int] | None = None) -> Data:
    """Load a folder of NIfTI image/label pairs as 2D slices.

    Pairing: for each file matching ``image_pattern``, the last occurrence of ``label_suffix[0]``
    in its name (extension excluded) is replaced by ``label_suffix[1]``; ``.nii.gz`` and ``.nii``
    partners are both accepted. The case name is the image name without that string and extension
    (``case01_image.nii.gz`` -> ``case01``). Files whose last tag is the label's are labels,
    skipped if a broad pattern catches them.

    Each 2D file (or 3D with a trailing singleton axis) is one slice. A 3D volume needs
    ``slice_axis`` (0, 1 or 2); it is cut along that axis at ``slices`` (default: every slice whose
    label has foreground), with subject ids like ``case01:z=40`` (axis letter x/y/z = 0/1/2).

    Returns a :class:`~segreg_lite.data.Data`: images float32 (N, 1, H, W) in [0, 1] (min-max per
    slice), labels int64 (N, H, W), subject ids and label names (seg4's when ``num_classes == 5``,
    else ``"class i"``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"NIfTI folder {folder} does not exist")
    if slice_axis is not None and slice_axis not in (0, 1, 2):
        raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis!r}")
    images, labels, subjects = [], [], []
    for case, img_path, lab_path in _pair_files(folder, image_pattern, tuple(label_suffix)):
        img, lab = read_nifti_array(img_path), read_nifti_array(lab_path)
        if img.ndim not in (2, 3):
            raise ValueError(f"{img_path}: expected a 2D slice or 3D volume, got shape {img.shape}")
        if img.shape != lab.shape:
            raise ValueError(f"{img_path} has shape {img.shape} but its label {lab_path} has shape {lab.shape}")
        lab = check_labels(lab, num_classes, name=str(lab_path))
        if img.ndim == 2:
            cuts = [(case, img, lab)]
        else:
            if slice_axis is None:
                raise ValueError(f"{img_path} is a 3D volume {img.shape}: cut it into 2D slices along an axis, 0, 1 "
                                 f"or 2, in Python (load_nifti_folder(folder, slice_axis=2)); segreg-lite run --data "
                                 f"takes 2D slices, so for the command line write them out first with "
                                 f"save_nifti_folder(new_folder, data.images, data.labels) and pass --data new_folder")
            vol, vlab = np.moveaxis(img, slice_axis, 0), np.moveaxis(lab, slice_axis, 0)  # (S, H, W)
            if slices is None:
                idx = [k for k in range(len(vlab)) if vlab[k].any()]
                if not idx:
                    raise ValueError(f"{lab_path}: no slice along axis {slice_axis} has foreground (the label is all "
                                     f"background); give it labels, or pick slices in Python: "
                                     f"load_nifti_folder(folder, slice_axis={slice_axis}, slices=[...])")
            else:
                idx = [int(k) for k in slices]
                bad = [k for k in idx if not 0 <= k < len(vol)]
                if bad:
                    raise ValueError(f"{img_path}: slices {bad} out of range 0..{len(vol) - 1} "
                                     f"along axis {slice_axis} (shape {img.shape})")
            cuts = [(f"{case}:{'xyz'[slice_axis]}={k}", vol[k], vlab[k]) for k in idx]
        for sid, im, lb in cuts:
            im = check_image(im, name=f"{img_path} ({sid})")
            images.append(rescale_unit(im))
            labels.append(lb)
            subjects.append(sid)
    shapes: dict[tuple[int, ...], list[str]] = {}
    for sid, im in zip(subjects, images):
        shapes.setdefault(im.shape, []).append(sid)
    if len(shapes) > 1:
        listing = "; ".join(f"{s}: {len(ids)} slices (e.g. {', '.join(ids[:3])})" for s, ids in shapes.items())
        raise ValueError(f"slices in {folder} do not share one shape ({listing}); "
                         f"resample or crop them to one size first")
    names = SEG4_NAMES if num_classes == NUM_CLASSES else tuple(f"class {i}" for i in range(num_classes))
    return Data(torch.from_numpy(np.stack(images)[:, None]).float(), torch.from_numpy(np.stack(labels)).long(),
                subjects, names, f"NIfTI folder {folder}, {len(subjects)} subjects")


def _write_nifti(path: Path, arr: np.ndarray, affine: np.ndarray) -> None:
    """Write one ``.nii.gz`` atomically: the gzip bytes go to a temp file renamed on success."""
    import nibabel as nib

    # nibabel picks the format from the file name, and atomic_path's temp name ends in .tmp, so
    # serialise in memory and gzip ourselves; mtime=0 keeps the bytes reproducible.
    data = gzip.compress(nib.Nifti1Image(arr, affine).to_bytes(), mtime=0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_nifti_folder(folder: str | os.PathLike, images, labels, *, names: Sequence[str] | None = None,
                      spacing: tuple[float, float] = (1.0, 1.0)) -> list[Path]:
    """Write 2D slices as ``<name>_image.nii.gz`` / ``<name>_label.nii.gz`` pairs.

    ``images``: (N, 1, H, W) or (N, H, W), written as float32; ``labels``: (N, H, W) non-negative
    integers, written as uint8 (int16 if any value exceeds 255). ``names`` default to
    ``case000, case001, ...``; ``spacing`` is the pixel size in mm. Each file is written
    atomically. Returns the written paths, image then label for each case.
    """
    imgs, labs = np.asarray(images), np.asarray(labels)
    if imgs.ndim == 4 and imgs.shape[1] == 1:
        imgs = imgs[:, 0]  # (N, 1, H, W) -> (N, H, W)
    if imgs.ndim != 3 or labs.shape != imgs.shape:
        raise ValueError(f"expected images (N, 1, H, W) or (N, H, W) and labels (N, H, W) of matching size, "
                         f"got images {np.shape(images)} and labels {np.shape(labels)}")
    n = len(imgs)
    names = [f"case{i:03d}" for i in range(n)] if names is None else [str(s) for s in names]
    if len(names) != n or len(set(names)) != n:
        raise ValueError(f"names must be {n} distinct strings, got {len(names)} ({len(set(names))} distinct)")
    bad = [s for s in names if not s or "/" in s or "\\" in s]
    if bad:
        raise ValueError(f"names must be plain file-name stems, got {bad}")
    # check_labels wants a table size; 2**15 admits anything int16 holds and still rejects
    # negative or fractional values.
    labs = check_labels(labs, 2**15, name="labels")
    lab_dtype = np.uint8 if labs.max(initial=0) < 256 else np.int16
    affine = np.diag([float(spacing[0]), float(spacing[1]), 1.0, 1.0])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, im, lb in zip(names, imgs, labs):
        im = check_image(im, name=f"image {name}")
        for suffix, arr in (("_image", im), ("_label", lb.astype(lab_dtype))):
            path = folder / f"{name}{suffix}.nii.gz"
            _write_nifti(path, arr, affine)
            written.append(path)
    return written
