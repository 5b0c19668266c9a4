import torch

from segreg_lite.augment import AugmentConfig, augment_batch, random_flows
from segreg_lite.checks import one_hot

import pytest


def _batch(b=3, h=32, w=32):
    labels = torch.zeros(b, h, w, dtype=torch.long)
    labels[:, 8:24, 10:22] = 1
    labels[:, 12:20, 14:18] = 2
    images = 0.2 + 0.3 * labels.float()[:, None]
    return images, one_hot(labels, 3)


def test_shapes_ranges_and_label_mass():
    images, soft = _batch()
    out, lab = augment_batch(images, soft, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and lab.shape == soft.shape
    assert 0 <= out.min() and out.max() <= 1
    torch.testing.assert_close(lab.sum(1), torch.ones(3, 32, 32), atol=1e-5, rtol=0)  # still a distribution
    assert not torch.equal(lab, soft)


def test_image_and_labels_move_together():
    # Without intensity changes the warped image equals the image rebuilt from the warped labels.
    cfg = AugmentConfig(gamma_std=0, contrast_std=0, brightness_std=0, noise_max=0)
    images, soft = _batch()
    out, lab = augment_batch(images, soft, torch.Generator().manual_seed(1), cfg)
    rebuilt = (lab * torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    torch.testing.assert_close(out, rebuilt, atol=1e-4, rtol=0)


def test_seeded_and_zero_ranges_are_identity():
    images, soft = _batch()
    a = augment_batch(images, soft, torch.Generator().manual_seed(5))
    b = augment_batch(images, soft, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0])
    zero = AugmentConfig(rotate_deg=0, log_scale_std=0, shift_frac=0, elastic_px=0)
    flows = random_flows(2, (16, 16), zero, torch.Generator().manual_seed(0))
    assert flows.abs().max() < 1e-5


def test_bad_shapes():
    images, soft = _batch()
    with pytest.raises(ValueError, match="soft labels"):
        augment_batch(images, soft[:2], torch.Generator())
