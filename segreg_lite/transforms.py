"""The package's one spatial convention: displacement fields, warping, composition, Jacobians.

A displacement field ``flow`` is a float tensor of shape ``(B, 2, H, W)`` in **pixels**: channel 0
is the displacement along H (rows, downwards), channel 1 along W (columns, rightwards). Images,
one-hot labels and probabilities are ``(B, C, H, W)``. Warping is *backward*: the output at pixel
``p`` is the input sampled at ``p + u(p)``,

    warp(x, u)(p) = x(p + u(p)),

so the field describes where each output pixel looks, not where an input pixel goes (a field of +1
along W shows the content one pixel to the *left*). Everything that samples an image at
fractional positions goes through :func:`warp`, whose private helper is the only place that calls
``grid_sample`` (``align_corners=True``: pixel ``i`` of an axis of size ``n`` sits at normalised
coordinate ``2 i / (n - 1) - 1``). The same geometry is used to resize fields
(:func:`resize_flow`); image pyramids that go with them should use
``F.interpolate(..., align_corners=True)`` too.

Also here: :func:`compose` and :func:`integrate_velocity` (scaling and squaring, for the
diffeomorphic option of the registration network), :func:`jacobian_determinant`, and the affine
fields used by test-time augmentation (:func:`affine_flow`, :func:`invert_affine_flow_params`).
After the registration network of Li et al., "A Unified Framework for Semi-Supervised
Image Segmentation and Registration" (arXiv 2502.03229, ISBI 2025).
"""
from __future__ import annotations

import math
import operator
from typing import Sequence

import torch
import torch.nn.functional as F

from segreg_lite.checks import one_hot

_MODES = ("bilinear", "nearest")
_PADDING = ("border", "zeros", "reflection")


def _check_flow(flow: torch.Tensor, name: str = "flow") -> None:
    if not isinstance(flow, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape (B, 2, H, W), got {type(flow).__name__}")
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"{name} must be a displacement field of shape (B, 2, H, W) (channel 0 along H, "
            f"channel 1 along W), got shape {tuple(flow.shape)}"
        )
    if not flow.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got dtype {flow.dtype}")
    if not bool(torch.isfinite(flow).all()):
        raise ValueError(f"{name} of shape {tuple(flow.shape)} contains NaN or inf")


def _check_hw(shape_hw: Sequence[int], name: str = "shape_hw") -> tuple[int, int]:
    try:
        shape = tuple(operator.index(s) for s in shape_hw)  # accepts torch.Size and numpy ints
    except TypeError:
        shape = ()
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"{name} must be two positive ints (H, W), got {shape_hw!r}")
    return shape  # type: ignore[return-value]


