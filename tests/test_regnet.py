import pytest
import torch

from segreg_lite.losses import registration_loss
from segreg_lite.regnet import RegNet, RegOutput, pyramid
from segreg_lite.transforms import jacobian_determinant, resize_flow, warp


def _pair(b=2, h=32, w=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g), torch.rand(b, 1, h, w, generator=g)


@pytest.mark.parametrize("diffeomorphic", [False, True])
def test_output_shapes_fields_and_config_rebuilds(diffeomorphic):
    model = RegNet(features=8, levels=3, diffeomorphic=diffeomorphic).eval()
    out = model(*_pair())
    assert isinstance(out, RegOutput) and out._fields == ("flow", "flows", "residuals")
    assert out.flow.shape == (2, 2, 32, 48) and out.flow is out.flows[-1]
    assert [tuple(f.shape[-2:]) for f in out.flows] == [(8, 12), (16, 24), (32, 48)]  # coarsest first
    assert [tuple(r.shape) for r in out.residuals] == [tuple(f.shape) for f in out.flows]
    assert model.config == dict(in_channels=2, features=8, levels=3, diffeomorphic=diffeomorphic, integration_steps=7,
                                affine=False, refine=False)
    RegNet(**model.config).load_state_dict(model.state_dict())  # same architecture, key for key


def test_total_field_is_upsampled_coarser_field_plus_residual(make_regnet):
    model = make_regnet(features=8)
    with torch.no_grad():
        out = model(*_pair())
    assert torch.equal(out.flows[0], out.residuals[0])
    for i in (1, 2):  # D_i = resize_flow(D_{i-1}) + r_i: the exact "2 * up(D)"
        want = resize_flow(out.flows[i - 1], out.flows[i].shape[-2:]) + out.residuals[i]
        torch.testing.assert_close(out.flows[i], want)


VARIANTS = [dict(diffeomorphic=False), dict(diffeomorphic=True), dict(affine=True, refine=True),
            dict(diffeomorphic=True, affine=True, refine=True)]


@pytest.mark.parametrize("kwargs", VARIANTS)
def test_starts_at_the_identity(kwargs):
    moving, fixed = _pair()
    out = RegNet(features=8, levels=3, **kwargs)(moving, fixed)
    for f in out.flows:
        assert f.abs().max() < 1e-2
    torch.testing.assert_close(warp(moving, out.flow), moving, atol=1e-3, rtol=0)


def test_diffeomorphic_variant_does_not_fold_where_the_plain_one_does(make_regnet):
    # large random heads: fields of several pixels with rough gradients
    diffeo = make_regnet(features=8, std=1.0, diffeomorphic=True)
    plain = RegNet(**{**diffeo.config, "diffeomorphic": False})
    plain.load_state_dict(diffeo.state_dict())
    pair = _pair(h=32, w=32)
    with torch.no_grad():
        flow_d, flow_p = diffeo(*pair).flow, plain(*pair).flow
    assert flow_d.abs().max() > 2  # a real deformation, not the identity
    assert jacobian_determinant(flow_d).min() > 0
    assert jacobian_determinant(flow_p).min() <= 0  # the same velocity used directly folds


@pytest.mark.parametrize("kwargs", VARIANTS)
def test_gradients_reach_every_parameter(kwargs):
    torch.manual_seed(0)
    model = RegNet(features=8, levels=3, **kwargs)
    moving, fixed = _pair(h=32, w=32)
    registration_loss(model(moving, fixed), moving, fixed).total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "moving, fixed, match",
    [
        (torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 16), "same shape"),
        (torch.rand(1, 2, 32, 32), torch.rand(1, 2, 32, 32), r"\(B, 1, H, W\)"),
        (torch.rand(1, 32, 32), torch.rand(1, 32, 32), r"\(B, 1, H, W\)"),
        (torch.rand(1, 1, 30, 32), torch.rand(1, 1, 30, 32), "divisible by 4"),
        (torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), "at least 8"),
        (torch.full((1, 1, 32, 32), float("nan")), torch.rand(1, 1, 32, 32), r"NaN.*\(1, 1, 32, 32\)"),
    ],
)
def test_bad_inputs_raise(moving, fixed, match):
    with pytest.raises(ValueError, match=match):
        RegNet(features=8, levels=3)(moving, fixed)


