"""The registration benchmark's own logic: argument checks and scoring (it is not timed here)."""
import argparse
import importlib.util
from pathlib import Path

import pytest
import torch

from segreg_lite.checks import one_hot

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("bench_registration", ROOT / "benchmarks" / "bench_registration.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def _args(**kw):
    base = dict(subjects=300, data_seed=0, seed=0, fractions=[0.01], targets=20, threads=2, presets=[], checkpoint=[],
                passes=[1, 2], io_steps=[20], io_lr=0.3)
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.parametrize("kw, match", [
    (dict(fractions=[0.0]), "--fractions"),
    (dict(fractions=[1.5]), "--fractions"),
    (dict(targets=0), "--targets"),
    (dict(threads=0), "--threads"),
    (dict(passes=[0]), "--passes"),
    (dict(io_steps=[-1]), "--io-steps / --io-lr: io_steps"),
    (dict(io_lr=0.0), "--io-steps / --io-lr: io_lr"),
    (dict(io_lr=-0.5), "--io-steps / --io-lr: io_lr"),
    (dict(presets=["fast"]), "unknown preset 'fast'"),
    (dict(presets=["cpu@many"]), "whole number"),
    (dict(checkpoint=["/no/such/file.pt"]), "no such file"),
    (dict(subjects=2), "--subjects must be an integer >= 3"),
    (dict(data_seed=-1), "--data-seed must be a non-negative integer"),
    (dict(seed=-2), "--seed must be a non-negative integer"),
])
def test_bad_arguments_fail_before_any_work(kw, match):
    with pytest.raises(SystemExit, match=match):
        bench.check_args(_args(**kw))


def test_a_checkpoint_that_is_not_one_is_named_in_one_line(tmp_path):
    # Issue 24: --checkpoint /etc/passwd was a traceback, after the cohort was generated.
    from segreg_lite.checkpoint import save_checkpoint
    from segreg_lite.unet import UNet

    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    unet = tmp_path / "unet.pt"
    save_checkpoint(unet, models={"segmenter": UNet(features=4)})
    for path, why in ((text, "is not a readable checkpoint"), (unet, "holds no registration network")):
        with pytest.raises(SystemExit) as err:
            bench.check_args(_args(checkpoint=[str(path)]))
        message = str(err.value)
        assert message.startswith("--checkpoint") and str(path) in message and why in message and "\n" not in message


@pytest.mark.parametrize("flag, value, expected", [
    ("--fractions", "", "argument --fractions: expected comma-separated fractions, got ''"),
    ("--fractions", "0.1,x", "argument --fractions: expected comma-separated fractions, got '0.1,x'"),
    ("--passes", "two", "argument --passes: expected comma-separated whole numbers, got 'two'"),
])
def test_list_arguments_name_their_flag(capsys, flag, value, expected):
    # Issue 24: --fractions '' printed "invalid <lambda> value".
    with pytest.raises(SystemExit) as err:
        bench.main([flag, value])
    assert err.value.code == 2
    stderr = capsys.readouterr().err
    assert expected in stderr and "lambda" not in stderr


def test_score_known_answers():
    truth = torch.zeros(2, 8, 8, dtype=torch.long)
    truth[:, 2:6, 2:6] = 1
    right = one_hot(truth, 3)  # (T, K, H, W)
    wrong = one_hot(torch.zeros_like(truth), 3)  # class 1 missing: Dice 0; class 2 empty in both: 1
    warped = torch.stack([torch.stack([right[t], right[t], wrong[t]]) for t in range(2)])  # (T, A=3, K, H, W)
    s = bench.score(warped, truth, 3)
    assert s["per_class"] == pytest.approx([2 / 3, 1.0])  # class 1: two right atlases of three per target
    assert s["pair"] == pytest.approx(5 / 6)
    assert s["multi"] == 1.0  # the mean map's argmax follows the two right atlases
