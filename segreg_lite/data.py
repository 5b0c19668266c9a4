"""The one data container every method reads, and the three ways to fill it.

:class:`Data` holds images (N, 1, H, W) float32 in [0, 1], labels (N, H, W) int64, subject ids,
the label names and a one-line description. :func:`load_data` reads one of the three data paths:
the embedded generated cohort (:mod:`segreg_lite.cohort`), neurite-OASIS 2D
(:mod:`segreg_lite.oasis`, downloaded into the cache on first use) or a folder of NIfTI slices
(:mod:`segreg_lite.nifti`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from segreg_lite.labels import SEG4_NAMES


@dataclass
class Data:
    """Images (N, 1, H, W) float32 in [0, 1], labels (N, H, W) int64, subject ids, label names."""

    images: torch.Tensor
    labels: torch.Tensor
    subjects: list[str]
    label_names: tuple[str, ...]
    description: str

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


def load_data(source: str = "cohort", *, n_subjects: int = 300, seed: int = 0,
              size: Sequence[int] = (128, 128), max_subjects: int | None = None) -> Data:
    """``"cohort"``: the embedded generated cohort (``n_subjects``, ``seed``, ``size``); ``"oasis"``:
    neurite-OASIS 2D, downloaded into the cache on first use; any other value: a folder of NIfTI
    ``<case>_image.nii.gz`` / ``<case>_label.nii.gz`` slices."""
    if source == "cohort":
        from segreg_lite.cohort import CohortConfig, generate_cohort

        c = generate_cohort(n_subjects, seed=seed, config=CohortConfig(size=tuple(size)))
        grid = "" if tuple(size) == (128, 128) else f" of {size[0]}x{size[1]}"  # the default grid goes unsaid
        return Data(c.images, c.labels, list(c.subjects), SEG4_NAMES, f"embedded cohort, {n_subjects} subjects{grid}, seed {seed}")
    if source == "oasis":
        from segreg_lite.oasis import download_oasis2d, load_oasis2d

        return load_oasis2d(download_oasis2d(), max_subjects=max_subjects, progress=True)
    from segreg_lite.nifti import load_nifti_folder

    if not Path(source).is_dir():
        raise FileNotFoundError(f"data {source!r} is neither 'cohort', 'oasis' nor an existing NIfTI folder")
    return load_nifti_folder(source)
