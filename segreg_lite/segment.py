"""Segmenter training, inference and evaluation, as plain functions read top to bottom.

:func:`train_segmenter` is the supervised baseline of Li et al. (arXiv 2502.03229) when given the
annotated images only, and the segmenter phase of a joint round when given annotated +
pseudo-labelled images (targets may be soft masks, losses may be confidence weighted).
:func:`predict` gives softmax maps, :func:`evaluate_segmenter` the test metrics of the design:
Dice per foreground class and its mean, maximum Hausdorff distance and HD95.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import torch
from torch import nn

from segreg_lite.augment import AugmentConfig, augment_batch
from segreg_lite.config import autocast, cosine_schedule, optimizer_step, pick_device, record_step
from segreg_lite.losses import one_hot, segmentation_loss
from segreg_lite.metrics import dice_per_class, hausdorff


def _soft_targets(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, H, W) int labels or (N, K, H, W) soft maps -> (N, K, H, W) float soft maps."""
    if labels.ndim == 3:
        return one_hot(labels.long(), num_classes)
    if labels.ndim == 4 and labels.shape[1] == num_classes:
        return labels.float()
    raise ValueError(f"labels must be (N, H, W) integers or (N, {num_classes}, H, W) soft maps, got {tuple(labels.shape)}")


def train_segmenter(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    indices,
    *,
    steps: int,
    lr: float,
    batch_size: int = 8,
    augment: bool | AugmentConfig = False,
    soft_ce: bool = False,
    weights: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    amp: bool = True,
    progress: bool = False,
    callback: Callable[[int, dict], None] | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` on ``images[indices]`` with their ``labels``; returns the loss history.

    images: (N, 1, H, W) float in [0, 1]; labels: (N, H, W) int64 or (N, K, H, W) soft maps, indexed
    like ``images``; weights: optional confidence (N,) per image or (N, H, W) per pixel. Batches are
    drawn with replacement (seeded), so one annotated image still fills a batch. Adam with a cosine
    decay of ``lr`` to zero over ``steps``. The model is left in eval mode.
    """
    indices = torch.as_tensor(list(indices), dtype=torch.long)
    if len(indices) == 0:
        raise ValueError("train_segmenter needs at least one training image (indices is empty)")
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (N, 1, H, W), got {tuple(images.shape)}")
    if labels.shape[0] != images.shape[0] or labels.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match images {tuple(images.shape)}")
    if int(indices.max()) >= images.shape[0] or int(indices.min()) < 0:
        raise ValueError(f"indices must be in [0, {images.shape[0]}), got {int(indices.min())}..{int(indices.max())}")
    device = torch.device(device) if device is not None else pick_device()
    num_classes = model.config["num_classes"]
    aug_cfg = augment if isinstance(augment, AugmentConfig) else (AugmentConfig() if augment else None)
    gen = torch.Generator().manual_seed(seed)
    # channels_last: oneDNN's convolutions ran 1.27x faster so on a 2-core CPU (bench_models.py).
    model.to(device=device, memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = cosine_schedule(opt, steps)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")
    history: dict[str, list[float]] = {"loss": [], "dice": [], "ce": []}
    bar = range(steps)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc="segmenter", unit="step")
    for step in bar:
        pick = indices[torch.randint(len(indices), (batch_size,), generator=gen)]
        x = images[pick].to(device)
        y = _soft_targets(labels[pick], num_classes).to(device)
        w = None if weights is None else weights[pick].to(device)
        if aug_cfg is not None:
            x, y = augment_batch(x, y, gen, aug_cfg)
        with autocast(device, amp):
            logits = model(x.contiguous(memory_format=torch.channels_last))
        loss = segmentation_loss(logits.float(), y, soft_ce=soft_ce, weight=w)
        optimizer_step(opt, scaler, loss.total)
        sched.step()
        terms = {"loss": loss.total.item(), "dice": loss.dice.item(), "ce": loss.ce.item()}
        record_step(history, step, terms, bar if progress else None, callback)
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, batch_size: int = 32, device: torch.device | str | None = None) -> torch.Tensor:
    """Softmax maps (N, K, H, W) on the CPU for images (N, 1, H, W), in eval mode."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device=device, memory_format=torch.channels_last).eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        out.append(torch.softmax(model(x).float(), dim=1).contiguous().cpu())
    return torch.cat(out)


def evaluate_segmentation(pred: torch.Tensor, target: torch.Tensor, num_classes: int, spacing: tuple[float, float] | None = None) -> dict:
    """Metrics of hard predictions (N, H, W) against labels (N, H, W): per class and their means.

    Returns ``dice`` (N, K-1), ``hd`` and ``hd95`` (N, K-1; NaN where exactly one map is empty)
    and scalar summaries ``mean_dice``, ``mean_hd``, ``mean_hd95`` (NaN-aware means),
    ``dice_per_class`` / ``hd_per_class`` / ``hd95_per_class`` (K-1,), and ``n_hd_nan``.
    """
    dice = dice_per_class(pred, target, num_classes)
    hd = hausdorff(pred, target, num_classes, spacing=spacing)
    hd95 = hausdorff(pred, target, num_classes, percentile=95, spacing=spacing)
    return {
        "dice": dice,
        "hd": hd,
        "hd95": hd95,
        "mean_dice": float(dice.mean()),
        "mean_hd": float(_nanmean(hd)),
        "mean_hd95": float(_nanmean(hd95)),
        "dice_per_class": dice.mean(0),
        "hd_per_class": _nanmean(hd, axis=0),
        "hd95_per_class": _nanmean(hd95, axis=0),
        "n_hd_nan": int(np.isnan(hd).sum()),
    }


def _nanmean(a: np.ndarray, axis=None):
    """Mean ignoring NaN (HD where exactly one map is empty); NaN, silently, where all are NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def evaluate_segmenter(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, spacing=None, device=None) -> dict:
    """:func:`evaluate_segmentation` of the model's argmax predictions (no TTA, no registration)."""
    probs = predict(model, images, device=device)
    return evaluate_segmentation(probs.argmax(1), labels, probs.shape[1], spacing=spacing)
