import pytest
import torch

from segreg_lite.metrics import dice_per_class
from segreg_lite.pseudo import combine, confidence, intensity_em, make_pseudo_labels
from segreg_lite.regnet import RegNet
from segreg_lite.unet import UNet


def _data(n=6, size=32):
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        labels[i, 8 + i : 20 + i, 6:22] = 1
        labels[i, 24:28, 4:28] = 2
    images = torch.where(labels == 1, 0.9, torch.where(labels == 2, 0.3, 0.0))[:, None].float()
    return (images + 0.01 * torch.rand(images.shape, generator=g)).clamp(0, 1), labels


def _models():
    torch.manual_seed(0)
    return UNet(num_classes=3, features=4, levels=3), RegNet(features=4, levels=3)


def test_modes_average_the_right_maps():
    images, labels = _data()
    seg, reg = _models()
    out = {m: make_pseudo_labels(seg, reg, images, labels, [0, 1], [2, 3, 4], mode=m, n_atlas=3, n_tta=2,
                                 generator=torch.Generator().manual_seed(1), device="cpu") for m in ("combined", "reg", "seg")}
    c = out["combined"]
    assert c.soft.shape == (3, 3, 32, 32) and c.atlases.shape == (3, 3) and c.spread.shape == (3, 32, 32)
    assert torch.allclose(out["reg"].soft, c.reg) and torch.allclose(out["seg"].soft, c.seg)
    assert torch.allclose(c.soft, (3 * c.reg + 3 * c.seg) / 6, atol=1e-3)  # the mean of the 6 maps (up to the tie-break)
    assert torch.allclose(c.soft.sum(1), torch.ones(3, 32, 32), atol=1e-4)
    # An untrained regnet is near the identity: the registration mask is the atlases' own labels.
    atlas_truth = torch.nn.functional.one_hot(labels[c.atlases], 3).float().mean(1).permute(0, 3, 1, 2)
    assert torch.allclose(c.reg, atlas_truth, atol=0.05)


def test_combined_ties_go_to_the_segmentation_maps():
    # Every atlas says white matter (3), every segmentation map says CSF (4): a 5 against 5 tie.
    reg = torch.nn.functional.one_hot(torch.full((1, 4, 4), 3), 5).permute(0, 3, 1, 2).float()
    seg = torch.nn.functional.one_hot(torch.full((1, 4, 4), 4), 5).permute(0, 3, 1, 2).float()
    soft = combine(reg, seg, n_atlas=5, n_seg=5)
    assert (soft.argmax(1) == 4).all()  # not the lower index
    assert torch.allclose(soft[:, 3:], torch.full((1, 2, 4, 4), 0.5), atol=1e-3)  # still the mean of the maps
    assert torch.allclose(soft.sum(1), torch.ones(1, 4, 4))
    assert (combine(reg, seg, n_atlas=6, n_seg=5).argmax(1) == 3).all()  # a real majority still wins


def test_seeded_and_never_reads_target_labels():
    images, labels = _data()
    seg, reg = _models()
    kw = dict(n_atlas=2, n_tta=2, device="cpu")
    a = make_pseudo_labels(seg, reg, images, labels, [0, 1], [2, 3], generator=torch.Generator().manual_seed(5), **kw)
    scrambled = labels.clone()
    scrambled[2:] = 0  # targets' labels changed: nothing may change
    b = make_pseudo_labels(seg, reg, images, scrambled, [0, 1], [2, 3], generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(a.soft, b.soft) and torch.equal(a.atlases, b.atlases)
    with pytest.raises(ValueError, match="mode"):
        make_pseudo_labels(seg, reg, images, labels, [0], [2], mode="both")


def test_mirror_tta_averages_the_plain_and_the_mirrored_prediction():
    images, labels = _data()
    seg, reg = _models()
    kw = dict(n_atlas=3, n_tta=2, device="cpu")
    m = make_pseudo_labels(seg, reg, images, labels, [0, 1], [2, 3, 4], tta="mirror",
                           generator=torch.Generator().manual_seed(1), **kw)
    with torch.no_grad():
        x = images[[2, 3, 4]]
        plain = torch.softmax(seg(x), 1)
        mirrored = torch.softmax(seg(x.flip(-1)), 1).flip(-1)  # segmented mirrored, mapped back exactly
    assert torch.allclose(m.seg, (plain + mirrored) / 2, atol=1e-5)
    assert not torch.allclose(m.seg, plain, atol=1e-3)  # the untrained net is not mirror-symmetric
    # n_tta still weighs the source (3 atlases against 1 + 2 maps), and the atlases are drawn as before.
    assert torch.allclose(m.soft, (3 * m.reg + 3 * m.seg) / 6, atol=1e-3)
    a = make_pseudo_labels(seg, reg, images, labels, [0, 1], [2, 3, 4], generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(m.atlases, a.atlases) and torch.allclose(m.reg, a.reg)
    with pytest.raises(ValueError, match="unknown test-time augmentation 'flip'"):
        make_pseudo_labels(seg, reg, images, labels, [0], [2], tta="flip")


def test_confidence_known_answers():
    sure = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    flat = torch.full((1, 3, 1, 1), 1 / 3)
    assert confidence(sure).item() == pytest.approx(1.0, abs=1e-5)
    assert confidence(flat).item() == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="K"):
        confidence(torch.ones(2, 5, 5))


def _shifted_prior(labels, k, shifts):
    """The mean of one-hot masks of ``labels`` moved by each of ``shifts`` pixels down: like a
    multi-atlas mask, soft where the atlases disagree and off by a pixel or two."""
    onehot = [torch.nn.functional.one_hot(torch.roll(labels, shifts=s, dims=1), k) for s in shifts]
    return torch.stack(onehot).float().mean(0).permute(0, 3, 1, 2)


def test_intensity_em_moves_misplaced_boundaries_to_the_image_edges():
    images, labels = _data()
    # A smooth bias field, different per image: class intensities are not global constants.
    ramp = torch.linspace(0.8, 1.2, 32)
    biased = (images * ramp.view(1, 1, 1, -1) * torch.linspace(1.1, 0.9, 6).view(-1, 1, 1, 1)).clamp(0, 1)
    prior = _shifted_prior(labels, 3, (0, 1, 2, 3))
    post = intensity_em(prior, biased, iters=4)
    assert post.shape == prior.shape and torch.allclose(post.sum(1), torch.ones(6, 32, 32), atol=1e-5)
    before = dice_per_class(prior.argmax(1), labels, 3).mean()
    after = dice_per_class(post.argmax(1), labels, 3).mean()
    assert before < 0.9 and after > 0.98, (before, after)
    assert intensity_em(prior, biased, iters=0) is prior  # no iterations: the mask unchanged


def test_intensity_em_leaves_classes_of_equal_intensity_to_the_prior():
    images, labels = _data()
    images = torch.where(labels > 0, 0.8, 0.0)[:, None].float()  # classes 1 and 2 look alike
    prior = _shifted_prior(labels, 3, (0, 0, 1))
    post = intensity_em(prior, images, iters=4)
    assert torch.equal(post.argmax(1), labels)


def test_intensity_em_refuses_bad_input():
    images, labels = _data()
    prior = _shifted_prior(labels, 3, (0, 0, 1))
    with pytest.raises(ValueError, match=r"soft masks \(U, K, H, W\) and images \(U, 1, H, W\)"):
        intensity_em(prior, images[:3])
    with pytest.raises(ValueError, match="sigma_px"):
        intensity_em(prior, images, sigma_px=0)
