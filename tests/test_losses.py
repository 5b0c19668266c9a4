import math

import pytest
import torch

from segreg_lite.checks import one_hot
from segreg_lite.losses import (
    RegLoss,
    SegLoss,
    _sample_levels,
    cross_entropy_loss,
    global_ncc_loss,
    gradient_loss,
    local_ncc_loss,
    registration_loss,
    segmentation_loss,
    soft_dice_loss,
)
from segreg_lite.regnet import RegOutput

K = 4


def _labels(seed: int = 0, shape=(2, 12, 12)) -> torch.Tensor:
    return torch.randint(0, K, shape, generator=torch.Generator().manual_seed(seed))


def _textured(seed: int = 0, shape=(2, 1, 24, 24)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


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


# --- registration loss --------------------------------------------------------------------------


def _zero_output(b, sizes):
    """A RegOutput of zero fields at ``sizes`` (coarsest first)."""
    flows = [torch.zeros(b, 2, *s) for s in sizes]
    return RegOutput(flow=flows[-1], flows=flows, residuals=[f.clone() for f in flows])


def test_loss_of_identical_images_and_labels_with_zero_flow_is_zero():
    image = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 3, (2, 32, 32), generator=torch.Generator().manual_seed(2))
    out = _zero_output(2, [(8, 8), (16, 16), (32, 32)])
    loss = registration_loss(out, image, image, moving_labels=labels, fixed_labels=labels, num_classes=3)
    assert isinstance(loss, RegLoss) and loss._fields == ("total", "similarity", "smoothness", "label")
    assert loss.similarity.abs() < 1e-4 and loss.smoothness == 0 and loss.label.abs() < 1e-4
    assert loss.total.abs() < 1e-3
    local = registration_loss(out, image, image, local=True)
    assert local.similarity.abs() < 1e-2 and local.label == 0  # no labels: a zero tensor


def test_label_term_is_positive_for_different_labels_and_soft_targets_are_accepted():
    image = torch.rand(1, 1, 32, 32)
    a, b = torch.zeros(1, 32, 32, dtype=torch.long), torch.zeros(1, 32, 32, dtype=torch.long)
    a[:, 8:20, 8:20], b[:, 14:26, 14:26] = 1, 1
    out = _zero_output(1, [(8, 8), (16, 16), (32, 32)])
    hard = registration_loss(out, image, image, moving_labels=a, fixed_labels=b, num_classes=2)
    assert hard.label > 0.3
    soft = registration_loss(out, image, image, moving_labels=a, fixed_labels=one_hot(b, 2), num_classes=2)
    torch.testing.assert_close(soft.label, hard.label)
    weighted = registration_loss(out, image, image, moving_labels=a, fixed_labels=b, num_classes=2, label_weight=2.0)
    torch.testing.assert_close(weighted.total, hard.similarity + hard.smoothness + 2 * hard.label)
    with pytest.raises(ValueError, match="both"):
        registration_loss(out, image, image, moving_labels=a, num_classes=2)
    with pytest.raises(ValueError, match="soft maps"):
        registration_loss(out, image, image, moving_labels=a, fixed_labels=one_hot(b, 2), num_classes=3)


def test_smoothness_weights_run_coarsest_to_finest():
    image = torch.rand(1, 1, 64, 64)
    sizes = [(4, 4), (8, 8), (16, 16), (32, 32), (64, 64)]
    rows = torch.arange(4.0).view(1, 1, 4, 1).expand(1, 2, 4, 4)  # gradient_loss = 1 / 2
    for level, weight in ((0, 128), (4, 8)):
        out = _zero_output(1, sizes)
        out.residuals[level] = rows if level == 0 else torch.arange(64.0).view(1, 1, 64, 1).expand(1, 2, 64, 64)
        g = gradient_loss(out.residuals[level])
        torch.testing.assert_close(registration_loss(out, image, image).smoothness, weight * g / 5)
    # Three levels take the weights of the three finest resolutions (32, 16, 8) unless told.
    out = _zero_output(1, sizes[2:])
    out.residuals[0] = torch.arange(16.0).view(1, 1, 16, 1).expand(1, 2, 16, 16)
    g = gradient_loss(out.residuals[0])
    torch.testing.assert_close(registration_loss(out, image, image).smoothness, 32 * g / 3)
    torch.testing.assert_close(registration_loss(out, image, image, reg_weights=(128, 64, 32)).smoothness, 128 * g / 3)
    with pytest.raises(ValueError, match="one weight per level"):
        registration_loss(out, image, image, reg_weights=(1, 2))


def test_a_field_that_undoes_a_shift_lowers_the_similarity_term():
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    blob = lambda cx: torch.exp(-((y - 16) ** 2 + (x - cx) ** 2) / 50)[None, None]  # noqa: E731
    moving, fixed = blob(14.0), blob(17.0)  # fixed = moving moved 3 px right
    sizes = [(8, 8), (16, 16), (32, 32)]
    zero = _zero_output(1, sizes)
    flows = [torch.zeros(1, 2, *s) for s in sizes]
    for f, s in zip(flows, sizes):
        f[:, 1] = -3.0 * (s[1] - 1) / 31  # out(p) = moving(p - 3): 3 full-resolution pixels, per level
    shifted = RegOutput(flow=flows[-1], flows=flows, residuals=[torch.zeros_like(f) for f in flows])
    assert registration_loss(shifted, moving, fixed).similarity < 0.1 * registration_loss(zero, moving, fixed).similarity


def test_labels_are_sampled_not_blurred_on_the_coarse_levels():
    labels = one_hot(_labels(shape=(2, 17, 33)), K)
    levels = _sample_levels(labels, [(17, 33), (9, 17), (5, 9)])
    assert [tuple(x.shape) for x in levels] == [(2, K, 17, 33), (2, K, 9, 17), (2, K, 5, 9)]
    assert torch.equal(levels[0], labels)  # the full size is the map itself
    assert torch.equal(levels[1], labels[:, :, ::2, ::2]) and torch.equal(levels[2], labels[:, :, ::4, ::4])
    assert all(torch.equal(x.sum(1), torch.ones_like(x[:, 0])) for x in levels)  # still one-hot
