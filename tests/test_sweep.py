import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segreg_lite.cli import main
from segreg_lite.report import compute_minutes, format_sweep, markdown_sweep, sweep_table
from segreg_lite.splits import FRACTIONS
from segreg_lite.sweep import SWEEP_FRACTIONS, collect_sweep, plan_sweep, run_sweep


def test_plan_is_seed_major_with_the_upper_bound_once_per_seed(tmp_path):
    plan = plan_sweep(tmp_path, fractions=(0.05, 0.5), seeds=(0, 1), methods=("upper_bound", "joint", "supervised"))
    assert [(r.fraction, r.seed) for r in plan] == [(0.05, 0), (0.5, 0), (1.0, 0), (0.05, 1), (0.5, 1), (1.0, 1)]
    assert plan[0].methods == ("supervised", "joint") and plan[2].methods == ("upper_bound",)
    assert plan[1].folder == tmp_path / "f0.5-s0" and plan[2].folder == tmp_path / "full-s0"
    for bad, match in [({"fractions": (0.01, 1.0)}, "in \\(0, 1\\)"), ({"seeds": (0, 0)}, "repeated"),
                       ({"fractions": ()}, "at least one"), ({"methods": ("joint", "teacher")}, "unknown method")]:
        with pytest.raises(ValueError, match=match):
            plan_sweep(tmp_path, **{"fractions": (0.1,), "seeds": (0,), **bad})


