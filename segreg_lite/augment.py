"""Standard training augmentation for the segmenter: random affine + elastic warps and intensity.

This is the "with augmentation" of the supervised baseline (and of the joint method when it
uses augmentation): each image of a batch gets its own smooth random warp, applied to the image
and to its (soft) label with the same field through :func:`segreg_lite.transforms.warp`, then its
own gamma, contrast, brightness and noise. Labels are carried as soft maps (B, K, H, W), so hard
labels warp bilinearly into soft ones and no nearest-neighbour jaggies enter the targets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from segreg_lite.transforms import identity_grid, warp


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation (angles in degrees, lengths in pixels of a 128 grid)."""

    rotate_deg: float = 15.0  # rotation, uniform in +-
    log_scale_std: float = 0.08  # per-axis log scale
    shift_frac: float = 0.06  # translation std as a fraction of the size
    elastic_px: float = 3.0  # std of the elastic displacement at the control points (per 128 px)
    elastic_grid: int = 5  # control points per side
    gamma_std: float = 0.25  # log-gamma std
    contrast_std: float = 0.1  # multiplicative contrast std
    brightness_std: float = 0.05  # additive brightness std
    noise_max: float = 0.03  # Gaussian noise std, uniform in [0, noise_max]


def random_flows(n: int, shape_hw: tuple[int, int], cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """``n`` random affine + elastic displacement fields (n, 2, H, W) in pixels (CPU, float32)."""
    h, w = shape_hw
    g = generator
    theta = (torch.rand(n, generator=g) * 2 - 1) * math.radians(cfg.rotate_deg)
    scale = torch.exp(torch.randn(n, 2, generator=g) * cfg.log_scale_std)
    shift = torch.randn(n, 2, generator=g) * cfg.shift_frac * torch.tensor([h, w], dtype=torch.float32)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # Backward map p -> M (p - c) + c + t, with M = rotation @ diag(scale).
    m = torch.stack([torch.stack([cos * scale[:, 0], -sin * scale[:, 1]], -1), torch.stack([sin * scale[:, 0], cos * scale[:, 1]], -1)], 1)
    grid = identity_grid((h, w))  # (1, 2, H, W)
    center = torch.tensor([(h - 1) / 2, (w - 1) / 2]).view(1, 2, 1, 1)
    rel = grid - center
    src = torch.einsum("nij,bjhw->nihw", m, rel) + center + shift.view(n, 2, 1, 1)
    coarse = torch.randn(n, 2, cfg.elastic_grid, cfg.elastic_grid, generator=g) * cfg.elastic_px * max(h, w) / 128
    elastic = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    return src - grid + elastic


def augment_batch(
    images: torch.Tensor, soft_labels: torch.Tensor, generator: torch.Generator, cfg: AugmentConfig | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch: images (B, 1, H, W) in [0, 1] and soft labels (B, K, H, W).

    Returns new tensors of the same shapes on the inputs' device; random numbers come from the
    (CPU) ``generator`` so that a seeded run is reproducible on every device.
    """
    cfg = cfg or AugmentConfig()
    if images.ndim != 4 or soft_labels.ndim != 4 or images.shape[0] != soft_labels.shape[0] or images.shape[2:] != soft_labels.shape[2:]:
        raise ValueError(f"augment_batch needs images (B, 1, H, W) and soft labels (B, K, H, W), got {tuple(images.shape)} and {tuple(soft_labels.shape)}")
    b = images.shape[0]
    flow = random_flows(b, tuple(images.shape[2:]), cfg, generator).to(images.device, images.dtype)
    out = warp(images, flow)
    labels = warp(soft_labels, flow)
    gamma = torch.exp(torch.randn(b, generator=generator) * cfg.gamma_std)
    contrast = 1 + torch.randn(b, generator=generator) * cfg.contrast_std
    bright = torch.randn(b, generator=generator) * cfg.brightness_std
    sigma = torch.rand(b, generator=generator) * cfg.noise_max
    noise = torch.randn(images.shape, generator=generator) * sigma.view(b, 1, 1, 1)
    view = lambda t: t.view(b, 1, 1, 1).to(images.device, images.dtype)  # noqa: E731
    out = out.clamp(0, 1) ** view(gamma) * view(contrast) + view(bright) + noise.to(images.device, images.dtype)
    return out.clamp(0, 1), labels


# ---------------------------------------------------------------------------------------------
# Strong views (UniMatch, Yang et al. CVPR 2023; CutMix, Yun et al. ICCV 2019): what the
# semi-supervised learners of the field train their unannotated images through.


@dataclass(frozen=True)
class StrongConfig:
    """Ranges of a strong view, after UniMatch's medical recipe (colour jitter with probability
    0.8, Gaussian blur with probability 0.5, a CutMix box with probability 0.5), for grey-level
    images in [0, 1] on a 128 grid (blur widths scale with the size)."""

    jitter_prob: float = 0.8  # brightness, contrast and gamma jitter
    brightness: float = 0.5  # multiplicative brightness, uniform in [1 - b, 1 + b]
    contrast: float = 0.5  # contrast around the image mean, uniform in [1 - c, 1 + c]
    gamma: float = 0.25  # log-gamma, uniform in +-
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.0)  # Gaussian blur std in pixels (per 128 px), uniform
    cutmix_prob: float = 0.5
    cutmix_area: tuple[float, float] = (0.02, 0.4)  # box area as a share of the image, uniform
    cutmix_ratio: tuple[float, float] = (0.3, 1 / 0.3)  # box aspect ratio, log-uniform


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image of x (B, 1, H, W) with its own Gaussian std ``sigma`` (B,) in pixels."""
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.view(-1, 1).to(x)) ** 2)  # (B, 2r+1)
    kernel = kernel / kernel.sum(1, keepdim=True)
    b = x.shape[0]
    # Separable, one kernel per image: images become channels of one grouped convolution.
    y = F.pad(x.transpose(0, 1), (radius, radius, radius, radius), mode="replicate")  # (1, B, H+2r, W+2r)
    y = F.conv2d(y, kernel.view(b, 1, 1, -1), groups=b)
    y = F.conv2d(y, kernel.view(b, 1, -1, 1), groups=b)
    return y.transpose(0, 1)


