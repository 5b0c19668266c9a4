from dataclasses import replace

import numpy as np
import pytest
import torch

from segreg_lite.checks import one_hot
from segreg_lite.config import TrainConfig
from segreg_lite.metrics import folding_fraction, log_jacobian_std
from segreg_lite.regnet import RegNet
from segreg_lite.registration import (draw_atlases, evaluate_registration, instance_optimise, propagate_labels,
                                      register, train_registration)
from segreg_lite.supervised import evaluate_segmentation
from segreg_lite.transforms import warp


def _config(**kw) -> TrainConfig:
    """The registration trainer's settings in these tests: global NCC and the paper's smoothness
    weights (128, 64, 32, 16, 8), the trainer's defaults before they came from the config."""
    return replace(TrainConfig(), **{"local_ncc": False, "reg_smoothness": 1.0, **kw})


def _blobs():
    """Two smooth 32x32 blobs, the second 3 pixels to the right of the first; labels by threshold."""
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    images = torch.stack([torch.exp(-((y - 16) ** 2 + (x - cx) ** 2) / 50)[None] for cx in (14.5, 17.5)])
    return images, (images[:, 0] > 0.5).long()  # (2, 1, 32, 32), (2, 32, 32)


def test_training_aligns_a_shifted_blob():
    torch.manual_seed(0)
    images, _ = _blobs()
    model = RegNet(features=8, levels=3)
    steps = []
    history = train_registration(model, images, [0, 1], _config(batch_size=8), steps=60, lr=3e-3, device="cpu",
                                 callback=lambda step, terms: steps.append(step))
    assert set(history) == {"loss", "similarity", "smoothness", "label"}
    assert all(len(v) == 60 for v in history.values()) and steps == list(range(60))
    assert not model.training and history["label"] == [0.0] * 60
    first, last = history["similarity"][0], sum(history["similarity"][-5:]) / 5
    assert last < 0.5 * first
    flow = register(model, images[:1], images[1:])  # (1, 2, 32, 32)
    # fixed(p) = moving(p - 3 columns): the field must read 3 px to the left inside the blob.
    # 60 steps get -1.9..-3.2 px over seeds 0-5; 250 steps converge to -3.0 +- 0.1.
    inside = flow[0, :, 10:22, 10:22].mean(dim=(1, 2))
    assert -4.0 < inside[1] < -1.5 and inside[0].abs() < 0.5
    # Label propagation uses the same field, and its argmax now overlaps the fixed blob's label.
    _, labels = _blobs()
    soft = propagate_labels(model, images[:1], labels[:1], images[1:], num_classes=2)
    torch.testing.assert_close(soft, warp(one_hot(labels[:1], 2), flow).clamp(0, 1))
    assert (soft.argmax(1) != labels[1:]).sum() < 0.5 * (labels[0] != labels[1]).sum()


def test_label_term_decreases_when_labels_are_given():
    torch.manual_seed(0)
    images, labels = _blobs()
    history = train_registration(RegNet(features=8, levels=3), images, [0, 1], _config(batch_size=8), steps=60, lr=3e-3,
                                 labels=labels, num_classes=2, device="cpu")
    assert sum(history["label"][-5:]) / 5 < 0.6 * history["label"][0]  # 0.31 -> 0.10..0.14 over seeds 0-5


def test_training_is_seeded_and_accepts_soft_labels():
    images, labels = _blobs()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(train_registration(RegNet(features=4, levels=3), images, [0, 1, 1], _config(batch_size=2), steps=3,
                                       lr=1e-3, labels=one_hot(labels, 2), num_classes=2, device="cpu"))
    assert runs[0] == runs[1]


def test_cosine_schedule_changes_only_the_later_steps():
    """Step 0 is taken at the full rate either way, step 1 at 3/4 of it along the cosine: losses part at step 2."""
    images, _ = _blobs()
    runs = {}
    for cosine in (False, True):
        torch.manual_seed(0)
        model = RegNet(features=4, levels=3)
        runs[cosine] = train_registration(model, images, [0, 1], _config(batch_size=2), steps=3, lr=1e-2, device="cpu",
                                          cosine=cosine)["loss"]
    assert runs[False][:2] == runs[True][:2] and runs[False][2] != runs[True][2]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(indices=[1, 1]), "2 distinct"),
        (dict(indices=[0, 5]), "indices"),
        (dict(labels=torch.zeros(2, 16, 16, dtype=torch.long)), "labels"),
        (dict(labels=torch.zeros(2, 3, 32, 32)), "soft maps"),
    ],
)
def test_bad_training_inputs_raise(kwargs, match):
    images, _ = _blobs()
    kwargs = {"indices": [0, 1], **kwargs}
    with pytest.raises(ValueError, match=match):
        train_registration(RegNet(features=4, levels=3), images, kwargs.pop("indices"), _config(), steps=1, lr=1e-3,
                           num_classes=2, device="cpu", **kwargs)


