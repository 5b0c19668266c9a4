"""Registration: training, inference, multi-atlas label propagation, and the registration-only method.

After Li et al., "A Unified Framework for Semi-Supervised Image Segmentation and
Registration" (arXiv 2502.03229, ISBI 2025):

- :func:`train_registration` trains a :class:`~segreg_lite.regnet.RegNet` on random pairs of
  distinct subjects: without labels it is the unsupervised pre-training
  (:func:`pretrain_regnet`), with labels (true or pseudo, of every image of the pool) it is the
  registration phase of a joint round;
- :func:`register` gives the full-resolution fields of (moving, fixed) pairs, optionally refined
  pair by pair by :func:`instance_optimise` (a few Adam steps on each pair's own field, starting
  from the network's, as the top Learn2Reg entries do);
- :func:`propagate_labels` warps the one-hot labels of annotated atlases onto target images:
  the registration masks of the pseudo-labels, and the multi-atlas baseline (mean of the maps,
  whose argmax is a majority vote weighted by the bilinear fractions);
- :func:`evaluate_registration` scores that baseline on test subjects, and
  :func:`run_reg_only` is the ``reg_only`` method of the comparison.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from segreg_lite.checks import as_soft, check_images, check_labels
from segreg_lite.config import TrainConfig, reg_inference, reg_weights
from segreg_lite.losses import gradient_loss, local_ncc_loss, registration_loss
from segreg_lite.regnet import RegNet
from segreg_lite.train import as_device, autocast, fit, phase_seed, seed_everything
from segreg_lite.transforms import compose, integrate_velocity, warp

if TYPE_CHECKING:
    from segreg_lite.container import Data
    from segreg_lite.context import Run
    from segreg_lite.splits import Split


def train_registration(
    model: RegNet,
    images: Tensor,
    indices: Sequence[int] | Tensor,
    config: TrainConfig,
    *,
    steps: int | None = None,
    lr: float | None = None,
    labels: Tensor | None = None,
    num_classes: int = 5,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    cosine: bool = False,
) -> dict[str, list[float]]:
    """Train ``model`` on random (moving, fixed) pairs from ``images[indices]``; returns the history.

    images: (N, 1, H, W) float in [0, 1]; labels: None (unsupervised), integer (N, H, W) or soft
    (N, K, H, W), indexed like ``images``; when given they enter the label term for both the
    moving and the fixed image. From ``config``: ``batch_size``, ``local_ncc``, the smoothness
    weights (:func:`~segreg_lite.config.reg_weights`), ``label_weight`` and ``amp``; ``steps``
    and ``lr`` default to the pre-training's ``reg_steps`` and ``reg_lr`` (a joint round passes
    its own). Each step draws ``batch_size`` ordered pairs of two *distinct* subjects (repeated
    indices count once) with a torch Generator seeded by ``seed``. Adam at a constant ``lr`` (as
    the paper), or with ``cosine`` decayed to zero over ``steps`` as the segmenter's; mixed
    precision on CUDA only. The history has one value per step for ``loss`` (the total),
    ``similarity``, ``smoothness`` and ``label`` (0 without labels), as
    :class:`~segreg_lite.losses.RegLoss`. The model is left in eval mode.
    """
    check_images(images)
    pool = torch.as_tensor(list(dict.fromkeys(int(i) for i in indices)), dtype=torch.long)  # distinct, in order
    if len(pool) < 2:
        raise ValueError(f"registration pairs need at least 2 distinct subjects, got indices {pool.tolist()}")
    if int(pool.min()) < 0 or int(pool.max()) >= images.shape[0]:
        raise ValueError(f"indices must be in [0, {images.shape[0]}), got {int(pool.min())}..{int(pool.max())}")
    if labels is not None:
        check_labels(labels, images, num_classes, "labels")
    device = as_device(device)
    batch_size, weights = config.batch_size, reg_weights(config)
    gen = torch.Generator().manual_seed(seed)
    _ready(model, device).train()

    def step(_: int):
        # Two distinct positions in the pool: draw b among the n - 1 others, skipping a.
        a = torch.randint(len(pool), (batch_size,), generator=gen)
        b = torch.randint(len(pool) - 1, (batch_size,), generator=gen)
        b = b + (b >= a).long()
        mi, fi = pool[a], pool[b]  # (batch,) image indices
        moving, fixed = images[mi].to(device), images[fi].to(device)  # (batch, 1, H, W)
        extra = {}
        if labels is not None:  # one-hot per batch: a whole (N, K, H, W) copy can be large
            extra = dict(moving_labels=as_soft(labels[mi], num_classes).to(device),
                         fixed_labels=as_soft(labels[fi], num_classes).to(device))  # (batch, K, H, W)
        with autocast(device, config.amp):
            out = model(moving, fixed)
        # The loss in float32, outside autocast: the fields already are (see RegNet.forward).
        loss = registration_loss(out, moving, fixed, num_classes=num_classes, local=config.local_ncc,
                                 label_weight=config.label_weight, reg_weights=weights, **extra)
        return loss.total, {"loss": loss.total.item(), "similarity": loss.similarity.item(),
                            "smoothness": loss.smoothness.item(), "label": loss.label.item()}

    history = fit(model.parameters(), step, steps=config.reg_steps if steps is None else steps,
                  lr=config.reg_lr if lr is None else lr, keys=("loss", "similarity", "smoothness", "label"),
                  device=device, amp=config.amp, cosine=cosine, desc="registration", progress=progress,
                  callback=callback)
    model.eval()
    return history


def pretrain_regnet(reg: RegNet, images: Tensor, split: "Split", config: TrainConfig, *,
                    seed: int, device=None, progress: bool = False, shipped: bool | None = None,
                    log: Callable[[str], None] | None = None) -> dict:
    """Unsupervised pre-training on random pairs of all training images. Returns the history.

    With ``config.shipped_regnet`` (or ``shipped=True``) the shipped pre-trained weights
    (:mod:`segreg_lite.pretrained`) are loaded into ``reg`` instead, when their fingerprint fits
    this data, split and config; the history is then empty. ``log`` gets one line saying which
    happened and why.
    """
    say = log if log is not None else (lambda msg: None)
    if config.shipped_regnet if shipped is None else shipped:
        from segreg_lite.pretrained import shipped_regnet

        model, note = shipped_regnet(images, split, config)
        if model is not None:
            reg.load_state_dict(model.state_dict())
            say(f"registration network: shipped pre-trained weights ({note})")
            return {"loss": [], "similarity": [], "smoothness": [], "label": []}
        say(f"registration network: pre-training its own for {config.reg_steps} steps; "
            f"the shipped weights do not fit this run: {note}")
    s = phase_seed(seed, 0, "reg")
    seed_everything(s)
    return train_registration(reg, images, split.train, config, device=device, seed=s, progress=progress)


def _device_of(model: RegNet, device: torch.device | str | None) -> torch.device:
    return torch.device(device) if device is not None else next(model.parameters()).device


def _ready(model: RegNet, device: torch.device) -> RegNet:
    """``model`` on ``device`` in channels_last: oneDNN's convolutions run this network faster so,
    for training and more so for inference (``benchmarks/bench_models.py`` times both formats)."""
    return model.to(device=device, memory_format=torch.channels_last)


def _check_passes(passes: int) -> None:
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"passes must be an integer >= 1, got {passes!r}")


#: Instance optimisation's defaults, chosen by ``benchmarks/bench_registration.py --io-steps``
#: on the 1% atlases of split seeds 0 and 2: the Adam rate (pixels of velocity per step), the
#: weight of the update's smoothness (0.5 folded more on seed 2, 1.0 lost Dice on seed 0) and the
#: local NCC window (the networks' loss uses 9). A half-resolution velocity was twice as fast
#: and 0.005 lower in pair Dice.
IO_LR, IO_SMOOTHNESS, IO_WINDOW = TrainConfig.reg_io_lr, 0.7, 9
#: Scaling-and-squaring steps of the update's velocity: 4 folded more at full resolution.
IO_INTEGRATION = 6


def check_io(steps: Any, lr: Any) -> None:
    """Instance optimisation's settings, refused by name: ``steps`` a whole number >= 0 (0: off),
    ``lr`` a finite number > 0."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"io_steps (instance optimisation steps) must be a whole number >= 0, 0 for none; got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"io_lr (instance optimisation's Adam rate) must be a finite number > 0, got {lr!r}")


