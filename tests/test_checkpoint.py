import math
import os

import numpy as np
import pytest
import torch

from segreg_lite.checkpoint import FORMAT, Checkpoint, load_checkpoint, load_into, save_checkpoint
from segreg_lite.config import TrainConfig
from segreg_lite.unet import UNet


def _unet(features=4, seed=0):
    torch.manual_seed(seed)
    return UNet(num_classes=3, features=features, levels=3)


class _Custom:
    """A class that weights_only loading must refuse to unpickle."""


class _Evil:
    """Unpickling this would create a file: proof that a refused file never ran any code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def saved(tmp_path):
    """A real checkpoint of a small U-Net: (path, model)."""
    model = _unet()
    path = save_checkpoint(tmp_path / "ckpt.pt", models={"seg": model}, config=TrainConfig(rounds=5))
    return path, model


def test_round_trip_models_config_extra_and_optimizer(tmp_path):
    model = _unet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(2, 1, 16, 16)).mean().backward()
    opt.step()
    config = TrainConfig(rounds=5, residual=True)
    extra = {"round": 2, "seed": 7, "history": [{"loss": 0.5, "hd95": math.nan}], "split": {"train": [3, 1], "test": []}}
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3)
    optimizers = {"seg": opt, "seg_sched": sched}
    path = save_checkpoint(tmp_path / "run" / "ckpt.pt", models={"seg": model}, config=config, extra=extra, optimizers=optimizers)
    assert path == tmp_path / "run" / "ckpt.pt"

    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint) and set(ckpt.models) == {"seg"}
    rebuilt = ckpt.models["seg"]
    assert type(rebuilt) is UNet and rebuilt.config == model.config
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(rebuilt.eval()(x), model.eval()(x))
    assert ckpt.config == config
    assert ckpt.extra["round"] == 2 and ckpt.extra["split"] == extra["split"] and math.isnan(ckpt.extra["history"][0]["hd95"])

    opt2 = torch.optim.Adam(rebuilt.parameters(), lr=1e-3)
    opt2.load_state_dict(ckpt.optimizer_states["seg"])
    first = next(iter(opt.state.values()))
    assert torch.equal(next(iter(opt2.state.values()))["exp_avg"], first["exp_avg"])
    assert ckpt.optimizer_states["seg_sched"] == sched.state_dict()


def test_config_as_dict_or_none(tmp_path):
    save_checkpoint(tmp_path / "a.pt", models={"seg": _unet()}, config=TrainConfig(rounds=4).to_dict())
    assert load_checkpoint(tmp_path / "a.pt").config == TrainConfig(rounds=4)
    save_checkpoint(tmp_path / "b.pt", models={"seg": _unet()})
    ckpt = load_checkpoint(tmp_path / "b.pt")
    assert ckpt.config is None and ckpt.extra == {} and ckpt.optimizer_states == {}


def test_regnet_round_trip(tmp_path):
    regnet = pytest.importorskip("segreg_lite.regnet")
    torch.manual_seed(0)
    model = regnet.RegNet()
    with torch.no_grad():  # the flow heads start at zero: perturb every weight so the test means something
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_checkpoint(tmp_path / "r.pt", models={"reg": model, "seg": _unet()})
    rebuilt = load_checkpoint(tmp_path / "r.pt").models["reg"].eval()
    moving, fixed = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    assert torch.equal(rebuilt(moving, fixed).flow, model.eval()(moving, fixed).flow)


def test_failed_save_keeps_old_checkpoint_and_leaves_no_temp_files(saved, monkeypatch):
    path, model = saved
    before = path.read_bytes()

    def torn_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(before[: len(before) // 3])  # half-written, then the disk fills up
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, models={"seg": _unet(seed=1)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(load_checkpoint(path).models["seg"].eval()(x), model.eval()(x))


@pytest.mark.parametrize("failure", ["enospc", "torch"])
def test_a_full_disk_during_a_save_is_named_and_keeps_the_old_checkpoint(saved, monkeypatch, failure):
    """A full disk mid-save: OSError(ENOSPC), or torch's RuntimeError wrapping it ("unexpected
    pos"), becomes one line naming the file and "no space left on device"; the old checkpoint
    stays readable and no temporary file is left."""
    import errno

    path, model = saved
    before = path.read_bytes()

    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(before[: len(before) // 3])
        if failure == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 4608 vs 4500")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="no space left on device") as err:
        save_checkpoint(path, models={"seg": _unet(seed=1)})
    monkeypatch.undo()
    assert err.value.filename == str(path) and "unexpected pos" not in str(err.value) and "\n" not in str(err.value)
    assert path.read_bytes() == before and os.listdir(path.parent) == [path.name]
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(load_checkpoint(path).models["seg"].eval()(x), model.eval()(x))


def test_bad_extra_is_refused_before_writing(tmp_path):
    cases = (({"seed": np.int64(3)}, "int64"), ({"dice": [np.float64(0.5)]}, r"\['dice'\]\[0\].*float64"),
             ({"w": torch.ones(2)}, "Tensor"), ({1: "a"}, "keys must be str"))
    for extra, match in cases:
        with pytest.raises(ValueError, match=match):
            save_checkpoint(tmp_path / "x.pt", models={"seg": _unet()}, extra=extra)
    with pytest.raises(ValueError, match=r"optimizers\['sched'\].*function"):
        save_checkpoint(tmp_path / "x.pt", models={"seg": _unet()}, optimizers={"sched": {"lr_lambda": abs}})
    assert list(tmp_path.iterdir()) == []


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(saved, tmp_path):
    path, _ = saved
    data = path.read_bytes()
    half = tmp_path / "half.pt"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"half\.pt.*truncated, corrupt"):
        load_checkpoint(half)


def test_random_bytes(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=r"junk\.pt.*not a readable checkpoint.*pickle stream is invalid") as err:
        load_checkpoint(junk)
    assert "weights_only" not in str(err.value)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "empty.pt")


def test_torch_file_that_is_not_ours(tmp_path):
    torch.save({"a": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt.*not a segreg-lite checkpoint.*\['a'\]"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": FORMAT, "version": 99, "models": {}}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="version 99"):
        load_checkpoint(tmp_path / "future.pt")


def test_arbitrary_objects_are_never_unpickled(tmp_path):
    torch.save({"format": FORMAT, "obj": _Custom()}, tmp_path / "custom.pt")
    with pytest.raises(ValueError, match=r"custom\.pt' was refused: it asks to load the global .*_Custom, which is code") as err:
        load_checkpoint(tmp_path / "custom.pt")
    assert "weights_only" not in str(err.value) and "corrupt" not in str(err.value)
    marker = tmp_path / "pwned"
    torch.save({"format": FORMAT, "obj": _Evil(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"evil\.pt' was refused: it asks to load the global \S*open.*nothing in it was run"):
        load_into(tmp_path / "evil.pt", "seg", _unet())
    assert not marker.exists()


class _System:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_payload_is_named_as_refused_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": FORMAT, "models": {"seg": _System(marker)}}, tmp_path / "payload.pt")
    with pytest.raises(ValueError, match=r"refused: it asks to load the global (posix|nt)\.system, which is code") as err:
        load_checkpoint(tmp_path / "payload.pt")
    assert not marker.exists()
    assert "weights_only" not in str(err.value) and "corrupt" not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__  # torch's advice is not chained either


# torch's refusals, word for word: 2.13's for a blocked module, and the allowlist one.
TORCH_213 = ("Weights only load failed. In PyTorch 2.6, we changed the default value of the `weights_only` argument "
             "in `torch.load` from `False` to `True`. Re-running `torch.load` with `weights_only` set to `False` will "
             "likely succeed, but it can result in arbitrary code execution. Do it only if you got the file from a "
             "trusted source.\n\n\nTrying to load unsupported GLOBAL posix.system whose module posix is blocked.\n\n"
             "Check the documentation of torch.load to learn more about types accepted by default with weights_only "
             "https://pytorch.org/docs/stable/generated/torch.load.html.")
TORCH_ALLOWLIST = ("Weights only load failed. This file can still be loaded, to do so you have two options\n\t(1) "
                   "Re-running `torch.load` with `weights_only` set to `False` will likely succeed\n\tWeightsUnpickler "
                   "error: Unsupported global: GLOBAL fractions.Fraction was not an allowed global by default. Please "
                   "use `torch.serialization.add_safe_globals([fractions.Fraction])`")
TORCH_OTHER = ("Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
               "succeed\n\tWeightsUnpickler error: Unsupported operand 149\n\nCheck the documentation")


@pytest.mark.parametrize("text, said", [(TORCH_213, "was refused: it asks to load the global posix.system, which is code"),
                                        (TORCH_ALLOWLIST, "was refused: it asks to load the global fractions.Fraction, which is code"),
                                        (TORCH_OTHER, "not a readable checkpoint: the file is truncated, corrupt or not a torch "
                                                      "file (its pickle stream is invalid: Unsupported operand 149)")])
def test_torch_wordings_of_a_refusal(saved, monkeypatch, text, said):
    import pickle

    def refuse(*args, **kwargs):
        raise pickle.UnpicklingError(text)

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(ValueError) as err:
        load_checkpoint(saved[0])
    assert said in str(err.value)
    assert "weights_only" not in str(err.value) and "False" not in str(err.value)


def _tamper(path, edit):
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, path)


def test_unknown_model_class(saved):
    path, _ = saved
    _tamper(path, lambda p: p["models"]["seg"].update({"class": "VNet"}))
    with pytest.raises(ValueError, match=r"model 'seg'.*unknown model class 'VNet'; known: UNet, RegNet"):
        load_checkpoint(path)


def test_state_dict_that_does_not_fit(saved):
    path, _ = saved
    key = "head.weight"

    def edit(p):
        state = p["models"]["seg"]["state_dict"]
        state[key] = torch.zeros(7, 4, 1, 1)
        del state["head.bias"]
        state["extra.weight"] = torch.zeros(1)

    _tamper(path, edit)
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "model 'seg'" in message and "UNet(" in message
    assert "missing keys (1): head.bias" in message and "unexpected keys (1): extra.weight" in message
    assert "head.weight saved (7, 4, 1, 1) vs model (3, 4, 1, 1)" in message


def test_load_into_same_model(saved):
    path, model = saved
    target = _unet(seed=5)
    assert load_into(path, "seg", target) is target
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(target.eval()(x), model.eval()(x))
    with pytest.raises(ValueError, match=r"no model 'reg'; it has \['seg'\]"):
        load_into(path, "reg", target)


def test_load_into_another_model(tmp_path):
    path = save_checkpoint(tmp_path / "f8.pt", models={"seg": _unet(features=8)})
    with pytest.raises(ValueError, match="checkpoint from another model") as info:
        load_into(path, "seg", _unet(features=16))
    message = str(info.value)
    assert "'features': 8" in message and "'features': 16" in message  # both configs shown
    assert "features: 8 vs 16" in message


@pytest.mark.parametrize("protocol", [4, 5])
def test_a_raw_pickle_is_refused_as_a_pickle_not_as_corrupt(tmp_path, protocol):
    """A ``pickle.dump`` file is not damaged: it is a format that can run code when read, which
    segreg-lite never reads. Its truncated copy stays "truncated, corrupt or not a torch file"."""
    import pickle

    marker = tmp_path / "pwned"
    path = tmp_path / "raw.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": FORMAT, "models": {"seg": _System(marker)}}, f, protocol=protocol)
    with pytest.raises(ValueError, match=r"raw\.pt' was refused: it is a pickle, which could run code; segreg-lite only "
                                         r"reads torch.save files with weights_only") as err:
        load_checkpoint(path)
    assert "corrupt" not in str(err.value) and "weights_only=False" not in str(err.value) and not marker.exists()
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated, corrupt"):
        load_checkpoint(path)
    legacy = tmp_path / "legacy.pt"  # torch's own non-zip format is a torch file, not a bare pickle
    torch.save({"a": 1}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="not a segreg-lite checkpoint"):
        load_checkpoint(legacy)


def test_a_long_reason_is_never_cut_mid_word(saved, monkeypatch):
    text = "PytorchStreamReader failed reading zip archive: failed finding central directory " * 3

    def fail(*args, **kwargs):
        raise RuntimeError(text)

    monkeypatch.setattr(torch, "load", fail)
    with pytest.raises(ValueError) as err:
        load_checkpoint(saved[0])
    reason = str(err.value).split("(RuntimeError: ", 1)[1]
    assert reason.endswith(" ...)") and text.startswith(reason[: -len(" ...)")] + " ")