@pytest.mark.parametrize("kwargs", [dict(features=0), dict(in_channels=3), dict(levels=True), dict(integration_steps=-1)])
def test_bad_constructor_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="RegNet"):
        RegNet(**kwargs)


def test_affine_head_starts_at_the_identity_and_is_free_of_the_smoothness_term():
    torch.manual_seed(0)
    model = RegNet(features=8, levels=3, affine=True)
    assert model(*_pair()).flow.abs().max() < 1e-3  # zero-initialised head: the identity
    # A pure affine map from the head: the coarsest total field is affine, the residuals are 0.
    with torch.no_grad():
        for head in model.heads:
            head.weight.zero_()
        model.affine_head[-1].bias.copy_(torch.tensor([0.1, 0.0, 0.0, 0.0, 0.05, -0.1]))
    out = model(*_pair())
    assert all(r.abs().max() == 0 for r in out.residuals)
    h, w = out.flow.shape[-2:]
    # a00 = 0.1 scales rows about the centre: displacement 0.1 * n_row * (H - 1) / 2 plus t0 = 0.05 * (H - 1) / 2
    rows = torch.linspace(-1, 1, h)
    expected_h = (0.1 * rows + 0.05) * (h - 1) / 2
    assert torch.allclose(out.flow[0, 0, :, 5], expected_h, atol=1e-5)
    assert torch.allclose(out.flow[0, 1], torch.full((h, w), -0.1 * (w - 1) / 2), atol=1e-5)
    moving, fixed = _pair()
    loss = registration_loss(out, moving, fixed)
    assert loss.smoothness == 0  # the affine part is not a residual


def test_affine_head_learns_a_shift_that_the_residuals_cannot_reach_cheaply():
    """One pair shifted by 3 px: a few steps on the affine head alone lower the similarity term."""
    torch.manual_seed(0)
    img = torch.zeros(1, 1, 32, 32)
    img[..., 8:20, 10:22] = 1.0
    img = torch.nn.functional.avg_pool2d(img, 5, 1, 2)  # soft edges give the warp a gradient
    moved = torch.roll(img, shifts=3, dims=-1)
    model = RegNet(features=8, levels=3, affine=True)
    opt = torch.optim.Adam(model.affine_head.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = registration_loss(model(moved, img), moved, img).similarity
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert model(moved, img).flow[0, 1, 14, 16] > 1.5  # the fixed image looks ~3 px to the right


def test_refine_levels_see_the_moving_image_warped_by_the_coarser_field():
    """With refine, a level's input changes with the coarser field; without, it does not."""
    torch.manual_seed(0)
    moving, fixed = _pair(h=32, w=32)
    for refine in (False, True):
        model = RegNet(features=8, levels=3, affine=True, refine=refine).eval()
        seen = {}
        model.decoder[1].register_forward_hook(lambda mod, args, out: seen.__setitem__("x", args[0].clone()))
        with torch.no_grad():
            model(moving, fixed)
            first = seen["x"]
            model.affine_head[-1].bias.copy_(torch.tensor([0, 0, 0, 0, 0.2, 0.0]))  # shift the coarse field
            model(moving, fixed)
        changed = not torch.equal(first, seen["x"])
        assert changed == refine
        assert first.shape[1] == 2 * 8 + (2 if refine else 0)


def test_pyramid_blurs_then_resamples_and_keeps_maps_in_range():
    x = torch.rand(2, 3, 33, 17, generator=torch.Generator().manual_seed(0))
    levels = pyramid(x, [(33, 17), (17, 9), (9, 5)])
    assert levels[0] is x and [tuple(y.shape) for y in levels] == [(2, 3, 33, 17), (2, 3, 17, 9), (2, 3, 9, 5)]
    torch.testing.assert_close(pyramid(torch.full((1, 1, 32, 32), 0.3), [(32, 32), (8, 8)])[1], torch.full((1, 1, 8, 8), 0.3))
    soft = torch.softmax(x, dim=1)  # maps summing to 1 over channels stay so
    for y in pyramid(soft, [(33, 17), (17, 9), (9, 5)]):
        assert y.min() >= 0 and y.max() <= 1
        torch.testing.assert_close(y.sum(1), torch.ones_like(y[:, 0]))
