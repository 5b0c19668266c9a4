import json

import pytest

from segreg_lite.report import load_results, summarize_runs


def _fake_run(folder, seed, dice, fraction=0.01, rounds=None, upper=None):
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
