"""Evaluation metrics with written definitions: Dice, Hausdorff distance, Jacobian statistics.

Segmentation metrics are pure functions ``f(pred, target, num_classes, ...)`` on integer label maps
of shape ``(B, H, W)`` or ``(H, W)`` (torch tensors or numpy arrays; a single map counts as
``B = 1``). They are computed per foreground class ``1 .. K-1`` and return numpy arrays of shape
``(B, K - 1)``. Edge cases, decided once:

- Dice: both maps empty for a class -> 1.0 (nothing to find, nothing found); exactly one empty -> 0.0.
- Hausdorff: both empty -> 0.0; exactly one empty -> NaN. The distance is undefined there, so it
  is reported as NaN and counted separately (``summarize(...)["n_nan"]``, or
  ``np.isnan(hd).sum(axis=0)`` per class), never averaged in.

Registration metrics take a displacement field ``(B, 2, H, W)`` in pixels (the convention of
``segreg_lite.transforms``): the fraction of folded pixels (det J <= 0) and the spread of log det J.
:func:`summarize` turns any array of values into ``mean, std, n, n_nan`` for the results tables.

The evaluation follows Li et al., "A Unified Framework for Semi-Supervised Image
Segmentation and Registration" (arXiv 2502.03229, ISBI 2025), whose code reports the maximum
Hausdorff distance between mask boundaries (MONAI's definition, reproduced here); HD95 and the
Jacobian statistics are our additions.
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np
import torch
from scipy import ndimage

from segreg_lite.labels import check_labels
from segreg_lite.transforms import jacobian_determinant

ArrayLike = Union[np.ndarray, torch.Tensor]

# 4-connectivity: a foreground pixel is on the boundary if one of its 4 neighbours is background
_CROSS = ndimage.generate_binary_structure(2, 1)


def _to_numpy(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _label_pair(pred: ArrayLike, target: ArrayLike, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Check and return ``pred``, ``target`` as int64 arrays of shape (B, H, W)."""
    if not (isinstance(num_classes, (int, np.integer)) and num_classes >= 2):
        raise ValueError(f"num_classes must be an int >= 2 (background + at least one class), got {num_classes!r}")
    p, t = _to_numpy(pred), _to_numpy(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape, got pred {p.shape} and target {t.shape}")
    if p.ndim not in (2, 3):
        raise ValueError(f"label maps must be (B, H, W) or (H, W), got shape {p.shape}")
    p = check_labels(p, int(num_classes), name="pred")
    t = check_labels(t, int(num_classes), name="target")
    if p.ndim == 2:
        p, t = p[None], t[None]  # (1, H, W)
    return p, t


def dice_per_class(pred: ArrayLike, target: ArrayLike, num_classes: int) -> np.ndarray:
    """Dice ``2 |P & T| / (|P| + |T|)`` per foreground class: (B, H, W) x2 -> (B, K - 1) float64.

    Column ``k - 1`` is class ``k``. Both empty -> 1.0; exactly one empty -> 0.0.
    """
    p, t = _label_pair(pred, target, num_classes)
    out = np.empty((p.shape[0], num_classes - 1), dtype=np.float64)
    for k in range(1, num_classes):
        pk, tk = p == k, t == k  # (B, H, W) bool
        inter = (pk & tk).sum(axis=(1, 2))
        total = pk.sum(axis=(1, 2)) + tk.sum(axis=(1, 2))
        out[:, k - 1] = np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))
    return out


def mean_dice(pred: ArrayLike, target: ArrayLike, num_classes: int) -> np.ndarray:
    """Mean of :func:`dice_per_class` over the foreground classes: (B,) float64."""
    return dice_per_class(pred, target, num_classes).mean(axis=1)


def _boundary(mask: np.ndarray) -> np.ndarray:
    # erosion treats outside the image as background, so pixels on the image edge are boundary
    return mask & ~ndimage.binary_erosion(mask, structure=_CROSS, border_value=0)


