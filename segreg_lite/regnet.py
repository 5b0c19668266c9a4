"""The registration network (multi-resolution, after MrRegNet).

After the registration network of Li et al., "A Unified Framework for Semi-Supervised Image
Segmentation and Registration" (arXiv 2502.03229, ISBI 2025), itself after MrRegNet: moving and
fixed images are concatenated (2 channels); an encoder of ``levels`` levels keeps ``features``
channels everywhere (level 0 at full resolution, then stride-2 convolutions, residual blocks,
LeakyReLU(0.2)); a decoder runs from the coarsest level to the finest and at each level ``i``
predicts a residual displacement ``r_i`` (pixels of that level) and the total field

    D_i = up(D_{i+1}) + r_i,      up = transforms.resize_flow,

where level ``i`` has ``H / 2**i`` rows. ``resize_flow`` is the exact form of the paper's
``2 * upsample(D)``: with ``align_corners=True`` geometry it multiplies the displacements by
``(h' - 1) / (h - 1)`` (about 2.03 for 32 -> 64), which is what "twice as many pixels" means
when the first and last pixel centres stay in place. With ``diffeomorphic=True`` each ``D_i`` is
a stationary velocity, integrated by scaling and squaring before it is used or returned.

Two options, off in the paper's network and on in the package's CPU presets (measured against
ANTs SyN by ``benchmarks/bench_registration.py``): ``affine=True`` adds an affine head whose map
starts the coarsest field (free of the smoothness term), and ``refine=True`` shows every finer
level the moving image warped by the field so far, so that it predicts only what is left.

Its loss is :func:`segreg_lite.losses.registration_loss`.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segreg_lite.transforms import affine_field, integrate_velocity, resize_flow, warp


class RegOutput(NamedTuple):
    """``flow`` (B, 2, H, W): the full-resolution field (``flows[-1]``); ``flows``: the total field
    of every level, coarsest to finest, level ``i`` (B, 2, H / 2**i, W / 2**i); ``residuals``: the
    ``r_i`` in the same order (velocity residuals when diffeomorphic)."""

    flow: Tensor
    flows: list[Tensor]
    residuals: list[Tensor]


def _act() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2, inplace=True)


class _ResBlock(nn.Module):
    """``x + conv(act(conv(x)))``, then the activation; (B, C, H, W) -> (B, C, H, W).

    No normalisation, as in VoxelMorph-style registration networks: displacements are absolute
    pixel amounts, and per-image normalisation would discard the contrast the flow must follow.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = _act()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + self.conv2(self.act(self.conv1(x))))


