"""The shipped pre-trained registration network: fingerprint checks and clear errors."""
import hashlib
from dataclasses import replace

import pytest
import torch

from segreg_lite.checkpoint import load_checkpoint, save_checkpoint
from segreg_lite.config import TrainConfig, get_preset
from segreg_lite.registration import pretrain_regnet
from segreg_lite.pretrained import SHIPPED, SHIPPED_SHA256, fingerprint, load_pretrained, mismatch, sha256, shipped_regnet
from segreg_lite.regnet import RegNet
from segreg_lite.splits import make_split
from segreg_lite.train import new_models

CONFIG = replace(TrainConfig(), reg_features=4, reg_steps=2, batch_size=2)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(20, 1, 32, 32, generator=g)
    subjects = [f"sub-{i:04d}" for i in range(20)]
    split = make_split(20, seed=0, fraction=0.2, subjects=subjects)
    return images, subjects, split


def _write(path, images, subjects, train, config=CONFIG, **extra):
    reg = new_models(config, 5, 0)[1]
    fp = fingerprint(images, subjects, train, config)
    save_checkpoint(path, models={"regnet": reg}, config=config,
                    extra={"fingerprint": fp, "training": {"steps": 7, "minutes": 1.0, "device": "cpu"}, **extra})
    return reg


def test_a_matching_file_is_used_and_says_what_it_is(tmp_path, data):
    images, subjects, split = data
    path = tmp_path / "reg.pt"
    saved = _write(path, images, subjects, list(split.train)[:5])
    model, note = shipped_regnet(images, split, CONFIG, path)
    assert isinstance(model, RegNet) and "7 unsupervised steps on 5 training subjects" in note
    for a, b in zip(model.state_dict().values(), saved.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("change, why", [
    ("config", "other registration settings: reg_smoothness"),
    ("test subject", "would have seen validation or test images"),
    ("images", "another cohort"),
    ("size", "trained on 32x32 images, these are 64x64"),
])
def test_a_file_that_does_not_fit_the_run_is_not_used_and_says_why(tmp_path, data, change, why):
    images, subjects, split = data
    path = tmp_path / "reg.pt"
    train = list(split.train)[:5] + ([split.test[0]] if change == "test subject" else [])
    _write(path, images, subjects, train)
    config = replace(CONFIG, reg_smoothness=1.0) if change == "config" else CONFIG
    if change == "images":
        images = images.flip(-1) * 0.5
    if change == "size":
        images = torch.rand(20, 1, 64, 64)
    model, note = shipped_regnet(images, split, config, path)
    assert model is None and why in note


def test_pretrain_regnet_falls_back_to_training_and_logs_why(tmp_path, data, monkeypatch):
    images, subjects, split = data
    monkeypatch.setattr("segreg_lite.pretrained.SHIPPED", tmp_path / "absent.pt")
    reg = new_models(CONFIG, 5, 0)[1]
    lines = []
    history = pretrain_regnet(reg, images, split, CONFIG, seed=0, device="cpu", log=lines.append)
    assert len(history["loss"]) == CONFIG.reg_steps
    assert "pre-training its own for 2 steps" in lines[0] and "no pre-trained file" in lines[0]


def test_pretrain_regnet_loads_a_fitting_file(tmp_path, data, monkeypatch):
    images, subjects, split = data
    path = tmp_path / "reg.pt"
    saved = _write(path, images, subjects, list(split.train))
    monkeypatch.setattr("segreg_lite.pretrained.SHIPPED", path)  # stands in for the shipped file, checksum and all
    monkeypatch.setattr("segreg_lite.pretrained.SHIPPED_SHA256", sha256(path))
    reg = new_models(CONFIG, 5, 1)[1]
    lines = []
    history = pretrain_regnet(reg, images, split, CONFIG, seed=0, device="cpu", log=lines.append)
    assert history["loss"] == [] and "shipped pre-trained weights" in lines[0]
    assert all(torch.equal(a, b) for a, b in zip(reg.state_dict().values(), saved.state_dict().values()))
    # shipped=False trains whatever the config says
    assert len(pretrain_regnet(reg, images, split, CONFIG, seed=0, device="cpu", shipped=False)["loss"]) == 2


def test_broken_files_are_clear_errors(tmp_path, data):
    images, subjects, split = data
    good = tmp_path / "good.pt"
    _write(good, images, subjects, list(split.train))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.pt"):
        shipped_regnet(images, split, CONFIG, truncated)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pt"):
        load_pretrained(text)
    unet_only = tmp_path / "unet.pt"
    save_checkpoint(unet_only, models={"segmenter": new_models(CONFIG, 5, 0)[0]}, config=CONFIG)
    with pytest.raises(ValueError, match="holds no 'regnet'"):
        load_pretrained(unet_only)
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, models={"regnet": new_models(CONFIG, 5, 0)[1]}, config=CONFIG)
    with pytest.raises(ValueError, match="no fingerprint"):
        load_pretrained(bare)


