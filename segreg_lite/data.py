"""The three ways to fill the one data container, :class:`Data`, and how a recipe fills it again.

:class:`Data` (in :mod:`segreg_lite.container`, below the loaders, and re-exported here) holds
images (N, 1, H, W) float32 in [0, 1], labels (N, H, W) int64, subject ids, the label names and
a one-line description. :func:`load_data` reads one of the three data paths: the embedded
generated cohort (:mod:`segreg_lite.cohort`), neurite-OASIS 2D (:mod:`segreg_lite.oasis`,
downloaded into the cache on first use) or a folder of NIfTI slices (:mod:`segreg_lite.nifti`),
and records in ``Data.recipe`` (a :class:`DataRecipe`) how; :func:`from_recipe` makes the same
data again from that recipe (a sweep's job does, on whatever machine it runs).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from segreg_lite.container import Data, DataRecipe
from segreg_lite.labels import SEG4_NAMES

__all__ = ["Data", "DataRecipe", "from_recipe", "load_data"]


def load_data(source: str = "cohort", *, n_subjects: int = 300, seed: int = 0,
              size: Sequence[int] = (128, 128), max_subjects: int | None = None) -> Data:
    """``"cohort"``: the embedded generated cohort (``n_subjects``, ``seed``, ``size``); ``"oasis"``:
    neurite-OASIS 2D, downloaded into the cache on first use; any other value: a folder of NIfTI
    ``<case>_image.nii.gz`` / ``<case>_label.nii.gz`` slices. The data's ``recipe`` records the
    call (a folder by its absolute path), for :func:`from_recipe`."""
    data = _load(source, n_subjects=n_subjects, seed=seed, size=size, max_subjects=max_subjects)  # checks them
    folder = source not in ("cohort", "oasis")
    data.recipe = DataRecipe(str(Path(source).resolve()) if folder else source, int(n_subjects), int(seed),
                             (int(size[0]), int(size[1])), max_subjects)
    return data


def from_recipe(recipe: DataRecipe) -> Data:
    """The data that :func:`load_data` made with ``recipe`` (``Data.recipe``), made again."""
    return load_data(recipe.source, n_subjects=recipe.n_subjects, seed=recipe.seed, size=recipe.size,
                     max_subjects=recipe.max_subjects)


def _load(source: str, *, n_subjects: int, seed: int, size: Sequence[int], max_subjects: int | None) -> Data:
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
