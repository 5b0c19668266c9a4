"""The Mean Teacher baseline for semi-supervised segmentation, as a plain training function.

Mean Teacher (Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017) is one
of the semi-supervised baselines that Li et al. (arXiv 2502.03229, ISBI 2025) compare their joint
segmentation-registration method with. A student network learns from the annotated images
(the supervised loss of :func:`segreg_lite.losses.segmentation_loss`) and, on every image, to
agree with a teacher whose weights are an exponential moving average (EMA) of the student's.

Inside: :func:`sigmoid_rampup` (the consistency weight's ramp-up), :func:`update_ema` (one
teacher update), :func:`train_mean_teacher` (its step, run by :func:`segreg_lite.train.fit`) and
:func:`run_mean_teacher` (the ``mean_teacher`` method of the comparison). Settings, as in the
original: EMA decay 0.99, consistency weight 1.0 on the mean squared error between the
student's and the teacher's softmax maps, sigmoid ramp-up of that weight over the first 40% of
the steps, and Gaussian input noise of std 0.05 (independent for student and teacher).
"""
from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from segreg_lite.augment import AugmentConfig, augment_batch
from segreg_lite.checks import check_images, check_indices, one_hot
from segreg_lite.config import TrainConfig
from segreg_lite.losses import segmentation_loss
from segreg_lite.supervised import test_metrics
from segreg_lite.train import as_device, autocast, fit, new_models, phase_seed, seed_everything

if TYPE_CHECKING:
    from segreg_lite.container import Data
    from segreg_lite.context import Run
    from segreg_lite.splits import Split


def sigmoid_rampup(step: int, rampup_steps: int) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = clip(step / rampup_steps, 0, 1)``: exp(-5) at 0, 1 at the end.

    The consistency target is the teacher's noisy early guess; a slow start keeps it from
    dominating before the supervised loss has shaped the networks. 1.0 when ``rampup_steps`` is 0.
    """
    if rampup_steps < 0:
        raise ValueError(f"rampup_steps must be >= 0, got {rampup_steps}")
    if rampup_steps == 0:
        return 1.0
    t = min(max(step / rampup_steps, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


@torch.no_grad()
def update_ema(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """In place: teacher parameters = ``decay`` * teacher + (1 - ``decay``) * student; buffers copied.

    Written as ``t * decay + s * (1 - decay)`` so that decay 0 copies the student exactly and
    decay 1 keeps the teacher exactly. Buffers (e.g. BatchNorm statistics) are not averaged.
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


def _check_same_architecture(student: nn.Module, teacher: nn.Module) -> None:
    if teacher is student:
        raise ValueError("teacher must be a separate copy of the student (pass copy.deepcopy(student)), not the student itself")
    s = {k: tuple(v.shape) for k, v in student.state_dict().items()}
    t = {k: tuple(v.shape) for k, v in teacher.state_dict().items()}
    if s != t:
        diff = sorted(k for k in s.keys() | t.keys() if s.get(k) != t.get(k))
        raise ValueError(f"teacher must have the student's architecture: state_dict keys/shapes differ at {diff[:5]}")


