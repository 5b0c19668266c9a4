"""Tests for segreg_lite.tta: exact inverses, a pointwise model, reproducible parameters, validation."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from segreg_lite.supervised import predict
from segreg_lite.transforms import affine_flow, identity_grid, warp
from segreg_lite.tta import TTAParams, augment_fields, mirror_predict, random_tta_params, tta_predict
from segreg_lite.unet import UNet

H = W = 32
CENTRE = (slice(None), slice(None), slice(9, 23), slice(9, 23))  # stays inside after <= 20 deg and 3 px


def _smooth_images(n: int = 2) -> torch.Tensor:
    """(n, 1, H, W) smooth, non-symmetric images (different per image)."""
    g = identity_grid((H, W))
    imgs = [torch.sin(g[:, :1] / (5.0 + k)) * torch.cos(g[:, 1:] / 7.0) + 0.02 * g[:, 1:] for k in range(n)]
    return torch.cat(imgs)


def _unet() -> UNet:
    torch.manual_seed(0)
    return UNet(num_classes=3, features=4, levels=3).eval()


class _Pointwise(nn.Module):
    """A 1x1 convolution: its softmax at a pixel depends on that pixel only, so it commutes with warps."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([3.0, -3.0, 0.5]).view(3, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.0, 0.2, -0.1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


# --- fields -------------------------------------------------------------------------------------

CASES = [TTAParams(15.0, (0.0, 0.0), False), TTAParams(0.0, (3.0, -2.0), False), TTAParams(-12.0, (2.0, 1.0), True)]


@pytest.mark.parametrize("p", CASES, ids=["rotate", "shift", "flip+rotate+shift"])
def test_forward_then_inverse_returns_input_in_centre(p):
    x = _smooth_images(1)
    fwd, inv = augment_fields([p], (H, W))
    moved = warp(x, fwd, padding_mode="zeros")
    assert (moved - x)[CENTRE].abs().max() > 0.1  # the augmentation did move the content
    back = warp(moved, inv)
    torch.testing.assert_close(back[CENTRE], x[CENTRE], atol=0.03, rtol=0)


def test_fields_compose_flip_then_affine():
    x = _smooth_images(1)
    fwd, inv = augment_fields([TTAParams(0.0, (0.0, 0.0), True)], (H, W))
    torch.testing.assert_close(warp(x, fwd), x.flip(-1), atol=1e-5, rtol=0)  # a flip alone is exact
    torch.testing.assert_close(inv, fwd)  # and its own inverse
    fwd, _ = augment_fields([TTAParams(10.0, (1.0, -2.0), True)], (H, W))
    expected = warp(x.flip(-1), affine_flow(10.0, (1.0, -2.0), (H, W)))
    torch.testing.assert_close(warp(x, fwd), expected, atol=1e-4, rtol=0)


# --- tta_predict --------------------------------------------------------------------------------


def test_identity_augmentation_gives_plain_prediction():
    model, x = _unet(), _smooth_images(2)
    ident = TTAParams(0.0, (0.0, 0.0), False)
    out = tta_predict(model, x, params=[[ident, ident]] * 2)
    torch.testing.assert_close(out.mean, predict(model, x), atol=1e-5, rtol=0)
    assert out.spread.shape == (2, H, W) and out.spread.max() < 1e-5
    assert out.maps is None and out.mean.dtype == torch.float32 and out.mean.device.type == "cpu"


def test_mirror_predict_averages_the_plain_and_the_mirrored_softmax_everywhere():
    model, x = _unet(), _smooth_images(2)
    out = mirror_predict(model, x)
    plain, mirrored = predict(model, x), predict(model, x.flip(-1)).flip(-1)
    # exact on the whole image, border included: a mirror moves pixels onto pixels
    torch.testing.assert_close(out.mean, (plain + mirrored) / 2, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.spread, ((plain - mirrored).abs() / 2).mean(1), atol=1e-5, rtol=0)
    assert out.spread.max() > 1e-3  # the untrained net is not mirror-symmetric: the two maps differ


@pytest.mark.parametrize("p", CASES, ids=["rotate", "shift", "flip+rotate+shift"])
def test_pointwise_model_is_unchanged_in_centre(p):
    model, x = _Pointwise(), _smooth_images(2)
    out = tta_predict(model, x, params=[[p], [p]], return_maps=True)
    plain = predict(model, x)
    torch.testing.assert_close(out.maps[:, 1][CENTRE], plain[CENTRE], atol=0.03, rtol=0)
    torch.testing.assert_close(out.mean[CENTRE], plain[CENTRE], atol=0.015, rtol=0)


def test_random_augmentations_of_pointwise_model_agree_with_plain():
    model, x = _Pointwise(), _smooth_images(2)
    out = tta_predict(model, x, n_tta=6, flip=True, max_shift_frac=0.08, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.mean[CENTRE], predict(model, x)[CENTRE], atol=0.015, rtol=0)