def instance_optimise(moving: Tensor, fixed: Tensor, flow: Tensor, *, steps: int = 20, lr: float = IO_LR,
                      smoothness: float = IO_SMOOTHNESS, window: int = IO_WINDOW) -> Tensor:
    """``flow`` (B, 2, H, W), which registers ``moving`` onto ``fixed`` (B, 1, H, W each), refined
    for each pair by ``steps`` Adam steps on that pair's own objective.

    The update is a stationary velocity at full resolution, integrated by scaling and squaring
    and composed after ``flow``: ``warp(moving, out) ~= warp(warp(moving, flow), u)``.
    An integrated velocity does not fold, so the result folds about where ``flow`` does. The
    objective is the networks' own, for one pair: local NCC (``window``) of the warped image
    with ``fixed``, plus ``smoothness`` times the squared gradient of the update. The batch's
    loss is the sum of the pairs' and Adam's steps are per element, so a pair's result does not
    depend on its batch.
    Gradients are on inside, whatever the caller's mode; the result carries none.
    """
    check_io(steps, lr)
    if steps == 0:
        return flow
    with torch.enable_grad():
        start = warp(moving.float(), flow).detach()  # (B, 1, H, W): what the network leaves
        target = fixed.float().detach()
        velocity = torch.zeros_like(flow, dtype=torch.float32, requires_grad=True)  # (B, 2, H, W)
        opt = torch.optim.Adam([velocity], lr=lr)
        for _ in range(steps):
            update = integrate_velocity(velocity, IO_INTEGRATION)  # (B, 2, H, W)
            loss = local_ncc_loss(warp(start, update), target, window) + smoothness * gradient_loss(update)
            loss = loss * len(velocity)  # the sum of the pairs' own objectives: each gradient its pair's alone
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return compose(integrate_velocity(velocity, IO_INTEGRATION), flow.float())


