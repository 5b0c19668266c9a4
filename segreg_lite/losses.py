"""Losses for segmentation and registration, as pure functions ``f(pred, target, ...)``.

After Li et al., "A Unified Framework for Semi-Supervised Image Segmentation and
Registration" (arXiv 2502.03229, ISBI 2025):

- segmentation: :func:`segmentation_loss` = 0.5 soft Dice over the foreground classes (soft
  targets used as they are) + 0.5 cross-entropy (against the argmax of the target, or soft
  cross-entropy as an option), built from :func:`soft_dice_loss` and :func:`cross_entropy_loss`;
- registration: :func:`global_ncc_loss` (1 - Pearson correlation), :func:`local_ncc_loss`
  (windowed, an option) and the L2 smoothness penalty :func:`gradient_loss`, combined over the
  levels of a :class:`~segreg_lite.regnet.RegNet` by :func:`registration_loss`.

The registration loss sums over levels, then divides by the number of levels: global NCC
(or local NCC, window 9) between the warped moving image and the fixed image at the level's
resolution, ``reg_weight_i * gradient_loss(r_i)`` (128 coarsest ... 8 finest), and, in the joint
phase, a soft Dice between the warped one-hot moving label and the fixed label. Images are
blurred before being resampled to a level; labels are sampled (see :func:`_sample_levels`).

Conventions: logits and probabilities (B, K, H, W); integer labels (B, H, W); images
(B, 1, H, W); displacement fields (B, 2, H, W). Optional ``weight`` arguments are per image (B,)
or per pixel (B, H, W), non-negative, and *scale* the loss rather than renormalise it: weights of
zero give a loss of zero. Every function checks its inputs and raises ``ValueError`` with the
offending shapes or values; results follow the inputs' device and dtype.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from segreg_lite.checks import as_soft, check_finite, check_label_range, check_labels, one_hot, shape
from segreg_lite.regnet import RegOutput, pyramid
from segreg_lite.transforms import warp


class SegLoss(NamedTuple):
    """The segmentation loss and its two terms (scalars): ``total = 0.5 * dice + 0.5 * ce``."""

    total: Tensor
    dice: Tensor
    ce: Tensor


# ---------------------------------------------------------------------------------------------
# Input checks, shared by the public functions.


def _check_maps(pred_name: str, pred: Tensor, target_name: str, target: Tensor) -> None:
    """Check two (B, K, H, W) tensors agree in every dimension, and are finite."""
    for name, t in ((pred_name, pred), (target_name, target)):
        if t.ndim != 4:
            raise ValueError(f"{name} must have shape (B, C, H, W), got {shape(t)}")
    if pred.shape[1] != target.shape[1]:
        raise ValueError(
            f"{pred_name} has {pred.shape[1]} channels but {target_name} has {target.shape[1]}: "
            f"shapes {shape(pred)} and {shape(target)}"
        )
    if pred.shape != target.shape:
        raise ValueError(
            f"{pred_name} and {target_name} differ in batch or spatial size: "
            f"shapes {shape(pred)} and {shape(target)}"
        )
    check_finite(pred_name, pred)
    check_finite(target_name, target)


def _check_probabilities(name: str, t: Tensor, tol: float = 1e-3) -> None:
    # Catches logits passed where probabilities belong; tol allows half-precision rounding.
    lo, hi = (float(v) for v in torch.aminmax(t.detach()))
    if lo < -tol or hi > 1 + tol:
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], got values in [{lo:.4g}, {hi:.4g}] "
            "(softmax the logits; soft targets are clipped means of probability maps)"
        )


def _check_target(logits: Tensor, target: Tensor) -> bool:
    """Check logits (B, K, H, W) against a label map (B, H, W) or soft target (B, K, H, W).

    Returns True for an integer label map, False for a soft target.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must have shape (B, K, H, W), got {shape(logits)}")
    check_finite("logits", logits)
    if target.is_floating_point():
        _check_maps("logits", logits, "target", target)
        _check_probabilities("target", target)
        return False
    if target.ndim != 3:
        raise ValueError(
            f"integer target must be a label map (B, H, W), got shape {shape(target)} "
            f"for logits {shape(logits)}"
        )
    if target.shape[0] != logits.shape[0] or target.shape[1:] != logits.shape[2:]:
        raise ValueError(
            f"logits and target differ in batch or spatial size: shapes {shape(logits)} "
            f"and {shape(target)}"
        )
    check_label_range(target, logits.shape[1], "target")
    return True


