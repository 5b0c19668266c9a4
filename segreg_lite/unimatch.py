"""The UniMatch baseline: weak-to-strong consistency with feature perturbation.

UniMatch (Yang, Qi, Feng, Zhang and Shi, "Revisiting Weak-to-Strong Consistency in
Semi-Supervised Semantic Segmentation", CVPR 2023) is what a reader in 2026 would pick for
semi-supervised segmentation with few labels; its medical variant reaches 93% of full supervision
on ACDC with one case annotated. Each step of :func:`train_unimatch`:

- the annotated half of the batch: the usual supervised loss on augmented images;
- the unannotated half, as a *weak* view (the standard geometric augmentation): the network's
  own argmax is the pseudo-label, kept where its confidence is at least ``um_threshold`` (0.95);
- two *strong* views of the same weak images (:func:`segreg_lite.augment.strong_view`:
  brightness, contrast and gamma jitter with probability 0.8, Gaussian blur with probability 0.5,
  a CutMix box from another unannotated image of the batch with probability 0.5, whose
  pseudo-label comes with it) learn that pseudo-label;
- a *feature-perturbed* branch (:meth:`segreg_lite.unet.UNet.forward_perturbed`: channel dropout
  0.5 on every encoder level of the weak view) learns it too.

Loss, as the official medical code: ``(supervised + 0.25 s1 + 0.25 s2 + 0.5 fp) / 2``, the
unannotated terms soft Dice only, over the confident pixels.

What we scaled (stated in the book): UniMatch trains from scratch with SGD at lr 0.01 for 300
epochs on 256x256 slices; here it continues from the run's pre-trained segmenter (the
``supervised_aug`` model every joint method starts from) with Adam at ``um_lr`` for ``um_steps``
steps, set so that it takes about the joint rounds' wall time: both methods then get the same
budget on top of the same pre-training. The CutMix partner is another image of the same
unannotated batch (the official code draws a second batch for it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from segreg_lite.augment import AugmentConfig, augment_batch, strong_view
from segreg_lite.checks import check_images, check_indices, one_hot
from segreg_lite.config import TrainConfig
from segreg_lite.losses import segmentation_loss, soft_dice_loss
from segreg_lite.supervised import test_metrics
from segreg_lite.train import as_device, autocast, fit, phase_seed, seed_everything

if TYPE_CHECKING:
    from segreg_lite.container import Data
    from segreg_lite.context import Run
    from segreg_lite.splits import Split


def train_unimatch(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    annotated,
    unannotated,
    config: TrainConfig,
    *,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = False,
    callback: Callable[[int, dict], None] | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` (a :class:`~segreg_lite.unet.UNet`) with UniMatch for ``config.um_steps``
    steps at ``config.um_lr`` (Adam, cosine decay to zero).

    images: (N, 1, H, W) in [0, 1]; labels: (N, H, W) int64, read only at ``annotated``. Each step
    draws ``batch_size // 2`` annotated and ``batch_size - batch_size // 2`` unannotated images
    with replacement (seeded). Returns per-step ``loss``, ``supervised``, ``strong`` (mean of the
    two strong views' Dice losses), ``fp`` (the perturbed branch's) and ``confident`` (share of
    unannotated pixels above the threshold). The model is left in eval mode.
    """
    n = check_images(images).shape[0]
    if labels.ndim != 3 or labels.shape[0] != n or labels.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"labels must be (N, H, W) like images: labels {tuple(labels.shape)} do not match images "
                         f"{tuple(images.shape)}")
    labelled = check_indices(annotated, n, "annotated", empty=False)
    unlabelled = check_indices(unannotated, n, "unannotated", empty=False)
    if config.batch_size < 2:
        raise ValueError(f"UniMatch needs batch_size >= 2 (annotated and unannotated halves), got {config.batch_size}")
    if not hasattr(model, "forward_perturbed"):
        raise ValueError(f"UniMatch needs a segmenter with forward_perturbed (segreg_lite.unet.UNet), got {type(model).__name__}")
    device = as_device(device)
    num_classes = model.config["num_classes"]
    n_lab = config.batch_size // 2
    n_unl = config.batch_size - n_lab
    aug_cfg = AugmentConfig() if config.augment else None
    gen = torch.Generator().manual_seed(seed)
    model.to(device=device, memory_format=torch.channels_last).train()
    cl = lambda t: t.contiguous(memory_format=torch.channels_last)  # noqa: E731

    def step(_: int):
        pick = labelled[torch.randint(len(labelled), (n_lab,), generator=gen)]
        x = images[pick].to(device)
        y = one_hot(labels[pick].long(), num_classes).to(device)
        u = images[unlabelled[torch.randint(len(unlabelled), (n_unl,), generator=gen)]].to(device)
        if aug_cfg is not None:
            x, y = augment_batch(x, y, gen, aug_cfg)
            # The weak view: the geometric half of the standard augmentation (no intensity change).
            u, _ = augment_batch(u, u, gen, AugmentConfig(gamma_std=0, contrast_std=0, brightness_std=0, noise_max=0))
        partner = torch.randperm(n_unl, generator=gen)
        with autocast(device, config.amp):
            logits, perturbed = model.forward_perturbed(cl(torch.cat([x, u])), config.um_feature_dropout)
        logits, perturbed = logits.float(), perturbed[n_lab:].float()
        with torch.no_grad():
            probs = logits[n_lab:].softmax(1)  # (U, K, H, W), the weak view's prediction
            conf, hard = probs.max(1)
            target = one_hot(hard, num_classes, dtype=probs.dtype)
            keep = (conf >= config.um_threshold).to(probs.dtype)  # (U, H, W)
        views = [strong_view(u, target, gen, partner=partner, weights=keep) for _ in range(2)]
        with autocast(device, config.amp):
            strong_logits = model(cl(torch.cat([v[0] for v in views]))).float().chunk(2)
        sup = segmentation_loss(logits[:n_lab], y).total
        s1, s2 = (soft_dice_loss(out.softmax(1), v[1], weight=v[2]) for out, v in zip(strong_logits, views))
        fp = soft_dice_loss(perturbed.softmax(1), target, weight=keep)
        total = (sup + 0.25 * s1 + 0.25 * s2 + 0.5 * fp) / 2
        return total, {"loss": total.item(), "supervised": sup.item(), "strong": (s1.item() + s2.item()) / 2,
                       "fp": fp.item(), "confident": keep.mean().item()}

    history = fit(model.parameters(), step, steps=config.um_steps, lr=config.um_lr,
                  keys=("loss", "supervised", "strong", "fp", "confident"), device=device, amp=config.amp,
                  desc="unimatch", progress=progress, callback=callback)
    model.eval()
    return history


def run_unimatch(data: "Data", split: "Split", config: TrainConfig, folder: "Run") -> dict[str, Any]:
    """UniMatch from the run's pre-trained segmenter, on the split's annotated and unannotated
    training images; the final model is evaluated on the test subjects."""
    if not split.unannotated:
        raise ValueError("UniMatch needs unannotated training images; this split annotates all of them")
    model = folder.pretrained("seg")
    s = phase_seed(folder.seed, 0, "unimatch")
    seed_everything(s)
    train_unimatch(model, data.images, data.labels, split.annotated, split.unannotated, config, device=folder.device,
                   seed=s, progress=folder.progress)
    return test_metrics(model, data, split, folder.device)
