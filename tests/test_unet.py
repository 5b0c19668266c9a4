import pytest
import torch

from segreg_lite.unet import UNet, count_parameters


@pytest.mark.parametrize("residual", [False, True])
def test_output_shape_and_config_rebuilds(residual):
    model = UNet(num_classes=5, residual=residual).eval()
    x = torch.rand(1, 1, 16, 32)
    assert model(x).shape == (1, 5, 16, 32)
    clone = UNet(**model.config)
    clone.load_state_dict(model.state_dict())  # same architecture, key for key
    assert model.config == dict(in_channels=1, num_classes=5, features=16, levels=5, dropout=0.2, residual=residual)


@pytest.mark.parametrize("residual", [False, True])
def test_parameter_count_is_sane(residual):
    n = count_parameters(UNet(residual=residual))
    print(f"UNet(features=16, residual={residual}): {n:,} parameters")
    # 16..256 channels, two 3x3 convs per level: about 2 million, in the paper's ballpark.
    assert 1_500_000 < n < 2_500_000
    assert count_parameters(UNet(residual=residual), trainable_only=True) == n


@pytest.mark.parametrize("residual", [False, True])
def test_gradients_reach_every_parameter(residual):
    torch.manual_seed(0)
    model = UNet(features=8, levels=3, dropout=0.0, residual=residual)
    logits = model(torch.rand(2, 1, 16, 16))
    (logits * torch.randn_like(logits)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_dropout_only_in_train_mode():
    torch.manual_seed(0)
    model = UNet(features=8, levels=3, dropout=0.5)
    x = torch.rand(1, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))


def test_smallest_input_reaches_one_pixel_bottleneck():
    # 16x16 with 5 levels gives a 1x1 bottleneck: GroupNorm still works there in training.
    assert UNet(features=8).train()(torch.rand(1, 1, 16, 16)).shape == (1, 5, 16, 16)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.rand(1, 1, 30, 32), r"divisible by 16 .* got 30x32"),
        (torch.rand(1, 2, 32, 32), "in_channels=1 but x has 2 channels"),
        (torch.rand(1, 32, 32), r"\(B, 1, H, W\)"),
        (torch.full((1, 1, 32, 32), float("nan")), "NaN"),
    ],
)
def test_bad_inputs_raise(x, match):
    with pytest.raises(ValueError, match=match):
        UNet(features=4)(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(num_classes=1), "num_classes"), (dict(levels=0), "levels"), (dict(dropout=1.0), "dropout")],
)
def test_bad_constructor_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet(**kwargs)


def test_perturbed_forward_shares_the_encoder_and_drops_features():
    torch.manual_seed(0)
    model = UNet(num_classes=3, features=4, dropout=0.0).eval()
    x = torch.rand(2, 1, 32, 32)
    clean, same = model.forward_perturbed(x, 0.0)
    assert torch.allclose(clean, model(x), atol=1e-6) and torch.allclose(same, clean, atol=1e-6)
    clean, perturbed = model.forward_perturbed(x, 0.5)  # dropout applies in eval mode too
    assert torch.allclose(clean, model(x), atol=1e-6) and not torch.allclose(perturbed, clean, atol=1e-3)
    with pytest.raises(ValueError, match="feature dropout"):
        model.forward_perturbed(x, 1.0)