def test_register_batches_and_broadcasts(make_regnet):
    model = make_regnet()
    moving, fixed = torch.rand(5, 1, 32, 32), torch.rand(5, 1, 32, 32)
    whole = register(model, moving, fixed, batch_size=16)
    assert whole.shape == (5, 2, 32, 32)
    torch.testing.assert_close(register(model, moving, fixed, batch_size=2), whole)
    one_to_many = register(model, moving[:1], fixed)
    torch.testing.assert_close(one_to_many[3], register(model, moving[:1], fixed[3:4])[0])
    with pytest.raises(ValueError, match="neither is 1"):
        register(model, moving[:2], fixed)
    # register runs the network channels_last (faster on oneDNN): the same fields as a plain forward.
    plain = RegNet(features=4, levels=3)
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(whole, plain.eval()(moving, fixed).flow, atol=1e-5, rtol=1e-4)


def test_propagated_labels_of_an_identity_model_are_the_atlas_labels():
    torch.manual_seed(0)
    model = RegNet(features=4, levels=3)
    atlases = torch.rand(3, 1, 32, 32)
    labels = torch.randint(0, 4, (3, 32, 32))
    soft = propagate_labels(model, atlases, labels, atlases[1:2], num_classes=4, atlas_index=[[1, 1]])
    assert soft.shape == (1, 4, 32, 32)
    torch.testing.assert_close(soft, one_hot(labels[1:2], 4), atol=1e-3, rtol=0)
    # Every atlas onto every target: the mean is a fusion in [0, 1] summing to 1 over classes.
    every = propagate_labels(model, atlases, labels, atlases, num_classes=4, batch_size=4, return_all=True)
    assert every.shape == (3, 3, 4, 32, 32)
    for a in range(3):  # atlas a onto target a returns atlas a's labels
        torch.testing.assert_close(every[a, a], one_hot(labels[a : a + 1], 4)[0], atol=1e-3, rtol=0)
    mean = propagate_labels(model, atlases, one_hot(labels, 4), atlases, num_classes=4, batch_size=4)
    torch.testing.assert_close(mean, every.mean(dim=1))
    torch.testing.assert_close(mean.sum(dim=1), torch.ones(3, 32, 32))
    with pytest.raises(ValueError, match="atlas_index"):
        propagate_labels(model, atlases, labels, atlases, num_classes=4, atlas_index=[[3]] * 3)



def test_repeated_atlas_draws_count_as_often_as_drawn(make_regnet):
    model = make_regnet(seed=1)  # a non-identity field, so each pair's map differs
    atlases, targets = torch.rand(3, 1, 32, 32), torch.rand(2, 1, 32, 32)
    labels = torch.randint(0, 4, (3, 32, 32))
    index = torch.tensor([[0, 0, 2, 0, 1], [2, 2, 2, 1, 2]])  # draws with replacement, as the pseudo-labels
    fields = register(model, atlases[index.reshape(-1)], targets.repeat_interleave(5, 0))  # every draw on its own
    each = warp(one_hot(labels, 4)[index.reshape(-1)], fields).clamp(0, 1).view(2, 5, 4, 32, 32)
    every = propagate_labels(model, atlases, labels, targets, num_classes=4, atlas_index=index, return_all=True)
    torch.testing.assert_close(every, each, atol=1e-5, rtol=1e-4)
    mean = propagate_labels(model, atlases, labels, targets, num_classes=4, atlas_index=index, batch_size=3)
    torch.testing.assert_close(mean, each.mean(dim=1), atol=1e-5, rtol=1e-4)