def test_return_maps_shapes_and_consistency():
    model, x = _unet(), _smooth_images(3)
    model.train()
    out = tta_predict(model, x, n_tta=3, flip=True, return_maps=True, batch_size=2)
    assert not model.training
    assert out.maps.shape == (3, 4, 3, H, W)
    torch.testing.assert_close(out.mean, out.maps.mean(1))
    torch.testing.assert_close(out.spread, out.maps.std(1, correction=0).mean(1))
    torch.testing.assert_close(out.maps.sum(2), torch.ones(3, 4, H, W), atol=1e-5, rtol=0)
    assert out.spread.max() > 1e-3  # the UNet is not equivariant: the maps do differ
    torch.testing.assert_close(out.maps[:, 0], predict(model, x))
    # the fields are the same without the maps (same default seed)
    plain_out = tta_predict(model, x, n_tta=3, flip=True, batch_size=2)
    assert plain_out.maps is None
    torch.testing.assert_close(plain_out.mean, out.mean)
    torch.testing.assert_close(plain_out.spread, out.spread)


def test_maps_follow_params_of_their_image():
    model, x = _unet(), _smooth_images(3)
    params = [[CASES[0], CASES[1]], [CASES[2], CASES[0]], [CASES[1], CASES[2]]]
    out = tta_predict(model, x, params=params, return_maps=True, batch_size=2)  # chunks of 2 + 1 images
    for i in range(3):
        for j in range(2):
            fwd, inv = augment_fields([params[i][j]], (H, W))
            expected = warp(predict(model, warp(x[i : i + 1], fwd, padding_mode="zeros")), inv)
            torch.testing.assert_close(out.maps[i, 1 + j], expected[0], atol=1e-5, rtol=0)


def test_n_tta_zero_is_plain_prediction():
    model, x = _unet(), _smooth_images(2)
    out = tta_predict(model, x, n_tta=0, return_maps=True)
    assert torch.equal(out.mean, predict(model, x)) and torch.equal(out.spread, torch.zeros(2, H, W))
    assert out.maps.shape == (2, 1, 3, H, W)


# --- random parameters --------------------------------------------------------------------------


def test_random_params_ranges_and_reproducibility():
    def draw(seed, flip=True):
        gen = torch.Generator().manual_seed(seed)
        return random_tta_params(50, 4, gen, shape_hw=(40, 20), max_rotate_deg=10.0, max_shift_frac=0.1, flip=flip)

    params = draw(0)
    assert len(params) == 50 and all(len(p) == 4 for p in params)
    flat = [p for per_image in params for p in per_image]
    rotations = [p for p in flat if p.theta_deg != 0]
    shifts = [p for p in flat if p.shift_px != (0.0, 0.0)]
    assert len(rotations) + len(shifts) == len(flat) and 60 < len(rotations) < 140  # one or the other, ~1/2
    assert all(p.shift_px == (0.0, 0.0) and abs(p.theta_deg) <= 10.0 for p in rotations)
    assert all(p.theta_deg == 0 and abs(p.shift_px[0]) <= 4.0 and abs(p.shift_px[1]) <= 2.0 for p in shifts)
    assert max(abs(p.shift_px[0]) for p in shifts) > 3.0 and max(abs(p.theta_deg) for p in rotations) > 8.0
    assert 60 < sum(p.flip for p in flat) < 140
    assert not any(p.flip for per_image in draw(0, flip=False) for p in per_image)
    assert draw(0) == params and draw(1) != params


# --- validation ---------------------------------------------------------------------------------


def test_bad_inputs_raise():
    model, x = _Pointwise(), _smooth_images(1)
    nan = x.clone()
    nan[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"images contains NaN or inf \(shape \(1, 1, 32, 32\)\)"):
        tta_predict(model, nan)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\).*\(1, 32, 32\)"):
        tta_predict(model, x[:, 0])
    with pytest.raises(ValueError, match="float"):
        tta_predict(model, (x * 10).long())
    with pytest.raises(ValueError, match="n_tta.*-1"):
        tta_predict(model, x, n_tta=-1)
    with pytest.raises(ValueError, match="max_rotate_deg"):
        tta_predict(model, x, max_rotate_deg=-5.0)
    with pytest.raises(ValueError, match="max_shift_frac"):
        random_tta_params(1, 1, torch.Generator(), shape_hw=(H, W), max_shift_frac=-0.1)
    with pytest.raises(ValueError, match="params.*2 images"):
        tta_predict(model, x, params=[[CASES[0]], [CASES[1]]])
    with pytest.raises(ValueError, match="n_tta=4 but params hold 1"):
        tta_predict(model, x, n_tta=4, params=[[CASES[0]]])
    with pytest.raises(ValueError, match="augmentation must be"):
        tta_predict(model, x, params=[[(5.0, (1.0,), False)]])
