"""The label table shared by every data path: neurite-OASIS ``seg4``.

Both the embedded MNI-derived cohort and OASIS 2D use these five classes, so a model trained on
one reads the other. On the embedded data the labels are derived and approximate (see
``segreg_lite.template``); on OASIS they come from FreeSurfer.
"""
from __future__ import annotations

import numpy as np

#: seg4 class names, index = label value.
SEG4_NAMES: tuple[str, ...] = (
    "background",
    "cortex",
    "subcortical GM",
    "white matter",
    "CSF",
)
#: One display colour per class (RGB in [0, 1]); background transparent in overlays.
SEG4_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.0),
    (0.90, 0.35, 0.20),
    (0.95, 0.80, 0.15),
    (0.25, 0.60, 0.95),
    (0.30, 0.85, 0.55),
)
NUM_CLASSES = len(SEG4_NAMES)


def check_labels(label: np.ndarray, num_classes: int = NUM_CLASSES, *, name: str = "label") -> np.ndarray:
    """Return ``label`` as int64 after checking it holds whole numbers in ``[0, num_classes)``.

    ``name`` (a file path, a subject id) is put in the error so the user knows what to fix.
    """
    arr = np.asarray(label)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: label map contains NaN or inf")
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name}: label map has non-integer values (dtype {arr.dtype})")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{name}: label map has dtype {arr.dtype}, expected integers")
    arr = arr.astype(np.int64)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= num_classes:
            bad = np.unique(arr[(arr < 0) | (arr >= num_classes)])[:10].tolist()
            raise ValueError(
                f"{name}: label values {bad} are outside the table 0..{num_classes - 1} "
                f"({', '.join(SEG4_NAMES[:num_classes]) if num_classes <= NUM_CLASSES else num_classes} )"
            )
    return arr


def check_image(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Return ``image`` as float32 after checking it is finite and not constant."""
    arr = np.asarray(image, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: image contains NaN or inf")
    if arr.size == 0 or float(arr.max()) == float(arr.min()):
        raise ValueError(f"{name}: image is constant (value {float(arr.flat[0]) if arr.size else 'empty'}), nothing to learn from")
    return arr


def rescale_unit(image: np.ndarray) -> np.ndarray:
    """Min-max rescale a checked image to [0, 1] (the package's image convention)."""
    lo, hi = float(image.min()), float(image.max())
    return ((image - lo) / (hi - lo)).astype(np.float32)
