import math

import pytest
import torch

from segreg_lite.losses import (
    SegLoss,
    cross_entropy_loss,
    global_ncc_loss,
    gradient_loss,
    local_ncc_loss,
    one_hot,
    segmentation_loss,
    soft_dice_loss,
)

K = 4


def _labels(seed: int = 0, shape=(2, 12, 12)) -> torch.Tensor:
    return torch.randint(0, K, shape, generator=torch.Generator().manual_seed(seed))


def _textured(seed: int = 0, shape=(2, 1, 24, 24)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_one_hot_values_and_range_check():
    labels = torch.tensor([[[0, 3], [1, 2]]])
    oh = one_hot(labels, K)
    assert oh.shape == (1, K, 2, 2) and oh.dtype == torch.float32
    assert torch.equal(oh.argmax(1), labels) and torch.equal(oh.sum(1), torch.ones(1, 2, 2))
    with pytest.raises(ValueError, match=r"values \[4\] are outside 0..3"):
        one_hot(labels + 1, K)
    with pytest.raises(ValueError, match="integer"):
        one_hot(labels.float(), K)


def test_perfect_prediction_gives_zero_dice_and_small_ce():
    labels = _labels()
    logits = 20.0 * one_hot(labels, K)  # confident and right
    out = segmentation_loss(logits, labels)
    assert isinstance(out, SegLoss)
    assert out.dice.item() == pytest.approx(0.0, abs=1e-6)
    assert out.ce.item() < 1e-6
    assert out.total.item() == pytest.approx(0.5 * out.dice.item() + 0.5 * out.ce.item())


def test_uniform_prediction_has_ce_log_k():
    labels = _labels()
    logits = torch.zeros(2, K, 12, 12)
    assert cross_entropy_loss(logits, labels).item() == pytest.approx(math.log(K), rel=1e-6)
    assert cross_entropy_loss(logits, one_hot(labels, K), soft=True).item() == pytest.approx(math.log(K), rel=1e-6)


def test_dice_of_disjoint_masks_is_one_and_absent_classes_cost_nothing():
    target = one_hot(torch.zeros(1, 8, 8, dtype=torch.long), 2)
    target[0, :, :4] = torch.tensor([0.0, 1.0]).view(2, 1, 1)  # class 1 in the top half
    probs = target.flip(2)  # class 1 predicted in the bottom half only
    assert soft_dice_loss(probs, target).item() == pytest.approx(1.0, abs=1e-6)
    # Class 2 absent from both target and prediction: eps/eps = 1, so it adds no loss.
    three = torch.cat([target, torch.zeros(1, 1, 8, 8)], dim=1)
    assert soft_dice_loss(three, three).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_dice_uses_soft_targets_as_given():
    target = torch.full((1, 2, 4, 4), 0.5)
    probs = target.clone()
    # dice = 2 * sum(0.25) / (sum 0.5 + sum 0.5) = 0.5, not 1: the soft mask is not binarised.
    assert soft_dice_loss(probs, target).item() == pytest.approx(0.5, abs=1e-5)


def test_soft_and_hard_ce_agree_for_one_hot_targets():
    labels = _labels()
    logits = torch.randn(2, K, 12, 12, generator=torch.Generator().manual_seed(1))
    target = one_hot(labels, K)
    hard = cross_entropy_loss(logits, target)
    soft = cross_entropy_loss(logits, target, soft=True)
    assert hard.item() == pytest.approx(soft.item(), rel=1e-6)
    assert hard.item() == pytest.approx(cross_entropy_loss(logits, labels).item(), rel=1e-6)
    a = segmentation_loss(logits, labels)
    b = segmentation_loss(logits, target, soft_ce=True)
    assert torch.allclose(torch.stack(a), torch.stack(b), atol=1e-6)


def test_weights_scale_and_zero_weights_zero_the_loss():
    labels = _labels()
    logits = torch.randn(2, K, 12, 12, generator=torch.Generator().manual_seed(2))
    for w in (torch.zeros(2), torch.zeros(2, 12, 12)):
        out = segmentation_loss(logits, labels, weight=w)
        assert out.dice.item() == 0.0 and out.ce.item() == 0.0
    full = cross_entropy_loss(logits, labels)
    assert cross_entropy_loss(logits, labels, weight=torch.full((2,), 0.5)).item() == pytest.approx(0.5 * full.item())
    # Per-image weights pick images: weight (1, 0) is the first image's loss, halved by the batch mean.
    first = soft_dice_loss(logits.softmax(1)[:1], one_hot(labels[:1], K))
    picked = soft_dice_loss(logits.softmax(1), one_hot(labels, K), weight=torch.tensor([1.0, 0.0]))
    assert picked.item() == pytest.approx(0.5 * first.item(), rel=1e-6)


def test_loss_gradients_are_finite():
    logits = torch.randn(2, K, 12, 12, requires_grad=True)
    segmentation_loss(logits, _labels()).total.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_segmentation_input_errors():
    labels = _labels()
    with pytest.raises(ValueError, match=r"logits has 3 channels but target has 4.*\(2, 3, 12, 12\).*\(2, 4, 12, 12\)"):
        segmentation_loss(torch.zeros(2, 3, 12, 12), one_hot(labels, K))
    with pytest.raises(ValueError, match=r"values \[3\] are outside 0..2"):
        segmentation_loss(torch.zeros(2, 3, 12, 12), labels.clamp(min=1))
    with pytest.raises(ValueError, match="spatial"):
        cross_entropy_loss(torch.zeros(2, K, 12, 10), labels)
    with pytest.raises(ValueError, match="NaN"):
        segmentation_loss(torch.full((2, K, 12, 12), float("nan")), labels)
    with pytest.raises(ValueError, match="NaN"):
        soft_dice_loss(torch.full((2, K, 12, 12), 0.25), torch.full((2, K, 12, 12), float("nan")))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        soft_dice_loss(torch.randn(2, K, 12, 12) * 5, one_hot(labels, K))
    with pytest.raises(ValueError, match=r"per image \(2,\) or per pixel \(2, 12, 12\)"):
        segmentation_loss(torch.zeros(2, K, 12, 12), labels, weight=torch.ones(3))


def test_global_ncc_known_answers():
    img = _textured()
    assert global_ncc_loss(img, img).item() == pytest.approx(0.0, abs=1e-5)
    assert global_ncc_loss(img, -img).item() == pytest.approx(2.0, abs=1e-5)
    assert global_ncc_loss(img, 3.0 * img + 0.7).item() == pytest.approx(0.0, abs=1e-5)
    assert global_ncc_loss(0.1 * img - 2.0, img).item() == pytest.approx(0.0, abs=1e-5)
    unrelated = global_ncc_loss(img, _textured(seed=1)).item()
    assert 0.8 < unrelated < 1.2  # independent noise: correlation near 0
    flat = torch.full_like(img, 0.3, requires_grad=True)
    loss = global_ncc_loss(flat, img)  # a constant image correlates with nothing
    loss.backward()
    assert loss.item() == pytest.approx(1.0, abs=1e-5) and torch.isfinite(flat.grad).all()


def test_local_ncc_known_answers():
    img = _textured()
    assert local_ncc_loss(img, img, window=9).item() == pytest.approx(0.0, abs=1e-4)
    assert local_ncc_loss(img, 2.0 * img + 1.0).item() == pytest.approx(0.0, abs=1e-4)
    shifted = torch.roll(img, shifts=3, dims=-1)  # misaligned noise decorrelates locally
    assert local_ncc_loss(img, shifted).item() > 0.5
    with pytest.raises(ValueError, match="odd"):
        local_ncc_loss(img, img, window=8)


def test_gradient_loss_known_answers():
    assert gradient_loss(torch.full((2, 2, 8, 8), 3.5)).item() == 0.0
    rows = torch.arange(8.0).view(1, 1, 8, 1).expand(2, 2, 8, 8)
    # flow = a * row in both channels: d_H = a everywhere, d_W = 0 -> 0.5 * (a**2 + 0).
    assert gradient_loss(2.0 * rows).item() == pytest.approx(2.0)
    cols = torch.arange(8.0).view(1, 1, 1, 8).expand(2, 2, 8, 8)
    assert gradient_loss(rows + 3.0 * cols).item() == pytest.approx(0.5 * (1.0 + 9.0))
    assert gradient_loss(torch.zeros(1, 2, 1, 1)).item() == 0.0  # 1x1 coarse level
    with pytest.raises(ValueError, match=r"\(B, H, W, 2\)"):
        gradient_loss(torch.zeros(1, 8, 8, 2))


def test_registration_losses_check_shapes():
    with pytest.raises(ValueError, match=r"\(1, 1, 8, 8\) and \(1, 1, 8, 6\)"):
        global_ncc_loss(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 6))
    with pytest.raises(ValueError, match="NaN"):
        local_ncc_loss(torch.rand(1, 1, 8, 8), torch.full((1, 1, 8, 8), float("nan")))


def test_losses_follow_input_dtype():
    img = _textured().double()
    assert global_ncc_loss(img, img).dtype == torch.float64
    assert local_ncc_loss(img, img).dtype == torch.float64
    logits = torch.randn(2, K, 12, 12, dtype=torch.float64)
    assert segmentation_loss(logits, _labels()).total.dtype == torch.float64
