import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from segreg_lite.config import TrainConfig
from segreg_lite.meanteacher import sigmoid_rampup, train_mean_teacher, update_ema
from segreg_lite.unet import UNet


def _config(**kw) -> TrainConfig:
    """Mean Teacher's settings in these tests: the config's defaults (EMA 0.99, consistency 1,
    ramp-up 0.4, noise 0.05), without augmentation unless asked for."""
    return replace(TrainConfig(), **{"augment": False, **kw})


def _pair(features=4, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    student = UNet(num_classes=3, features=features, levels=3, dropout=dropout)
    return student, copy.deepcopy(student)


def test_sigmoid_rampup_known_values():
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(10, 10) == 1.0 and sigmoid_rampup(50, 10) == 1.0
    assert sigmoid_rampup(0, 0) == 1.0 and sigmoid_rampup(7, 0) == 1.0
    values = [sigmoid_rampup(s, 20) for s in range(25)]
    assert all(a < b for a, b in zip(values[:20], values[1:21]))
    with pytest.raises(ValueError, match="rampup_steps"):
        sigmoid_rampup(0, -1)


def test_update_ema_known_answer():
    student, teacher = nn.Linear(2, 1), nn.Linear(2, 1)
    with torch.no_grad():
        student.weight.copy_(torch.tensor([[1.0, 2.0]]))
        student.bias.fill_(4.0)
        teacher.weight.copy_(torch.tensor([[3.0, -2.0]]))
        teacher.bias.fill_(0.0)
    t = copy.deepcopy(teacher)
    update_ema(t, student, 1.0)
    assert torch.equal(t.weight, teacher.weight) and torch.equal(t.bias, teacher.bias)
    update_ema(t, student, 0.5)
    assert torch.equal(t.weight, torch.tensor([[2.0, 0.0]])) and torch.equal(t.bias, torch.tensor([2.0]))
    update_ema(t, student, 0.0)
    assert torch.equal(t.weight, student.weight) and torch.equal(t.bias, student.bias)
    with pytest.raises(ValueError, match="decay"):
        update_ema(t, student, 1.5)


def test_update_ema_copies_buffers():
    student, teacher = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    student.running_mean.fill_(3.0)
    update_ema(teacher, student, 0.9)
    assert torch.equal(teacher.running_mean, student.running_mean)


def test_training_runs_and_teacher_follows_the_ema_path(make_toy):
    images, labels = make_toy(4)
    student, teacher = _pair()
    initial = [p.detach().clone() for p in teacher.parameters()]
    snapshots = []  # the student after each step (the callback runs after the EMA update)
    cb = lambda step, terms: snapshots.append([p.detach().clone() for p in student.parameters()])  # noqa: E731
    steps, ema = 4, 0.6
    history = train_mean_teacher(student, teacher, images, labels, [0, 1], [2, 3],
                                 _config(seg_steps=steps, seg_lr=1e-2, batch_size=2, mt_ema=ema), device="cpu", callback=cb)
    assert set(history) == {"loss", "supervised", "consistency", "weight"}
    assert all(len(v) == steps for v in history.values())
    assert not student.training and not teacher.training
    expected = initial
    for step, s in enumerate(snapshots):
        d = min(ema, 1 - 1 / (step + 1))
        expected = [d * t + (1 - d) * p for t, p in zip(expected, s)]
    for got, want in zip(teacher.parameters(), expected):
        torch.testing.assert_close(got, want)
    assert any(not torch.equal(a, b) for a, b in zip(teacher.parameters(), initial))
    assert any(not torch.equal(a, b) for a, b in zip(teacher.parameters(), student.parameters()))
    # The total is the supervised loss plus the ramped consistency term.
    for k in range(steps):
        assert history["weight"][k] == sigmoid_rampup(k, int(0.4 * steps))
        total = history["supervised"][k] + history["weight"][k] * history["consistency"][k]
        assert history["loss"][k] == pytest.approx(total, rel=1e-5)


def test_zero_consistency_weight_is_supervised_only(make_toy):
    images, labels = make_toy(4)
    student, teacher = _pair()
    history = train_mean_teacher(student, teacher, images, labels, [0, 1], [],
                                 _config(seg_steps=3, seg_lr=1e-3, batch_size=2, mt_consistency=0.0), device="cpu")
    assert history["loss"] == history["supervised"]
    assert all(c > 0 for c in history["consistency"])  # measured, but not trained on
    assert history["weight"] == [sigmoid_rampup(k, 1) for k in range(3)]


def test_seeded_training_is_reproducible(make_toy):
    images, labels = make_toy(4)
    runs = []
    for _ in range(2):
        student, teacher = _pair(dropout=0.2, seed=3)
        torch.manual_seed(5)  # dropout draws from the global generator
        history = train_mean_teacher(student, teacher, images, labels, [0], [1, 2, 3],
                                     _config(seg_steps=3, seg_lr=1e-3, batch_size=2, augment=True), seed=7, device="cpu")
        runs.append((history, [p.detach().clone() for p in teacher.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_training_lowers_the_supervised_loss(make_toy):
    images, labels = make_toy()
    student, teacher = _pair(features=8)
    history = train_mean_teacher(student, teacher, images, labels, range(3), range(3, 6),
                                 _config(seg_steps=60, seg_lr=1e-2, batch_size=4), device="cpu")
    # About 0.18 of the start with these seeds (0.14-0.36 over six others): a wide margin.
    assert np.mean(history["supervised"][-10:]) < 0.5 * np.mean(history["supervised"][:5])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(annotated=[]), "annotated is empty: at least one"),
        (dict(annotated=[9]), r"^annotated must be in \[0, 4\)"),
        (dict(unannotated=[-1]), r"unannotated must be in \[0, 4\)"),
        (dict(labels=torch.zeros(3, 32, 32, dtype=torch.long)), "do not match"),
        (dict(teacher=UNet(num_classes=3, features=8, levels=3)), "architecture"),
        (dict(teacher="student"), "separate copy"),
        (dict(mt_ema=1.5), "mt_ema"),
        (dict(mt_rampup=1.5), "mt_rampup"),
        (dict(batch_size=1), "batch_size >= 2"),
    ],
)
def test_bad_inputs(make_toy, kwargs, match):
    images, labels = make_toy(4)
    student, teacher = _pair()
    args = dict(annotated=[0], unannotated=[1], labels=labels, teacher=teacher)
    args.update(kwargs)
    settings = {k: args.pop(k) for k in ("mt_ema", "mt_rampup", "batch_size") if k in args}
    t = student if args["teacher"] == "student" else args["teacher"]
    with pytest.raises(ValueError, match=match):
        train_mean_teacher(student, t, images, args["labels"], args["annotated"], args["unannotated"],
                           _config(seg_steps=1, seg_lr=1e-3, **settings), device="cpu")


def test_negative_settings_are_refused_by_the_config():
    for name in ("mt_ema", "mt_consistency", "mt_rampup", "mt_noise"):
        with pytest.raises(ValueError, match=name):
            _config(**{name: -0.1})
