"""UniMatch: its step learns, its pseudo-labels respect the threshold, bad input is refused."""
from dataclasses import replace

import pytest
import torch

from segreg_lite.experiment import run_experiment
from segreg_lite.unet import UNet
from segreg_lite.unimatch import train_unimatch


def test_history_threshold_and_eval_mode(make_toy, tiny_config):
    images, labels = make_toy(8)
    torch.manual_seed(0)
    model = UNet(num_classes=3, features=4)
    cfg = replace(tiny_config, um_steps=6, batch_size=4)
    h = train_unimatch(model, images, labels, [0, 1], range(2, 8), cfg, device="cpu", seed=0)
    assert set(h) == {"loss", "supervised", "strong", "fp", "confident"} and all(len(v) == 6 for v in h.values())
    assert not model.training
    # An untrained 3-class network is nowhere 95% sure; a threshold just above 1/3 keeps much more.
    assert max(h["confident"]) < 0.05
    torch.manual_seed(0)
    low = train_unimatch(UNet(num_classes=3, features=4), images, labels, [0, 1], range(2, 8),
                         replace(cfg, um_threshold=0.34), device="cpu", seed=0)
    assert min(low["confident"]) > 0.5


def test_it_learns_the_toy_problem(make_toy, tiny_config):
    images, labels = make_toy(8)
    torch.manual_seed(0)
    model = UNet(num_classes=3, features=8, dropout=0.0)
    h = train_unimatch(model, images, labels, [0, 1], range(2, 8), replace(tiny_config, um_steps=60, batch_size=4,
                       um_lr=3e-3), device="cpu", seed=0)
    assert sum(h["supervised"][-10:]) < 0.75 * sum(h["supervised"][:10])


@pytest.mark.parametrize("kwargs, match", [
    (dict(annotated=[]), "annotated"),
    (dict(unannotated=[]), "unannotated"),
    (dict(labels=torch.zeros(3, 32, 32, dtype=torch.long)), "labels must be"),
    (dict(model=torch.nn.Conv2d(1, 3, 1)), "forward_perturbed"),
])
def test_bad_input_is_named(make_toy, tiny_config, kwargs, match):
    images, labels = make_toy(6)
    args = dict(model=UNet(num_classes=3, features=4), images=images, labels=labels, annotated=[0], unannotated=[1, 2],
                config=tiny_config)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train_unimatch(**args)


def test_as_a_method_of_a_run(tmp_path, make_data, tiny_config):
    data = make_data()
    out = run_experiment(data, tmp_path / "run", methods=["supervised_aug", "unimatch"], fraction=0.2,
                         config=tiny_config, device="cpu", progress=False)
    assert set(out["methods"]) == {"supervised_aug", "unimatch"}
    assert 0 <= out["methods"]["unimatch"]["metrics"]["dice"] <= 1
