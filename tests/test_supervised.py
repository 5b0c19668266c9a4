from dataclasses import replace

import numpy as np
import pytest
import torch

from segreg_lite.config import TrainConfig
from segreg_lite.supervised import evaluate_segmentation, evaluate_segmenter, predict, train_segmenter
from segreg_lite.unet import UNet


def _config(**kw) -> TrainConfig:
    """The trainer's settings of these tests: no augmentation unless asked for."""
    return replace(TrainConfig(), **{"augment": False, **kw})


def test_training_learns_a_toy_problem(make_toy):
    torch.manual_seed(0)
    images, labels = make_toy()
    model = UNet(num_classes=3, features=8, levels=3, dropout=0.0)
    history = train_segmenter(model, images, labels, range(4), _config(batch_size=4), steps=60, lr=1e-2, device="cpu")
    assert set(history) == {"loss", "dice", "ce"} and len(history["loss"]) == 60
    assert np.mean(history["loss"][-10:]) < 0.5 * np.mean(history["loss"][:5])
    result = evaluate_segmenter(model, images[4:], labels[4:])
    assert result["dice"] > 0.8 and not model.training


def test_steps_and_lr_default_to_the_config(make_toy):
    images, labels = make_toy(4)
    runs = []
    for kwargs, config in ((dict(steps=3, lr=1e-2), _config(batch_size=2)),
                           ({}, _config(batch_size=2, seg_steps=3, seg_lr=1e-2))):
        torch.manual_seed(0)
        model = UNet(num_classes=3, features=4, levels=3, dropout=0.0)
        runs.append(train_segmenter(model, images, labels, [0, 1], config, device="cpu", **kwargs))
    assert len(runs[0]["loss"]) == 3 and runs[0] == runs[1]


