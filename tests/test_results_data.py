"""The results the package ships (segreg_lite/data/shipped_results): what they hold, that the book
and the README read them, and that scripts/export_results.py copies results and nothing else."""
import hashlib
import importlib.util
import json
import shutil
from dataclasses import replace
from pathlib import Path

import papermill
import pytest
import torch

from segreg_lite.config import TrainConfig, get_preset
from segreg_lite.methods import DEFAULT_METHODS
from segreg_lite.report import load_results, sweep_table
from segreg_lite.sweep import SHIPPED_RESULTS, collect_sweep

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 5_000_000  # bytes: what the shipped results may weigh in all


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


export_results = _script("export_results")


def _seed_runs():
    """The shipped results of `make main` over seeds 0, 1 and 2, in seed order."""
    return load_results(sorted(p.parent for p in (SHIPPED_RESULTS / "main-seeds").glob("*/results.json")))
readme_results = _script("readme_results")


def test_the_results_chapter_reads_the_shipped_sweep_by_default():
    params = papermill.inspect_notebook(str(ROOT / "book" / "results.ipynb"))
    assert params["recompute"]["default"] == "False"
    assert SHIPPED_RESULTS == ROOT / "segreg_lite" / "data" / "shipped_results"


def test_the_shipped_sweep_loads_through_the_chapters_reader():
    fractions, seeds = [0.01, 0.05, 0.1], [0, 1, 2]
    collected = collect_sweep(SHIPPED_RESULTS / "sweep", fractions=fractions, seeds=seeds)
    assert list(collected) == [*fractions, 1.0]
    assert all(sorted(s["seed"] for s in runs) == seeds for runs in collected.values())
    rows = sweep_table(collected)
    methods = {r["method"] for r in rows}
    assert methods == {"supervised", "supervised_aug", "mean_teacher", "unimatch", "reg_only", "joint", "upper_bound"}
    assert all(len(r["seeds"]) == 3 for r in rows)
    # The joint method of the table is today's default rounds: strong views, no registration phase.
    for f in fractions:
        for run in collected[f]:
            config = TrainConfig.from_dict(run["config"])
            assert config == get_preset("sweep") and config.strong_views and config.reg_round_steps == 0
    # The longer-schedule check: the run where the augmented U-Net scores lowest, at twice its steps.
    runs = [(f, s) for f in fractions for s in collected[f]]
    worst_f, worst = min(runs, key=lambda fs: fs[1]["methods"]["supervised_aug"]["metrics"]["dice"])
    folder = SHIPPED_RESULTS / "sweep-longer" / f"f{worst_f:g}-s{worst['seed']}"
    longer = load_results([folder])[0]
    short = TrainConfig.from_dict(worst["config"])
    assert TrainConfig.from_dict(longer["config"]) == replace(short, seg_steps=2 * short.seg_steps)
    assert set(longer["methods"]) == {"supervised_aug", "joint"}


def test_the_readme_blocks_are_made_from_the_shipped_results():
    readme = (ROOT / "README.md").read_text()
    table = readme_results.results_block(SHIPPED_RESULTS / "sweep")
    assert f"{readme_results.START}\n{table}\n{readme_results.END}" in readme
    main = readme_results.main_block(SHIPPED_RESULTS / "main")
    assert f"{readme_results.MAIN_START}\n{main}\n{readme_results.MAIN_END}" in readme
    summary = load_results([SHIPPED_RESULTS / "main"])[0]
    assert summary["preset"] == "quick" and summary["fraction"] == 0.01  # what `make main` runs
    seeds = readme_results.seeds_block(SHIPPED_RESULTS / "main-seeds")
    assert f"{readme_results.SEEDS_START}\n{seeds}\n{readme_results.SEEDS_END}" in readme
    runs = _seed_runs()
    assert [r["seed"] for r in runs] == [0, 1, 2]
    assert all(r["config"] == summary["config"] and r["preset"] == "quick" for r in runs)  # make main's settings
    # seed 0 is the run the block above shows, with more methods run into the same folder after it
    assert {m: r for m, r in runs[0]["methods"].items() if m in summary["methods"]} == summary["methods"]
    for r in runs:  # every seed: make main's methods, and the upper bound so the summary prints the gap's share
        assert {*DEFAULT_METHODS, "upper_bound"} <= set(r["methods"])


def _table(name):
    return json.loads((SHIPPED_RESULTS / f"{name}.json").read_text())


def test_the_refinement_table_runs_the_shipped_seeds_default_from_their_models():
    """``em.json`` compares the rounds without and with the intensity refinement of the
    pseudo-labels, from the seeds' own pre-trained models: its refined variant is the default
    that made the seeds' runs, so it must give each seed's joint result to the last digit."""
    table, runs = _table("em"), _seed_runs()
    assert table["seeds"] == [r["seed"] for r in runs] == [0, 1, 2]
    refined = next(v for v in table["variants"] if v["name"] != "as run")
    config = TrainConfig.from_dict(table["config"])
    assert config.em_iters == 0 and refined["changes"]["em_iters"] > 0
    assert replace(config, **refined["changes"]) == TrainConfig.from_dict(runs[0]["config"])
    assert refined["test_dice"] == [r["methods"]["joint"]["metrics"]["dice"] for r in runs]


