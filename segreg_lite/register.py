"""Registration training, inference and multi-atlas label propagation, as plain functions.

After Li et al., "A Unified Framework for Semi-Supervised Image Segmentation and
Registration" (arXiv 2502.03229, ISBI 2025):

- :func:`train_registration` trains a :class:`~segreg_lite.regnet.RegNet` on random pairs of
  distinct subjects: without labels it is the unsupervised pre-training, with labels (true or
  pseudo, of every image of the pool) it is the registration phase of a joint round;
- :func:`register` gives the full-resolution fields of (moving, fixed) pairs;
- :func:`propagate_labels` warps the one-hot labels of annotated atlases onto target images:
  the registration masks of the pseudo-labels, and the multi-atlas baseline (mean of the maps,
  whose argmax is a majority vote weighted by the bilinear fractions).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

from segreg_lite.config import autocast, cosine_schedule, optimizer_step, pick_device, record_step
from segreg_lite.losses import one_hot
from segreg_lite.regnet import RegNet, registration_loss
from segreg_lite.transforms import compose, warp


def _check_images(images: Tensor, name: str = "images") -> None:
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 1 or not images.is_floating_point():
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a float tensor of shape (N, 1, H, W), got {shape}")


def _check_labels(labels: Tensor, images: Tensor, num_classes: int, name: str) -> None:
    """Integer labels (N, H, W) or soft maps (N, K, H, W) matching ``images`` (N, 1, H, W)."""
    n, _, h, w = images.shape
    if labels.ndim == 3 and not labels.is_floating_point() and tuple(labels.shape) == (n, h, w):
        return
    if labels.ndim == 4 and labels.is_floating_point() and tuple(labels.shape) == (n, num_classes, h, w):
        return
    raise ValueError(f"{name} must be integer labels ({n}, {h}, {w}) or soft maps ({n}, {num_classes}, {h}, {w}) "
                     f"to match images {tuple(images.shape)}, got {tuple(labels.shape)} of dtype {labels.dtype}")


def _soft(labels: Tensor, num_classes: int) -> Tensor:
    """Checked labels -> float (N, K, H, W): one-hot for integer maps, soft maps as they are."""
    return labels.float() if labels.is_floating_point() else one_hot(labels.long(), num_classes)


def train_registration(
    model: RegNet,
    images: Tensor,
    indices: Sequence[int] | Tensor,
    *,
    steps: int,
    lr: float,
    batch_size: int = 8,
    labels: Tensor | None = None,
    num_classes: int = 5,
    local: bool = False,
    label_weight: float = 1.0,
    reg_weights: Sequence[float] = (128, 64, 32, 16, 8),
    device: torch.device | str | None = None,
    seed: int = 0,
    amp: bool = True,
    progress: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    cosine: bool = False,
) -> dict[str, list[float]]:
    """Train ``model`` on random (moving, fixed) pairs from ``images[indices]``; returns the history.

    images: (N, 1, H, W) float in [0, 1]; labels: None (unsupervised), integer (N, H, W) or soft
    (N, K, H, W), indexed like ``images``; when given they enter the label term for both the
    moving and the fixed image. Each step draws ``batch_size`` ordered pairs of two *distinct*
    subjects (repeated indices count once) with a torch Generator seeded by ``seed``. Adam at a
    constant ``lr`` (as the paper), or with ``cosine`` decayed to zero over ``steps`` as the
    segmenter's; mixed precision on CUDA only. The history has one value per
    step for ``loss`` (the total), ``similarity``, ``smoothness`` and ``label`` (0 without
    labels), as :class:`~segreg_lite.regnet.RegLoss`. The model is left in eval mode.
    """
    _check_images(images)
    pool = torch.as_tensor(list(dict.fromkeys(int(i) for i in indices)), dtype=torch.long)  # distinct, in order
    if len(pool) < 2:
        raise ValueError(f"registration pairs need at least 2 distinct subjects, got indices {pool.tolist()}")
    if int(pool.min()) < 0 or int(pool.max()) >= images.shape[0]:
        raise ValueError(f"indices must be in [0, {images.shape[0]}), got {int(pool.min())}..{int(pool.max())}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0 or batch_size < 1:
        raise ValueError(f"steps must be an int >= 0 and batch_size >= 1, got {steps!r} and {batch_size!r}")
    if labels is not None:
        _check_labels(labels, images, num_classes, "labels")
    device = torch.device(device) if device is not None else pick_device()
    gen = torch.Generator().manual_seed(seed)
    _ready(model, device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = cosine_schedule(opt, steps, cosine)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")
    history: dict[str, list[float]] = {"loss": [], "similarity": [], "smoothness": [], "label": []}
    bar = range(steps)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc="registration", unit="step")
    for step in bar:
        # Two distinct positions in the pool: draw b among the n - 1 others, skipping a.
        a = torch.randint(len(pool), (batch_size,), generator=gen)
        b = torch.randint(len(pool) - 1, (batch_size,), generator=gen)
        b = b + (b >= a).long()
        mi, fi = pool[a], pool[b]  # (batch,) image indices
        moving, fixed = images[mi].to(device), images[fi].to(device)  # (batch, 1, H, W)
        extra = {}
        if labels is not None:  # one-hot per batch: a whole (N, K, H, W) copy can be large
            extra = dict(moving_labels=_soft(labels[mi], num_classes).to(device),
                         fixed_labels=_soft(labels[fi], num_classes).to(device))  # (batch, K, H, W)
        with autocast(device, amp):
            out = model(moving, fixed)
        # The loss in float32, outside autocast: the fields already are (see RegNet.forward).
        loss = registration_loss(out, moving, fixed, num_classes=num_classes, local=local,
                                 label_weight=label_weight, reg_weights=reg_weights, **extra)
        optimizer_step(opt, scaler, loss.total)
        sched.step()
        terms = {"loss": loss.total.item(), "similarity": loss.similarity.item(),
                 "smoothness": loss.smoothness.item(), "label": loss.label.item()}
        record_step(history, step, terms, bar if progress else None, callback)
    model.eval()
    return history


def _device_of(model: RegNet, device: torch.device | str | None) -> torch.device:
    return torch.device(device) if device is not None else next(model.parameters()).device


def _ready(model: RegNet, device: torch.device) -> RegNet:
    """``model`` on ``device`` in channels_last: oneDNN's convolutions run this network faster so,
    for training and more so for inference (``benchmarks/bench_models.py`` times both formats)."""
    return model.to(device=device, memory_format=torch.channels_last)


def _check_passes(passes: int) -> None:
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"passes must be an integer >= 1, got {passes!r}")


def _field(model: RegNet, moving: Tensor, fixed: Tensor, passes: int) -> Tensor:
    """The full-resolution field (b, 2, H, W) of ``passes`` applications of ``model``.

    Each pass after the first registers the moving image as the field so far warps it and adds
    what is left (a recursive cascade, as in Zhao et al.'s VTN): ``warp(warp(x, u), v) ~=
    warp(x, compose(v, u))``, so the fields compose and the labels are warped once, by the total.
    """
    flow = model(moving, fixed).flow.float()
    for _ in range(passes - 1):
        flow = compose(model(warp(moving, flow), fixed).flow.float(), flow)
    return flow


@torch.no_grad()
def register(
    model: RegNet, moving: Tensor, fixed: Tensor, *, batch_size: int = 4, device: torch.device | str | None = None,
    passes: int = 1,
) -> Tensor:
    """Full-resolution fields (B, 2, H, W) registering ``moving`` onto ``fixed``, (B, 1, H, W) each.

    ``warp(moving, flow) ~ fixed``. A batch of 1 on either side is paired with every image of the
    other. Runs in eval mode without gradients, ``batch_size`` pairs at a time on ``device``
    (default: the model's); the result is on ``moving``'s device, float32. ``passes`` > 1 applies
    the network again to what it has aligned and composes the fields (:func:`_field`; the CPU
    presets' ``reg_passes``), at ``passes`` times the cost.
    """
    _check_passes(passes)
    _check_images(moving, "moving")
    _check_images(fixed, "fixed")
    n_m, n_f = moving.shape[0], fixed.shape[0]
    if n_m != n_f and 1 not in (n_m, n_f):
        raise ValueError(f"moving and fixed batches differ and neither is 1: {tuple(moving.shape)}, {tuple(fixed.shape)}")
    n = max(n_m, n_f)
    moving, fixed = moving.expand(n, -1, -1, -1), fixed.expand(n, -1, -1, -1)
    device = _device_of(model, device)
    _ready(model, device).eval()
    flows = [_field(model, moving[i:i + batch_size].to(device), fixed[i:i + batch_size].to(device), passes).to(moving.device)
             for i in range(0, n, batch_size)]
    return torch.cat(flows)  # (B, 2, H, W)


@torch.no_grad()
def propagate_labels(
    model: RegNet,
    atlas_images: Tensor,
    atlas_labels: Tensor,
    target_images: Tensor,
    *,
    num_classes: int = 5,
    atlas_index: Tensor | None = None,
    return_all: bool = False,
    batch_size: int = 4,  # pairs per forward pass: 4 ran ~1.3x faster per pair than 16 on a 2-core CPU
    device: torch.device | str | None = None,
    passes: int = 1,
) -> Tensor:
    """Soft labels of ``target_images`` (T, 1, H, W) from atlases registered onto each of them.

    atlas_images: (A, 1, H, W); atlas_labels: integer (A, H, W) or soft (A, K, H, W). Each atlas
    is registered onto each target (atlas moving, target fixed) and its one-hot label warped
    bilinearly (:func:`~segreg_lite.transforms.warp`, edges repeated). ``atlas_index`` (T, A')
    picks, per target, which atlases to use (rows may repeat an atlas: the design draws 5 with
    replacement per image); by default every target uses all A. Returns the mean over the
    atlases (T, K, H, W), in [0, 1] and summing to 1 over K, or with ``return_all`` the
    per-atlas maps (T, A', K, H, W) instead. Results on the CPU. ``passes``: as in :func:`register`.
    """
    _check_passes(passes)
    _check_images(atlas_images, "atlas_images")
    _check_images(target_images, "target_images")
    if atlas_images.shape[-2:] != target_images.shape[-2:]:
        raise ValueError(f"atlas and target images differ in size: {tuple(atlas_images.shape)}, {tuple(target_images.shape)}")
    _check_labels(atlas_labels, atlas_images, num_classes, "atlas_labels")
    soft = _soft(atlas_labels, num_classes).cpu()  # (A, K, H, W): A atlases are few
    n_t, n_a = target_images.shape[0], atlas_images.shape[0]
    if atlas_index is None:
        atlas_index = torch.arange(n_a).expand(n_t, n_a)
    atlas_index = torch.as_tensor(atlas_index, dtype=torch.long).cpu()
    if atlas_index.ndim != 2 or atlas_index.shape[0] != n_t or atlas_index.shape[1] < 1:
        raise ValueError(f"atlas_index must have shape (T, A') = ({n_t}, A'), got {tuple(atlas_index.shape)}")
    if atlas_index.numel() and (int(atlas_index.min()) < 0 or int(atlas_index.max()) >= n_a):
        raise ValueError(f"atlas_index must be in [0, {n_a}), got {int(atlas_index.min())}..{int(atlas_index.max())}")
    per = atlas_index.shape[1]
    # Each distinct (target, atlas) pair is registered once and counted as often as it was drawn:
    # with 2 annotated images and 5 draws per target (the 1% split), 2 registrations instead of 5.
    draws = torch.arange(n_t).repeat_interleave(per) * n_a + atlas_index.reshape(-1)  # (T * A',), target-major
    pairs, inverse, counts = torch.unique(draws, return_inverse=True, return_counts=True)
    pairs_t, pairs_a = pairs // n_a, pairs % n_a  # (P,) each
    device = _device_of(model, device)
    _ready(model, device).eval()
    h, w = target_images.shape[-2:]
    # Only the running sum unless every map is asked for: T * A' maps can be gigabytes.
    maps = torch.zeros((len(pairs) if return_all else n_t, num_classes, h, w))  # (P, K, H, W) or (T, K, H, W)
    for i in range(0, len(pairs), batch_size):
        a, t = pairs_a[i:i + batch_size], pairs_t[i:i + batch_size]
        flow = _field(model, atlas_images[a].to(device), target_images[t].to(device), passes)  # (b, 2, H, W)
        warped = warp(soft[a].to(device), flow).clamp(0, 1).cpu()  # (b, K, H, W)
        if return_all:
            maps[i:i + len(a)] = warped
        else:
            maps.index_add_(0, t, warped * counts[i:i + len(a), None, None, None])
    return maps[inverse].view(n_t, per, num_classes, h, w) if return_all else maps / per
