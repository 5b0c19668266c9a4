"""Label-exact pairs made by registration: an atlas warped onto an unannotated image's shape.

After Zhao et al., "Data augmentation using learned transformations for one-shot medical image
segmentation" (CVPR 2019), He et al.'s BRBS and Lv et al. (AAAI 2023). A pseudo-label puts a
warped atlas label on the *real* target image, where the registration's errors become label
noise. Warping the atlas *image* by the same field as its label gives a pair whose label is exact
for its image: the shape comes from the target, the label is never wrong. The warped atlas still
looks like the atlas (contrast, bias field, noise), so :func:`match_quantiles` gives it the
target's appearance: each pixel takes the target's intensity of the same rank.

:func:`label_exact_pairs` makes one such pair per target; the joint rounds mix them into the
segmenter's batches with ``TrainConfig.pair_share`` (``appearance`` chooses the intensity mapping).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from segreg_lite.checks import check_images, one_hot
from segreg_lite.config import APPEARANCES
from segreg_lite.registration import IO_LR, draw_atlases, register
from segreg_lite.regnet import RegNet
from segreg_lite.transforms import warp


def match_quantiles(images: Tensor, references: Tensor) -> Tensor:
    """Each image (B, 1, H, W) with its reference's intensities (B, 1, H, W), rank for rank: the
    pixel of rank r in the image takes the reference's value of rank r (exact histogram
    matching; ties keep their order). Same shapes in, same shape out."""
    if images.shape != references.shape:
        raise ValueError(f"match_quantiles: images {tuple(images.shape)} and references {tuple(references.shape)} differ")
    flat = images.flatten(1)
    order = flat.argsort(dim=1, stable=True)
    out = torch.empty_like(flat)
    out.scatter_(1, order, references.flatten(1).sort(dim=1).values)
    return out.view_as(images)


@torch.no_grad()
def label_exact_pairs(
    regnet: RegNet,
    images: Tensor,
    labels: Tensor,
    annotated: Sequence[int],
    targets: Sequence[int],
    *,
    num_classes: int,
    appearance: str = "quantile",
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    passes: int = 1,
    io_steps: int = 0,
    io_lr: float = IO_LR,
) -> tuple[Tensor, Tensor]:
    """One label-exact pair per target: an atlas drawn at random from ``annotated`` (seeded by
    ``generator``), registered onto ``images[t]``; its image and one-hot label warped by the same
    field. ``appearance``: ``"quantile"`` maps the warped image's intensities onto the target's
    (:func:`match_quantiles`), ``"none"`` keeps the atlas's. Returns images (T, 1, H, W) and soft
    labels (T, K, H, W), on the CPU. The targets' labels are never read. ``passes``, ``io_steps``
    and ``io_lr``: how the atlas is registered (:func:`~segreg_lite.registration.register`).
    """
    if appearance not in APPEARANCES:
        raise ValueError(f"unknown appearance mode {appearance!r}: choose one of {', '.join(APPEARANCES)}")
    check_images(images)
    targets = list(targets)
    if not targets:
        raise ValueError("label_exact_pairs needs at least one target image")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    atlas = draw_atlases(annotated, len(targets), 1, generator)[:, 0]  # (T,)
    fixed = images[targets]
    flow = register(regnet, images[atlas], fixed, device=device, passes=passes, io_steps=io_steps, io_lr=io_lr)  # (T, 2, H, W)
    warped = warp(images[atlas], flow).clamp(0, 1)
    soft = warp(one_hot(labels[atlas].long(), num_classes), flow).clamp(0, 1)
    if appearance == "quantile":
        warped = match_quantiles(warped, fixed)
    return warped, soft / soft.sum(1, keepdim=True).clamp_min(1e-8)