def test_soft_targets_and_weights_are_accepted(make_toy):
    images, labels = make_toy(4)
    soft = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 0.9 + 0.1 / 3
    model = UNet(num_classes=3, features=8, levels=3)
    history = train_segmenter(model, images, soft, [0, 1], _config(batch_size=2, augment=True), steps=2, lr=1e-3,
                              weights=torch.ones(4), device="cpu")
    assert len(history["loss"]) == 2
    # Zero confidence everywhere: nothing to learn, parameters do not move.
    before = [p.detach().clone() for p in model.parameters()]
    train_segmenter(model, images, soft, [0, 1], _config(batch_size=2), steps=2, lr=1e-2, weights=torch.zeros(4), device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_per_pixel_weights_are_augmented_with_their_pixels(make_toy, monkeypatch):
    """A pixel's confidence must follow it through the random affine and elastic warp: a weight
    map equal to the foreground channel of the target stays equal to it after augmentation."""
    import segreg_lite.supervised as sup

    images, labels = make_toy(4)
    soft = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    weights = 1 - soft[:, 0]  # 1 on the foreground, 0 on the background
    seen = []
    real = sup.segmentation_loss

    def spy(logits, target, **kw):
        seen.append((target.detach().clone(), kw["weight"].detach().clone()))
        return real(logits, target, **kw)

    monkeypatch.setattr(sup, "segmentation_loss", spy)
    model = UNet(num_classes=3, features=4, levels=3)
    train_segmenter(model, images, soft, [0, 1, 2, 3], _config(batch_size=4, augment=True), steps=2, lr=1e-3,
                    weights=weights, device="cpu")
    for target, weight in seen:
        assert weight.shape == target.shape[:1] + target.shape[2:]
        assert not torch.allclose(target, soft)  # the batch was warped
        torch.testing.assert_close(weight, 1 - target[:, 0], atol=1e-5, rtol=0)


def test_online_targets_mix_in_the_models_own_prediction(make_toy, monkeypatch):
    """With ``online`` flags, a flagged image's target is (1 - share) x its label + share x the
    model's eval-mode prediction of the same view; an unflagged image keeps its label."""
    import segreg_lite.supervised as sup

    images, labels = make_toy(4)
    soft = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    seen = []
    real = sup.segmentation_loss
    monkeypatch.setattr(sup, "segmentation_loss", lambda logits, target, **kw: (
        seen.append(target.detach().clone()), real(logits, target, **kw))[1])
    torch.manual_seed(0)
    model = UNet(num_classes=3, features=4, levels=3)
    with torch.no_grad():
        prediction = model.eval()(images).softmax(1)
    flags = torch.tensor([True, False, True, False])
    train_segmenter(model, images, soft, [0, 1, 2, 3], _config(batch_size=32, online_share=0.25), steps=1, lr=1e-3,
                    online=flags, device="cpu", seed=3)
    gen = torch.Generator().manual_seed(3)  # the batch the trainer drew
    pick = torch.tensor([0, 1, 2, 3])[torch.randint(4, (32,), generator=gen)]
    expected = torch.where(flags[pick].view(-1, 1, 1, 1), 0.75 * soft[pick] + 0.25 * prediction[pick], soft[pick])
    torch.testing.assert_close(seen[0], expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="online must be a bool tensor"):
        train_segmenter(model, images, soft, [0], _config(), steps=1, online=torch.ones(4), device="cpu")


def test_seeded_training_is_reproducible(make_toy):
    images, labels = make_toy(4)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = UNet(num_classes=3, features=8, levels=3)
        train_segmenter(model, images, labels, [0, 1, 2], _config(batch_size=2, augment=True), steps=3, lr=1e-3, seed=7,
                        device="cpu")
        outs.append(predict(model, images))
    assert torch.equal(outs[0], outs[1])


def test_predict_is_a_distribution(make_toy):
    images, _ = make_toy(3)
    probs = predict(UNet(num_classes=3, features=8, levels=3), images, batch_size=2)
    assert probs.shape == (3, 3, 32, 32)
    torch.testing.assert_close(probs.sum(1), torch.ones(3, 32, 32))


def test_evaluate_segmentation_known_answer():
    target = torch.zeros(1, 16, 16, dtype=torch.long)
    target[0, 4:8, 4:8] = 1
    pred = target.clone()
    pred[0, 4:8, 7:11] = 1  # shifted right by 3: Dice 2*4/(16+16)... overlap is one column
    pred[0, 4:8, 4:7] = 0
    r = evaluate_segmentation(pred, target, num_classes=3, per_image=True)
    assert r["per_image"]["dice"].shape == (1, 2)
    assert r["per_image"]["dice"][0, 0] == pytest.approx(2 * 4 / 32)
    assert r["per_image"]["dice"][0, 1] == 1.0  # class 2 absent from both
    assert r["per_image"]["hd"][0, 0] == pytest.approx(3.0) and r["per_image"]["hd"][0, 1] == 0.0
    assert r["dice"] == pytest.approx((0.25 + 1.0) / 2)
    # The means as the results files hold them: plain floats and lists, ready for JSON.
    assert r["dice_per_class"] == pytest.approx([0.25, 1.0]) and r["hd_per_class"] == pytest.approx([3.0, 0.0])
    assert r["hd"] == pytest.approx(1.5) and r["n_hd_nan"] == 0
    assert all(type(r[k]) is float for k in ("dice", "hd", "hd95"))
    assert "per_image" not in evaluate_segmentation(pred, target, num_classes=3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(indices=[]), "at least one"),
        (dict(indices=[9]), r"indices must be in \[0, 4\)"),
        (dict(labels=torch.zeros(3, 32, 32, dtype=torch.long)), "do not match"),
    ],
)
def test_bad_inputs(make_toy, kwargs, match):
    images, labels = make_toy(4)
    args = dict(indices=[0], labels=labels)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train_segmenter(UNet(num_classes=3, features=8, levels=3), images, args["labels"], args["indices"], _config(),
                        steps=1, lr=1e-3, device="cpu")
