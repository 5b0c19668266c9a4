"""The label table shared by every data path: neurite-OASIS ``seg4``.

Both the embedded MNI-derived cohort and OASIS 2D use these five classes, so a model trained on
one reads the other. On the embedded data the labels are derived and approximate (see
``segreg_lite.template``); on OASIS they come from FreeSurfer.
"""
from __future__ import annotations

import numpy as np

from segreg_lite.checks import check_array_image, check_array_labels

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
    return check_array_labels(label, num_classes, name=name, names=SEG4_NAMES)


def check_image(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    """Return ``image`` as float32 after checking it is finite and not constant."""
    return check_array_image(image, name=name)


def rescale_unit(image: np.ndarray) -> np.ndarray:
    """Min-max rescale a checked image to [0, 1] (the package's image convention)."""
    lo, hi = float(image.min()), float(image.max())
    return ((image - lo) / (hi - lo)).astype(np.float32)
