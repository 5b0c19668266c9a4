import json

import pytest

from segreg_lite.report import load_results, summarize_runs
from segreg_lite.sweep import SHIPPED_RESULTS


def _fake_run(folder, seed, dice, fraction=0.01, rounds=None, upper=None, config=None):
    """A results.json as run_experiment writes it, with made-up numbers (for the summary)."""
    methods = {"supervised_aug": {"metrics": {"dice": dice, "hd": 10.0 + seed, "hd95": 4.0, "dice_per_class": [dice, dice + 0.1],
                                              "seconds": 60.0}}}
    if upper is not None:
        methods["upper_bound"] = {"metrics": {"dice": upper, "hd": 5.0, "hd95": 2.0, "dice_per_class": [upper] * 2,
                                              "seconds": 600.0}}
    if rounds is not None:
        methods["joint"] = {"metrics": {"dice": rounds[-1], "hd": 9.0, "hd95": 3.0, "dice_per_class": [rounds[-1]] * 2,
                                        "seconds": 120.0},
                            "history": [{"round": r, "test_dice": d} for r, d in enumerate(rounds)]}
    summary = {"data": "toy", "preset": "quick", "fraction": fraction, "seed": seed,
               "label_names": ["background", "a", "b"], "methods": methods}
    if config is not None:
        summary["config"] = config.to_dict()
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(summary))
    return folder


def test_summary_over_seeds(tmp_path, capsys):
    from segreg_lite.cli import main

    folders = [_fake_run(tmp_path / "s0", 0, 0.7, rounds=[0.7, 0.72, 0.74]),
               _fake_run(tmp_path / "s1", 1, 0.8, rounds=[0.8, 0.80, 0.82])]
    table = summarize_runs(load_results(folders))
    assert table["supervised_aug"]["seeds"] == [0, 1]
    assert table["supervised_aug"]["dice"] == pytest.approx((0.75, 0.05))
    assert table["supervised_aug"]["hd"] == pytest.approx((10.5, 0.5))
    assert table["supervised_aug"]["dice_per_class"][0] == pytest.approx([0.75, 0.85])
    assert table["joint"]["rounds_mean"] == pytest.approx([0.75, 0.76, 0.78])
    assert table["joint"]["rounds_std"] == pytest.approx([0.05, 0.04, 0.04])
    assert "rounds_mean" not in table["supervised_aug"]
    # The joint method against the baseline, paired by seed; no upper bound, no share of its gap.
    assert table["joint"]["gain"] == pytest.approx({0: 0.04, 1: 0.02})
    assert table["joint"]["gap_closed"] == {}
    assert "gain" not in table["supervised_aug"]
    assert main(["summary", *map(str, folders)]) == 0
    out = capsys.readouterr().out
    assert "0.750 +- 0.050" in out and "0.780 +- 0.040" in out
    assert "joint: +0.040 (seed 0), +0.020 (seed 1); +0.030 +- 0.010" in out
    assert "gap to upper_bound" not in out
    # Runs of another fraction, the same seed twice, or a folder without results: clear errors.
    other = _fake_run(tmp_path / "f05", 2, 0.8, fraction=0.05)
    with pytest.raises(ValueError, match="fraction"):
        load_results([folders[0], other])
    with pytest.raises(ValueError, match="same seed"):
        load_results([folders[0], folders[0]])
    assert main(["summary", str(tmp_path / "missing")]) == 2
    assert "results.json not found" in capsys.readouterr().err


def test_summary_gives_the_share_of_the_gap_to_the_upper_bound(tmp_path, capsys):
    from segreg_lite.cli import main

    # Seed 0: upper bound 0.9, baseline 0.7, joint 0.75: a quarter of the gap. Seed 1 has no
    # upper bound and counts for the gain only.
    folders = [_fake_run(tmp_path / "s0", 0, 0.7, rounds=[0.7, 0.75], upper=0.9),
               _fake_run(tmp_path / "s1", 1, 0.8, rounds=[0.8, 0.81])]
    table = summarize_runs(load_results(folders))
    assert table["joint"]["gain"] == pytest.approx({0: 0.05, 1: 0.01})
    assert table["joint"]["gap_closed"] == pytest.approx({0: 0.25})
    assert "gain" not in table["upper_bound"]
    assert main(["summary", *map(str, folders)]) == 0
    assert "share of the gap to upper_bound closed: 25% +- 0% (seeds 0)" in capsys.readouterr().out


