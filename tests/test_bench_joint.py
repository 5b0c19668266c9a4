"""The round-schedule benchmark: its variants, its errors, and a run from a finished run's models."""
import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

from segreg_lite.config import get_preset
from segreg_lite.experiment import run_experiment

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("bench_joint", ROOT / "benchmarks" / "bench_joint.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_variants_parse_to_typed_settings():
    base = get_preset("quick")
    assert bench.parse_variant("seg_round_lr=1e-3, rounds=3", base) == {"seg_round_lr": 1e-3, "rounds": 3}
    assert bench.parse_variant("soft_ce=true,confidence_weight=0", base) == {"soft_ce": True, "confidence_weight": False}


@pytest.mark.parametrize("text, match", [
    ("rounds", "KEY=VALUE"),
    ("rounds=", "KEY=VALUE"),
    ("nope=1", "'nope' is not a TrainConfig setting"),
    ("seg_steps=10", "'seg_steps' is fixed by the run's pre-trained models"),
    ("rounds=1.5", "rounds takes a whole number"),
    ("soft_ce=maybe", "soft_ce takes true or false"),
    ("annotated_share=1", "annotated_share must be in"),
    (",", "at least one"),
])
def test_bad_variants_fail_with_the_reason(text, match):
    with pytest.raises(SystemExit, match=match):
        bench.parse_variant(text, get_preset("quick"))


def test_a_folder_without_a_run_is_named(tmp_path):
    with pytest.raises(SystemExit, match="run.json is missing"):
        bench.main([str(tmp_path)])


def test_schedules_from_a_finished_run(tmp_path, capsys, monkeypatch, make_data, tiny_config):
    data = make_data()
    run_experiment(data, tmp_path / "run", methods=["joint"], fraction=0.2, config=tiny_config, device="cpu",
                   progress=False)
    monkeypatch.setattr(bench, "load_data", lambda *a, **k: data)  # the toy data stand in for the cohort
    bench.main([str(tmp_path / "run"), "--subjects", str(len(data.images)), "--variant", "rounds=2,seg_round_lr=1e-3"])
    out = capsys.readouterr().out
    # The run's own schedule (one round, read from its results) and the variant (two), each from
    # round 0, then the table over the runs.
    assert "as run (the run’s own rounds, read from its results): 1 round(s)" in out
    assert "rounds=2,seg_round_lr=1e-3: 2 round(s)" in out
    assert out.count("\n0 | ") == 2 and out.count("\n2 | ") == 1
    last = out.splitlines()[-2:]
    assert last[0].startswith("as run | ") and last[1].startswith("rounds=2,seg_round_lr=1e-3 | ")
    held = json.loads((tmp_path / "run" / "results.json").read_text())["methods"]["joint"]["history"]
    assert last[0].split(" | ")[1] == f"{held[-1]['test_dice']:.4f}"


def test_a_field_added_since_the_run_at_its_default_keeps_the_held_rounds(tmp_path, monkeypatch, make_data, tiny_config):
    # A results file written before a TrainConfig field existed (here reg_io_steps) is the same
    # run as the config that has the field at its default: its rounds are read back, not rerun.
    data = make_data()
    run_experiment(data, tmp_path / "run", methods=["joint"], fraction=0.2, config=tiny_config, device="cpu",
                   progress=False)
    path = tmp_path / "run" / "results.json"
    results = json.loads(path.read_text())
    del results["config"]["reg_io_steps"], results["config"]["reg_io_lr"]
    path.write_text(json.dumps(results))
    monkeypatch.setattr(bench, "changed_since_written", lambda *a: None)  # as if the manifest had this file's digest
    held = bench._held_history(tmp_path / "run", tiny_config, "combined")
    assert held == results["methods"]["joint"]["history"]
    assert bench._held_history(tmp_path / "run", replace(tiny_config, reg_io_steps=3), "combined") is None


def test_the_table_over_seeds_and_a_recomputed_as_run(tmp_path, capsys, monkeypatch, make_data, tiny_config):
    data = make_data()
    for s in (0, 1):
        run_experiment(data, tmp_path / f"s{s}", methods=["supervised_aug", "reg_only"], fraction=0.2, seed=s,
                       config=tiny_config, device="cpu", progress=False)
    monkeypatch.setattr(bench, "load_data", lambda *a, **k: data)
    bench.main([str(tmp_path / "s0"), str(tmp_path / "s1"), "--subjects", str(len(data.images)),
                "--variant", "strong_views=true,pair_share=0.25,appearance=none"])
    out = capsys.readouterr().out
    assert "as run: 1 round(s)" in out and "read from its results" not in out  # no joint held: computed
    assert "Over seeds 0, 1" in out
    row = out.splitlines()[-1].split(" | ")
    assert row[0] == "strong_views=true,pair_share=0.25,appearance=none" and len(row[1].split(", ")) == 2


def test_another_cohort_or_a_damaged_run_file_is_refused_in_one_line(tmp_path, monkeypatch, make_data, tiny_config):
    # Issue 24: bench_joint ran a run's models on another cohort, and a damaged run.json was a traceback.
    data = make_data()
    run_experiment(data, tmp_path / "run", methods=["supervised_aug", "reg_only"], fraction=0.2, config=tiny_config,
                   device="cpu", progress=False)
    other = make_data()
    other.images = other.images.flip(-1)  # as many subjects, other images: another cohort
    monkeypatch.setattr(bench, "load_data", lambda *a, **k: other)
    with pytest.raises(SystemExit, match=r"run was run on other data \(.*\) than these \(.*\): pass the run's --subjects"):
        bench.main([str(tmp_path / "run"), "--subjects", str(len(data.images))])
    run_json = tmp_path / "run" / "run.json"
    spec = json.loads(run_json.read_text())
    for text, said in (('{"split": ', "run.json: damaged run file: not valid JSON"),
                       (json.dumps({k: v for k, v in spec.items() if k != "seed"}), "run.json: damaged run file (no 'seed' entry)"),
                       (json.dumps({**spec, "seed": -2}), "run.json: damaged run file (seed must be a non-negative integer")):
        run_json.write_text(text)
        with pytest.raises(SystemExit) as err:
            bench.load_run(tmp_path / "run")
        message = str(err.value)
        assert said in message and "make the run again" in message and "\n" not in message
    # A run file edited by hand but still whole is refused by its digest, before it is believed.
    run_json.write_text(json.dumps({**spec, "data_sha256": "0" * 64}))
    with pytest.raises(SystemExit, match=r"run.json was changed after segreg-lite wrote it"):
        bench.load_run(tmp_path / "run")