class RegNet(nn.Module):
    """``(moving, fixed)`` (B, 1, H, W) each -> :class:`RegOutput` (fields in pixels, channel 0 along H).

    Args:
        in_channels: channels of the concatenated input (2: one moving, one fixed image).
        features: channels at every encoder and decoder level (32 in the paper).
        levels: resolution levels (5); H and W must be divisible by ``2**(levels - 1)`` and the
            coarsest level must keep at least 2 pixels per side (a field needs two to be resized).
        diffeomorphic: treat each level's field as a stationary velocity and integrate it.
        integration_steps: scaling-and-squaring steps of the diffeomorphic variant.
        affine: add an affine head on the coarsest encoder level. Its map (6 numbers per pair,
            :func:`~segreg_lite.transforms.affine_field`) is the starting field of the coarsest
            level, so the deformable residuals only correct what it leaves; it is not a residual
            and the smoothness term does not see it. Off in the paper's network.
        refine: every level below the coarsest also sees the moving image warped by the field so
            far, beside the fixed image, both at its resolution (:func:`pyramid`), so it predicts
            what is left to align rather than re-deriving the whole motion from the unwarped pair
            (coarse-to-fine refinement, as PWC-Net and LapIRN do). Off in the paper's network.
    """

    def __init__(
        self,
        *,
        in_channels: int = 2,
        features: int = 32,
        levels: int = 5,
        diffeomorphic: bool = False,
        integration_steps: int = 7,
        affine: bool = False,
        refine: bool = False,
    ) -> None:
        super().__init__()
        for name, value, least in (("in_channels", in_channels, 2), ("features", features, 1),
                                   ("levels", levels, 1), ("integration_steps", integration_steps, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"RegNet: {name} must be an integer >= {least}, got {value!r}")
        if in_channels % 2:
            raise ValueError(f"RegNet: in_channels counts moving + fixed channels, so must be even, got {in_channels}")
        self.config: dict[str, Any] = dict(in_channels=in_channels, features=features, levels=levels,
                                           diffeomorphic=bool(diffeomorphic), integration_steps=integration_steps,
                                           affine=bool(affine), refine=bool(refine))
        f = features
        self.encoder = nn.ModuleList()  # level 0 (full resolution) .. levels-1 (coarsest)
        for i in range(levels):
            entry = nn.Conv2d(in_channels, f, 3, padding=1) if i == 0 else nn.Conv2d(f, f, 3, stride=2, padding=1)
            self.encoder.append(nn.Sequential(entry, _act(), _ResBlock(f)))
        self.decoder = nn.ModuleList()  # coarsest .. finest; below the coarsest: [up(d), skip]
        self.heads = nn.ModuleList()
        for i in reversed(range(levels)):
            width = f if i == levels - 1 else 2 * f + (2 * (in_channels // 2) if refine else 0)
            self.decoder.append(nn.Sequential(nn.Conv2d(width, f, 3, padding=1), _act(), _ResBlock(f)))
            head = nn.Conv2d(f, 2, 3, padding=1)
            # Near-zero flow heads: every field starts at ~0 px, so training starts at the identity.
            nn.init.normal_(head.weight, std=1e-5)
            nn.init.zeros_(head.bias)
            self.heads.append(head)
        self.affine_head = None
        if affine:
            # A 4x4 pooled view keeps where things are (an affine map needs position), at any size.
            self.affine_head = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(16 * f, 6))
            # Zero start: the identity map, as the flow heads.
            nn.init.zeros_(self.affine_head[-1].weight)
            nn.init.zeros_(self.affine_head[-1].bias)

    def _check_input(self, moving: Tensor, fixed: Tensor) -> None:
        c = self.config["in_channels"] // 2
        for name, t in (("moving", moving), ("fixed", fixed)):
            if not isinstance(t, Tensor) or t.ndim != 4 or t.shape[1] != c:
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"RegNet expects {name} of shape (B, {c}, H, W), got {shape}")
        if moving.shape != fixed.shape:
            raise ValueError(f"moving and fixed must have the same shape, got {tuple(moving.shape)} and {tuple(fixed.shape)}")
        levels = self.config["levels"]
        factor = 2 ** (levels - 1)
        h, w = moving.shape[-2:]
        if h % factor or w % factor or min(h, w) < 2 * factor:
            raise ValueError(f"RegNet with levels={levels} needs H and W divisible by {factor} (2**(levels-1)) "
                             f"and at least {2 * factor}; got moving/fixed {tuple(moving.shape)}")
        if not bool(torch.isfinite(moving).all() & torch.isfinite(fixed).all()):
            raise ValueError(f"RegNet input contains NaN or inf (moving {tuple(moving.shape)}, fixed {tuple(fixed.shape)})")

    def forward(self, moving: Tensor, fixed: Tensor) -> RegOutput:
        """moving, fixed: (B, 1, H, W) -> RegOutput; ``warp(moving, out.flow)`` ~ ``fixed``."""
        self._check_input(moving, fixed)
        x = torch.cat([moving, fixed], dim=1)  # (B, 2, H, W)
        refine = self.config["refine"]
        if refine:  # each level's images, coarsest first, on the grid of the fields
            sizes = [tuple(moving.shape[-2:])]
            for _ in range(1, self.config["levels"]):
                sizes.append((sizes[-1][0] // 2, sizes[-1][1] // 2))
            movings, fixeds = pyramid(moving, sizes)[::-1], pyramid(fixed, sizes)[::-1]
        skips: list[Tensor] = []
        for block in self.encoder:
            x = block(x)  # (B, F, H / 2**i, W / 2**i)
            skips.append(x)
        d, field = None, None
        flows: list[Tensor] = []
        residuals: list[Tensor] = []
        for level, (block, head) in enumerate(zip(self.decoder, self.heads)):
            skip = skips.pop()  # coarsest first
            if d is not None:
                d = F.interpolate(d, size=skip.shape[-2:], mode="bilinear", align_corners=True)
                skip = torch.cat([d, skip], dim=1)  # (B, 2F, h, w)
                if refine:  # the moving image as the coarser levels' (integrated) field already warps it
                    so_far = resize_flow(flows[-1], skip.shape[-2:])  # (B, 2, h, w)
                    warped = warp(movings[level], so_far).to(skip.dtype)
                    images = torch.cat([warped, fixeds[level].to(skip.dtype)], dim=1)  # (B, 2, h, w)
                    # In skip's memory format: otherwise cat falls back to contiguous and a
                    # channels_last convolution copies the whole (B, 2F + 2, h, w) tensor back.
                    if skip.is_contiguous(memory_format=torch.channels_last):
                        images = images.contiguous(memory_format=torch.channels_last)
                    skip = torch.cat([skip, images], dim=1)  # (B, 2F + 2, h, w)
            d = block(skip)  # (B, F, h, w)
            # Fields in float32 even under autocast: float16 has 0.06 px steps at 100 px.
            r = head(d).float()  # (B, 2, h, w), pixels of this level
            if field is None:
                field = r
                if self.affine_head is not None:
                    field = affine_field(self.affine_head(skip).float(), r.shape[-2:]) + r  # skip: coarsest features
            else:
                field = resize_flow(field, r.shape[-2:]) + r
            residuals.append(r)
            if self.config["diffeomorphic"]:
                flows.append(integrate_velocity(field, self.config["integration_steps"]))
            else:
                flows.append(field)
        return RegOutput(flow=flows[-1], flows=flows, residuals=residuals)


def pyramid(x: Tensor, sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
    """``x`` (B, C, H, W) resampled to each of ``sizes`` (finest first, the first = (H, W)).

    Each level is the previous one blurred by Burt & Adelson's 5-tap binomial kernel
    [1, 4, 6, 4, 1] / 16 along each axis (a Gaussian of sigma 1; edges replicated), then resampled
    bilinearly with ``align_corners=True``, the geometry of :func:`resize_flow`: coarse pixel
    ``j`` sits at fine pixel ``j (H - 1) / (h - 1)``, so a coarse field and its upsampled version
    describe the same motion (average pooling would put it at ``2 j + 0.5``). The kernel is
    positive and sums to 1, so one-hot maps stay in [0, 1] and sum to 1.
    """
    out = [x]
    for size in sizes[1:]:
        y = out[-1]
        h, w = y.shape[-2:]
        y = F.pad(y, (2, 2, 2, 2), mode="replicate")  # (B, C, h + 4, w + 4)
        # Shifted slices rather than a grouped conv: several times faster on the CPU.
        y = y[..., 0:h, :] + y[..., 4:h + 4, :] + 4 * (y[..., 1:h + 1, :] + y[..., 3:h + 3, :]) + 6 * y[..., 2:h + 2, :]
        y = y[..., 0:w] + y[..., 4:w + 4] + 4 * (y[..., 1:w + 1] + y[..., 3:w + 3]) + 6 * y[..., 2:w + 2]
        out.append(F.interpolate(y / 256.0, size=size, mode="bilinear", align_corners=True))  # (B, C, *size)
    return out
