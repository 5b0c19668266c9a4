"""A real scan on the cohort's grid: bring a skull-stripped 2D brain slice to the field of
view, pixel grid, brain size, intensity range and orientation of the generated cohort, so
that a segmenter trained on the cohort can be run on it.

The generated subjects (``segreg_lite.cohort``) are coronal slices on a 128x128 grid of
1.41 mm pixels (180 mm field of view), superior up, the brain centred in the frame and
filling about 80% of its width, intensities in [0, 1] with the background at 0 and the
99.9th percentile at 1. :func:`to_cohort_grid` finds the brain (the largest connected
region above a threshold), crops it with a margin, resamples it so that its width is the
cohort template's brain width (or, given the pixel size, to the cohort's pixel size),
centres it where the template's brain sits and rescales the intensities as the cohort
does.

:func:`load_dipy_t1_slice` reads the real, skull-stripped T1 coronal slice that ships
inside the ``dipy`` wheel (``dipy/data/files/t1_coronal_slice.npy``, 256x256, no labels);
dipy is an optional extra (``pip install dipy`` or ``pip install -e .[realscan]``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from segreg_lite.cohort import CohortConfig

INSTALL_HINT = ("pip install dipy  (or, in a clone of this repository: "
                "pip install -e \".[realscan]\")")


@dataclass(frozen=True)
class CohortBrain:
    """Where the brain sits on the cohort's grid, from the template plane's labels:
    ``width`` and ``height`` of its bounding box and ``center`` (row, column) of that box,
    in pixels; ``size`` is the grid (H, W)."""

    size: tuple[int, int]
    width: float
    height: float
    center: tuple[float, float]


@dataclass(frozen=True)
class ConvertedSlice:
    """What :func:`to_cohort_grid` returns.

    ``image``: float32 (H, W) in [0, 1] on the cohort's grid; ``brain``: bool (H, W), the
    brain mask carried along (nearest neighbour); ``zoom``: output pixels per input pixel;
    ``box``: the brain's bounding box in the input (row0, row1, col0, col1), ends
    exclusive; ``spacing_mm``: the input's pixel size this implies at the cohort's.
    """

    image: np.ndarray
    brain: np.ndarray
    zoom: float
    box: tuple[int, int, int, int]
    spacing_mm: float


@functools.lru_cache(maxsize=4)
def cohort_brain(config: CohortConfig | None = None) -> CohortBrain:
    """The brain's bounding box on the cohort's grid, from the template plane with no
    variation (:func:`segreg_lite.cohort.template_plane`); subjects scatter around it by a
    few pixels. Cached: the first call builds the template (a few seconds)."""
    from segreg_lite.cohort import template_plane

    cfg = config or CohortConfig()
    _, labels = template_plane(cfg)
    rows, cols = np.nonzero(labels.numpy() > 0)
    center = ((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2)
    return CohortBrain(size=tuple(cfg.size), width=float(cols.max() - cols.min() + 1),
                       height=float(rows.max() - rows.min() + 1),
                       center=(float(center[0]), float(center[1])))


def _check_image(image) -> np.ndarray:
    try:
        arr = np.asarray(image, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"expected a 2D image of numbers, got {type(image).__name__}: "
                         f"{err}") from None
    if arr.ndim != 2:
        squeezable = arr.squeeze().ndim == 2
        hint = " (drop the singleton axes with .squeeze())" if squeezable else ""
        raise ValueError(f"expected a 2D slice (H, W), got shape {arr.shape}{hint}")
    if min(arr.shape) < 8:
        raise ValueError(f"the slice is too small to hold a brain: shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"the image holds {bad} NaN or infinite values; replace them "
                         "first (e.g. np.nan_to_num(image))")
    if arr.max() == arr.min():
        raise ValueError(f"the image is constant ({arr.min():g}): "
                         "there is no brain to find")
    return arr


def brain_mask(image, threshold: float = 0.1) -> np.ndarray:
    """The largest connected region brighter than ``threshold`` times the image's 99th
    percentile (above its minimum), holes filled: the brain of a skull-stripped slice."""
    from scipy import ndimage

    arr = _check_image(image)
    arr = arr - arr.min()
    level = threshold * np.percentile(arr, 99)
    if level <= 0:  # over 99% of the pixels at the minimum: scale by the largest value
        level = threshold * arr.max()
    regions, n = ndimage.label(arr > level)
    if n == 0:
        raise ValueError("no brain found: no pixel is above the threshold")
    sizes = np.bincount(regions.ravel())[1:]
    return ndimage.binary_fill_holes(regions == 1 + int(sizes.argmax()))


def to_cohort_grid(image, *, spacing_mm: float | None = None, rot90: int = 0,
                   flip_lr: bool = False, margin: int = 4, threshold: float = 0.1,
                   config: CohortConfig | None = None) -> ConvertedSlice:
    """Bring a skull-stripped 2D brain slice to the cohort's grid (module docstring).

    ``image``: (H, W) array, any size and intensity scale, background darkest.
    ``spacing_mm``: its pixel size, if known, to resample to the cohort's pixel size; None
    (default) scales the brain to the width of the cohort template's brain. ``rot90``
    (quarter turns counterclockwise, as ``np.rot90``) and ``flip_lr`` first bring it to
    the cohort's orientation: a coronal slice, superior up. ``margin``: pixels of
    background kept around the brain on every side (the brain is shrunk if it would not
    fit). ``threshold``: see :func:`brain_mask`. Raises ValueError for an image that is
    not 2D, holds NaN or infinity, or is constant.
    """
    from scipy import ndimage

    arr = _check_image(image)
    arr = np.rot90(arr, k=rot90)
    if flip_lr:
        arr = arr[:, ::-1]
    arr = np.ascontiguousarray(arr - arr.min())  # the background (darkest) at 0
    brain = brain_mask(arr, threshold)
    rows, cols = np.nonzero(brain)
    box = (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
    height, width = box[1] - box[0], box[3] - box[2]

    cfg = config or CohortConfig()
    target = cohort_brain(config)
    out_h, out_w = target.size
    if spacing_mm is not None:
        if not spacing_mm > 0:
            raise ValueError(f"spacing_mm must be positive, got {spacing_mm!r}")
        zoom = spacing_mm / cfg.spacing_mm
    else:
        zoom = target.width / width
    room = min((out_h - 2 * margin) / height, (out_w - 2 * margin) / width)
    if room <= 0:
        raise ValueError(f"margin {margin} leaves no room on a {out_h}x{out_w} grid")
    zoom = min(zoom, room)  # the brain and its margin always fit in the frame

    # Output pixel (r, c) samples the input at (r - r_out) / zoom + r_in: the brain box's
    # centre goes to the template brain's, moved inwards if the box would cross the
    # margin.
    half_h, half_w = zoom * height / 2, zoom * width / 2
    r_out = float(np.clip(target.center[0], margin + half_h - 0.5,
                          out_h - margin - half_h - 0.5))
    c_out = float(np.clip(target.center[1], margin + half_w - 0.5,
                          out_w - margin - half_w - 0.5))
    r_in, c_in = (box[0] + box[1] - 1) / 2, (box[2] + box[3] - 1) / 2
    grid = np.indices((out_h, out_w), dtype=np.float64)
    coords = np.stack([(grid[0] - r_out) / zoom + r_in, (grid[1] - c_out) / zoom + c_in])

    # Anti-alias before shrinking (scikit-image's sigma), then sample bilinearly.
    smooth = ndimage.gaussian_filter(arr, (1 / zoom - 1) / 2) if zoom < 1 else arr
    out = ndimage.map_coordinates(smooth, coords, order=1, mode="constant", cval=0.0)
    mask = ndimage.map_coordinates(brain.astype(np.float64), coords, order=0,
                                   mode="constant")
    out = np.clip(out, 0.0, None)
    top = np.quantile(out, 0.999)  # as the cohort: the 99.9th percentile goes to 1
    if top <= 0:
        raise ValueError("the brain vanished on resampling: "
                         "is the image mostly background?")
    out = np.clip(out / top, 0.0, 1.0).astype(np.float32)
    return ConvertedSlice(image=out, brain=mask > 0.5, zoom=float(zoom), box=box,
                          spacing_mm=float(cfg.spacing_mm * zoom))


def load_dipy_t1_slice() -> np.ndarray | None:
    """dipy's real, skull-stripped T1 coronal slice (256x256 float64, superior up, no
    labels), or None, after printing how to get it, when dipy is not installed or the file
    is missing. The file ships inside the dipy wheel
    (``dipy/data/files/t1_coronal_slice.npy``): nothing is downloaded."""
    try:
        from dipy.data import get_fnames
    except ImportError:
        print(f"dipy is not installed, so there is no real scan to show. Get it with:\n"
              f"    {INSTALL_HINT}\nand run this section again.")
        return None
    try:
        return np.load(get_fnames(name="t1_coronal_slice"))
    except (OSError, ValueError) as err:
        print(f"dipy could not provide its t1_coronal_slice ({err}); reinstall it with:\n"
              f"    {INSTALL_HINT}")
        return None
