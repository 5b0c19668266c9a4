"""Soft pseudo-labels for the unannotated images: multi-atlas registration masks + TTA masks.

After Li et al., "A Unified Framework for Semi-Supervised Image Segmentation and Registration"
(arXiv 2502.03229, ISBI 2025). For each unannotated image ``x``:

- registration masks: ``n_atlas`` annotated images drawn at random *with replacement* (redrawn
  per image and per round), each registered onto ``x`` and its one-hot label warped bilinearly
  (:func:`segreg_lite.registration.propagate_labels`); one map per atlas;
- segmentation masks: the segmenter's softmax on ``x`` and ``n_tta`` test-time-augmented
  predictions mapped back by the exact inverse transform (:func:`segreg_lite.tta.tta_predict`);
- the soft mask is the mean of all those maps (``mode="combined"``, the default), of the
  registration maps only (``"reg"``) or of the segmentation maps only (``"seg"``), clipped to
  [0, 1].

:func:`confidence` turns a soft mask into per-pixel weights for the optional confidence-weighted
pseudo-label loss. The maps of both sources are always computed and returned, so the quality of
each can be measured against the hidden truth whatever the mode.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from segreg_lite.registration import IO_LR, draw_atlases, propagate_labels
from segreg_lite.regnet import RegNet

#: Pseudo-label sources: both (the method's default), registration only, segmentation only.
MODES: tuple[str, ...] = ("combined", "reg", "seg")
#: Extra relative weight of the segmentation maps in the combined mask, so that a tie between the
#: two sources goes to the segmenter instead of the lower class index (see make_pseudo_labels).
TIE_BREAK = 1e-3


class PseudoLabels(NamedTuple):
    """What :func:`make_pseudo_labels` returns, for U unannotated images (all on the CPU)."""

    soft: Tensor  # (U, K, H, W) the soft mask of the chosen mode, in [0, 1], summing to 1 over K
    reg: Tensor  # (U, K, H, W) mean of the n_atlas registration masks
    seg: Tensor  # (U, K, H, W) mean of the 1 + n_tta segmentation masks
    spread: Tensor  # (U, H, W) per-pixel spread of the TTA maps (an uncertainty; see tta.py)
    atlases: Tensor  # (U, n_atlas) which annotated images (indices into the image tensor) were used


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown pseudo-label mode {mode!r}: choose one of {', '.join(MODES)}")
    return mode


@torch.no_grad()
def make_pseudo_labels(
    segmenter: nn.Module,
    regnet: RegNet,
    images: Tensor,
    labels: Tensor,
    annotated: Sequence[int],
    targets: Sequence[int],
    *,
    mode: str = "combined",
    n_atlas: int = 5,
    n_tta: int = 4,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    passes: int = 1,
    io_steps: int = 0,
    io_lr: float = IO_LR,
) -> PseudoLabels:
    """Soft pseudo-labels of ``images[targets]`` from the atlases ``images[annotated]``.

    images: (N, 1, H, W) float in [0, 1]; labels: (N, H, W) int64, read only at ``annotated``
    (the targets' labels are never looked at). ``generator`` (CPU) draws the atlases and the TTA
    transforms, so a seeded call is reproducible. The combined mask weighs every map equally:
    ``(n_atlas * reg + (1 + n_tta) * seg) / (n_atlas + 1 + n_tta)``, the mean of the 10 maps of
    the design; exact ties between the two sources go to the segmentation maps (TIE_BREAK).
    ``passes``, ``io_steps``, ``io_lr``: how each atlas is registered (:func:`segreg_lite.registration.register`).
    """
    from segreg_lite.tta import tta_predict

    check_mode(mode)
    targets = list(targets)
    if not targets:
        raise ValueError("make_pseudo_labels needs at least one target image")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    num_classes = segmenter.config["num_classes"]
    atlases = draw_atlases(annotated, len(targets), n_atlas, generator)  # (U, n_atlas)
    used = torch.unique(atlases)  # the distinct atlases, so each image is sent once
    local = torch.searchsorted(used, atlases)  # (U, n_atlas) positions in `used`
    target_images = images[targets]
    reg = propagate_labels(regnet, images[used], labels[used], target_images, num_classes=num_classes,
                           atlas_index=local, device=device, passes=passes,
                           io_steps=io_steps, io_lr=io_lr)  # (U, K, H, W)
    tta = tta_predict(segmenter, target_images, n_tta=n_tta, generator=generator, device=device)
    seg = tta.mean  # (U, K, H, W)
    n_seg = 1 + n_tta
    if mode == "combined":
        soft = combine(reg, seg, n_atlas, n_seg)
    else:
        soft = reg if mode == "reg" else seg
    return PseudoLabels(soft=soft.clamp(0, 1), reg=reg, seg=seg, spread=tta.spread, atlases=atlases)


def combine(reg: Tensor, seg: Tensor, n_atlas: int, n_seg: int) -> Tensor:
    """The combined soft mask: the mean of ``n_atlas`` registration and ``n_seg`` segmentation
    maps, given the mean of each source (same shapes).

    Ties: with as many atlases as segmentation maps, all atlases voting for one class and all
    segmentation maps for another is an exact 0.5/0.5 split, whose argmax (and cross-entropy
    target) would silently be the lower class index, often background. The segmentation maps,
    which look at the image itself, get ``TIE_BREAK`` more weight to decide it.
    """
    w = n_seg * (1 + TIE_BREAK)
    return (n_atlas * reg + w * seg) / (n_atlas + w)


def confidence(soft: Tensor) -> Tensor:
    """Per-pixel confidence of soft masks (U, K, H, W) -> (U, H, W) in [0, 1].

    ``1 - H(p) / log K`` with ``H`` the entropy over classes: 1 where the maps agree on one
    class, 0 where they are uniform. Used to weight the pseudo-label loss (an option).
    """
    if soft.ndim != 4 or soft.shape[1] < 2:
        raise ValueError(f"soft masks must be (U, K, H, W) with K >= 2, got {tuple(soft.shape)}")
    p = soft.clamp_min(1e-8)
    entropy = -(p * p.log()).sum(1)  # (U, H, W)
    return (1 - entropy / math.log(soft.shape[1])).clamp(0, 1)
