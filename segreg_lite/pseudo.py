"""Soft pseudo-labels for the unannotated images: multi-atlas registration masks + TTA masks.

After Li et al., "A Unified Framework for Semi-Supervised Image Segmentation and Registration"
(arXiv 2502.03229, ISBI 2025). For each unannotated image ``x``:

- registration masks: ``n_atlas`` annotated images drawn at random *with replacement* (redrawn
  per image and per round), each registered onto ``x`` and its one-hot label warped bilinearly
  (:func:`segreg_lite.registration.propagate_labels`); one map per atlas;
- segmentation masks: the segmenter's softmax on ``x`` and ``n_tta`` test-time-augmented
  predictions mapped back by the exact inverse transform (:func:`segreg_lite.tta.tta_predict`),
  random rotations or shifts as in the paper (``tta="affine"``), or instead its softmax on ``x``
  and on ``x`` mirrored left-right (``tta="mirror"``, the test-time mirroring of nnU-Net);
- the soft mask is the mean of all those maps (``mode="combined"``, the default), of the
  registration maps only (``"reg"``) or of the segmentation maps only (``"seg"``), clipped to
  [0, 1].

:func:`intensity_em` refines a soft mask by the image's own intensities (an option of the joint
rounds, ``TrainConfig.em_iters``). :func:`confidence` turns a soft mask into per-pixel weights for
the optional confidence-weighted pseudo-label loss. The maps of both sources are always computed and returned, so the quality of
each can be measured against the hidden truth whatever the mode.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from segreg_lite.augment import gaussian_blur
from segreg_lite.config import TTA_MODES
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
    seg: Tensor  # (U, K, H, W) mean of the segmentation masks (1 + n_tta, or plain and mirrored)
    spread: Tensor  # (U, H, W) per-pixel spread of the TTA maps (an uncertainty; see tta.py)
    atlases: Tensor  # (U, n_atlas) which annotated images (indices into the image tensor) were used
    prior: Tensor | None = None  # (U, K, H, W) the mask before a refinement of ``soft`` (intensity_em), if any


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown pseudo-label mode {mode!r}: choose one of {', '.join(MODES)}")
    return mode


def check_tta_mode(tta: str) -> str:
    if tta not in TTA_MODES:
        raise ValueError(f"unknown test-time augmentation {tta!r}: choose one of {', '.join(TTA_MODES)}")
    return tta


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
    tta: str = "affine",
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
    ``tta="mirror"`` makes the segmentation source the mean of the plain and the left-right
    mirrored prediction instead, still weighed as ``1 + n_tta`` maps (``n_tta`` keeps the balance).
    ``passes``, ``io_steps``, ``io_lr``: how each atlas is registered (:func:`segreg_lite.registration.register`).
    """
    from segreg_lite.tta import mirror_predict, tta_predict

    check_mode(mode)
    check_tta_mode(tta)
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
    if tta == "mirror":
        maps = mirror_predict(segmenter, target_images, device=device)
    else:
        maps = tta_predict(segmenter, target_images, n_tta=n_tta, generator=generator, device=device)
    seg = maps.mean  # (U, K, H, W)
    n_seg = 1 + n_tta
    if mode == "combined":
        soft = combine(reg, seg, n_atlas, n_seg)
    else:
        soft = reg if mode == "reg" else seg
    return PseudoLabels(soft=soft.clamp(0, 1), reg=reg, seg=seg, spread=maps.spread, atlases=atlases)


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


def _smooth(x: Tensor, sigma: float) -> Tensor:
    """Gaussian smoothing of every channel of x (B, C, H, W), std ``sigma`` pixels, edges replicated."""
    b, c, h, w = x.shape
    flat = x.reshape(b * c, 1, h, w)
    return gaussian_blur(flat, torch.full((b * c,), float(sigma), dtype=x.dtype)).reshape(b, c, h, w)


def _check_em(soft: Tensor, images: Tensor, iters: int, prior_power: float, sigma_px: float, min_std: float) -> None:
    if soft.ndim != 4 or images.shape != (soft.shape[0], 1, *soft.shape[2:]):
        raise ValueError(f"intensity_em needs soft masks (U, K, H, W) and images (U, 1, H, W) of the same U, H, W; "
                         f"got {tuple(soft.shape)} and {tuple(images.shape)}")
    if iters < 0 or prior_power <= 0 or sigma_px <= 0 or min_std <= 0:
        raise ValueError(f"intensity_em needs iters >= 0 and prior_power, sigma_px, min_std > 0; got {iters}, "
                         f"{prior_power}, {sigma_px}, {min_std}")


def intensity_em(soft: Tensor, images: Tensor, *, iters: int = 4, prior_power: float = 2.0,
                 sigma_px: float = 4.0, min_std: float = 0.01) -> Tensor:
    """Refine soft masks (U, K, H, W) by each image's own intensities (U, 1, H, W): EM with the
    masks as a spatial prior, as in model-based tissue classification of brain MR (Van Leemput et
    al. 1999; Ashburner & Friston 2005). Each class's Gaussian intensity model varies slowly over
    the image (a window of std ``sigma_px``), which absorbs the bias field and the subject's own
    contrast. ``prior_power`` > 1 trusts the masks more than the intensities, so classes that look
    alike (cortex and subcortical grey matter) stay the masks' to tell apart.
    """
    _check_em(soft, images, iters, prior_power, sigma_px, min_std)
    if iters == 0:
        return soft
    soft, images = soft.float(), images.float()
    log_prior = prior_power * soft.clamp_min(1e-4).log()
    post = soft
    for _ in range(iters):
        # M-step: each class's local mean and variance, every pixel weighted by its posterior.
        weight = _smooth(post, sigma_px) + 1e-6
        mean = _smooth(post * images, sigma_px) / weight
        var = (_smooth(post * images**2, sigma_px) / weight - mean**2).clamp_min(min_std**2)
        # E-step: prior times Gaussian likelihood, normalised over the classes.
        post = torch.softmax(log_prior - 0.5 * (images - mean) ** 2 / var - 0.5 * var.log(), dim=1)
    return post
