import contextlib
from dataclasses import replace

import pytest
import torch

import segreg_lite.joint
from segreg_lite.config import TrainConfig
from segreg_lite.joint import _sampling_pool, train_joint
from segreg_lite.losses import segmentation_loss
from segreg_lite.pseudo import confidence
from segreg_lite.splits import make_split
from segreg_lite.supervised import train_segmenter
from segreg_lite.train import new_models

CFG = replace(TrainConfig().smoke(), features=4, reg_features=4, batch_size=2, n_atlas=2, n_tta=1, rounds=2)


def _data(n=12, size=32):
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        labels[i, 6 + i % 5 : 18 + i % 5, 6:24] = 1
        labels[i, 22:27, 4:28] = 2
    images = torch.where(labels == 1, 0.9, torch.where(labels == 2, 0.4, 0.0))[:, None].float()
    return (images + 0.02 * torch.rand(images.shape, generator=g)).clamp(0, 1), labels


class Killed(Exception):
    pass


def test_history_per_round_and_checkpoint(tmp_path):
    images, labels = _data()
    split = make_split(len(images), seed=0, fraction=0.2)
    cfg = replace(CFG, confidence_weight=True)  # the weighted path too
    result = train_joint(images, labels, split, cfg, seed=0, num_classes=3, checkpoint=tmp_path / "j.pt", device="cpu")
    assert [e["round"] for e in result.history] == [0, 1, 2]
    for key in ("test_dice", "test_hd", "pseudo_dice", "pseudo_dice_reg", "pseudo_dice_seg", "reg_dice", "folding"):
        assert all(key in e for e in result.history), key
    assert "seg_loss" in result.history[1] and "reg_label" in result.history[1] and "seg_loss" not in result.history[0]
    assert result.history[1]["reg_label"] > 0  # the warped-label term is on in the rounds
    entered = []

    @contextlib.contextmanager
    def phase(name):
        entered.append(name)
        yield

    again = train_joint(images, labels, split, replace(cfg, rounds=1), seed=0, num_classes=3, device="cpu", phase=phase)
    assert entered == ["seg", "reg", "pseudo", "eval"]
    assert set(again.history[1]["seconds"]) == set(entered) and all(v > 0 for v in again.history[1]["seconds"].values())
    assert result.pseudo.soft.shape == (len(split.unannotated), 3, 32, 32)
    assert (tmp_path / "j.pt").exists()