def _shifting_model(shift_px: float, size: int = 32) -> RegNet:
    """A RegNet that predicts the same shift along W for any pair: zero flow heads, affine bias only."""
    model = RegNet(features=4, levels=3, affine=True)
    with torch.no_grad():
        for head in model.heads:
            head.weight.zero_()
        model.affine_head[-1].bias.copy_(torch.tensor([0, 0, 0, 0, 0, shift_px * 2 / (size - 1)]))
    return model


def test_more_passes_compose_the_fields():
    images, labels = _blobs()
    model = _shifting_model(1.5)
    one = register(model, images[:1], images[1:])
    two = register(model, images[:1], images[1:], passes=2)
    torch.testing.assert_close(one[0, 1], torch.full((32, 32), 1.5), atol=1e-5, rtol=0)
    torch.testing.assert_close(two[0, 1], torch.full((32, 32), 3.0), atol=1e-5, rtol=0)  # constant shifts add up
    assert two[0, 0].abs().max() < 1e-5
    soft = propagate_labels(model, images[:1], labels[:1], images[1:], num_classes=2, passes=2)
    torch.testing.assert_close(soft, warp(one_hot(labels[:1], 2), two).clamp(0, 1))
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="passes must be an integer >= 1"):
            register(model, images[:1], images[1:], passes=bad)


def _texture_pair():
    """A smooth random texture (1, 1, 32, 32) and the same texture 3 columns further on:
    ``fixed(p) = moving(p + 3 columns)``, so the field that aligns them reads +3 px along W.
    (Local NCC needs texture: on a smooth blob, a 9-pixel window sees only a ramp.)"""
    torch.manual_seed(0)
    tex = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 44, 44), 5, stride=1)  # (1, 1, 40, 40)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return tex[..., 2:34, 2:34], tex[..., 2:34, 5:37]


def test_instance_optimisation_finishes_what_the_network_left():
    # The network goes 1.5 px of the 3; a few Adam steps on the pair's own field go the rest.
    moving, fixed = _texture_pair()
    model = _shifting_model(1.5)
    net = register(model, moving, fixed, passes=1)
    refined = register(model, moving, fixed, passes=1, io_steps=20)
    inside = refined[0, :, 6:26, 6:26].mean(dim=(1, 2))  # 3.00 and 0.06
    assert 2.7 < inside[1] < 3.3 and inside[0].abs() < 0.2
    err = lambda f: (warp(moving, f) - fixed)[..., 6:26, 6:26].abs().mean()  # noqa: E731
    assert err(refined) < 0.4 * err(net)  # 0.019 against 0.103
    assert folding_fraction(refined)[0] < 0.005  # an integrated velocity after a shift: 1 pixel of 1024
    # Label propagation sees the same refined field, and 0 steps is the network's field exactly.
    labels = (moving[:, 0] > 0.5).long()
    soft = propagate_labels(model, moving, labels, fixed, num_classes=2, passes=1, io_steps=20)
    torch.testing.assert_close(soft, warp(one_hot(labels, 2), refined).clamp(0, 1))
    torch.testing.assert_close(register(model, moving, fixed, passes=1, io_steps=0), net, rtol=0, atol=0)


def test_instance_optimisation_is_per_pair_and_refuses_bad_settings(make_regnet):
    images, _ = _blobs()
    moving, fixed = torch.cat([images[:1], images[1:]]), torch.cat([images[1:], images[:1]])  # both directions
    flow = register(make_regnet(seed=2), moving, fixed)
    both = instance_optimise(moving, fixed, flow, steps=5)
    alone = instance_optimise(moving[1:], fixed[1:], flow[1:], steps=5)
    torch.testing.assert_close(both[1:], alone, atol=1e-4, rtol=0)  # a pair's result does not depend on its batch
    assert not both.requires_grad and not torch.equal(both, flow)
    model = _shifting_model(1.5)
    for kwargs, match in ((dict(io_steps=-1), "io_steps"), (dict(io_steps=2.5), "io_steps"), (dict(io_steps=True), "io_steps"),
                          (dict(io_steps=3, io_lr=0), "io_lr"), (dict(io_steps=3, io_lr=-0.1), "io_lr"),
                          (dict(io_lr=float("nan")), "io_lr")):
        with pytest.raises(ValueError, match=match):
            register(model, images[:1], images[1:], **kwargs)
        with pytest.raises(ValueError, match=match):
            propagate_labels(model, images[:1], _blobs()[1][:1], images[1:], num_classes=2, **kwargs)
    for kwargs in (dict(reg_io_steps=-1), dict(reg_io_lr=0.0), dict(reg_io_lr=-1.0)):
        with pytest.raises(ValueError, match="reg_io"):
            TrainConfig(**kwargs)
    assert TrainConfig(reg_io_steps=20).smoke().reg_io_steps == 2  # smoke mode shortens it, keeps it on