def identity_grid(
    shape_hw: Sequence[int], device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Pixel coordinates of an ``(H, W)`` grid as a ``(1, 2, H, W)`` tensor.

    ``grid[0, 0, i, j] == i`` (row) and ``grid[0, 1, i, j] == j`` (column); built from the shape on
    every call (no cache), so it lives on ``device`` with ``dtype`` (default float dtype if None).
    """
    h, w = _check_hw(shape_hw)
    dtype = dtype or torch.get_default_dtype()
    rows = torch.arange(h, device=device, dtype=dtype)
    cols = torch.arange(w, device=device, dtype=dtype)
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"))[None]  # (1, 2, H, W)


def _sample(image: torch.Tensor, coords: torch.Tensor, mode: str, padding_mode: str) -> torch.Tensor:
    """Sample ``image`` (B, C, H, W) at pixel coordinates ``coords`` (B, 2, H', W') (row, column).

    The only ``grid_sample`` call of the package. With ``align_corners=True`` the normalised
    coordinates -1 and +1 are the centres of the first and last pixels, so pixel ``i`` of an axis
    of size ``n`` is ``2 i / (n - 1) - 1``; grid_sample wants the last axis as (x, y) = (column,
    row), the reverse of our channel order. A size-1 axis maps every coordinate to its one pixel.
    """
    h, w = image.shape[-2:]
    y = coords[:, 0] * (2.0 / (h - 1)) - 1.0 if h > 1 else torch.full_like(coords[:, 0], -1.0)
    x = coords[:, 1] * (2.0 / (w - 1)) - 1.0 if w > 1 else torch.full_like(coords[:, 1], -1.0)
    grid = torch.stack((x, y), dim=-1)  # (B, H', W', 2), last axis (x, y)
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


def warp(
    image: torch.Tensor, flow: torch.Tensor, *, mode: str = "bilinear", padding_mode: str = "border"
) -> torch.Tensor:
    """Backward-warp ``image`` (B, C, H, W) by ``flow`` (B, 2, H, W): ``out(p) = image(p + flow(p))``.

    Bilinear is the mode for images and for one-hot or soft labels (their warped values stay
    probabilities); ``mode="nearest"`` is for display only (it has no useful gradient).
    ``padding_mode`` says what is read outside the image (``"border"`` repeats the edge).
    A batch of 1 on either side is broadcast to the other's batch; other batch mismatches,
    different spatial shapes, a flow without 2 channels or non-finite values are ValueErrors.
    The flow is cast to the image's dtype. Returns (max(B_image, B_flow), C, H, W).

    Zero flow returns the input up to float32 rounding in grid_sample's coordinate normalisation
    (a few 1e-5 of a pixel on a 200-pixel axis; exact for ``mode="nearest"``).
    """
    _check_flow(flow)
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a (B, C, H, W) tensor, got {shape} (flow {tuple(flow.shape)})")
    if not image.is_floating_point():
        raise ValueError(f"image must be float, got dtype {image.dtype}; warp integer label maps with warp_labels")
    if image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(
            f"image and flow must share (H, W), got image {tuple(image.shape)} and flow {tuple(flow.shape)}"
        )
    b_img, b_flow = image.shape[0], flow.shape[0]
    if b_img != b_flow and 1 not in (b_img, b_flow):
        raise ValueError(
            f"batch sizes differ and neither is 1: image {tuple(image.shape)}, flow {tuple(flow.shape)}"
        )
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if padding_mode not in _PADDING:
        raise ValueError(f"padding_mode must be one of {_PADDING}, got {padding_mode!r}")
    if not bool(torch.isfinite(image).all()):
        raise ValueError(f"image of shape {tuple(image.shape)} contains NaN or inf")
    b = max(b_img, b_flow)
    image = image.expand(b, -1, -1, -1)
    flow = flow.to(image.dtype).expand(b, -1, -1, -1)
    coords = identity_grid(flow.shape[-2:], device=flow.device, dtype=flow.dtype) + flow  # (B, 2, H, W)
    return _sample(image, coords, mode, padding_mode)


def warp_labels(labels: torch.Tensor, flow: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Warp an integer label map ``labels`` (B, H, W) by ``flow`` as a soft one-hot (B, K, H, W).

    The one-hot encoding is warped bilinearly, so each output pixel holds class probabilities that
    sum to 1 (differentiable in the flow: the label term of the registration loss uses it).
    Output dtype is the flow's; batch broadcasting as in :func:`warp`.
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 3:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a (B, H, W) integer tensor, got {shape}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must hold integers (int64), got dtype {labels.dtype}")
    _check_flow(flow)
    return warp(one_hot(labels, num_classes, dtype=flow.dtype), flow)  # one-hot (B, K, H, W), warped


def compose(flow_a: torch.Tensor, flow_b: torch.Tensor) -> torch.Tensor:
    """The field ``c`` with ``c(p) = a(p) + b(p + a(p))``, shapes (B, 2, H, W).

    With the sampling maps ``phi_u(p) = p + u(p)``, ``phi_c = phi_b o phi_a``: an output pixel is
    first moved by ``a``, the point it lands on is then moved by ``b``. For images this means
    ``warp(x, compose(a, b)) ~= warp(warp(x, b), a)``: warping by ``b`` first, then by ``a``,
    equals one warp by ``compose(a, b)`` (up to interpolation: ``b`` is read between pixels
    bilinearly, with its edge values repeated outside the grid).
    """
    _check_flow(flow_a, "flow_a")
    _check_flow(flow_b, "flow_b")
    if flow_a.shape[-2:] != flow_b.shape[-2:]:
        raise ValueError(f"flows must share (H, W), got {tuple(flow_a.shape)} and {tuple(flow_b.shape)}")
    return flow_a + warp(flow_b, flow_a)


def integrate_velocity(velocity: torch.Tensor, steps: int = 7) -> torch.Tensor:
    """Integrate a stationary velocity field (B, 2, H, W) by scaling and squaring.

    The field is divided by ``2**steps`` (small enough to be a near-identity, invertible step) and
    composed with itself ``steps`` times, giving the time-1 flow of the velocity: a diffeomorphism
    up to discretisation. ``steps=0`` returns the velocity unchanged.
    """
    _check_flow(velocity, "velocity")
    if not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    flow = velocity / (2**steps)
    for _ in range(steps):
        flow = compose(flow, flow)
    return flow


def jacobian_determinant(flow: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian of ``p -> p + flow(p)``, (B, 2, H, W) -> (B, H, W).

    ``J = I + grad u`` with ``grad u`` from ``torch.gradient``: central differences inside the
    grid, one-sided (first-order) differences on the first and last row and column. A value <= 0
    marks folding (the map is not locally invertible there); 1 means area is preserved.
    Needs H, W >= 2.
    """
    _check_flow(flow)
    if min(flow.shape[-2:]) < 2:
        raise ValueError(f"jacobian_determinant needs H, W >= 2, got flow {tuple(flow.shape)}")
    du_dh, du_dw = torch.gradient(flow, dim=(2, 3))  # each (B, 2, H, W)
    # rows of J are the output components (h, w), columns the derivative direction (h, w)
    return (1 + du_dh[:, 0]) * (1 + du_dw[:, 1]) - du_dw[:, 0] * du_dh[:, 1]


def resize_flow(flow: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Resize a field (B, 2, H, W) to ``size`` = (H', W') and rescale its pixel values.

    Geometry as in :func:`warp` (``align_corners=True``): the first and last pixel centres stay in
    place, so pixel ``i`` of the old grid is at ``i * (H' - 1) / (H - 1)`` on the new one, and the
    displacements along H (W) are multiplied by ``(H' - 1) / (H - 1)`` (``(W' - 1) / (W - 1)``).
    Upsampling 32 -> 64 multiplies by 63/31 ~= 2.03, not exactly 2. Needs sizes >= 2.
    """
    _check_flow(flow)
    new = _check_hw(size, "size")
    old = tuple(flow.shape[-2:])
    if min(old) < 2 or min(new) < 2:
        raise ValueError(f"resize_flow needs sizes >= 2, got flow {tuple(flow.shape)} and size {new}")
    out = F.interpolate(flow, size=new, mode="bilinear", align_corners=True)  # (B, 2, H', W')
    scale = torch.tensor(
        [(new[0] - 1) / (old[0] - 1), (new[1] - 1) / (old[1] - 1)], device=flow.device, dtype=flow.dtype
    )
    return out * scale.view(1, 2, 1, 1)


def affine_field(params: torch.Tensor, shape_hw: Sequence[int]) -> torch.Tensor:
    """The (B, 2, H, W) displacement field of a batch of affine maps ``params`` (B, 6).

    ``params = (a00, a01, a10, a11, t0, t1)`` act on normalised coordinates ``n`` in [-1, 1]
    (row, column; -1 and 1 are the first and last pixel centres, as in :func:`warp`): the field is
    ``A n + t`` in those units, then converted to pixels (times ``(size - 1) / 2`` per axis). So
    zeros are the identity, and the same parameters give the same motion at every resolution:
    ``resize_flow(affine_field(p, small), big) == affine_field(p, big)``. Used by the affine head
    of :class:`~segreg_lite.regnet.RegNet`.
    """
    if not isinstance(params, torch.Tensor) or params.ndim != 2 or params.shape[1] != 6:
        shape = tuple(params.shape) if isinstance(params, torch.Tensor) else type(params).__name__
        raise ValueError(f"params must be a (B, 6) tensor (a00, a01, a10, a11, t0, t1), got {shape}")
    h, w = _check_hw(shape_hw)
    if min(h, w) < 2:
        raise ValueError(f"affine_field needs H, W >= 2, got {(h, w)}")
    rows = torch.linspace(-1, 1, h, device=params.device, dtype=params.dtype)
    cols = torch.linspace(-1, 1, w, device=params.device, dtype=params.dtype)
    n = torch.stack(torch.meshgrid(rows, cols, indexing="ij")).flatten(1)  # (2, H * W)
    a = params[:, :4].view(-1, 2, 2)  # (B, 2, 2)
    disp = a @ n + params[:, 4:, None]  # (B, 2, H * W), normalised units
    half = torch.tensor([(h - 1) / 2, (w - 1) / 2], device=params.device, dtype=params.dtype)
    return (disp * half.view(1, 2, 1)).view(-1, 2, h, w)  # pixels


def _rotation(theta_deg: float) -> tuple[float, float, float, float]:
    # (h, w) components; positive angles turn the image anticlockwise as displayed (rows down)
    t = math.radians(theta_deg)
    c, s = math.cos(t), math.sin(t)
    return c, -s, s, c  # [[r00, r01], [r10, r11]]


def affine_flow(
    theta_deg: float,
    shift_px: Sequence[float],
    shape_hw: Sequence[int],
    center: Sequence[float] | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """The (1, 2, H, W) field that rotates an image by ``theta_deg`` about ``center`` and shifts it.

    The content moves by the forward map ``T(q) = R (q - c) + c + t``, with ``R`` an anticlockwise
    rotation as displayed (row axis pointing down), ``c = center`` (default: the image centre
    ``((H - 1) / 2, (W - 1) / 2)``) and ``t = shift_px`` = (rows, columns): ``warp(x, flow)(T(q))
    = x(q)``. The field is therefore the backward map ``T^-1(p) - p``. A shift of (0, 2) moves the
    content two pixels to the right. See :func:`invert_affine_flow_params` for the way back.
    """
    h, w = _check_hw(shape_hw)
    shift = tuple(float(v) for v in shift_px)
    if len(shift) != 2:
        raise ValueError(f"shift_px must be (rows, columns), got {shift_px!r}")
    cy, cx = ((h - 1) / 2, (w - 1) / 2) if center is None else tuple(float(v) for v in center)
    # float64 on the CPU (mps has no float64), cast and moved at the end
    grid = identity_grid((h, w), dtype=torch.float64)
    dy, dx = grid[:, 0] - cy - shift[0], grid[:, 1] - cx - shift[1]  # (1, H, W), p - c - t
    r00, r01, r10, r11 = _rotation(-theta_deg)  # T^-1(p) = R^-1 (p - c - t) + c
    src = torch.stack((r00 * dy + r01 * dx + cy, r10 * dy + r11 * dx + cx), dim=1)  # (1, 2, H, W)
    return (src - grid).to(device=device, dtype=dtype or torch.get_default_dtype())


def invert_affine_flow_params(theta_deg: float, shift_px: Sequence[float]) -> tuple[float, tuple[float, float]]:
    """Parameters ``(theta', shift')`` of the exact inverse of ``affine_flow(theta_deg, shift_px, ...)``.

    ``T^-1(p) = R^-1 (p - c) + c - R^-1 t``, so ``theta' = -theta`` and ``shift' = -R^-1 t`` about
    the same centre: ``warp(warp(x, affine_flow(theta, t, s)), affine_flow(theta', t', s)) ~= x``
    away from the borders (what left the image cannot come back).
    """
    t = tuple(float(v) for v in shift_px)
    if len(t) != 2:
        raise ValueError(f"shift_px must be (rows, columns), got {shift_px!r}")
    r00, r01, r10, r11 = _rotation(-theta_deg)
    return -float(theta_deg), (-(r00 * t[0] + r01 * t[1]), -(r10 * t[0] + r11 * t[1]))