def test_killed_run_resumes_to_the_same_numbers(tmp_path):
    images, labels = _data()
    split = make_split(len(images), seed=1, fraction=0.2)
    whole = train_joint(images, labels, split, CFG, seed=3, num_classes=3, checkpoint=tmp_path / "a.pt", device="cpu")

    def kill_after_round_1(entry, pseudo):
        if entry["round"] == 1:
            raise Killed

    with pytest.raises(Killed):
        train_joint(images, labels, split, CFG, seed=3, num_classes=3, checkpoint=tmp_path / "b.pt", device="cpu",
                    callback=kill_after_round_1)
    seen = []
    resumed = train_joint(images, labels, split, CFG, seed=3, num_classes=3, checkpoint=tmp_path / "b.pt", device="cpu",
                          callback=lambda entry, pseudo: seen.append(entry))
    assert [e["round"] for e in seen] == [2]  # only the unfinished round ran again
    untimed = lambda history: [{k: v for k, v in e.items() if k != "seconds"} for e in history]  # noqa: E731
    assert untimed(resumed.history) == untimed(whole.history)
    for a, b in zip(whole.segmenter.state_dict().values(), resumed.segmenter.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(whole.pseudo.soft, resumed.pseudo.soft)


def test_resume_from_another_config_is_refused(tmp_path):
    images, labels = _data()
    split = make_split(len(images), seed=0, fraction=0.2)
    train_joint(images, labels, split, replace(CFG, rounds=1), seed=0, num_classes=3, checkpoint=tmp_path / "c.pt", device="cpu")
    before = (tmp_path / "c.pt").read_bytes()
    with pytest.raises(ValueError, match="another run.*config"):
        train_joint(images, labels, split, replace(CFG, rounds=1, n_atlas=3), seed=0, num_classes=3,
                    checkpoint=tmp_path / "c.pt", device="cpu")
    with pytest.raises(ValueError, match="seed"):
        train_joint(images, labels, split, replace(CFG, rounds=1), seed=1, num_classes=3, checkpoint=tmp_path / "c.pt", device="cpu")
    assert (tmp_path / "c.pt").read_bytes() == before  # nothing overwritten


def test_bad_inputs():
    images, labels = _data()
    everything = make_split(len(images), seed=0, fraction=1.0)
    with pytest.raises(ValueError, match="unannotated"):
        train_joint(images, labels, everything, CFG, num_classes=3, device="cpu")
    with pytest.raises(ValueError, match="mode"):
        train_joint(images, labels, make_split(len(images), fraction=0.2), CFG, mode="both", num_classes=3, device="cpu")


def test_annotated_share_of_the_segmenter_draws():
    draws = _sampling_pool(2, 200, 0.5)
    assert sum(d < 2 for d in draws) == 200 and len(draws) == 400  # half the draws are annotated images
    assert _sampling_pool(2, 200, 0.0) == list(range(202))  # 0: every image once, the plain union
    assert sum(d < 5 for d in _sampling_pool(5, 30, 0.25)) == 10  # 10 of 40


def test_confidence_weighting_weights_the_pseudo_labelled_pixels(monkeypatch):
    """With confidence_weight, a round's segmenter loss weighs the annotated images' pixels 1 and the
    pseudo-labelled ones by confidence(pseudo.soft) of the pseudo-labels it trains on; without, no weights."""
    images, labels = _data()
    split = make_split(len(images), seed=0, fraction=0.2)
    calls = []

    def recording(model, images_, labels_, indices, config, **kwargs):
        calls.append({"labels": labels_.clone(), "weights": kwargs.get("weights")})
        return train_segmenter(model, images_, labels_, indices, config, **kwargs)

    monkeypatch.setattr(segreg_lite.joint, "train_segmenter", recording)
    for weighted, rounds in ((True, 2), (False, 1)):
        calls.clear()
        pseudos = []  # the pseudo-labels made before each round (round 0's: the first ones)
        config = replace(CFG, confidence_weight=weighted, rounds=rounds)
        segmenter, regnet = new_models(config, 3, 0)  # given (not pre-trained): only the rounds train
        train_joint(images, labels, split, config, seed=0, num_classes=3, segmenter=segmenter, regnet=regnet, device="cpu",
                    callback=lambda entry, pseudo: pseudos.append(pseudo))
        assert len(calls) == rounds  # one segmenter phase per round
        n_ann = len(split.annotated)
        for call, pseudo in zip(calls, pseudos):
            assert torch.equal(call["labels"][n_ann:], pseudo.soft)  # the round trains on these pseudo-labels
            if not weighted:
                assert call["weights"] is None
                continue
            w = call["weights"]
            assert w.shape == (n_ann + len(split.unannotated), 32, 32)
            assert torch.equal(w[:n_ann], torch.ones(n_ann, 32, 32))
            assert torch.equal(w[n_ann:], confidence(pseudo.soft))
            assert float(w[n_ann:].min()) < 1  # the pseudo-labels are not all certain: the weights do something
    # The loss as documented: a pixel of weight 0 contributes nothing, uniform weights 1 change nothing.
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 16, 16, generator=g)
    soft = torch.softmax(torch.randn(2, 3, 16, 16, generator=g), dim=1)
    for soft_ce in (False, True):
        zero = segmentation_loss(logits, soft, soft_ce=soft_ce, weight=torch.zeros(2, 16, 16))
        assert zero.total.item() == 0 and zero.dice.item() == 0 and zero.ce.item() == 0
        plain = segmentation_loss(logits, soft, soft_ce=soft_ce)
        ones = segmentation_loss(logits, soft, soft_ce=soft_ce, weight=torch.ones(2, 16, 16))
        torch.testing.assert_close(torch.stack(ones), torch.stack(plain), rtol=1e-6, atol=0)
        # Weight 0 on one pixel: whatever the logits or the target there, the loss is the same.
        w = torch.ones(2, 16, 16)
        w[1, 5, 7] = 0
        other_logits, other_soft = logits.clone(), soft.clone()
        other_logits[1, :, 5, 7] = torch.tensor([5.0, -3.0, 1.0])
        other_soft[1, :, 5, 7] = torch.tensor([0.0, 0.0, 1.0])
        torch.testing.assert_close(torch.stack(segmentation_loss(other_logits, other_soft, soft_ce=soft_ce, weight=w)),
                                   torch.stack(segmentation_loss(logits, soft, soft_ce=soft_ce, weight=w)), rtol=1e-6, atol=0)


