"""Strong views: photometric perturbation, CutMix boxes, and targets that follow their pixels."""
import pytest
import torch

from segreg_lite.augment import StrongConfig, cutmix_boxes, mix, perturb_intensity, strong_view
from segreg_lite.checks import one_hot


def _batch(b=6, size=32):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(b, 1, size, size, generator=g)
    labels = torch.randint(0, 3, (b, size, size), generator=g)
    return images, one_hot(labels, 3)


def test_boxes_have_the_drawn_area_and_probability():
    cfg = StrongConfig(cutmix_prob=1.0, cutmix_area=(0.1, 0.1), cutmix_ratio=(1.0, 1.0))
    box = cutmix_boxes(50, (40, 40), torch.Generator().manual_seed(0), cfg)
    areas = box.flatten(1).sum(1).float() / (40 * 40)
    assert torch.allclose(areas, torch.full_like(areas, 0.1), atol=0.01)  # a 13x13 box of 1600 pixels
    rows = box.any(2).sum(1)
    assert bool((rows == 13).all())  # one rectangle each: 13 rows, 13 columns
    none = cutmix_boxes(20, (40, 40), torch.Generator().manual_seed(0), StrongConfig(cutmix_prob=0.0))
    assert not bool(none.any())


def test_targets_and_weights_follow_the_pasted_pixels():
    images, soft = _batch()
    weights = torch.arange(6, dtype=torch.float32).view(6, 1, 1).expand(6, 32, 32).clone()
    cfg = StrongConfig(jitter_prob=0.0, blur_prob=0.0, cutmix_prob=1.0)
    partner = torch.tensor([1, 2, 3, 4, 5, 0])
    x, y, w = strong_view(images, soft, torch.Generator().manual_seed(1), cfg, partner=partner, weights=weights)
    box = (x != images)[:, 0]
    assert bool(box.any(dim=(1, 2)).all())  # every image got a box
    for i in range(6):
        j = int(partner[i])
        assert torch.equal(x[i, 0][box[i]], images[j, 0][box[i]])
        assert torch.equal(y[i][:, box[i]], soft[j][:, box[i]]) and torch.equal(y[i][:, ~box[i]], soft[i][:, ~box[i]])
        assert bool((w[i][box[i]] == j).all()) and bool((w[i][~box[i]] == i).all())


def test_intensity_perturbation_stays_in_range_and_changes_images():
    images, _ = _batch()
    x = perturb_intensity(images, torch.Generator().manual_seed(0), StrongConfig(jitter_prob=1.0, blur_prob=1.0))
    assert x.shape == images.shape and float(x.min()) >= 0 and float(x.max()) <= 1
    assert not torch.allclose(x, images, atol=1e-3)
    same = perturb_intensity(images, torch.Generator().manual_seed(0), StrongConfig(jitter_prob=0.0, blur_prob=0.0))
    assert torch.allclose(same, images)


def test_blur_keeps_a_constant_image_and_smooths_an_edge():
    flat = torch.full((2, 1, 16, 16), 0.3)
    cfg = StrongConfig(jitter_prob=0.0, blur_prob=1.0, blur_sigma=(2.0, 2.0))
    assert torch.allclose(perturb_intensity(flat, torch.Generator().manual_seed(0), cfg), flat, atol=1e-6)
    edge = torch.zeros(1, 1, 128, 128)  # blur widths are per 128 px: 2 px here
    edge[..., 64:] = 1.0
    out = perturb_intensity(edge, torch.Generator().manual_seed(0), cfg)
    assert 0.1 < float(out[0, 0, 5, 63]) < 0.5 < float(out[0, 0, 5, 64]) < 0.9


def test_mix_and_bad_shapes():
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    box = torch.zeros(2, 4, 4, dtype=torch.bool)
    box[0, :2] = True
    assert float(mix(a, b, box).sum()) == 3 * 8
    with pytest.raises(ValueError, match="do not match"):
        strong_view(torch.rand(2, 1, 8, 8), torch.rand(3, 2, 8, 8), torch.Generator())