@pytest.mark.skipif(not SHIPPED.exists(), reason="the shipped weights are made by scripts/make_pretrained.py")
def test_the_shipped_file_fits_the_default_cohort_for_split_seeds_0_1_2():
    """Every run of the main command and of the sweep (each CPU preset, each of the sweep's
    fractions, seeds 0-2) starts from the shipped network instead of training its own."""
    from segreg_lite.data import load_data
    from segreg_lite.sweep import SWEEP_FRACTIONS

    assert SHIPPED.stat().st_size < 5e6
    reg, extra = load_pretrained()
    assert reg.config["affine"] and all(p.dtype == torch.float32 for p in reg.parameters())
    data = load_data("cohort")
    for seed in (0, 1, 2):
        for fraction in SWEEP_FRACTIONS:
            split = make_split(len(data.images), seed=seed, fraction=fraction, subjects=data.subjects)
            for preset in ("cpu", "quick", "sweep"):  # the file is read once; mismatch is shipped_regnet's check
                why = mismatch(extra["fingerprint"], data.images, split, get_preset(preset))
                assert why is None, f"{preset}, fraction {fraction}, seed {seed}: {why}"
    assert shipped_regnet(data.images, split, get_preset("cpu"))[0] is not None
    split = make_split(len(data.images), seed=5, fraction=0.01, subjects=data.subjects)
    assert shipped_regnet(data.images, split, get_preset("cpu"))[0] is None  # it saw seed 5's test images


needs_shipped = pytest.mark.skipif(not SHIPPED.exists(), reason="the shipped weights are made by scripts/make_pretrained.py")


@needs_shipped
def test_the_checksum_in_the_code_is_the_shipped_files():
    """A re-made network ships with its checksum: scripts/make_pretrained.py prints it."""
    got = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert got == SHIPPED_SHA256, (f"{SHIPPED} has SHA-256 {got}, but SHIPPED_SHA256 in segreg_lite/pretrained.py is "
                                   f"{SHIPPED_SHA256}: set it to the new file's checksum")


@needs_shipped
def test_a_shipped_file_with_flipped_bytes_is_refused_by_name(tmp_path, monkeypatch, data, make_flipped):
    # Issue 24: such a file loaded as genuine, and reg_only's Dice fell from 0.719 to 0.038 with exit status 0.
    flipped = make_flipped(SHIPPED, tmp_path / "regnet_cohort.pt")
    assert "regnet" in load_checkpoint(flipped).models  # torch alone cannot tell
    monkeypatch.setattr("segreg_lite.pretrained.SHIPPED", flipped)
    images, subjects, split = data
    for call in (lambda: load_pretrained(), lambda: load_pretrained(flipped),
                 lambda: shipped_regnet(images, split, get_preset("cpu"))):
        with pytest.raises(ValueError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message and str(flipped) in message and "SHA-256" in message
        assert "pip install --force-reinstall segreg-lite" in message and "git checkout segreg_lite/data/regnet_cohort.pt" in message
        assert "scripts/make_pretrained.py" in message
    with pytest.raises(ValueError, match="is not the shipped pre-trained registration network"):
        pretrain_regnet(new_models(CONFIG, 5, 0)[1], images, split, CONFIG, seed=0, device="cpu")


@pytest.mark.parametrize("change, why", [
    (dict(config="reg_features=16"), "config is not a table of settings"),
    (dict(size=[32]), "size is not two whole numbers"),
    (dict(size="32x32"), "size is not two whole numbers"),
    (dict(subjects="sub-0001"), "subjects is not a list of names"),
    (dict(subjects=[]), "subjects is not a list of names"),
    (dict(means=[0.5]), "means is not one number per subject"),
    (dict(means=None), "means is not one number per subject"),
])
def test_a_malformed_fingerprint_is_a_one_line_error(tmp_path, monkeypatch, data, change, why):
    images, subjects, split = data
    path = tmp_path / "reg.pt"
    train = list(split.train)[:5]
    fp = {**fingerprint(images, subjects, train, CONFIG), **change}
    save_checkpoint(path, models={"regnet": new_models(CONFIG, 5, 0)[1]}, config=CONFIG, extra={"fingerprint": fp})
    with pytest.raises(ValueError, match=f"reg.pt'? has a malformed fingerprint \\({why}"):
        shipped_regnet(images, split, CONFIG, path)
    # as the shipped file (its checksum right), the error also says how to restore it
    monkeypatch.setattr("segreg_lite.pretrained.SHIPPED", path)
    monkeypatch.setattr("segreg_lite.pretrained.SHIPPED_SHA256", sha256(path))
    with pytest.raises(ValueError, match="malformed fingerprint.*to restore it, reinstall segreg-lite"):
        shipped_regnet(images, split, CONFIG)


def test_a_training_record_that_is_not_one_never_fails_the_note(tmp_path, data):
    images, subjects, split = data
    path = tmp_path / "reg.pt"
    train = list(split.train)[:5]
    save_checkpoint(path, models={"regnet": new_models(CONFIG, 5, 0)[1]}, config=CONFIG,
                    extra={"fingerprint": fingerprint(images, subjects, train, CONFIG), "training": "long ago"})
    model, note = shipped_regnet(images, split, CONFIG, path)
    assert model is not None and "? unsupervised steps on 5 training subjects (? min on ?)" in note