def test_sampling_pool_gives_label_exact_pairs_their_share():
    draws = _sampling_pool(2, 200, 0.5, 200, 0.25)
    assert sum(d < 2 for d in draws) == 400 and sum(d >= 202 for d in draws) == 200  # 50%, 25%, 25%
    assert _sampling_pool(2, 200, 0.5, 200, 0.0) == _sampling_pool(2, 200, 0.5)  # no share, no pairs


def test_strong_views_online_targets_pairs_and_a_skipped_registration_phase(monkeypatch):
    images, labels = _data()
    split = make_split(len(images), seed=0, fraction=0.2)
    seen = {}
    real = segreg_lite.joint.train_segmenter

    def spy(model, images_, labels_, draws, config, **kw):
        seen.update(n=images_.shape[0], strong=kw["strong"], online=kw["online"], draws=list(draws))
        return real(model, images_, labels_, draws, config, **kw)

    monkeypatch.setattr(segreg_lite.joint, "train_segmenter", spy)
    cfg = replace(CFG, rounds=1, strong_views=True, pair_share=0.25, reg_round_steps=0, online_share=0.5)
    seg, reg = new_models(cfg, 3, 0)
    before = {k: v.clone() for k, v in reg.state_dict().items()}
    result = train_joint(images, labels, split, cfg, seed=0, num_classes=3, segmenter=seg, regnet=reg, device="cpu")
    n_a, n_u = len(split.annotated), len(split.unannotated)
    assert seen["n"] == n_a + 2 * n_u  # annotated, pseudo-labelled, one label-exact pair per unannotated image
    assert seen["strong"].tolist() == [False] * n_a + [True] * n_u + [False] * n_u  # strong views: pseudo-labels only
    assert torch.equal(seen["online"], seen["strong"])  # targets made afresh: the pseudo-labelled images alike
    assert max(seen["draws"]) == n_a + 2 * n_u - 1
    # No registration phase: the network is unchanged, and so is its test Dice (same atlas draws each round).
    assert all(torch.equal(before[k], v) for k, v in result.regnet.state_dict().items())
    assert result.history[1]["reg_dice"] == result.history[0]["reg_dice"]


def test_intensity_refinement_of_the_pseudo_labels_is_recorded_beside_its_prior():
    images, labels = _data()
    split = make_split(len(images), seed=0, fraction=0.2)
    cfg = replace(CFG, rounds=1, em_iters=3)
    result = train_joint(images, labels, split, cfg, seed=0, num_classes=3, device="cpu")
    assert all("pseudo_dice_prior" in e for e in result.history)
    assert result.pseudo.prior is not None and not torch.equal(result.pseudo.soft, result.pseudo.prior)
    plain = train_joint(images, labels, split, replace(cfg, em_iters=0), seed=0, num_classes=3, device="cpu")
    assert plain.pseudo.prior is None and "pseudo_dice_prior" not in plain.history[0]
    # Same seed, same first pseudo-labels: the refinement started from the plain run's masks.
    assert result.history[0]["pseudo_dice_prior"] == plain.history[0]["pseudo_dice"]


def test_mirror_tta_reaches_the_rounds_pseudo_labels():
    images, labels = _data()
    split = make_split(len(images), seed=0, fraction=0.2)
    unann = list(split.unannotated)
    seen = []

    def round0(entry, pseudo):  # the segmenter is still the pre-trained one when round 0 reports
        if entry["round"] == 0:
            with torch.no_grad():
                x = images[unann]
                seen.append((pseudo.seg, (torch.softmax(seg(x), 1) + torch.softmax(seg(x.flip(-1)), 1).flip(-1)) / 2))

    seg, reg = new_models(CFG, 3, 0)
    train_joint(images, labels, split, replace(CFG, rounds=1, tta="mirror"), seed=0, num_classes=3, device="cpu",
                segmenter=seg, regnet=reg, callback=round0)
    got, mirrored = seen[0]
    assert torch.allclose(got, mirrored, atol=1e-5)