def train_mean_teacher(
    student: nn.Module,
    teacher: nn.Module,
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
    """Train ``student`` with Mean Teacher; ``teacher`` (``copy.deepcopy(student)``) follows by EMA.

    images: (N, 1, H, W) float in [0, 1]; labels: (N, H, W) int64, indexed like ``images`` (only
    ``labels[annotated]`` is read). From ``config``: ``seg_steps`` steps at ``seg_lr``,
    ``batch_size``, ``augment``, ``amp`` and the ``mt_*`` settings (EMA decay, consistency weight,
    ramp-up share, input noise). Each step's ``batch_size`` images are half annotated, for the
    supervised loss (augmented if ``augment``), and half drawn from annotated + unannotated for
    the consistency loss (``batch_size // 2`` and the rest, each at least 1), as in common
    semi-supervised segmentation code, so that a step costs about what a supervised step does;
    draws are with replacement (seeded): as in the original, the consistency term applies to
    every image, so ``unannotated`` may be empty. The student and the teacher see those images
    with independent Gaussian noise (std ``mt_noise``, clamped to [0, 1]); the teacher stays in
    train mode during training, its dropout being part of the noise.

    Loss: ``supervised + mt_consistency * sigmoid_rampup(step, int(mt_rampup * steps)) * mse``
    where mse is the mean over images, classes and pixels of (student softmax - teacher
    softmax)^2, with no gradient through the teacher. After each Adam step (lr with cosine decay
    to zero) the teacher moves by :func:`update_ema` with decay ``min(mt_ema, 1 - 1 / (step +
    1))``: 0 at step 0 (the teacher becomes the student), then rising to ``mt_ema``, so the
    teacher is not dragged towards its random initial weights early on (the warm-up of the
    original code).

    Returns per-step ``loss``, ``supervised``, ``consistency`` (the unweighted mse) and
    ``weight`` (the ramp-up factor in [0, 1]). Both models are left in eval mode.
    """
    n = check_images(images).shape[0]
    if labels.ndim != 3 or labels.shape[0] != n or labels.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"labels must be (N, H, W) like images: labels {tuple(labels.shape)} do not match images {tuple(images.shape)}")
    labelled = check_indices(annotated, n, "annotated", empty=False)
    pool = torch.unique(torch.cat([labelled, check_indices(unannotated, n, "unannotated")]))
    steps, batch_size, noise_std = config.seg_steps, config.batch_size, config.mt_noise
    if batch_size < 2:
        raise ValueError(f"Mean Teacher needs batch_size >= 2 (half annotated, half consistency), got {batch_size}")
    n_lab = batch_size // 2
    if not 0.0 <= config.mt_ema <= 1.0 or not 0.0 <= config.mt_rampup <= 1.0:
        raise ValueError(f"mt_ema and mt_rampup must be in [0, 1], got {config.mt_ema} and {config.mt_rampup}")
    _check_same_architecture(student, teacher)
    device = as_device(device)
    num_classes = student.config["num_classes"]
    aug_cfg = AugmentConfig() if config.augment else None
    rampup_steps = int(config.mt_rampup * steps)
    gen = torch.Generator().manual_seed(seed)
    # channels_last: oneDNN's convolutions run faster so on a CPU (bench_models.py times both formats).
    student.to(device=device, memory_format=torch.channels_last).train()
    teacher.to(device=device, memory_format=torch.channels_last).train()

    def noisy(x: torch.Tensor) -> torch.Tensor:
        # Noise drawn on the CPU generator so that a seeded run is the same on every device.
        return (x + noise_std * torch.randn(x.shape, generator=gen).to(device)).clamp(0, 1)

    def step(i: int):
        pick = labelled[torch.randint(len(labelled), (n_lab,), generator=gen)]
        x = images[pick].to(device)
        y = one_hot(labels[pick].long(), num_classes).to(device)  # (B, K, H, W)
        if aug_cfg is not None:
            x, y = augment_batch(x, y, gen, aug_cfg)
        u = images[pool[torch.randint(len(pool), (batch_size - n_lab,), generator=gen)]].to(device)
        u_student, u_teacher = noisy(u), noisy(u)
        with autocast(device, config.amp):
            # One student pass over both batches: GroupNorm makes each image's output
            # independent of the rest of the batch, so this equals two passes, only faster.
            both = torch.cat([x, u_student]).contiguous(memory_format=torch.channels_last)
            logits = student(both).float()  # (2B, K, H, W)
            with torch.no_grad():
                target = torch.softmax(teacher(u_teacher.contiguous(memory_format=torch.channels_last)).float(), dim=1)
        sup = segmentation_loss(logits[:n_lab], y).total
        cons = F.mse_loss(torch.softmax(logits[n_lab:], dim=1), target)
        weight = sigmoid_rampup(i, rampup_steps)
        total = sup + config.mt_consistency * weight * cons
        return total, {"loss": total.item(), "supervised": sup.item(), "consistency": cons.item(), "weight": weight}

    history = fit(student.parameters(), step, steps=steps, lr=config.seg_lr,
                  keys=("loss", "supervised", "consistency", "weight"), device=device, amp=config.amp,
                  desc="mean teacher", progress=progress, callback=callback,
                  after_step=lambda i: update_ema(teacher, student, min(config.mt_ema, 1.0 - 1.0 / (i + 1))))
    student.eval()
    teacher.eval()
    return history


def run_mean_teacher(data: "Data", split: "Split", config: TrainConfig, folder: "Run") -> dict[str, Any]:
    """Mean Teacher from a fresh U-Net, on the split's annotated and unannotated training images;
    the teacher is evaluated on the test subjects."""
    student = new_models(config, data.num_classes, folder.seed)[0]
    teacher = copy.deepcopy(student)
    s = phase_seed(folder.seed, 0, "mean_teacher")
    seed_everything(s)
    train_mean_teacher(student, teacher, data.images, data.labels, split.annotated, split.unannotated, config,
                       device=folder.device, seed=s, progress=folder.progress)
    return test_metrics(teacher, data, split, folder.device)
