"""Tests for segreg_lite.transforms: the spatial convention pinned by known answers."""
from __future__ import annotations

import math

import pytest
import torch

from segreg_lite.transforms import (
    affine_field,
    affine_flow,
    compose,
    identity_grid,
    integrate_velocity,
    invert_affine_flow_params,
    jacobian_determinant,
    resize_flow,
    warp,
    warp_labels,
)


def _ramps(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 1, H, W) images equal to the row index and to the column index."""
    g = identity_grid((h, w))
    return g[:, :1].clone(), g[:, 1:].clone()


def _smooth_image(h: int, w: int) -> torch.Tensor:
    g = identity_grid((h, w))
    return (torch.sin(g[:, :1] / 5.0) * torch.cos(g[:, 1:] / 7.0) + 0.1 * g[:, 1:] / w)  # (1, 1, H, W)


def _smooth_flow(h: int, w: int, amp: float, phase: float) -> torch.Tensor:
    g = identity_grid((h, w))
    return amp * torch.cat(
        (torch.sin(g[:, 1:] / 6.0 + phase), torch.cos(g[:, :1] / 8.0 - phase)), dim=1
    )  # (1, 2, H, W)


# --- identity_grid ------------------------------------------------------------------------------


def test_identity_grid_values_and_dtype():
    g = identity_grid((3, 4), dtype=torch.float64)
    assert g.shape == (1, 2, 3, 4) and g.dtype == torch.float64
    assert g[0, 0, 2, 1] == 2 and g[0, 1, 2, 1] == 1


# --- warp: known answers ------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(8, 11), (32, 32), (160, 192)])
def test_zero_flow_is_identity(hw):
    x = torch.rand(2, 3, *hw, generator=torch.Generator().manual_seed(0))
    zero = torch.zeros(2, 2, *hw)
    assert torch.equal(warp(x, zero, mode="nearest"), x)
    # bilinear: equal up to float32 rounding of grid_sample's coordinate normalisation
    torch.testing.assert_close(warp(x, zero), x, atol=5e-5, rtol=0)


def test_one_pixel_flow_along_w_moves_column_ramp():
    rows, cols = _ramps(6, 9)
    flow = torch.zeros(1, 2, 6, 9)
    flow[:, 1] = 1.0  # channel 1 = along W
    out = warp(cols, flow)
    torch.testing.assert_close(out[..., :-1], cols[..., :-1] + 1, atol=1e-4, rtol=0)
    torch.testing.assert_close(out[..., -1], cols[..., -1])  # border padding repeats the last column
    torch.testing.assert_close(warp(rows, flow), rows, atol=1e-4, rtol=0)  # nothing moves along H


def test_one_pixel_flow_along_h_moves_row_ramp():
    rows, cols = _ramps(7, 5)
    flow = torch.zeros(1, 2, 7, 5)
    flow[:, 0] = 1.0
    out = warp(rows, flow)
    torch.testing.assert_close(out[..., :-1, :], rows[..., :-1, :] + 1, atol=1e-4, rtol=0)
    torch.testing.assert_close(warp(cols, flow), cols, atol=1e-4, rtol=0)


def test_half_pixel_flow_interpolates_linearly():
    _, cols = _ramps(4, 6)
    flow = torch.zeros(1, 2, 4, 6)
    flow[:, 1] = 0.5
    torch.testing.assert_close(warp(cols, flow)[..., :-1], cols[..., :-1] + 0.5, atol=1e-4, rtol=0)


def test_batch_broadcast_both_ways():
    x = torch.rand(3, 1, 5, 6)
    f1 = torch.zeros(1, 2, 5, 6)
    assert warp(x, f1).shape == (3, 1, 5, 6)
    assert warp(x[:1], torch.zeros(4, 2, 5, 6)).shape == (4, 1, 5, 6)


def test_flow_follows_image_dtype():
    x = torch.rand(1, 1, 5, 6, dtype=torch.float64)
    assert warp(x, torch.zeros(1, 2, 5, 6)).dtype == torch.float64


def test_warp_is_differentiable_in_flow():
    x = _smooth_image(12, 12)
    flow = torch.zeros(1, 2, 12, 12, requires_grad=True)
    warp(x, flow).sum().backward()
    assert flow.grad is not None and flow.grad.abs().sum() > 0


# --- warp: bad inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "image, flow, match",
    [
        (torch.rand(1, 1, 5, 6), torch.zeros(1, 3, 5, 6), r"\(1, 3, 5, 6\)"),
        (torch.rand(1, 1, 5, 6), torch.zeros(1, 2, 5, 7), r"\(1, 1, 5, 6\).*\(1, 2, 5, 7\)"),
        (torch.rand(2, 1, 5, 6), torch.zeros(3, 2, 5, 6), r"\(2, 1, 5, 6\).*\(3, 2, 5, 6\)"),
        (torch.rand(1, 5, 6), torch.zeros(1, 2, 5, 6), r"\(1, 5, 6\)"),
        (torch.rand(1, 1, 5, 6), torch.zeros(2, 5, 6), r"\(2, 5, 6\)"),
        (torch.rand(1, 1, 5, 6), torch.full((1, 2, 5, 6), math.nan), "NaN"),
        (torch.full((1, 1, 5, 6), math.nan), torch.zeros(1, 2, 5, 6), "NaN"),
        (torch.zeros(1, 1, 5, 6, dtype=torch.long), torch.zeros(1, 2, 5, 6), "warp_labels"),
    ],
)
def test_warp_bad_inputs(image, flow, match):
    with pytest.raises(ValueError, match=match):
        warp(image, flow)


def test_warp_bad_mode():
    with pytest.raises(ValueError, match="bicubic"):
        warp(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), mode="bicubic")


# --- warp_labels --------------------------------------------------------------------------------


def test_warp_labels_zero_flow_is_one_hot():
    labels = torch.randint(0, 4, (2, 9, 10), generator=torch.Generator().manual_seed(1))
    out = warp_labels(labels, torch.zeros(1, 2, 9, 10), num_classes=4)
    assert out.shape == (2, 4, 9, 10)
    onehot = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(out, onehot, atol=2e-5, rtol=0)
    assert torch.equal(out.argmax(1), labels)


def test_warp_labels_soft_and_normalised():
    labels = torch.zeros(1, 6, 6, dtype=torch.long)
    labels[:, :, 3:] = 1
    flow = torch.zeros(1, 2, 6, 6)
    flow[:, 1] = 0.5
    out = warp_labels(labels, flow, num_classes=2)
    torch.testing.assert_close(out.sum(1), torch.ones(1, 6, 6))
    torch.testing.assert_close(out[0, 1, :, 2], torch.full((6,), 0.5))  # halfway between columns 2 and 3


@pytest.mark.parametrize(
    "labels, match",
    [
        (torch.zeros(1, 1, 4, 4, dtype=torch.long), r"\(1, 1, 4, 4\)"),
        (torch.zeros(1, 4, 4), "int"),
        (torch.full((1, 4, 4), 3), r"outside 0\.\.2"),
    ],
)
def test_warp_labels_bad_inputs(labels, match):
    with pytest.raises(ValueError, match=match):
        warp_labels(labels, torch.zeros(1, 2, 4, 4), num_classes=3)


# --- compose and integrate_velocity -------------------------------------------------------------


def test_compose_matches_sequential_warping_exactly_on_ramps():
    # bilinear warping reproduces a linear ramp exactly, so the only difference left between
    # sequential warping and one warp by the composed field is the definition of compose
    h, w = 48, 48
    a, b = _smooth_flow(h, w, 1.5, 0.3), _smooth_flow(h, w, 2.0, 1.1)
    inner = (..., slice(6, -6), slice(6, -6))
    for ramp in _ramps(h, w):
        seq = warp(warp(ramp, b), a)
        torch.testing.assert_close(warp(ramp, compose(a, b))[inner], seq[inner], atol=1e-4, rtol=0)
        assert (warp(ramp, compose(b, a)) - seq)[inner].abs().max() > 0.1  # the order matters


def test_compose_matches_sequential_warping_on_smooth_image():
    h, w = 48, 48
    x = _smooth_image(h, w)
    a, b = _smooth_flow(h, w, 1.5, 0.3), _smooth_flow(h, w, 2.0, 1.1)
    inner = (..., slice(6, -6), slice(6, -6))
    seq = warp(warp(x, b), a)
    err = (warp(x, compose(a, b)) - seq)[inner].abs().max()
    assert err < 0.02  # one resampling against two: interpolation smoothing only
    assert (warp(x, compose(b, a)) - seq)[inner].abs().max() > 3 * err


def test_compose_with_zero_and_translations():
    a = _smooth_flow(16, 16, 1.0, 0.0)
    zero = torch.zeros_like(a)
    torch.testing.assert_close(compose(a, zero), a)
    torch.testing.assert_close(compose(zero, a), a, atol=1e-4, rtol=0)
    t1, t2 = torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 16, 16)
    t1[:, 0], t2[:, 1] = 1.0, -2.0
    torch.testing.assert_close(compose(t1, t2), t1 + t2, atol=1e-4, rtol=0)


def test_integrate_velocity():
    zero = torch.zeros(2, 2, 8, 8)
    assert torch.equal(integrate_velocity(zero), zero)
    v = torch.zeros(1, 2, 20, 20)
    v[:, 1] = 1.5  # constant velocity: the flow is the velocity itself
    torch.testing.assert_close(integrate_velocity(v, steps=5), v, atol=1e-4, rtol=0)
    assert torch.equal(integrate_velocity(v, steps=0), v)
    with pytest.raises(ValueError, match="steps"):
        integrate_velocity(v, steps=-1)


def test_integrated_velocity_does_not_fold():
    g = identity_grid((32, 32))
    v = 8.0 * torch.sin(torch.cat((g[:, :1] / 6.0 + 1.0, g[:, 1:] / 5.0), dim=1))  # (1, 2, 32, 32)
    assert (jacobian_determinant(v) <= 0).any()  # v itself, used as a displacement, folds
    assert (jacobian_determinant(integrate_velocity(v, steps=7)) > 0).all()


# --- jacobian_determinant -----------------------------------------------------------------------


def test_jacobian_zero_flow_is_one():
    det = jacobian_determinant(torch.zeros(2, 2, 5, 7))
    assert det.shape == (2, 5, 7)
    assert torch.equal(det, torch.ones(2, 5, 7))


def test_jacobian_uniform_scaling():
    s = 0.3
    g = identity_grid((9, 11), dtype=torch.float64)
    c = torch.tensor([4.0, 5.0], dtype=torch.float64).view(1, 2, 1, 1)
    det = jacobian_determinant(s * (g - c))
    torch.testing.assert_close(det, torch.full_like(det, (1 + s) ** 2))


def test_jacobian_shear_and_folding():
    g = identity_grid((6, 6))
    shear = torch.zeros(1, 2, 6, 6)
    shear[:, 1] = 0.7 * g[:, 0]  # columns shift with the row: area preserved
    torch.testing.assert_close(jacobian_determinant(shear), torch.ones(1, 6, 6))
    fold = torch.zeros(1, 2, 6, 6)
    fold[:, 1] = -2.0 * g[:, 1]  # u_w = -2 x: p -> -x, a mirror
    torch.testing.assert_close(jacobian_determinant(fold), -torch.ones(1, 6, 6))


def test_jacobian_too_small():
    with pytest.raises(ValueError, match=r"\(1, 2, 1, 5\)"):
        jacobian_determinant(torch.zeros(1, 2, 1, 5))


# --- resize_flow --------------------------------------------------------------------------------


def test_resize_flow_scales_values():
    flow = torch.ones(1, 2, 32, 32)
    out = resize_flow(flow, (64, 64))
    assert out.shape == (1, 2, 64, 64)
    torch.testing.assert_close(out, torch.full_like(out, 63 / 31))
    out = resize_flow(flow, (64, 16))
    torch.testing.assert_close(out[:, 0], torch.full((1, 64, 16), 63 / 31))
    torch.testing.assert_close(out[:, 1], torch.full((1, 64, 16), 15 / 31))


def test_resize_flow_keeps_the_same_displacement_field():
    # an affine field is reproduced exactly: the resized field moves the same physical points
    small = affine_flow(10.0, (1.0, -2.0), (17, 17))
    big = affine_flow(10.0, (2.0, -4.0), (33, 33))  # same map, grid twice as fine
    torch.testing.assert_close(resize_flow(small, (33, 33)), big, atol=1e-4, rtol=0)


def test_resize_flow_bad_size():
    with pytest.raises(ValueError, match="size"):
        resize_flow(torch.zeros(1, 2, 8, 8), (8,))


# --- affine helpers -----------------------------------------------------------------------------


def test_affine_zero_and_shift():
    assert torch.equal(affine_flow(0.0, (0.0, 0.0), (5, 6)), torch.zeros(1, 2, 5, 6))
    _, cols = _ramps(5, 8)
    out = warp(cols, affine_flow(0.0, (0.0, 2.0), (5, 8)))
    torch.testing.assert_close(out[..., 2:], cols[..., 2:] - 2, atol=1e-4, rtol=0)  # content moved right


def test_affine_rotation_direction():
    x = torch.zeros(1, 1, 11, 11)
    x[..., 5, 8] = 1.0  # right of the centre (5, 5)
    out = warp(x, affine_flow(90.0, (0.0, 0.0), (11, 11)), mode="nearest")
    assert out[0, 0].nonzero().tolist() == [[2, 5]]  # anticlockwise as displayed: now above the centre


@pytest.mark.parametrize("theta, shift", [(17.0, (0.0, 0.0)), (0.0, (3.0, -2.5)), (-12.0, (1.5, 2.0))])
def test_affine_inverse(theta, shift):
    h, w = 40, 40
    fwd = affine_flow(theta, shift, (h, w))
    inv_theta, inv_shift = invert_affine_flow_params(theta, shift)
    back = affine_flow(inv_theta, inv_shift, (h, w))
    inner = (..., slice(10, -10), slice(10, -10))
    # composing an affine field with its inverse is exact (bilinear reproduces affine fields)
    torch.testing.assert_close(compose(back, fwd)[inner], torch.zeros(1, 2, 20, 20), atol=1e-4, rtol=0)
    x = _smooth_image(h, w)
    roundtrip = warp(warp(x, fwd), back)
    assert (roundtrip - x)[inner].abs().max() < 0.02  # two bilinear resamplings of a smooth image


def test_affine_bad_shift():
    with pytest.raises(ValueError, match="shift_px"):
        affine_flow(0.0, (1.0,), (4, 4))


def test_affine_field_known_answers_and_resolution_independence():
    zero = affine_field(torch.zeros(2, 6), (5, 7))
    assert zero.shape == (2, 2, 5, 7) and zero.abs().max() == 0
    # t0 = 1 moves every row lookup by half the height: (H - 1) / 2 pixels.
    shift = affine_field(torch.tensor([[0.0, 0, 0, 0, 1.0, 0]]), (5, 7))
    assert torch.allclose(shift[0, 0], torch.full((5, 7), 2.0)) and shift[0, 1].abs().max() == 0
    # a01 = 1: the row displacement grows with the column, -3..3 normalised*half -> -(H-1)/2..(H-1)/2.
    shear = affine_field(torch.tensor([[0.0, 1.0, 0, 0, 0, 0]]), (5, 7))
    assert torch.allclose(shear[0, 0, 0], torch.linspace(-2, 2, 7))
    p = torch.randn(3, 6) * 0.1
    assert torch.allclose(resize_flow(affine_field(p, (9, 13)), (33, 49)), affine_field(p, (33, 49)), atol=1e-5)


@pytest.mark.parametrize("params", [torch.zeros(2, 5), torch.zeros(6), "x"])
def test_affine_field_bad_params(params):
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        affine_field(params, (4, 4))