def test_steps_lr_and_loss_settings_come_from_the_config(make_regnet):
    images, labels = _blobs()
    runs = []
    for config, kwargs in ((_config(batch_size=2, reg_steps=2, reg_lr=1e-2), {}),
                           (_config(batch_size=2), dict(steps=2, lr=1e-2)),
                           (_config(batch_size=2, reg_steps=2, reg_lr=1e-2, reg_smoothness=2.0, label_weight=3.0), {})):
        model = make_regnet()  # a rough field from the start, so the smoothness term is not 0
        runs.append(train_registration(model, images, [0, 1], config, labels=labels, num_classes=2, device="cpu", **kwargs))
    assert len(runs[0]["loss"]) == 2 and runs[0] == runs[1]
    # Step 0 sees the same fields: twice the smoothness weights give twice the term; the label weight scales the total.
    assert runs[2]["smoothness"][0] == pytest.approx(2 * runs[0]["smoothness"][0], rel=1e-5) and runs[0]["smoothness"][0] > 0
    first = {k: v[0] for k, v in runs[2].items()}
    assert first["loss"] == pytest.approx(first["similarity"] + first["smoothness"] + 3 * first["label"], rel=1e-5)


def test_draw_atlases_with_replacement_from_the_annotated_set():
    g = torch.Generator().manual_seed(0)
    a = draw_atlases([3, 7], 50, 5, g)
    assert a.shape == (50, 5) and set(a.unique().tolist()) == {3, 7}
    assert (draw_atlases([4], 3, 5, g) == 4).all()  # one annotated image: every draw is it
    with pytest.raises(ValueError, match="at least one"):
        draw_atlases([], 3, 5, g)


def test_evaluate_registration_scores_the_fusion_of_propagate_labels(make_regnet):
    """reg_only's scoring is the argmax of propagate_labels' fused map with the drawn atlases, and
    its folding the mean over every drawn atlas-to-target field."""
    model = make_regnet(std=0.7)  # a large, rough field: about 1% of its pixels fold
    y, x = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    images = torch.stack([torch.exp(-((y - 16 + i % 3) ** 2 + (x - 12 - i) ** 2) / (40 + 5 * i))[None] for i in range(8)])
    labels = (images[:, 0] > 0.3).long() + (images[:, 0] > 0.7).long()  # (8, 32, 32): 3 classes
    annotated, targets, n_atlas, seed, K = [0, 2, 5], [1, 3, 4, 6, 7], 4, 11, 3
    atlases = draw_atlases(annotated, len(targets), n_atlas, torch.Generator().manual_seed(seed))  # (5, 4) image indices
    seen = []
    fused = propagate_labels(model, images, labels, images[targets], num_classes=K, atlas_index=atlases, passes=2,
                             on_fields=lambda flows, counts: seen.append(int(counts.sum())))
    assert sum(seen) == len(targets) * n_atlas  # every draw counted
    scored = evaluate_registration(model, images, labels, annotated, targets, n_atlas=n_atlas, num_classes=K, seed=seed,
                                   device="cpu", passes=2)
    expected = evaluate_segmentation(fused.argmax(1), labels[targets], K)
    assert scored["dice"] == expected["dice"] and scored["dice_per_class"] == expected["dice_per_class"]
    assert scored["hd95"] == expected["hd95"]
    fields = register(model, images[atlases.reshape(-1)], images[targets].repeat_interleave(n_atlas, 0), passes=2)
    assert scored["folding"] == pytest.approx(float(folding_fraction(fields).mean()), abs=1e-6)
    assert scored["folding"] > 0 and scored["dice"] > 0.1  # the checks above compare something
    # log det J amplifies the last bits in which batched fields differ, where det J is near 0.
    assert scored["log_jac_std"] == pytest.approx(float(np.nanmean(log_jacobian_std(fields))), rel=1e-4)