def perturb_intensity(images: torch.Tensor, generator: torch.Generator, cfg: StrongConfig | None = None) -> torch.Tensor:
    """The photometric half of a strong view: per image, with its probability each, brightness,
    contrast and gamma jitter, then Gaussian blur. images (B, 1, H, W) in [0, 1] -> same shape."""
    cfg = cfg or StrongConfig()
    b, _, h, w = images.shape
    g = generator
    uniform = lambda lo, hi: lo + (hi - lo) * torch.rand(b, generator=g)  # noqa: E731
    jitter = torch.rand(b, generator=g) < cfg.jitter_prob
    bright = torch.where(jitter, uniform(1 - cfg.brightness, 1 + cfg.brightness), torch.ones(b))
    contrast = torch.where(jitter, uniform(1 - cfg.contrast, 1 + cfg.contrast), torch.ones(b))
    gamma = torch.where(jitter, torch.exp(uniform(-cfg.gamma, cfg.gamma)), torch.ones(b))
    blur = torch.rand(b, generator=g) < cfg.blur_prob
    sigma = uniform(*cfg.blur_sigma) * max(h, w) / 128
    view = lambda t: t.view(b, 1, 1, 1).to(images.device, images.dtype)  # noqa: E731
    x = images.clamp(0, 1) ** view(gamma) * view(bright)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = ((x - mean) * view(contrast) + mean).clamp(0, 1)
    if bool(blur.any()):
        x = torch.where(view(blur).bool(), gaussian_blur(x, torch.where(blur, sigma, torch.ones(b))), x)
    return x


def cutmix_boxes(n: int, shape_hw: tuple[int, int], generator: torch.Generator, cfg: StrongConfig | None = None) -> torch.Tensor:
    """``n`` CutMix masks (n, H, W) bool: each, with probability ``cutmix_prob``, one random box
    whose area and aspect ratio are drawn from the config's ranges (all False otherwise)."""
    cfg = cfg or StrongConfig()
    h, w = shape_hw
    g = generator
    use = torch.rand(n, generator=g) < cfg.cutmix_prob
    area = (cfg.cutmix_area[0] + (cfg.cutmix_area[1] - cfg.cutmix_area[0]) * torch.rand(n, generator=g)) * h * w
    lo, hi = math.log(cfg.cutmix_ratio[0]), math.log(cfg.cutmix_ratio[1])
    ratio = torch.exp(lo + (hi - lo) * torch.rand(n, generator=g))
    bh = torch.sqrt(area / ratio).round().clamp(1, h).long()
    bw = torch.sqrt(area * ratio).round().clamp(1, w).long()
    top = (torch.rand(n, generator=g) * (h - bh + 1).float()).long()
    left = (torch.rand(n, generator=g) * (w - bw + 1).float()).long()
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    box = ((rows >= top.view(n, 1, 1)) & (rows < (top + bh).view(n, 1, 1))
           & (cols >= left.view(n, 1, 1)) & (cols < (left + bw).view(n, 1, 1)))
    return box & use.view(n, 1, 1)


def mix(a: torch.Tensor, b: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """``b`` inside the boxes (n, H, W), ``a`` elsewhere; a and b (n, ..., H, W) alike."""
    shape = (box.shape[0],) + (1,) * (a.ndim - 3) + tuple(box.shape[1:])
    return torch.where(box.view(shape).to(a.device), b, a)


def strong_view(images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator, cfg: StrongConfig | None = None,
                *, partner: torch.Tensor | None = None, weights: torch.Tensor | None = None):
    """A strong view of a batch and its targets: photometric perturbation of every image, then a
    CutMix box pasted from a partner image of the same batch, with the partner's target (and
    weight) inside the box.

    images (B, 1, H, W) in [0, 1]; targets (B, K, H, W) soft maps or (B, H, W) labels; weights
    None or (B, H, W). ``partner`` (B,) indices into the batch (default: a random permutation).
    Returns ``(images, targets, weights)``, new tensors of the same shapes.
    """
    cfg = cfg or StrongConfig()
    b = images.shape[0]
    if targets.shape[0] != b or targets.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"strong_view: targets {tuple(targets.shape)} do not match images {tuple(images.shape)}")
    x = perturb_intensity(images, generator, cfg)
    if partner is None:
        partner = torch.randperm(b, generator=generator)
    box = cutmix_boxes(b, tuple(images.shape[-2:]), generator, cfg)
    partner = partner.to(images.device)
    x = mix(x, x[partner], box)
    y = mix(targets, targets[partner], box)
    w = None if weights is None else mix(weights, weights[partner], box)
    return x, y, w
