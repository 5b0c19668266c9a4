"""The embedded MNI ICBM152 2009a coronal slab and the seg4 tissue maps derived from it.

The package ships a 1 mm coronal slab of the MNI ICBM152 2009a symmetric template (T1 and GM/WM
probabilities, made by ``scripts/make_template.py``; notice in ``data/MNI_COPYRIGHT.txt``;
Fonov et al. 2009, 2011). From it we derive soft maps of the five seg4 classes. These labels are
*derived and approximate*, not expert annotations:

- background: outside the brain mask ``T1 > 0`` (the template's official mask);
- white matter: the WM probability; CSF: brain minus GM minus WM (clipped at 0);
- cortex vs subcortical GM: the GM probability split by depth: GM deeper than
  ``SUBCORTICAL_DEPTH_MM`` below the closed brain surface (sulci and fissures filled) is
  subcortical (thalamus, basal ganglia), the rest is cortex (insula is a borderline case).

Two more maps drive the cohort's atrophy model (``segreg_lite.cohort``): the distance of each
cortex voxel to the nearest CSF or background (cortical thinning peels the cortex from its pial
side, widening sulci), and a unit field pointing towards the nearest lateral-ventricle voxel,
damped with distance (ventricle enlargement pulls sample points towards the ventricles; an
enlargement of s mm keeps the map one-to-one outside the ventricles while s < VENTRICLE_DECAY_MM).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch

SLAB_FILE = "mni_icbm152_coronal_slab.npz"
CENTER_Y_VOXEL = 116  # MNI y = -18 mm: through thalamus and lateral ventricles
SUBCORTICAL_DEPTH_MM = 30.0  # GM deeper than this below the closed surface is subcortical
VENTRICLE_DEPTH_MM = 20.0  # CSF deeper than this (and near the midline) is ventricle
VENTRICLE_DECAY_MM = 10.0  # enlargement fades with distance from the ventricles on this scale
CLOSING_RADIUS_MM = 6  # closing radius that fills sulci before measuring depth

#: Order of the channels in :attr:`Template.maps`.
CHANNELS = ("t1", "background", "cortex", "subcortical", "wm", "csf", "cortex_depth", "vent_x", "vent_y", "vent_z")


@dataclass(frozen=True)
class Template:
    """Derived template volumes, axes (x, y, z) in 1 mm RAS voxels of the slab.

    ``maps``: float32 (C, X, Y, Z) with the channels of :data:`CHANNELS`; ``t1`` in [0, 1], class
    maps sum to 1 per voxel, ``cortex_depth`` in mm, ``vent_*`` a damped unit vector in voxels.
    ``tissue_means``: mean T1 of each class (index = seg4 label, background 0).
    ``ventricle_center``: (x, y, z) voxel centre of the lateral ventricles (midline, ~thalamus top).
    """

    maps: np.ndarray
    tissue_means: np.ndarray
    y_start: int
    ventricle_center: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.maps.shape[1:])

    def labels(self) -> np.ndarray:
        """Hard seg4 labels (X, Y, Z) int64 (see :func:`hard_labels`)."""
        return hard_labels(torch.from_numpy(self.maps[None, 1:6]))[0].numpy()


def hard_labels(probs: torch.Tensor) -> torch.Tensor:
    """Hard seg4 labels from soft class maps: (N, 5, ...) -> int64 (N, ...).

    Tissue first (background, GM, WM, CSF), then GM split into cortex or subcortical by whichever
    share is larger, so that splitting GM in two never hands a GM voxel to its runner-up tissue.
    """
    gm = probs[:, 1] + probs[:, 2]
    tissue = torch.stack([probs[:, 0], gm, probs[:, 3], probs[:, 4]], dim=1)  # (N, 4, ...)
    label = tissue.argmax(dim=1)  # 0 bg, 1 GM, 2 WM, 3 CSF
    seg4 = label + (label >= 2).long()  # WM -> 3, CSF -> 4
    return seg4 + ((label == 1) & (probs[:, 2] > probs[:, 1])).long()  # GM -> 1 or 2


def _disk(radius: int) -> np.ndarray:
    """A coronal (x, z) disk as a (2r+1, 1, 2r+1) structuring element."""
    r = np.arange(-radius, radius + 1)
    return ((r[:, None] ** 2 + r[None, :] ** 2) <= radius**2)[:, None, :]


def load_slab() -> dict[str, np.ndarray]:
    """The vendored uint8 volumes ``t1``, ``gm``, ``wm`` (X, Y, Z) and ``y_start``."""
    with resources.files("segreg_lite").joinpath("data", SLAB_FILE).open("rb") as fh:
        with np.load(fh) as npz:
            return {k: npz[k] for k in npz.files}


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    """Build the derived maps once per process (about a second; cached)."""
    from scipy import ndimage

    raw = load_slab()
    t1 = raw["t1"].astype(np.float32) / 255.0
    gm = raw["gm"].astype(np.float32) / 255.0
    wm = raw["wm"].astype(np.float32) / 255.0
    brain = raw["t1"] > 0
    inside = brain.astype(np.float32)
    gm, wm = gm * inside, wm * inside
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0) * inside

    # Depth below the closed surface: a closing fills sulci so that sulcal cortex stays "shallow".
    # It is done slice by slice in the coronal plane (the plane we image), 10x cheaper than a ball.
    pad = CLOSING_RADIUS_MM + 1
    padded = np.pad(brain, ((pad, pad), (0, 0), (pad, pad)))
    closed = ndimage.binary_closing(padded, structure=_disk(CLOSING_RADIUS_MM))[pad:-pad, :, pad:-pad]
    closed = ndimage.binary_fill_holes(closed)
    depth = ndimage.distance_transform_edt(closed)
    deep = ndimage.gaussian_filter((depth > SUBCORTICAL_DEPTH_MM).astype(np.float32), 1.0)
    cortex, subcortical = gm * (1.0 - deep), gm * deep

    classes = np.stack([1.0 - inside, cortex, subcortical, wm, csf])
    hard = hard_labels(torch.from_numpy(classes[None]))[0].numpy()
    # Cortical thinning works on the distance of each voxel to the nearest CSF or background.
    cortex_depth = ndimage.distance_transform_edt((hard == 1) | (hard == 2) | (hard == 3)).astype(np.float32)

    # Lateral ventricles: deep CSF within 30 mm of the midline (x = 98) and above MNI z = 0 (voxel
    # z = 72), which leaves out the temporal horns and the basal cisterns.
    x = np.arange(brain.shape[0])[:, None, None]
    z = np.arange(brain.shape[2])[None, None, :]
    vent = (hard == 4) & (depth > VENTRICLE_DEPTH_MM) & (np.abs(x - 98) < 30) & (z > 72)
    dist, nearest = ndimage.distance_transform_edt(~vent, return_indices=True)
    grid = np.indices(brain.shape)
    direction = (nearest - grid).astype(np.float32) / np.maximum(dist, 1.0)[None]
    vent_field = direction * np.exp(-dist / VENTRICLE_DECAY_MM)[None].astype(np.float32)

    means = np.array([0.0] + [float((t1 * c).sum() / c.sum()) for c in classes[1:]], dtype=np.float32)
    maps = np.concatenate([t1[None], classes, cortex_depth[None], vent_field], axis=0).astype(np.float32)
    center = np.argwhere(vent).mean(axis=0) if vent.any() else np.array([98.0, brain.shape[1] / 2, 100.0])
    return Template(maps=maps, tissue_means=means, y_start=int(raw["y_start"]), ventricle_center=center)
