"""The peers benchmark: a longer UniMatch and the 100%-label U-Net at the joint method's steps."""
import importlib.util
from pathlib import Path

import pytest

from segreg_lite.experiment import run_experiment

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("bench_peers", ROOT / "benchmarks" / "bench_peers.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_peers_from_a_finished_run(tmp_path, capsys, monkeypatch, make_data, tiny_config):
    data = make_data()
    run_experiment(data, tmp_path / "run", methods=["supervised_aug", "unimatch"], fraction=0.2, config=tiny_config,
                   device="cpu", progress=False)
    monkeypatch.setattr(bench, "load_data", lambda *a, **k: data)
    bench.main([str(tmp_path / "run"), "--subjects", str(len(data.images)), "--um-steps", "3"])
    out = capsys.readouterr().out
    assert "the run's own test Dice: supervised_aug" in out
    steps = tiny_config.seg_steps + tiny_config.rounds * tiny_config.seg_round_steps
    assert "| unimatch, 3 steps |" in out and f"| 100% of the labels, {steps} steps |" in out


def test_refusals(tmp_path):
    with pytest.raises(SystemExit, match="run.json is missing"):
        bench.main([str(tmp_path)])
    with pytest.raises(SystemExit, match="positive"):
        bench.main([str(tmp_path), "--um-steps", "0"])