def _field(model: RegNet, moving: Tensor, fixed: Tensor, passes: int, io_steps: int = 0, io_lr: float = IO_LR) -> Tensor:
    """The full-resolution field (b, 2, H, W) of ``passes`` applications of ``model``, then
    ``io_steps`` of :func:`instance_optimise` (none by default).

    Each pass after the first registers the moving image as the field so far warps it and adds
    what is left (a recursive cascade, as in Zhao et al.'s VTN): ``warp(warp(x, u), v) ~=
    warp(x, compose(v, u))``, so the fields compose and the labels are warped once, by the total.
    """
    flow = model(moving, fixed).flow.float()
    for _ in range(passes - 1):
        flow = compose(model(warp(moving, flow), fixed).flow.float(), flow)
    return instance_optimise(moving, fixed, flow, steps=io_steps, lr=io_lr) if io_steps else flow


@torch.no_grad()
def register(
    model: RegNet, moving: Tensor, fixed: Tensor, *, batch_size: int = 4, device: torch.device | str | None = None,
    passes: int = 1, io_steps: int = 0, io_lr: float = IO_LR,
) -> Tensor:
    """Full-resolution fields (B, 2, H, W) registering ``moving`` onto ``fixed``, (B, 1, H, W) each.

    ``warp(moving, flow) ~ fixed``. A batch of 1 on either side is paired with every image of the
    other. Runs in eval mode without gradients, ``batch_size`` pairs at a time on ``device``
    (default: the model's); the result is on ``moving``'s device, float32. ``passes`` > 1 applies
    the network again to what it has aligned and composes the fields (:func:`_field`; the CPU
    presets' ``reg_passes``), at ``passes`` times the cost. ``io_steps`` > 0 then refines each
    pair's field by :func:`instance_optimise` at rate ``io_lr``.
    """
    _check_passes(passes)
    check_io(io_steps, io_lr)
    check_images(moving, "moving")
    check_images(fixed, "fixed")
    n_m, n_f = moving.shape[0], fixed.shape[0]
    if n_m != n_f and 1 not in (n_m, n_f):
        raise ValueError(f"moving and fixed batches differ and neither is 1: {tuple(moving.shape)}, {tuple(fixed.shape)}")
    n = max(n_m, n_f)
    moving, fixed = moving.expand(n, -1, -1, -1), fixed.expand(n, -1, -1, -1)
    device = _device_of(model, device)
    _ready(model, device).eval()
    flows = [_field(model, moving[i:i + batch_size].to(device), fixed[i:i + batch_size].to(device), passes,
                    io_steps, io_lr).to(moving.device)
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
    batch_size: int = 4,  # pairs per forward pass: small batches ran faster per pair on a 2-core CPU (bench_models.py)
    device: torch.device | str | None = None,
    passes: int = 1,
    io_steps: int = 0,
    io_lr: float = IO_LR,
    on_fields: Callable[[Tensor, Tensor], None] | None = None,
) -> Tensor:
    """Soft labels of ``target_images`` (T, 1, H, W) from atlases registered onto each of them.

    atlas_images: (A, 1, H, W); atlas_labels: integer (A, H, W) or soft (A, K, H, W). Each atlas
    is registered onto each target (atlas moving, target fixed) and its one-hot label warped
    bilinearly (:func:`~segreg_lite.transforms.warp`, edges repeated). ``atlas_index`` (T, A')
    picks, per target, which atlases to use (rows may repeat an atlas: the design draws 5 with
    replacement per image); by default every target uses all A. Returns the mean over the
    atlases (T, K, H, W), in [0, 1] and summing to 1 over K, or with ``return_all`` the
    per-atlas maps (T, A', K, H, W) instead. Results on the CPU. ``passes``, ``io_steps`` and
    ``io_lr``: as in :func:`register`.
    ``on_fields(flows, counts)``, when given, sees each batch's fields (b, 2, H, W) and how many
    times each pair was drawn (b,), for statistics of the deformations (folding, log|J|).
    """
    _check_passes(passes)
    check_io(io_steps, io_lr)
    check_images(atlas_images, "atlas_images")
    check_images(target_images, "target_images")
    if atlas_images.shape[-2:] != target_images.shape[-2:]:
        raise ValueError(f"atlas and target images differ in size: {tuple(atlas_images.shape)}, {tuple(target_images.shape)}")
    soft = as_soft(check_labels(atlas_labels, atlas_images, num_classes, "atlas_labels"), num_classes).cpu()  # (A, K, H, W): A atlases are few
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
        flow = _field(model, atlas_images[a].to(device), target_images[t].to(device), passes, io_steps, io_lr)  # (b, 2, H, W)
        if on_fields is not None:
            on_fields(flow, counts[i:i + len(a)])
        warped = warp(soft[a].to(device), flow).clamp(0, 1).cpu()  # (b, K, H, W)
        if return_all:
            maps[i:i + len(a)] = warped
        else:
            maps.index_add_(0, t, warped * counts[i:i + len(a), None, None, None])
    return maps[inverse].view(n_t, per, num_classes, h, w) if return_all else maps / per


