"""The supervised segmenter: training, inference, evaluation, and the supervised methods.

:func:`train_segmenter` is the supervised baseline of Li et al. (arXiv 2502.03229) when given the
annotated images only, and the segmenter phase of a joint round when given annotated +
pseudo-labelled images (targets may be soft masks, losses may be confidence weighted).
:func:`predict` gives softmax maps, :func:`evaluate_segmenter` the test metrics of the design:
Dice per foreground class and its mean, maximum Hausdorff distance and HD95.

Three methods of the comparison live here, each a ``run(data, split, config, folder)``:
``supervised`` (annotated images, no augmentation), ``supervised_aug`` (with augmentation: the
pre-trained segmenter every joint method starts from) and ``upper_bound`` (every training image
annotated).
"""
from __future__ import annotations

import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn

from segreg_lite.augment import AugmentConfig, augment_batch, strong_view
from segreg_lite.checks import as_soft, check_images, check_indices
from segreg_lite.config import TrainConfig
from segreg_lite.losses import segmentation_loss
from segreg_lite.metrics import dice_per_class, hausdorff
from segreg_lite.train import as_device, autocast, fit, new_models, phase_seed, seed_everything

if TYPE_CHECKING:
    from segreg_lite.container import Data
    from segreg_lite.context import Run
    from segreg_lite.splits import Split