@pytest.mark.parametrize("name", ["ablation", "rounds5", "instance_opt", "balance", "online"])
def test_the_shipped_round_benchmarks_start_from_the_shipped_seeds(name):
    """The "beyond the paper" chapter sets each table of ``benchmarks/bench_joint.py`` beside the
    three seeds' runs: each must come from those runs' own pre-trained models and settings. These
    tables were made before the intensity refinement joined the default, so their "as run" row
    is the rounds without it: ``em.json``'s own "as run" row, to the last digit."""
    table, runs = _table(name), _seed_runs()
    assert table["seeds"] == [r["seed"] for r in runs] == [0, 1, 2]
    before = _table("em")
    assert TrainConfig.from_dict(table["config"]) == TrainConfig.from_dict(before["config"])
    as_run = next(v for v in table["variants"] if v["name"] == "as run")
    assert as_run["test_dice"] == next(v for v in before["variants"] if v["name"] == "as run")["test_dice"]
    assert len(table["variants"]) > 1 and all(v["changes"] for v in table["variants"] if v["name"] != "as run")


def test_no_checkpoint_or_big_file_is_shipped():
    files = [p for p in SHIPPED_RESULTS.rglob("*") if p.is_file()]
    assert files and sum(p.stat().st_size for p in files) < LIMIT
    for path in files:
        assert path.suffix in (".json", ".csv"), path
        assert path.stat().st_size < LIMIT, path
        export_results.check_file(path)  # not a zip or pickle under a .json name
    # Each export lists exactly the files beside it, unchanged since it was written.
    exports = sorted(SHIPPED_RESULTS.glob("*/export.json"))
    assert [p.parent.name for p in exports] == ["main", "main-seeds", "sweep", "sweep-longer"]
    for record_path in exports:
        record = json.loads(record_path.read_text())
        held = {p.relative_to(record_path.parent).as_posix() for p in record_path.parent.rglob("*") if p.is_file()}
        assert held == {"export.json", *record["files"]}
        for rel, entry in record["files"].items():
            data = (record_path.parent / rel).read_bytes()
            assert len(data) == entry["bytes"] and hashlib.sha256(data).hexdigest() == entry["sha256"], rel


def test_the_shipped_results_are_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    patterns = ["data/shipped_results/**/*.json", "data/shipped_results/**/*.csv"]
    assert all(f'"{p}"' in text for p in patterns)
    package = ROOT / "segreg_lite"
    covered = {p for pattern in patterns for p in package.glob(pattern)}
    assert covered == {p for p in SHIPPED_RESULTS.rglob("*") if p.is_file()}


def _run_folder(tmp_path):
    """A finished run folder: the shipped main run's results, a method file and a checkpoint."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "methods").mkdir()
    for name in ("results.json", "results.csv"):
        shutil.copy(SHIPPED_RESULTS / "main" / name, run / name)
    (run / "run.json").write_text("{}")
    (run / "methods" / "joint.json").write_text("{}")
    torch.save({"weights": torch.zeros(3)}, run / "checkpoints" / "joint.pt")
    return run


def test_export_copies_the_results_only(tmp_path):
    run = _run_folder(tmp_path)
    record = export_results.export(run, tmp_path / "out", machine="test machine")
    held = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert held == ["export.json", "results.csv", "results.json"]
    assert record["kind"] == "run" and record["machine"] == "test machine"
    assert record["timing"]["runs_at_once"] == 1
    assert json.dumps(load_results([tmp_path / "out"])) == json.dumps(load_results([run]))
    # Again over its own earlier export: replaced.
    (run / "results.csv").write_text("method,dice\njoint,0.5\n")
    export_results.export(run, tmp_path / "out")
    assert (tmp_path / "out" / "results.csv").read_text() == "method,dice\njoint,0.5\n"


def test_export_refuses_checkpoints_and_leaves_nothing(tmp_path):
    run = _run_folder(tmp_path)
    with pytest.raises(export_results.ExportError, match="checkpoint"):
        export_results.check_file(run / "checkpoints" / "joint.pt")
    torch.save({"weights": torch.zeros(3)}, run / "results.json")  # a checkpoint under a results name
    with pytest.raises(export_results.ExportError, match="torch.save"):
        export_results.export(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary folder left behind
    assert export_results.main([str(run), str(tmp_path / "out")]) == 1


def test_export_refuses_oversized_output_and_foreign_folders(tmp_path):
    run = _run_folder(tmp_path)
    with pytest.raises(export_results.ExportError, match="over the limit"):
        export_results.export(run, tmp_path / "out", max_bytes=1000)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(export_results.ExportError, match="not an earlier export"):
        export_results.export(run, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"
    with pytest.raises(export_results.ExportError, match="no results.json"):
        export_results.export(tmp_path / "mine", tmp_path / "out")


def test_export_of_a_sweep_reads_back_the_same(tmp_path):
    src = tmp_path / "sweep"
    for name in ("f0.01-s0", "f0.01-s1", "full-s0"):
        shutil.copytree(SHIPPED_RESULTS / "sweep" / name, src / name)
    record = export_results.export(src, tmp_path / "out")
    assert record["kind"] == "sweep" and record["runs"] == ["f0.01-s0", "f0.01-s1", "full-s0"]
    assert record["timing"] is None  # no run.json: the copies do not say when they ran
    assert json.dumps(collect_sweep(tmp_path / "out"), sort_keys=True) == json.dumps(collect_sweep(src), sort_keys=True)
