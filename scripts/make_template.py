"""Cut the embedded template slab out of the MNI ICBM152 2009a (symmetric) template.

The package ships ``segreg_lite/data/mni_icbm152_coronal_slab.npz``: T1, GM and WM probability
volumes (uint8, 1 mm) of a coronal slab around MNI y = -18 mm (thalamus and lateral ventricles),
wide enough in y that oblique planes and through-plane jitter stay inside it. The source volumes
ship inside the nilearn wheel; nilearn is needed only here, never at run time:

    pip install --no-deps nilearn   # the data files are all we read; nilearn is not imported
    python scripts/make_template.py

The MNI copyright notice is written beside the slab (``MNI_COPYRIGHT.txt``) and must travel with it.
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np

CENTER_Y = 116  # voxel y of MNI y = -18 mm: thalamus and lateral ventricles (DATA.md)
HALF_WIDTH = 30  # slab half-width in voxels (mm): covers +-6 degree tilts and +-8 mm jitter
NAMES = {"t1": "t1", "gm": "gm", "wm": "wm"}

NOTICE = """\
Derived from the MNI ICBM152 2009a nonlinear symmetric template (T1 and GM/WM probability maps).

Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
Institute, McGill University. Permission to use, copy, modify, and distribute this software and
its documentation for any purpose and without fee is hereby granted, provided that the above
copyright notice appear in all copies. The authors and McGill University make no representations
about the suitability of this software for any purpose. It is provided 'as is' without express or
implied warranty.

Cite: Fonov et al., NeuroImage 54(1), 2011; Fonov et al., NeuroImage 47(S1), 2009 (OHBM);
Collins et al., "ANIMAL+INSECT", Computational Imaging and Vision, 1999.

The file mni_icbm152_coronal_slab.npz holds voxels y = {y0}..{y1} (MNI y = {mni0} .. {mni1} mm) of the
(197, 233, 189) 1 mm volumes, axes (x, y, z) in RAS voxel order, uint8 as distributed
(T1 intensity; GM and WM probability x 255). Made by scripts/make_template.py.
"""


def find_template_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")  # locate without importing (nilearn is heavy)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nilearn is not installed: `pip install --no-deps nilearn` (only its data files are read)")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "segreg_lite" / "data")
    args = parser.parse_args()
    src = find_template_dir()
    y0, y1 = CENTER_Y - HALF_WIDTH, CENTER_Y + HALF_WIDTH
    arrays = {}
    for key in NAMES:
        img = nib.load(src / f"mni_icbm152_{key}_tal_nlin_sym_09a_converted.nii.gz")
        vol = np.asarray(img.dataobj)
        if vol.shape != (197, 233, 189) or vol.dtype != np.uint8:
            raise SystemExit(f"unexpected template volume {key}: {vol.shape} {vol.dtype}")
        arrays[key] = vol[:, y0 : y1 + 1, :].copy()
        affine = img.affine
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / "mni_icbm152_coronal_slab.npz",
        **arrays,
        y_start=np.int64(y0),
        affine=affine.astype(np.float64),
    )
    mni = lambda v: int(affine[1, 1] * v + affine[1, 3])  # noqa: E731
    (args.out / "MNI_COPYRIGHT.txt").write_text(NOTICE.format(y0=y0, y1=y1, mni0=mni(y0), mni1=mni(y1)))
    size = (args.out / "mni_icbm152_coronal_slab.npz").stat().st_size
    print(f"wrote slab {arrays['t1'].shape} ({size / 1e6:.2f} MB) to {args.out}")


if __name__ == "__main__":
    main()