def draw_atlases(annotated: Sequence[int], n_targets: int, n_atlas: int, generator: torch.Generator) -> Tensor:
    """``n_atlas`` atlases per target drawn from ``annotated`` with replacement: (n_targets, n_atlas).

    Values are the image indices in ``annotated``; one image annotated means every draw is it.
    """
    pool = torch.as_tensor(list(annotated), dtype=torch.long)
    if len(pool) == 0:
        raise ValueError("no annotated image to use as an atlas: the split needs at least one")
    if n_atlas < 1:
        raise ValueError(f"n_atlas must be >= 1, got {n_atlas}")
    return pool[torch.randint(len(pool), (n_targets, n_atlas), generator=generator)]


@torch.no_grad()
def evaluate_registration(reg: RegNet, images: Tensor, labels: Tensor, annotated, targets, *,
                          n_atlas: int, num_classes: int, seed: int, device=None, passes: int = 1, io_steps: int = 0,
                          io_lr: float = IO_LR) -> dict[str, Any]:
    """Multi-atlas propagation onto ``images[targets]`` (:func:`propagate_labels`), scored.

    ``n_atlas`` atlases per target drawn with replacement from ``annotated`` (seeded, as the
    pseudo-labels draw them); the argmax of the mean warped label (a vote weighted by the
    bilinear fractions) is scored like a segmentation
    (:func:`~segreg_lite.supervised.evaluate_segmentation`), and ``folding`` (det J <= 0) and
    ``log_jac_std`` are means over every atlas-to-target field drawn. Plain floats.
    """
    from segreg_lite.metrics import folding_fraction, log_jacobian_std
    from segreg_lite.supervised import evaluate_segmentation

    targets = list(targets)
    atlases = draw_atlases(annotated, len(targets), n_atlas, torch.Generator().manual_seed(seed))  # (T, n_atlas)
    used = torch.unique(atlases)  # each distinct atlas sent once
    folds, logj = [], []  # per drawn field: a pair drawn twice counts twice

    def field_stats(flows: Tensor, counts: Tensor) -> None:
        reps = counts.tolist()
        folds.extend(np.repeat(folding_fraction(flows.cpu()), reps))
        logj.extend(np.repeat(log_jacobian_std(flows.cpu()), reps))

    fused = propagate_labels(reg, images[used], labels[used], images[targets], num_classes=num_classes,
                             atlas_index=torch.searchsorted(used, atlases), device=device, passes=passes,
                             io_steps=io_steps, io_lr=io_lr, on_fields=field_stats)  # (T, K, H, W)
    return {**evaluate_segmentation(fused.argmax(1), labels[targets], num_classes),
            "folding": float(np.mean(folds)), "log_jac_std": float(np.nanmean(logj))}


def run_reg_only(data: "Data", split: "Split", config: TrainConfig, folder: "Run") -> dict[str, Any]:
    """Multi-atlas registration with the run's pre-trained registration network and no segmenter:
    ``n_atlas`` annotated images registered onto each test subject, their labels averaged."""
    return evaluate_registration(folder.pretrained("reg"), data.images, data.labels, split.annotated, split.test,
                                 n_atlas=config.n_atlas, num_classes=data.num_classes,
                                 seed=phase_seed(folder.seed, 0, "eval"), device=folder.device, **reg_inference(config))
