"""The segmenter: a 2D U-Net with optional residual blocks.

After the segmenter of Li et al., "A Unified Framework for Semi-Supervised Image
Segmentation and Registration" (arXiv 2502.03229, ISBI 2025): 5 levels, 16 channels at the top
doubling at each level (16, 32, 64, 128, 256), two 3x3 convolutions per level, channel dropout
0.2, max-pooling down, transposed convolutions up, skip connections by concatenation and a 1x1
head that gives K logits (softmax over K classes is left to the losses and to inference). The
paper's text speaks of residual blocks, so both plain and residual blocks are offered
(``residual=True``) and the book measures both.

``UNet(**model.config)`` rebuilds a model, so a checkpoint needs only the config and the weights.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with (up to) 8 groups over ``channels``.

    Why not BatchNorm: our batches hold 1-5 slices, too few for stable batch statistics, and the
    pseudo-labels are made in eval mode, where BatchNorm would switch to running averages that a
    few small batches estimate badly. GroupNorm is the same in train and eval mode and does not
    depend on the batch. Why not InstanceNorm: at the bottleneck a small input is down to 1x1 or
    2x2 pixels, too few for per-channel statistics (InstanceNorm refuses one pixel in training);
    a group of channels still has something to normalise.
    """
    return nn.GroupNorm(math.gcd(8, channels), channels, affine=True)


class _ConvBlock(nn.Module):
    """Two 3x3 conv-norm layers with LeakyReLU, optionally residual, then channel dropout.

    x: (B, in_channels, H, W) -> (B, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, *, dropout: float, residual: bool) -> None:
        super().__init__()
        # No conv bias: the norm that follows removes it and its affine shift replaces it.
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _norm(out_channels),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _norm(out_channels),
        )
        self.skip: nn.Module | None = None
        if residual:
            # A 1x1 projection only where the channel count changes; otherwise the identity.
            same = in_channels == out_channels
            self.skip = nn.Identity() if same else nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.act = nn.LeakyReLU(0.01, inplace=True)
        # Dropout2d zeroes whole feature maps: neighbouring pixels are correlated, so dropping
        # single pixels would regularise little.
        self.drop = nn.Dropout2d(dropout)

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        if self.skip is not None:
            y = y + self.skip(x)
        return self.drop(self.act(y))


class UNet(nn.Module):
    """2D U-Net: ``x (B, in_channels, H, W) -> logits (B, num_classes, H, W)``.

    Args:
        in_channels: image channels (1 for our MR slices).
        num_classes: K, the number of classes including background (>= 2).
        features: channels at the top level; level ``i`` has ``features * 2**i``.
        levels: resolution levels (5 in the paper); H and W must be divisible by
            ``2**(levels - 1)``.
        dropout: channel dropout probability in every block (0.2 in the paper).
        residual: make every two-conv block a residual block.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 5,
        features: int = 16,
        levels: int = 5,
        dropout: float = 0.2,
        residual: bool = False,
    ) -> None:
        super().__init__()
        for name, value, least in (
            ("in_channels", in_channels, 1),
            ("num_classes", num_classes, 2),
            ("features", features, 1),
            ("levels", levels, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"UNet: {name} must be an integer >= {least}, got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"UNet: dropout must be in [0, 1), got {dropout!r}")
        # Plain Python values only, so the dict goes into a checkpoint or JSON as it is.
        self.config: dict[str, Any] = dict(
            in_channels=in_channels,
            num_classes=num_classes,
            features=features,
            levels=levels,
            dropout=float(dropout),
            residual=bool(residual),
        )
        widths = [features * 2**i for i in range(levels)]  # 16, 32, 64, 128, 256
        block = dict(dropout=float(dropout), residual=bool(residual))

        self.encoder = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.encoder.append(_ConvBlock(channels, width, **block))
            channels = width
        self.pool = nn.MaxPool2d(2)

        # Decoder, coarsest to finest: upsample, concatenate the skip, two convs.
        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upsample.append(nn.ConvTranspose2d(channels, width, kernel_size=2, stride=2))
            self.decoder.append(_ConvBlock(2 * width, width, **block))
            channels = width
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def _check_input(self, x: Tensor) -> None:
        c = self.config
        if not isinstance(x, Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"UNet expects x of shape (B, {c['in_channels']}, H, W), got {shape}")
        if x.shape[1] != c["in_channels"]:
            raise ValueError(
                f"UNet was built with in_channels={c['in_channels']} but x has {x.shape[1]} "
                f"channels (shape {tuple(x.shape)})"
            )
        factor = 2 ** (c["levels"] - 1)
        h, w = x.shape[-2:]
        if h % factor or w % factor:
            fit = "x".join(str(max(factor, s // factor * factor)) for s in (h, w))
            raise ValueError(
                f"UNet with levels={c['levels']} needs H and W divisible by {factor} "
                f"(2**(levels-1)); got {h}x{w}. Pad or crop, e.g. to {fit}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"UNet input contains NaN or inf (shape {tuple(x.shape)})")

    def _encode(self, x: Tensor) -> list[Tensor]:
        """The encoder's features, finest first; the last is the bottleneck."""
        self._check_input(x)
        feats: list[Tensor] = []
        for i, block in enumerate(self.encoder):
            if i > 0:
                x = self.pool(x)  # (B, C, H / 2**i, W / 2**i)
            x = block(x)
            feats.append(x)
        return feats

    def _decode(self, feats: list[Tensor]) -> Tensor:
        skips, x = feats[:-1], feats[-1]
        for up, block, skip in zip(self.upsample, self.decoder, reversed(skips)):
            x = up(x)  # (B, C, 2h, 2w), C halved
            x = block(torch.cat([x, skip], dim=1))  # (B, 2C, 2h, 2w) -> (B, C, 2h, 2w)
        return self.head(x)  # (B, K, H, W)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, in_channels, H, W) -> logits (B, num_classes, H, W)."""
        return self._decode(self._encode(x))

    def forward_perturbed(self, x: Tensor, p: float = 0.5) -> tuple[Tensor, Tensor]:
        """UniMatch's feature perturbation (Yang et al., CVPR 2023): one encoder pass, then the
        decoder on the features as they are and on a copy with channel dropout ``p`` at every
        level (applied in train and eval mode alike). Returns ``(logits, perturbed logits)``."""
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"feature dropout must be in [0, 1), got {p!r}")
        feats = self._encode(x)
        both = [torch.cat([f, nn.functional.dropout2d(f, p, training=True)]) for f in feats]
        return self._decode(both).chunk(2)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters in ``model`` (all of them, or only those that require grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
