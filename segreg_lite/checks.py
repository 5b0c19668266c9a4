"""The input checks every module shares, and the one label conversion.

Conventions (the design's): images (N, 1, H, W) float in [0, 1]; integer labels (N, H, W) with
values in [0, K); soft label maps (N, K, H, W) float in [0, 1], summing to 1 over K; index lists
into the image tensor. Each check raises ``ValueError`` naming what is wrong (the argument, its
shape, dtype or bad values) and returns nothing or the checked value.

:func:`one_hot` encodes integer labels; :func:`as_soft` takes either kind of label and returns
soft maps, which is how every trainer and loss accepts "true or pseudo" labels alike.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor


def shape(t: Any) -> Any:
    """A tensor's shape as a tuple (for messages); the type name for anything else."""
    return tuple(t.shape) if hasattr(t, "shape") else type(t).__name__


def check_finite(name: str, t: Tensor) -> None:
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf (shape {shape(t)})")


#: The brightest intensity a [0, 1] image may hold: noise and resampling overshoot 1 a little,
#: an image scaled 0..255 (or raw scanner units) exceeds it by far.
MAX_INTENSITY = 1.5


def check_images(images: Any, name: str = "images") -> Tensor:
    """A float tensor of shape (N, 1, H, W) with intensities in [0, 1], or a ValueError saying
    what it is instead. Images scaled 0..255 are refused rather than warned about: every loss,
    augmentation and registration weight is tuned to [0, 1], so they would train on in silence
    and give a meaningless result."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 1 or not images.is_floating_point():
        what = f"{shape(images)} of dtype {images.dtype}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a float tensor of shape (N, 1, H, W), got {what}")
    if images.numel() and float(images.max()) > MAX_INTENSITY:
        raise ValueError(f"{name} reach {float(images.max()):.4g}, but segreg-lite takes intensities in [0, 1] (these look "
                         "scaled 0..255 or raw): divide by the maximum (or by 255) first")
    return images


#: The darkest intensity a [0, 1] image may hold (noise undershoots 0 a little; z-scored or
#: negated images go far below).
MIN_INTENSITY = -0.5


def check_data(data: Any) -> None:
    """A :class:`~segreg_lite.container.Data` every method can take, or a ValueError naming the
    field: images float32 (N, 1, H, W), finite, in [0, 1] (up to the noise margins
    :data:`MIN_INTENSITY` and :data:`MAX_INTENSITY`); integer labels (N, H, W) with values in
    [0, K) for its K label names; one subject id per image. The loaders make such data; this is
    for data built by hand, which would otherwise train on NaN or on labels past the table
    without a word, or fail deep inside torch."""
    images = check_images(data.images, "data.images")
    if images.dtype != torch.float32:
        raise ValueError(f"data.images must be float32, got {images.dtype}: convert them with data.images.float()")
    check_finite("data.images", images)
    if images.numel() and float(images.min()) < MIN_INTENSITY:
        raise ValueError(f"data.images reach {float(images.min()):.4g}, but segreg-lite takes intensities in [0, 1]: "
                         "rescale each image to [0, 1] first ((x - min) / (max - min))")
    n, _, h, w = images.shape
    labels = data.labels
    if not isinstance(labels, Tensor) or labels.is_floating_point() or tuple(labels.shape) != (n, h, w):
        raise ValueError(f"data.labels must be integer labels ({n}, {h}, {w}) to match data.images {tuple(images.shape)}, "
                         f"got {shape(labels)} of dtype {getattr(labels, 'dtype', '?')}")
    check_label_range(labels, len(data.label_names), "data.labels")
    if len(data.subjects) != n:
        raise ValueError(f"data.subjects has {len(data.subjects)} ids for {n} images: one id per image")


def check_label_range(labels: Tensor, num_classes: int, name: str = "labels") -> None:
    """Integer labels with every value in [0, num_classes)."""
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"{name} must be an integer label map (B, H, W), got dtype {labels.dtype}; "
                         "soft targets have shape (B, K, H, W)")
    if labels.numel():
        lo, hi = (int(v) for v in torch.aminmax(labels.long()))
        if lo < 0 or hi >= num_classes:
            bad = torch.unique(labels[(labels < 0) | (labels >= num_classes)])[:10].tolist()
            raise ValueError(f"{name} values {bad} are outside 0..{num_classes - 1} (K={num_classes})")


def check_labels(labels: Tensor, images: Tensor, num_classes: int, name: str = "labels") -> Tensor:
    """Integer labels (N, H, W) or soft maps (N, K, H, W) that match ``images`` (N, 1, H, W)."""
    n, _, h, w = images.shape
    if isinstance(labels, Tensor):
        if labels.ndim == 3 and not labels.is_floating_point() and tuple(labels.shape) == (n, h, w):
            return labels
        if labels.ndim == 4 and labels.is_floating_point() and tuple(labels.shape) == (n, num_classes, h, w):
            return labels
    raise ValueError(f"{name} must be integer labels ({n}, {h}, {w}) or soft maps ({n}, {num_classes}, {h}, {w}) "
                     f"to match images {tuple(images.shape)}, got {shape(labels)} of dtype {getattr(labels, 'dtype', '?')}")


def check_indices(indices: Any, n: int, name: str = "indices", *, empty: bool = True) -> Tensor:
    """Positions into ``n`` images as a long tensor, each in [0, n); ``empty=False`` refuses none."""
    idx = torch.as_tensor(list(indices.tolist() if isinstance(indices, Tensor) else indices), dtype=torch.long)
    if not empty and len(idx) == 0:
        raise ValueError(f"{name} is empty: at least one image is needed")
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ValueError(f"{name} must be in [0, {n}), got {int(idx.min())}..{int(idx.max())}")
    return idx


def one_hot(labels: Tensor, num_classes: int, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """One-hot encode integer labels (B, H, W) with values in [0, K) -> (B, K, H, W) ``dtype``."""
    if labels.ndim != 3:
        raise ValueError(f"labels must have shape (B, H, W), got {shape(labels)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    check_label_range(labels, num_classes)
    b, h, w = labels.shape
    out = torch.zeros(b, num_classes, h, w, device=labels.device, dtype=dtype)
    return out.scatter_(1, labels.long().unsqueeze(1), 1.0)  # (B, K, H, W)


def as_soft(labels: Tensor, num_classes: int, name: str = "labels") -> Tensor:
    """Integer labels (N, H, W) -> one-hot float (N, K, H, W); soft maps (N, K, H, W) -> float as they are."""
    if labels.ndim == 3 and not labels.is_floating_point():
        return one_hot(labels.long(), num_classes)
    if labels.ndim == 4 and labels.shape[1] == num_classes:
        return labels.float()
    raise ValueError(f"{name} must be (N, H, W) integers or (N, {num_classes}, H, W) soft maps, got {shape(labels)}")


def check_array_image(image: Any, *, name: str = "image") -> np.ndarray:
    """A numpy image as float32, checked finite and not constant (the loaders' check)."""
    arr = np.asarray(image, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: image contains NaN or inf")
    if arr.size == 0 or float(arr.max()) == float(arr.min()):
        raise ValueError(f"{name}: image is constant (value {float(arr.flat[0]) if arr.size else 'empty'}), nothing to learn from")
    return arr


def check_array_labels(label: Any, num_classes: int, *, name: str = "label", names: Sequence[str] = ()) -> np.ndarray:
    """A numpy label map as int64, checked to hold whole numbers in [0, num_classes) (the loaders'
    check); ``names`` (the class names) go into the error message."""
    arr = np.asarray(label)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name}: label map contains NaN or inf")
        if not np.all(arr == np.round(arr)):
            raise ValueError(f"{name}: label map has non-integer values (dtype {arr.dtype})")
    elif arr.dtype.kind not in "iub":
        raise ValueError(f"{name}: label map has dtype {arr.dtype}, expected integers")
    arr = arr.astype(np.int64)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= num_classes:
            bad = np.unique(arr[(arr < 0) | (arr >= num_classes)])[:10].tolist()
            table = ", ".join(names[:num_classes]) if names and num_classes <= len(names) else num_classes
            raise ValueError(f"{name}: label values {bad} are outside the table 0..{num_classes - 1} ({table} )")
    return arr