def train_segmenter(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    indices,
    config: TrainConfig,
    *,
    steps: int | None = None,
    lr: float | None = None,
    weights: torch.Tensor | None = None,
    augment: AugmentConfig | None = None,
    strong: torch.Tensor | None = None,
    online: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = False,
    callback: Callable[[int, dict], None] | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` on ``images[indices]`` with their ``labels``; returns the loss history.

    images: (N, 1, H, W) float in [0, 1]; labels: (N, H, W) int64 or (N, K, H, W) soft maps, indexed
    like ``images``; weights: optional confidence (N,) per image or (N, H, W) per pixel (warped
    with its image and label by the augmentation). From
    ``config``: ``batch_size``, ``augment`` (random affine + elastic + intensity, or the given
    ``augment`` settings), ``soft_ce`` and ``amp``; ``steps`` and ``lr`` default to the
    pre-training's ``seg_steps`` and ``seg_lr`` (a joint round passes its own). Batches are drawn
    with replacement (seeded), so one annotated image still fills a batch. Adam with a cosine
    decay of ``lr`` to zero over ``steps``. The model is left in eval mode.

    strong: optional (N,) bool, the images learnt through strong views
    (:func:`segreg_lite.augment.strong_view`, after the standard augmentation): each such image
    of a batch gets a photometric perturbation and, with probability 0.5, a CutMix box pasted from
    another image of the batch, whose target (and weight) comes with it (the joint rounds' strong
    views of their pseudo-labelled images; with annotated partners this is BCP's copy-paste).

    online: optional (N,) bool, the images whose target mixes in the model's own prediction of
    their augmented (weak) view, made without gradient in eval mode at every step, before any
    strong view: ``(1 - config.online_share) * target + config.online_share * prediction`` (the
    weak-to-strong consistency of FixMatch and UniMatch, anchored to the round's masks).
    """
    check_images(images)
    indices = check_indices(indices, images.shape[0], empty=False)
    if labels.shape[0] != images.shape[0] or labels.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match images {tuple(images.shape)}")
    for name, flags in (("strong", strong), ("online", online)):
        if flags is not None and (flags.dtype != torch.bool or tuple(flags.shape) != (images.shape[0],)):
            raise ValueError(f"{name} must be a bool tensor ({images.shape[0]},), one flag per image; got "
                             f"{flags.dtype} {tuple(flags.shape)}")
    steps = config.seg_steps if steps is None else steps
    device = as_device(device)
    num_classes = model.config["num_classes"]
    aug_cfg = augment if augment is not None else (AugmentConfig() if config.augment else None)
    gen = torch.Generator().manual_seed(seed)
    # channels_last: oneDNN's convolutions run faster so on a CPU (bench_models.py times both formats).
    model.to(device=device, memory_format=torch.channels_last).train()

    def step(_: int):
        pick = indices[torch.randint(len(indices), (config.batch_size,), generator=gen)]
        x = images[pick].to(device)
        y = as_soft(labels[pick], num_classes).to(device)
        w = None if weights is None else weights[pick].to(device)
        if aug_cfg is not None:
            if w is not None and w.ndim == 3:  # per-pixel weights move with their pixels
                x, yw = augment_batch(x, torch.cat([y, w[:, None]], 1), gen, aug_cfg)
                y, w = yw[:, :-1], yw[:, -1]
            else:
                x, y = augment_batch(x, y, gen, aug_cfg)
        if online is not None and config.online_share > 0:
            y = _online(model, x, y, online[pick].to(device), config)
        if strong is not None:
            x, y, w = _strong(x, y, w, strong[pick].to(device), gen)
        with autocast(device, config.amp):
            logits = model(x.contiguous(memory_format=torch.channels_last))
        loss = segmentation_loss(logits.float(), y, soft_ce=config.soft_ce, weight=w)
        return loss.total, {"loss": loss.total.item(), "dice": loss.dice.item(), "ce": loss.ce.item()}

    history = fit(model.parameters(), step, steps=steps, lr=config.seg_lr if lr is None else lr,
                  keys=("loss", "dice", "ce"), device=device, amp=config.amp, desc="segmenter",
                  progress=progress, callback=callback)
    model.eval()
    return history


def _online(model, x, y, flags, config):
    """The soft targets ``y`` of a batch with the flagged images' mixed with the model's own
    prediction of ``x`` (see ``online`` in :func:`train_segmenter`)."""
    if not bool(flags.any()):
        return y
    model.eval()
    with torch.no_grad(), autocast(x.device, config.amp):
        prediction = model(x.contiguous(memory_format=torch.channels_last)).float().softmax(1)
    model.train()
    mixed = (1 - config.online_share) * y + config.online_share * prediction
    return torch.where(flags.view(-1, 1, 1, 1), mixed, y)


def _strong(x, y, w, flags, gen):
    """Strong views of the flagged images of a batch (x, soft targets y, weights w or None); the
    others pass unchanged. A flagged image's CutMix partner is any image of the batch."""
    if not bool(flags.any()):
        return x, y, w
    xs, ys, ws = strong_view(x, y, gen, weights=w)
    keep = lambda a, b: torch.where(flags.view((-1,) + (1,) * (a.ndim - 1)), b, a)  # noqa: E731
    return keep(x, xs), keep(y, ys), None if w is None else keep(w, ws)


def pretrain_segmenter(seg: nn.Module, images: torch.Tensor, labels: torch.Tensor, split: "Split", config: TrainConfig, *,
                       seed: int, device=None, progress: bool = False) -> dict:
    """Supervised pre-training on the annotated images only: the baseline. Returns the history."""
    s = phase_seed(seed, 0, "seg")
    seed_everything(s)
    return train_segmenter(seg, images, labels, split.annotated, config, device=device, seed=s, progress=progress)


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


def evaluate_segmentation(pred: torch.Tensor, target: torch.Tensor, num_classes: int, spacing: tuple[float, float] | None = None,
                          *, per_image: bool = False) -> dict[str, Any]:
    """Metrics of hard predictions (N, H, W) against labels (N, H, W), as the results files hold them.

    ``dice``, ``hd``, ``hd95``: the means over images and foreground classes (the distances
    NaN-aware: NaN where exactly one map is empty); ``dice_per_class``, ``hd_per_class``,
    ``hd95_per_class``: lists of K-1 means over images; ``n_hd_nan``: how many distances were NaN.
    Plain floats, ready for JSON. ``per_image``: also ``per_image`` = {"dice", "hd", "hd95"},
    arrays (N, K-1).
    """
    dice = dice_per_class(pred, target, num_classes)
    hd = hausdorff(pred, target, num_classes, spacing=spacing)
    hd95 = hausdorff(pred, target, num_classes, percentile=95, spacing=spacing)
    out: dict[str, Any] = {
        "dice": float(dice.mean()),
        "hd": float(_nanmean(hd)),
        "hd95": float(_nanmean(hd95)),
        "dice_per_class": [float(v) for v in dice.mean(0)],
        "hd_per_class": [float(v) for v in _nanmean(hd, axis=0)],
        "hd95_per_class": [float(v) for v in _nanmean(hd95, axis=0)],
        "n_hd_nan": int(np.isnan(hd).sum()),
    }
    if per_image:
        out["per_image"] = {"dice": dice, "hd": hd, "hd95": hd95}
    return out


def _nanmean(a: np.ndarray, axis=None):
    """Mean ignoring NaN (HD where exactly one map is empty); NaN, silently, where all are NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def evaluate_segmenter(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, spacing=None, device=None,
                       per_image: bool = False) -> dict[str, Any]:
    """:func:`evaluate_segmentation` of the model's argmax predictions (no TTA, no registration)."""
    probs = predict(model, images, device=device)
    return evaluate_segmentation(probs.argmax(1), labels, probs.shape[1], spacing=spacing, per_image=per_image)


def test_metrics(model: nn.Module, data: "Data", split: "Split", device=None) -> dict[str, Any]:
    """:func:`evaluate_segmenter` on the split's test subjects: a method's results."""
    test = list(split.test)
    return evaluate_segmenter(model, data.images[test], data.labels[test], device=device)


# ---------------------------------------------------------------------------------------------
# The methods (registered in segreg_lite.methods.METHODS).


def run_supervised(data: "Data", split: "Split", config: TrainConfig, folder: "Run") -> dict[str, Any]:
    """The U-Net trained on the annotated images only, without augmentation."""
    model = new_models(config, data.num_classes, folder.seed)[0]
    pretrain_segmenter(model, data.images, data.labels, split, replace(config, augment=False), seed=folder.seed,
                       device=folder.device, progress=folder.progress)
    return test_metrics(model, data, split, folder.device)


def run_supervised_aug(data: "Data", split: "Split", config: TrainConfig, folder: "Run") -> dict[str, Any]:
    """The U-Net trained on the annotated images with augmentation: the run's shared pre-trained
    segmenter (``folder.pretrained("seg")``), which the joint methods start from."""
    return test_metrics(folder.pretrained("seg"), data, split, folder.device)


def run_upper_bound(data: "Data", split: "Split", config: TrainConfig, folder: "Run") -> dict[str, Any]:
    """The U-Net trained on every training image's label, without augmentation, for three times
    the steps (more images need more steps to converge)."""
    model = new_models(config, data.num_classes, folder.seed)[0]
    full = replace(split, annotated=split.train, fraction=1.0)
    pretrain_segmenter(model, data.images, data.labels, full, replace(config, augment=False, seg_steps=3 * config.seg_steps),
                       seed=folder.seed, device=folder.device, progress=folder.progress)
    return test_metrics(model, data, split, folder.device)
