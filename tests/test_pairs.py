"""Label-exact pairs: the atlas image and label warped by one field, the target's appearance."""
import pytest
import torch

from segreg_lite.checks import one_hot
from segreg_lite.pairs import label_exact_pairs, match_quantiles
from segreg_lite.registration import register
from segreg_lite.transforms import warp


def test_quantile_matching_takes_the_reference_values_in_the_image_order():
    g = torch.Generator().manual_seed(0)
    image, ref = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g) ** 3
    out = match_quantiles(image, ref)
    assert torch.equal(out.flatten(1).sort(1).values, ref.flatten(1).sort(1).values)  # the reference's histogram
    assert torch.equal(out.flatten(1).argsort(1), image.flatten(1).argsort(1))  # the image's order
    with pytest.raises(ValueError, match="differ"):
        match_quantiles(image, ref[:1])


def test_pairs_share_one_field_and_take_the_target_appearance(make_toy, make_regnet):
    images, labels = make_toy(6)
    reg = make_regnet(std=0.3).eval()
    annotated, targets = [0, 1], [2, 3, 4, 5]
    gen = torch.Generator().manual_seed(3)
    pair_images, pair_labels = label_exact_pairs(reg, images, labels, annotated, targets, num_classes=3,
                                                 appearance="none", generator=gen)
    atlas = torch.tensor(annotated)[torch.randint(2, (4, 1), generator=torch.Generator().manual_seed(3))][:, 0]
    flow = register(reg, images[atlas], images[targets])
    assert flow.abs().max() > 0.5  # a real deformation, not the identity
    assert torch.allclose(pair_images, warp(images[atlas], flow).clamp(0, 1), atol=1e-5)
    expected = warp(one_hot(labels[atlas], 3), flow).clamp(0, 1)
    assert torch.allclose(pair_labels, expected / expected.sum(1, keepdim=True), atol=1e-5)
    assert torch.allclose(pair_labels.sum(1), torch.ones(4, 32, 32), atol=1e-5)
    mapped, same = label_exact_pairs(reg, images, labels, annotated, targets, num_classes=3, appearance="quantile",
                                     generator=torch.Generator().manual_seed(3))
    assert torch.equal(same, pair_labels)
    assert torch.equal(mapped.flatten(1).sort(1).values, images[targets].flatten(1).sort(1).values)


def test_bad_appearance_and_no_targets(make_toy, make_regnet):
    images, labels = make_toy(4)
    with pytest.raises(ValueError, match="unknown appearance mode 'hist'"):
        label_exact_pairs(make_regnet(), images, labels, [0], [1], num_classes=3, appearance="hist")
    with pytest.raises(ValueError, match="at least one target"):
        label_exact_pairs(make_regnet(), images, labels, [0], [], num_classes=3)
