"""Test-time augmentation (TTA) of the segmenter: random rigid augmentations and their exact inverses.

After Li et al., "A Unified Framework for Semi-Supervised Image Segmentation and Registration"
(arXiv 2502.03229, ISBI 2025), where each pseudo-label averages the plain segmentation with
``n_tta`` augmented ones. Inside: :class:`TTAParams` (one augmentation), :func:`random_tta_params`
(a rotation *or* a shift per augmentation, optionally a left-right flip), :func:`augment_fields`
(the forward field and its exact inverse, built on :func:`segreg_lite.transforms.affine_flow`) and
:func:`tta_predict`, which warps each image, segments it, maps the softmax back and averages;
:func:`mirror_predict` averages the plain and the left-right mirrored prediction only.
Spatial convention, fields and warping: :mod:`segreg_lite.transforms`.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from segreg_lite.checks import check_finite, check_images
from segreg_lite.supervised import predict
from segreg_lite.transforms import _check_hw, affine_flow, invert_affine_flow_params, warp


class TTAParams(NamedTuple):
    """One augmentation: content flipped left-right (if ``flip``), then rotated and shifted.

    ``theta_deg`` and ``shift_px`` = (rows, columns) as in :func:`~segreg_lite.transforms.affine_flow`
    (rotation about the image centre). A plain tuple ``(theta, (dy, dx), flip)`` is accepted too.
    """

    theta_deg: float
    shift_px: tuple[float, float]
    flip: bool


class TTAOutput(NamedTuple):
    """Result of :func:`tta_predict` (CPU, float32); ``mean`` and ``spread`` do not depend on ``return_maps``.

    mean: (N, K, H, W) mean softmax over the plain map and the ``n_tta`` augmented maps mapped back.
    spread: (N, H, W) population standard deviation over those ``1 + n_tta`` maps, averaged over
        the K classes: 0 where all maps agree (always 0 when ``n_tta == 0``), at most 0.5.
    maps: (N, 1 + n_tta, K, H, W) all maps, the plain one first, if ``return_maps`` else None.
    """

    mean: Tensor
    spread: Tensor
    maps: Tensor | None


def _non_negative(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return value


def random_tta_params(
    n: int, n_tta: int, generator: torch.Generator, *, shape_hw: Sequence[int],
    max_rotate_deg: float = 20.0, max_shift_frac: float = 0.1, flip: bool = False,
) -> list[list[TTAParams]]:
    """``n_tta`` random augmentations for each of ``n`` images: ``params[i][j]`` is a :class:`TTAParams`.

    Each is, with probability 1/2, a rotation uniform in +-``max_rotate_deg`` (no shift) or else a
    shift uniform in +-``max_shift_frac * H`` rows and +-``max_shift_frac * W`` columns (no
    rotation); with ``flip=True`` it is also flipped left-right with probability 1/2. All random
    numbers come from the CPU ``generator``, five per augmentation whatever is chosen, so a seed
    gives the same parameters on every device and for every ``flip``.
    """
    n, n_tta = _count(n, "n"), _count(n_tta, "n_tta")
    max_rotate_deg = _non_negative(max_rotate_deg, "max_rotate_deg")
    max_shift_frac = _non_negative(max_shift_frac, "max_shift_frac")
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got {generator!r}")
    h, w = _check_hw(shape_hw)
    u = torch.rand(n, n_tta, 5, generator=generator, dtype=torch.float64) * 2 - 1  # (n, n_tta, 5) in [-1, 1)

    def one(pick: float, rot: float, dy: float, dx: float, f: float) -> TTAParams:
        if pick < 0:  # probability 1/2: a rotation
            return TTAParams(rot * max_rotate_deg, (0.0, 0.0), bool(flip and f < 0))
        return TTAParams(0.0, (dy * max_shift_frac * h, dx * max_shift_frac * w), bool(flip and f < 0))

    return [[one(*v) for v in row] for row in u.tolist()]


def _as_params(p) -> TTAParams:
    try:
        theta, shift, flip = p
        shift = (float(shift[0]), float(shift[1])) if len(shift) == 2 else None
        theta = float(theta)
    except (TypeError, ValueError):
        shift = None
    if shift is None or not all(math.isfinite(v) for v in (theta, *shift)):
        raise ValueError(f"an augmentation must be (theta_deg, (shift_rows, shift_cols), flip), finite, got {p!r}")
    return TTAParams(theta, shift, bool(flip))


def augment_fields(
    params: Sequence[TTAParams], shape_hw: Sequence[int], *,
    device: torch.device | str | None = None, dtype: torch.dtype | None = None,
) -> tuple[Tensor, Tensor]:
    """Forward and inverse fields, each (B, 2, H, W) with B = ``len(params)``, of the augmentations.

    Forward (for images): flip left-right, then rotate and shift (``A``): with the mirror ``M``
    the content moves by ``A o M``, so the backward field is ``M(A^-1(p)) - p``. Inverse (for the
    predictions): undo ``A`` with :func:`invert_affine_flow_params`, then flip, content map
    ``M o A^-1``, field ``A(M(p)) - p``. ``warp(warp(x, forward), inverse) ~= x`` away from the
    borders. Each is a single field, so each direction interpolates once.
    """
    h, w = _check_hw(shape_hw)
    empty = torch.zeros(0, 2, h, w, dtype=torch.float64)  # so that no augmentation gives (0, 2, H, W)
    fwd, inv = [empty], [empty]
    for p in map(_as_params, params):
        # float64 on the CPU like affine_flow; cast and moved at the end
        a = affine_flow(p.theta_deg, p.shift_px, (h, w), dtype=torch.float64)  # (1, 2, H, W), A^-1(p) - p
        theta_i, shift_i = invert_affine_flow_params(p.theta_deg, p.shift_px)
        a_inv = affine_flow(theta_i, shift_i, (h, w), dtype=torch.float64)  # (1, 2, H, W), A(p) - p
        if p.flip:
            mirror = (w - 1) - 2 * torch.arange(w, dtype=torch.float64)  # M(p) - p along W: (W,)
            # forward: M(A^-1 p) - p = (a_h, mirror - a_w)
            a = torch.stack((a[:, 0], mirror - a[:, 1]), dim=1)
            # inverse: A(M p) - p = M p - p + a_inv(M p); a_inv at M p is a_inv with W reversed
            a_inv = a_inv.flip(-1)
            a_inv = torch.stack((a_inv[:, 0], mirror + a_inv[:, 1]), dim=1)
        fwd.append(a)
        inv.append(a_inv)
    dtype = dtype or torch.get_default_dtype()
    return torch.cat(fwd).to(device=device, dtype=dtype), torch.cat(inv).to(device=device, dtype=dtype)


@torch.no_grad()
def tta_predict(
    model: nn.Module,
    images: Tensor,
    *,
    n_tta: int | None = None,
    generator: torch.Generator | None = None,
    params: Sequence[Sequence[TTAParams]] | None = None,
    max_rotate_deg: float = 20.0,
    max_shift_frac: float = 0.1,
    flip: bool = False,
    return_maps: bool = False,
    batch_size: int = 32,
    device: torch.device | str | None = None,
) -> TTAOutput:
    """Softmax of ``model`` on ``images`` (N, 1, H, W) averaged over the plain and ``n_tta`` augmented inputs.

    Each augmented image is warped bilinearly with zero padding (the background is 0), segmented
    by :func:`~segreg_lite.supervised.predict` and its softmax mapped back with the exact inverse
    field (bilinear, border padding, so the maps still sum to 1). ``params`` (``params[i][j]`` for
    image i, as :func:`random_tta_params` returns) fixes the augmentations; otherwise they are drawn
    from ``generator`` (default: a CPU generator seeded 0). ``n_tta`` defaults to 4, or to the
    number per image in ``params``; 0 gives the plain prediction. Images are cast to float32;
    the model is left in eval mode. Returns a :class:`TTAOutput` on the CPU.
    """
    check_images(images)
    check_finite("images", images)
    if images.shape[0] == 0:
        raise ValueError(f"images must hold at least one image, got shape {tuple(images.shape)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    for value, name in ((max_rotate_deg, "max_rotate_deg"), (max_shift_frac, "max_shift_frac")):
        _non_negative(value, name)
    n, (h, w) = images.shape[0], images.shape[-2:]
    if params is None:
        n_tta = 4 if n_tta is None else _count(n_tta, "n_tta")
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        params = random_tta_params(
            n, n_tta, generator, shape_hw=(h, w), max_rotate_deg=max_rotate_deg,
            max_shift_frac=max_shift_frac, flip=flip,
        )
    else:
        counts = {len(p) for p in params}
        if len(params) != n or len(counts) > 1:
            raise ValueError(
                f"params must hold the same number of augmentations for each of the {n} images, "
                f"got {len(params)} images with counts {sorted(counts)}"
            )
        found = counts.pop() if counts else 0
        if n_tta is not None and _count(n_tta, "n_tta") != found:
            raise ValueError(f"n_tta={n_tta} but params hold {found} augmentations per image")
        n_tta = found
    images = images.float()
    mean, spread, maps = [], [], []
    # chunks of batch_size images bound the memory of the (b, 1 + n_tta, K, H, W) stacks
    for i in range(0, n, batch_size):
        x = images[i : i + batch_size]  # (b, 1, H, W)
        b = x.shape[0]
        chunk = predict(model, x, batch_size=batch_size, device=device)[:, None]  # (b, 1, K, H, W)
        if n_tta:
            flat = [p for per_image in params[i : i + b] for p in per_image]  # image-major: (b * n_tta)
            fwd, inv = augment_fields(flat, (h, w), device=x.device, dtype=torch.float32)  # (b * n_tta, 2, H, W)
            moved = warp(x.repeat_interleave(n_tta, dim=0), fwd, padding_mode="zeros")  # (b * n_tta, 1, H, W)
            probs = predict(model, moved, batch_size=batch_size, device=device)  # (b * n_tta, K, H, W)
            back = warp(probs, inv.cpu(), padding_mode="border")
            chunk = torch.cat((chunk, back.view(b, n_tta, *back.shape[1:])), dim=1)  # (b, 1 + n_tta, K, H, W)
        mean.append(chunk.mean(1))
        spread.append(chunk.std(1, correction=0).mean(1))  # (b, H, W)
        if return_maps:
            maps.append(chunk)
    return TTAOutput(torch.cat(mean), torch.cat(spread), torch.cat(maps) if return_maps else None)


#: The left-right mirror image, unrotated and unshifted.
MIRROR = TTAParams(0.0, (0.0, 0.0), True)


def mirror_predict(model: nn.Module, images: Tensor, *, device: torch.device | str | None = None) -> TTAOutput:
    """The mean of the softmax of ``model`` on ``images`` (N, 1, H, W) and on their left-right
    mirror images, mirrored back: the test-time mirroring of nnU-Net (Isensee et al. 2021).
    The mirror moves every pixel onto another pixel, so nothing is interpolated or pushed out of
    view. :func:`tta_predict` with the one augmentation :data:`MIRROR` per image."""
    return tta_predict(model, images, params=[[MIRROR]] * images.shape[0], device=device)