def test_sweep_grid_pivots_the_sweep_table(tmp_path):
    from segreg_lite.report import format_sweep, markdown_sweep, sweep_cells, sweep_grid

    collected = {0.01: load_results([_fake_run(tmp_path / "a0", 0, 0.6), _fake_run(tmp_path / "a1", 1, 0.7)]),
                 0.05: load_results([_fake_run(tmp_path / "b0", 0, 0.8, fraction=0.05, rounds=[0.8, 0.9])])}
    cells = sweep_cells(collected)
    assert set(cells) == {("supervised_aug", 0.01), ("supervised_aug", 0.05), ("joint", 0.05)}
    assert cells["supervised_aug", 0.01]["dice"] == pytest.approx((0.65, 0.05))
    heads, rows = sweep_grid(collected)
    assert heads == ["method", "1%", "5%"]
    assert rows == [["supervised_aug", "0.650 ± 0.050", "0.800 ± 0.000"], ["joint", "", "0.900 ± 0.000"]]
    assert sweep_grid(collected, "hd", ".1f", pm=" +- ")[1][0] == ["supervised_aug", "10.5 +- 0.5", "10.0 +- 0.0"]
    # The text and Markdown tables are made from the same grid.
    text = format_sweep(collected)
    assert "0.650 +- 0.050 (2)" in text and "0.900 +- 0.000 (1)" in text and "compute: 5.0 min" in text
    assert text.splitlines()[4].split()[:2] == ["joint", "-"]  # no run at 1%
    assert "| joint |  | **0.900 ± 0.000** |" in markdown_sweep(collected)


def test_summary_refuses_runs_that_differ_in_more_than_their_seed(tmp_path, capsys):
    """A full run averaged with a smoke run of the same preset, or with one of another round count,
    is a mean of two experiments: refused, naming the difference (field: value vs value)."""
    from segreg_lite.cli import main
    from segreg_lite.config import TrainConfig

    full = TrainConfig(rounds=3)
    a = _fake_run(tmp_path / "full", 0, 0.7, config=full)
    smoke = _fake_run(tmp_path / "smoke", 1, 0.3, config=full.smoke())
    with pytest.raises(ValueError, match=r"smoke: True vs False; config\.batch_size: 4 vs 8; config\.seg_steps: 4 vs 800") as err:
        load_results([a, smoke])
    assert "\n" not in str(err.value) and "seed alone" in str(err.value)
    rounds = _fake_run(tmp_path / "rounds", 2, 0.8, config=TrainConfig(rounds=1))
    with pytest.raises(ValueError, match=r"rounds differs from .*full in config\.rounds: 1 vs 3") as err:
        load_results([a, rounds])
    assert "smoke" not in str(err.value)
    assert main(["summary", str(a), str(smoke)]) == 2
    assert "smoke: True vs False" in capsys.readouterr().err
    # Runs that differ in their seed alone still average, the shipped ones too.
    assert summarize_runs(load_results([a, _fake_run(tmp_path / "s1", 1, 0.8, config=full)]))["supervised_aug"]["seeds"] == [0, 1]
    shipped = sorted((SHIPPED_RESULTS / "main-seeds").glob("s*"))
    assert len(shipped) == 3 and main(["summary", *map(str, shipped)]) == 0
    assert "mean +- std over seeds" in capsys.readouterr().out


def test_a_damaged_results_file_is_named_before_anything_reads_it(tmp_path, capsys):
    """A results file without metrics, or with a Dice edited into a string, is a one-line error
    naming the file and the field, not a KeyError or a format error that names no file."""
    from segreg_lite.cli import main

    good = _fake_run(tmp_path / "s0", 0, 0.7)
    cases = [(lambda m: m.pop("metrics"), "no 'metrics' table"),
             (lambda m: m["metrics"].update(dice="0.7"), "metrics 'dice' must be a number, got '0.7'"),
             (lambda m: m["metrics"].update(dice_per_class=[0.5]), "'dice_per_class' must be a list of 2 numbers")]
    for i, (edit, said) in enumerate(cases):
        bad = _fake_run(tmp_path / f"bad{i}", 1, 0.8)
        held = json.loads((bad / "results.json").read_text())
        edit(held["methods"]["supervised_aug"])
        (bad / "results.json").write_text(json.dumps(held))
        with pytest.raises(ValueError, match=f"bad{i}/results.json: damaged results file: method 'supervised_aug'"):
            load_results([good, bad])
        assert main(["summary", str(good), str(bad)]) == 2
        err = capsys.readouterr().err
        assert said in err and f"bad{i}/results.json" in err and err.count("\n") == 1
    (tmp_path / "bad0" / "results.json").write_text(json.dumps({**json.loads((good / "results.json").read_text()), "seed": "1"}))
    with pytest.raises(ValueError, match=r"bad0/results.json: damaged results file: 'seed' must be an integer"):
        load_results([good, tmp_path / "bad0"])