def hausdorff(
    pred: ArrayLike,
    target: ArrayLike,
    num_classes: int,
    *,
    percentile: float = 100.0,
    spacing: Sequence[float] | None = None,
    boundary: bool = True,
) -> np.ndarray:
    """Symmetric Hausdorff distance per foreground class: (B, H, W) x2 -> (B, K - 1) float64.

    For class ``k`` let ``P`` and ``T`` be the boundary pixels of ``pred == k`` and ``target == k``
    (foreground pixels with a 4-neighbour of another class or on the image edge; with
    ``boundary=False``, all the foreground pixels). The directed distances ``d(P -> T)`` are, for
    each pixel of ``P``, the Euclidean distance to the nearest pixel of ``T`` (from
    ``scipy.ndimage.distance_transform_edt``), and conversely. The result is

        HD_q = max(percentile_q(d(P -> T)), percentile_q(d(T -> P)))

    with numpy's linear-interpolation percentile: ``q = 100`` (default) is the classical maximum
    Hausdorff distance, ``q = 95`` is HD95. This is MONAI's definition (``compute_hausdorff_distance``,
    used by the paper's code); medpy's ``hd95`` instead takes the percentile of both directions
    pooled, which can be slightly smaller. Boundaries rather than whole regions, because the
    interior pixels shared by both masks would otherwise fill the distribution with zeros and
    hide errors in HD95.

    Distances are in pixels, or in physical units with ``spacing = (dy, dx)`` (e.g. mm).
    Both masks empty -> 0.0; exactly one empty -> NaN (count these separately, see the module).
    """
    p, t = _label_pair(pred, target, num_classes)
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    if spacing is None:
        spacing = (1.0, 1.0)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 2 or not all(s > 0 for s in spacing):
        raise ValueError(f"spacing must be two positive numbers (dy, dx), got {spacing!r}")
    out = np.empty((p.shape[0], num_classes - 1), dtype=np.float64)
    for b in range(p.shape[0]):
        for k in range(1, num_classes):
            pk, tk = p[b] == k, t[b] == k  # (H, W) bool
            n_p, n_t = int(pk.sum()), int(tk.sum())
            if n_p == 0 or n_t == 0:
                out[b, k - 1] = 0.0 if n_p == n_t else math.nan
                continue
            if boundary:
                pk, tk = _boundary(pk), _boundary(tk)
            # the EDT of the complement gives, at every pixel, the distance to the nearest set pixel
            to_t = ndimage.distance_transform_edt(~tk, sampling=spacing)  # (H, W)
            to_p = ndimage.distance_transform_edt(~pk, sampling=spacing)
            out[b, k - 1] = max(np.percentile(to_t[pk], percentile), np.percentile(to_p[tk], percentile))
    return out


def _flow_tensor(flow: ArrayLike) -> torch.Tensor:
    flow = flow if isinstance(flow, torch.Tensor) else torch.as_tensor(np.asarray(flow))
    if not flow.is_floating_point():
        flow = flow.double()
    return flow.detach()


def folding_fraction(flow: ArrayLike) -> np.ndarray:
    """Fraction of pixels where the raw Jacobian determinant is <= 0: (B, 2, H, W) -> (B,) float64.

    Uses :func:`segreg_lite.transforms.jacobian_determinant` (central differences, one-sided on
    the border rows and columns) on every pixel; 0.0 for a fold-free field.
    """
    det = jacobian_determinant(_flow_tensor(flow))  # (B, H, W)
    return (det <= 0).double().mean(dim=(1, 2)).cpu().numpy()


def log_jacobian_std(flow: ArrayLike) -> np.ndarray:
    """Standard deviation of ``log det J`` over the pixels with ``det J > 0``: (B, 2, H, W) -> (B,).

    Population std (ddof = 0) of the natural log; 0.0 for any rigid motion; NaN where no pixel
    has a positive determinant. Report it beside :func:`folding_fraction`, which counts the rest.
    """
    det = jacobian_determinant(_flow_tensor(flow)).double().cpu().numpy()  # (B, H, W)
    out = np.full(det.shape[0], math.nan)
    for b, d in enumerate(det):
        pos = d[d > 0]
        if pos.size:
            out[b] = float(np.log(pos).std())
    return out


def summarize(values: ArrayLike, *, ddof: int = 0) -> dict[str, float | int]:
    """NaN-aware summary of any array of values: ``{"mean", "std", "n", "n_nan"}``.

    ``n`` counts the values that are not NaN, ``n_nan`` the NaNs (e.g. Hausdorff distances with one
    mask empty); mean and std (``ddof`` as in numpy, population std by default) are over the ``n``
    others, and NaN when ``n`` is 0 (std also when ``n <= ddof``).
    """
    v = _to_numpy(values).astype(np.float64).ravel()
    nan = np.isnan(v)
    kept = v[~nan]
    n = int(kept.size)
    mean = float(kept.mean()) if n else math.nan
    std = float(kept.std(ddof=ddof)) if n > ddof else math.nan
    return {"mean": mean, "std": std, "n": n, "n_nan": int(nan.sum())}