def test_sweep_runs_skips_finished_runs_and_collects_by_fraction(tmp_path, make_data, tiny_config):
    data, root = make_data(), tmp_path / "sweep"
    kw = dict(fractions=(0.2, 0.5), seeds=(0, 1), methods=("supervised", "joint", "upper_bound"), config=tiny_config,
              device="cpu", progress=False)
    summaries = run_sweep(data, root, **kw)
    assert len(summaries) == 6 and {s["fraction"] for s in summaries} == {0.2, 0.5, 1.0}
    assert sorted(p.name for p in root.iterdir()) == ["f0.2-s0", "f0.2-s1", "f0.5-s0", "f0.5-s1", "full-s0", "full-s1"]
    # More annotated images at the larger fraction, the same test subjects.
    assert len(summaries[1]["split"]["annotated"]) > len(summaries[0]["split"]["annotated"])
    assert summaries[1]["split"]["test"] == summaries[0]["split"]["test"]

    stamps = {p: p.stat().st_mtime_ns for p in root.glob("*/methods/*.json")}
    logged = []
    again = run_sweep(data, root, **kw, log=logged.append)
    assert [s["methods"] for s in again] == [json.loads(json.dumps(s["methods"])) for s in summaries]
    assert {p: p.stat().st_mtime_ns for p in root.glob("*/methods/*.json")} == stamps  # nothing trained again
    assert "0 to run" in logged[0] and sum(line.startswith("[") and "finished, read" in line for line in logged) == 6

    collected = collect_sweep(root)
    assert list(collected) == [0.2, 0.5, 1.0] and all(len(runs) == 2 for runs in collected.values())
    assert list(collect_sweep(root, fractions=[0.5], seeds=[1])) == [0.5, 1.0]
    assert [s["seed"] for s in collect_sweep(root, fractions=[0.5], seeds=[1])[0.5]] == [1]
    rows = sweep_table(collected)
    assert [(r["method"], r["fraction"]) for r in rows] == [
        ("supervised", 0.2), ("supervised", 0.5), ("joint", 0.2), ("joint", 0.5), ("upper_bound", 1.0)]
    dice = [s["methods"]["joint"]["metrics"]["dice"] for s in summaries if s["fraction"] == 0.5]
    assert rows[3]["dice"][0] == pytest.approx(sum(dice) / 2) and rows[3]["seeds"] == [0, 1]
    assert compute_minutes(collected) == pytest.approx(
        sum(m["metrics"]["seconds"] for s in summaries for m in s["methods"].values()) / 60)
    text = format_sweep(collected)
    assert "20%" in text and "100%" in text and f"{rows[3]['dice'][0]:.3f}" in text
    table = markdown_sweep(collected).splitlines()
    assert table[0] == "| method | 20% | 50% | 100% |" and len(table) == 2 + 3
    for col in (1, 2):  # one bold cell per fraction: its best method, never the upper bound
        cells = [line.split("|")[col + 1] for line in table[2:]]
        assert sum("**" in c for c in cells) == 1
        best = max(("supervised", "joint"), key=lambda m: next(r["dice"][0] for r in rows if r["method"] == m and r["fraction"] == [0.2, 0.5][col - 1]))
        assert "**" in cells[["supervised", "joint", "upper_bound"].index(best)]

    # The README's table comes from these files, between its markers, and nowhere else.
    script = Path(__file__).resolve().parent.parent / "scripts" / "readme_results.py"
    readme = tmp_path / "README.md"
    start, end = "<!-- results table: start (scripts/readme_results.py) -->", "<!-- results table: end -->"
    readme.write_text(f"# title\n\n{start}\nold table\n{end}\n\nafter\n")
    done = subprocess.run([sys.executable, str(script), "--root", str(root), "--readme", str(readme)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    written = readme.read_text()
    assert "old table" not in written and "\n".join(table) in written and written.endswith(f"{end}\n\nafter\n")
    readme.write_text("no markers\n")
    done = subprocess.run([sys.executable, str(script), "--root", str(root), "--readme", str(readme)], capture_output=True, text=True)
    assert done.returncode == 1 and "needs one" in done.stderr and readme.read_text() == "no markers\n"


def test_worker_processes_give_the_same_runs_to_the_last_digit(tmp_path, make_data, tiny_config):
    """Two one-thread workers compute what one one-thread process computes, bit for bit: the runs
    are seeded phase by phase, and only the thread count changes floating-point results."""
    data = make_data()
    kw = dict(fractions=(0.2, 0.5), seeds=(0,), methods=("supervised", "mean_teacher", "reg_only", "joint"),
              config=tiny_config, device="cpu", progress=False)
    logged = []
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # run_sweep gives each of its 2 workers 2 // 2 = 1 thread
        parallel = run_sweep(data, tmp_path / "p", jobs=2, log=logged.append, **kw)
        torch.set_num_threads(1)  # ... and the serial sweep runs with as many
        serial = run_sweep(data, tmp_path / "s", **kw)
    finally:
        torch.set_num_threads(threads)
    assert "in 2 worker processes" in logged[0] and sum("done (" in line for line in logged) == 2
    untimed = lambda metrics: {k: v for k, v in metrics.items() if k != "seconds"}  # noqa: E731
    for a, b in zip(parallel, serial, strict=True):
        assert a["fraction"] == b["fraction"] and a["split"] == b["split"] and list(a["methods"]) == list(b["methods"])
        for name in kw["methods"]:
            assert a["methods"][name]["metrics"]["dice"] == b["methods"][name]["metrics"]["dice"], name
            assert untimed(a["methods"][name]["metrics"]) == untimed(b["methods"][name]["metrics"]), name
    with pytest.raises(ValueError, match="jobs"):
        run_sweep(data, tmp_path / "x", jobs=0, **kw)


def test_collect_needs_finished_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished run"):
        collect_sweep(tmp_path)


def test_sweep_fractions_are_the_papers_few_label_ones():
    assert SWEEP_FRACTIONS == FRACTIONS[:3] == (0.01, 0.05, 0.1)


def test_sweep_command(tmp_path, capsys):
    args = ["sweep", "--subjects", "12", "--size", "32", "32", "--fractions", "0.2", "--seeds", "0",
            "--methods", "supervised,upper_bound", "--smoke", "--quiet", "--out", str(tmp_path / "s")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "upper_bound" in out and "20%" in out and (tmp_path / "s" / "full-s0" / "results.json").exists()
    assert main(args[:-2] + ["--seeds", "0,x", "--out", str(tmp_path / "t")]) == 2
    assert "--seeds must be comma-separated integers" in capsys.readouterr().err and not (tmp_path / "t").exists()


def test_a_run_is_finished_only_if_its_results_carry_its_fingerprint(tmp_path, make_data, tiny_config):
    data, root = make_data(), tmp_path / "sweep"
    kw = dict(fractions=(0.5,), seeds=(0,), methods=("supervised",), config=tiny_config, device="cpu", progress=False)
    first = run_sweep(data, root, **kw)
    path = root / "f0.5-s0" / "methods" / "supervised.json"
    held = json.loads(path.read_text())
    held["fingerprint"]["data"] = "0" * 16  # made from other data
    path.write_text(json.dumps(held))
    logged = []
    again = run_sweep(data, root, **kw, log=logged.append)
    assert "1 to run" in logged[0] and any("differs in data" in line for line in logged)
    assert again[0]["methods"]["supervised"]["metrics"]["dice"] == first[0]["methods"]["supervised"]["metrics"]["dice"]
    (root / "f0.5-s0" / "results.json").write_text("{")
    with pytest.raises(ValueError, match=r"f0.5-s0/results.json: damaged results file: not valid JSON"):
        collect_sweep(root)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        plan_sweep(root, fractions=(0.5,), seeds=(-1,))


def test_collect_refuses_runs_of_one_fraction_that_differ_in_more_than_their_seed(tmp_path):
    """A smoke run left beside the full runs of one fraction would be averaged into its cell:
    refused, naming the difference; the shipped sweep, whose runs differ in seed alone, collects."""
    from segreg_lite.config import get_preset

    full = get_preset("sweep")
    metrics = {"dice": 0.7, "hd": 9.0, "hd95": 3.0, "dice_per_class": [0.7, 0.7], "seconds": 60.0}
    for name, seed, config in (("f0.01-s0", 0, full), ("f0.01-s1", 1, full.smoke())):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({
            "data": "toy", "preset": "sweep", "fraction": 0.01, "seed": seed, "label_names": ["bg", "a", "b"],
            "config": config.to_dict(), "methods": {"supervised": {"metrics": metrics}}}))
    with pytest.raises(ValueError, match=r"f0.01-s1 differs from .*f0.01-s0 in smoke: True vs False; config\."):
        collect_sweep(tmp_path)
    held = json.loads((tmp_path / "f0.01-s1" / "results.json").read_text())
    (tmp_path / "f0.01-s1" / "results.json").write_text(json.dumps({**held, "fraction": "0.01"}))
    with pytest.raises(ValueError, match=r"f0.01-s1/results.json: damaged results file: 'fraction' must be a number"):
        collect_sweep(tmp_path)
    from segreg_lite.sweep import SHIPPED_RESULTS

    shipped = collect_sweep(SHIPPED_RESULTS / "sweep")
    assert list(shipped) == [*SWEEP_FRACTIONS, 1.0] and all(len(runs) == 3 for runs in shipped.values())


def test_a_sweep_refusal_offers_no_overwrite_it_does_not_have(tmp_path, make_data, tiny_config):
    """``segreg-lite sweep`` has no ``--overwrite``: a run folder holding another run is refused
    with the sweep's remedy, and left as it was."""
    from segreg_lite.runfolder import RunFolder

    root = tmp_path / "sweep"
    with RunFolder(root / "f0.5-s0") as folder:
        folder.start({"data": "other data", "seed": 0, "fraction": 0.5, "segreg_lite": "0.0.9"})
    before = (root / "f0.5-s0" / "run.json").read_text()
    kw = dict(fractions=(0.5,), seeds=(0,), methods=("supervised",), config=tiny_config, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"f0.5-s0 holds another run .*move that folder away \(segreg-lite sweep has no "
                                         r"--overwrite") as err:
        run_sweep(make_data(), root, **kw)
    assert "overwrite=True" not in str(err.value) and "pass" not in str(err.value)
    assert (root / "f0.5-s0" / "run.json").read_text() == before