def _weights(weight: Tensor | None, like: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """Split ``weight`` into (per-image (B,), per-pixel (B, H, W)); at most one is not None.

    like: (B, K, H, W); the weight is moved to its device and dtype.
    """
    if weight is None:
        return None, None
    b, _, h, w = like.shape
    weight = torch.as_tensor(weight, device=like.device, dtype=like.dtype)
    if weight.shape not in ((b,), (b, h, w)):
        raise ValueError(
            f"weight must be per image ({b},) or per pixel ({b}, {h}, {w}), got shape {shape(weight)}"
        )
    check_finite("weight", weight)
    if bool((weight < 0).any()):
        raise ValueError(f"weight must be non-negative, got minimum {float(weight.min()):.4g}")
    return (weight, None) if weight.ndim == 1 else (None, weight)


# ---------------------------------------------------------------------------------------------
# Segmentation.


def _soft_dice(probs: Tensor, target: Tensor, first: int, eps: float, weight: Tensor | None) -> Tensor:
    image_w, pixel_w = _weights(weight, probs)
    p, t = probs[:, first:], target[:, first:]  # (B, K', H, W)
    if pixel_w is not None:
        w = pixel_w.unsqueeze(1)  # (B, 1, H, W): the same weight in intersection and sizes
        inter = (p * t * w).sum((2, 3))  # (B, K')
        sizes = ((p + t) * w).sum((2, 3))  # (B, K')
    else:
        inter = (p * t).sum((2, 3))  # (B, K')
        sizes = p.sum((2, 3)) + t.sum((2, 3))  # (B, K')
    dice = (2 * inter + eps) / (sizes + eps)  # (B, K')
    per_image = 1 - dice.mean(dim=1)  # (B,)
    if image_w is not None:
        per_image = per_image * image_w
    return per_image.mean()


def soft_dice_loss(
    probs: Tensor,
    target: Tensor,
    *,
    include_background: bool = False,
    eps: float = 1e-5,
    weight: Tensor | None = None,
) -> Tensor:
    """Soft Dice loss: 1 - mean over classes of the Dice of each image and class.

    probs: (B, K, H, W) probabilities (softmax of the logits); target: (B, K, H, W) in [0, 1],
    one-hot or soft, used as given (a soft mask is not binarised). For image b and class k,
    ``dice = (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)``; the loss averages ``1 - dice``
    over classes (foreground only, unless ``include_background``), then over images.

    Edge cases: a class absent from both target and prediction has dice = eps / eps = 1 and
    costs nothing; a class absent from the target but predicted with total mass m has
    dice = eps / (m + eps), about 0 once m >> eps, so the loss pushes such false positives out.

    weight: per image (B,) scales each image's loss; per pixel (B, H, W) weights every pixel in
    the sums (a pixel of weight 0 is ignored; an image whose weights are all 0 has dice 1).
    """
    _check_maps("probs", probs, "target", target)
    _check_probabilities("probs", probs)
    _check_probabilities("target", target)
    first = 0 if include_background else 1
    if first >= probs.shape[1]:
        raise ValueError(f"no foreground class to score: K={probs.shape[1]}, include_background=False")
    return _soft_dice(probs, target, first, eps, weight)


def _cross_entropy(logits: Tensor, target: Tensor, is_labels: bool, soft: bool, weight: Tensor | None) -> Tensor:
    image_w, pixel_w = _weights(weight, logits)
    if soft and not is_labels:
        per_pixel = -(target * F.log_softmax(logits, dim=1)).sum(dim=1)  # (B, H, W)
    else:
        # Soft CE against a one-hot target equals hard CE, so int labels always take this path.
        labels = target if is_labels else target.argmax(dim=1)  # (B, H, W); ties -> lowest class
        per_pixel = F.cross_entropy(logits, labels.long(), reduction="none")  # (B, H, W)
    if image_w is not None:
        per_pixel = per_pixel * image_w.view(-1, 1, 1)
    elif pixel_w is not None:
        per_pixel = per_pixel * pixel_w
    return per_pixel.mean()


def cross_entropy_loss(
    logits: Tensor, target: Tensor, *, soft: bool = False, weight: Tensor | None = None
) -> Tensor:
    """Cross-entropy of logits (B, K, H, W) against labels (B, H, W) or a soft target (B, K, H, W).

    By default a soft target is reduced to its argmax (ties go to the lowest class index) and
    the usual CE is taken; ``soft=True`` takes ``-sum_k t_k log p_k`` instead (the same number
    for one-hot targets). The mean is over all pixels of all images, each multiplied by its
    weight (per image (B,) or per pixel (B, H, W)) when one is given.
    """
    is_labels = _check_target(logits, target)
    return _cross_entropy(logits, target, is_labels, soft, weight)


def segmentation_loss(
    logits: Tensor, target: Tensor, *, soft_ce: bool = False, weight: Tensor | None = None
) -> SegLoss:
    """The segmenter's loss: 0.5 foreground soft Dice (on softmax probs) + 0.5 cross-entropy.

    logits: (B, K, H, W); target: integer labels (B, H, W), one-hot encoded for the Dice, or a
    soft target (B, K, H, W) in [0, 1]. ``soft_ce`` and ``weight`` as in
    :func:`cross_entropy_loss` / :func:`soft_dice_loss`. Returns ``SegLoss(total, dice, ce)``.
    """
    is_labels = _check_target(logits, target)
    if logits.shape[1] < 2:
        raise ValueError(f"segmentation needs K >= 2 classes, got logits {shape(logits)}")
    soft_target = one_hot(target, logits.shape[1], dtype=logits.dtype) if is_labels else target
    dice = _soft_dice(logits.softmax(dim=1), soft_target, 1, 1e-5, weight)
    ce = _cross_entropy(logits, target, is_labels, soft_ce, weight)
    return SegLoss(total=0.5 * dice + 0.5 * ce, dice=dice, ce=ce)


# ---------------------------------------------------------------------------------------------
# Registration.


def global_ncc_loss(warped: Tensor, fixed: Tensor, *, eps: float = 1e-5) -> Tensor:
    """1 - Pearson correlation of each image pair, averaged over the batch; in [0, 2].

    warped, fixed: (B, 1, H, W) (all channels of an image are pooled). 0 for identical images,
    2 for an image and its negative; invariant to ``a * image + b`` with a > 0.
    eps floors the product of the two standard deviations: a constant image has correlation 0
    (loss 1) with finite gradients, and images with ``std_w * std_f >= eps`` are unaffected.
    """
    _check_maps("warped", warped, "fixed", fixed)
    a = warped.flatten(1)  # (B, N)
    b = fixed.flatten(1)  # (B, N)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    cov = (a * b).mean(dim=1)  # (B,)
    # Clamp before the square root so that its gradient stays finite for constant images.
    std_product = torch.sqrt(((a * a).mean(dim=1) * (b * b).mean(dim=1)).clamp_min(eps * eps))
    return (1 - cov / std_product).mean()


def local_ncc_loss(warped: Tensor, fixed: Tensor, window: int = 9, *, eps: float = 1e-8) -> Tensor:
    """1 - mean over pixels of the squared local correlation in a ``window`` x ``window`` box.

    warped, fixed: (B, C, H, W). At each pixel, ``cc = cov^2 / (var_w * var_f + eps)`` with the
    local means, variances and covariance taken over the window (box filters; at the borders
    only the pixels inside the image count, so the output keeps the size). cc is in [0, 1]; it
    is squared, as in VoxelMorph and ANTs' CC, so it is blind to the sign of the local contrast.
    A window that is flat in either image has cc = 0: identical images score 0 only where they
    are textured, and large flat backgrounds add a constant (gradient-free) offset to the loss.
    eps is on the product of local *variances* (means, not sums), so it does not scale with the
    window.
    """
    _check_maps("warped", warped, "fixed", fixed)
    if isinstance(window, bool) or not isinstance(window, int) or window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 3, got {window!r}")

    def box(t: Tensor) -> Tensor:  # local mean, (B, C, H, W) -> (B, C, H, W)
        return F.avg_pool2d(t, window, stride=1, padding=window // 2, count_include_pad=False)

    # Centring on the global mean changes no local statistic but makes E[x^2] - E[x]^2 cancel less.
    a = warped - warped.mean(dim=(2, 3), keepdim=True)
    b = fixed - fixed.mean(dim=(2, 3), keepdim=True)
    mu_a, mu_b = box(a), box(b)
    var_a = (box(a * a) - mu_a * mu_a).clamp_min(0)  # rounding can make it slightly negative
    var_b = (box(b * b) - mu_b * mu_b).clamp_min(0)
    cov = box(a * b) - mu_a * mu_b
    cc = cov * cov / (var_a * var_b + eps)  # (B, C, H, W)
    return 1 - cc.mean()


def gradient_loss(flow: Tensor) -> Tensor:
    """L2 smoothness of a displacement field: mean squared forward difference along H and W.

    flow: (B, 2, H, W). Returns ``0.5 * (mean(d_H flow ** 2) + mean(d_W flow ** 2))``, each mean
    over both channels and all difference positions; a field ``flow = a * row`` (both channels)
    gives ``a**2 / 2``. An axis of length 1 has no differences and contributes 0.
    """
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"flow must have shape (B, 2, H, W), got {shape(flow)} "
            "(a sampling grid (B, H, W, 2) is not a displacement field)"
        )
    check_finite("flow", flow)
    zero = flow.new_zeros(())
    dh = flow[:, :, 1:, :] - flow[:, :, :-1, :]  # (B, 2, H-1, W)
    dw = flow[:, :, :, 1:] - flow[:, :, :, :-1]  # (B, 2, H, W-1)
    term_h = dh.pow(2).mean() if dh.numel() else zero
    term_w = dw.pow(2).mean() if dw.numel() else zero
    return 0.5 * (term_h + term_w)


class RegLoss(NamedTuple):
    """Scalars, each averaged over levels: ``total = similarity + smoothness + label_weight * label``.

    ``smoothness`` already carries the per-level weights; ``label`` is the unweighted Dice loss
    (a zero tensor when no labels are given)."""

    total: Tensor
    similarity: Tensor
    smoothness: Tensor
    label: Tensor


def _sample_levels(x: Tensor, sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
    """``x`` (B, C, H, W) at each of ``sizes`` by nearest sampling, in the geometry of :func:`~segreg_lite.regnet.pyramid`.

    Coarse pixel ``j`` takes fine pixel ``round(j (H - 1) / (h - 1))``. For label maps: a blurred
    one-hot is a soft map whose soft Dice with itself is not 0, which would put a floor under the
    label term and reward sharpening; sampled labels stay one-hot (soft pseudo-labels stay as given).
    """
    h, w = x.shape[-2:]
    out = []
    for size in sizes:
        rows = torch.linspace(0, h - 1, size[0], device=x.device).round().long()
        cols = torch.linspace(0, w - 1, size[1], device=x.device).round().long()
        out.append(x[:, :, rows][:, :, :, cols])  # (B, C, *size)
    return out


def registration_loss(
    out: RegOutput,
    moving: Tensor,
    fixed: Tensor,
    *,
    moving_labels: Tensor | None = None,
    fixed_labels: Tensor | None = None,
    num_classes: int = 5,
    local: bool = False,
    label_weight: float = 1.0,
    reg_weights: Sequence[float] = (128, 64, 32, 16, 8),
) -> RegLoss:
    """The multi-level registration loss of a :class:`RegOutput` for ``moving`` onto ``fixed``.

    moving, fixed: (B, 1, H, W); labels: integer (B, H, W) or soft (B, K, H, W), both or neither
    (the label term is 0 without them). Images are brought to each level's size by
    :func:`~segreg_lite.regnet.pyramid` (blur, then resample), one-hot labels by nearest sampling on the same grid
    (:func:`_sample_levels`); the moving ones are warped by that level's total field ``D_i``.
    Per level: ``ncc(warp(moving_i, D_i), fixed_i) + w_i * gradient_loss(r_i) + label_weight *
    dice(warp(onehot(moving_labels)_i, D_i), fixed_labels_i)`` (foreground soft Dice); the
    three terms are summed over levels and divided by their number. ``reg_weights`` are listed
    coarsest to finest for 5 levels; a network with fewer levels takes the last ones, those of
    the same resolutions (levels 0..n-1 of the paper: 8 at full resolution).
    """
    if not isinstance(out, RegOutput) or not out.flows or len(out.residuals) != len(out.flows):
        raise ValueError("out must be the RegOutput of a RegNet forward pass")
    n = len(out.flows)
    if len(reg_weights) < n:
        raise ValueError(f"reg_weights needs one weight per level ({n}), got {tuple(reg_weights)}")
    if moving.ndim != 4 or moving.shape[1] != 1 or moving.shape != fixed.shape or moving.shape[-2:] != out.flow.shape[-2:]:
        raise ValueError(f"moving and fixed must be (B, 1, H, W) like the flow {tuple(out.flow.shape)}, "
                         f"got {tuple(moving.shape)} and {tuple(fixed.shape)}")
    if (moving_labels is None) != (fixed_labels is None):
        raise ValueError("give both moving_labels and fixed_labels, or neither")
    weights = [float(w) for w in reg_weights[-n:]]
    sizes = [tuple(f.shape[-2:]) for f in reversed(out.flows)]  # finest first
    movings = pyramid(moving.float(), sizes)[::-1]  # coarsest first, like out.flows
    fixeds = pyramid(fixed.float(), sizes)[::-1]
    zero = out.flow.new_zeros(())
    sim, smooth, label = zero, zero, zero
    for i in range(n):
        warped = warp(movings[i], out.flows[i])  # (B, 1, h, w)
        sim = sim + (local_ncc_loss(warped, fixeds[i], 9) if local else global_ncc_loss(warped, fixeds[i]))
        smooth = smooth + weights[i] * gradient_loss(out.residuals[i])
    if moving_labels is not None:
        lab_m = _sample_levels(as_soft(check_labels(moving_labels, moving, num_classes, "moving_labels"), num_classes), sizes)[::-1]
        lab_f = _sample_levels(as_soft(check_labels(fixed_labels, fixed, num_classes, "fixed_labels"), num_classes), sizes)[::-1]
        for i in range(n):
            warped = warp(lab_m[i], out.flows[i]).clamp(0, 1)  # (B, K, h, w); clamp: rounding only
            label = label + soft_dice_loss(warped, lab_f[i].clamp(0, 1))
    sim, smooth, label = sim / n, smooth / n, label / n
    return RegLoss(total=sim + smooth + label_weight * label, similarity=sim, smoothness=smooth, label=label)
