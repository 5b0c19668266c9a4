import pytest
import torch

from segreg_lite.train import autocast, check_device, fit, new_models, phase_seed, pick_device, seed_everything


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
def test_pick_device_on_a_cpu_machine():
    if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        assert pick_device("auto") == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")


def test_check_device_names_what_is_wrong():
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        check_device("bogus")


def test_autocast_is_a_no_op_on_cpu():
    a = torch.rand(4, 4)
    with autocast(torch.device("cpu")):
        assert (a @ a).dtype == torch.float32
        assert not torch.is_autocast_enabled("cpu")


def test_seed_everything_makes_torch_rand_reproducible():
    g1 = seed_everything(123)
    a = torch.rand(5)
    b = torch.rand(3, generator=g1)
    g2 = seed_everything(123)
    assert torch.equal(a, torch.rand(5))
    assert torch.equal(b, torch.rand(3, generator=g2))
    seed_everything(124)
    assert not torch.equal(a, torch.rand(5))


def test_phase_seeds_are_stable_and_distinct():
    assert phase_seed(0, 1, "seg") == phase_seed(0, 1, "seg")
    assert len({phase_seed(s, r, p) for s in (0, 1) for r in (0, 1, 2) for p in ("seg", "reg", "pseudo")}) == 18


def test_new_models_are_seeded(tiny_config):
    (seg_a, reg_a), (seg_b, reg_b) = new_models(tiny_config, 3, 0), new_models(tiny_config, 3, 0)
    for a, b in ((seg_a, seg_b), (reg_a, reg_b)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert seg_a.config["num_classes"] == 3 and seg_a.config["features"] == tiny_config.features
    other = new_models(tiny_config, 3, 1)[0]
    assert any(not torch.equal(x, y) for x, y in zip(seg_a.parameters(), other.parameters()))


def test_fit_runs_the_steps_and_hooks_in_order():
    w = torch.nn.Parameter(torch.tensor(1.0))
    events = []

    def step(i):
        events.append(("step", i))
        loss = (w - 3) ** 2
        return loss, {"loss": loss.item(), "i": float(i)}

    history = fit([w], step, steps=4, lr=0.1, keys=("loss", "i"), device=torch.device("cpu"),
                  callback=lambda i, terms: events.append(("callback", i)),
                  after_step=lambda i: events.append(("after", i)))
    assert list(history) == ["loss", "i"] and history["i"] == [0.0, 1.0, 2.0, 3.0]
    assert events == [(kind, i) for i in range(4) for kind in ("step", "after", "callback")]
    assert history["loss"][-1] < history["loss"][0]
    assert fit([w], step, steps=0, lr=0.1, keys=("loss", "i"), device=torch.device("cpu")) == {"loss": [], "i": []}
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        fit([w], step, steps=-1, lr=0.1, keys=("loss",), device=torch.device("cpu"))
