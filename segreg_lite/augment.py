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
