"""The one data container every method reads, and the recipe that makes it again.

:class:`Data` holds images (N, 1, H, W) float32 in [0, 1], labels (N, H, W) int64, subject ids,
the label names and a one-line description. It stands below the loaders that fill it
(:mod:`segreg_lite.cohort` through :func:`segreg_lite.data.load_data`, :mod:`segreg_lite.oasis`,
:mod:`segreg_lite.nifti`), so that they import it and nothing imports them back; it is
re-exported from :mod:`segreg_lite.data`, its home before.

:class:`DataRecipe` is how :func:`segreg_lite.data.load_data` made a :class:`Data` (source,
subjects, seed, size): a few bytes that a sweep's job on another machine turns into the same
data again (:func:`segreg_lite.data.from_recipe`) instead of receiving the arrays pickled.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class DataRecipe:
    """What :func:`segreg_lite.data.load_data` was called with: ``source`` (``"cohort"``,
    ``"oasis"`` or the absolute path of a NIfTI folder), the cohort's ``n_subjects``, ``seed`` and
    ``size``, and OASIS's ``max_subjects``."""

    source: str = "cohort"
    n_subjects: int = 300
    seed: int = 0
    size: tuple[int, int] = (128, 128)
    max_subjects: int | None = None


@dataclass
class Data:
    """Images (N, 1, H, W) float32 in [0, 1], labels (N, H, W) int64, subject ids, label names;
    ``recipe``, when :func:`segreg_lite.data.load_data` made it, says how to make it again."""

    images: torch.Tensor
    labels: torch.Tensor
    subjects: list[str]
    label_names: tuple[str, ...]
    description: str
    recipe: DataRecipe | None = field(default=None, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)
