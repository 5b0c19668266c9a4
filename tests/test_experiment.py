import csv
import json
from dataclasses import replace

import pytest
import torch

from segreg_lite.config import TrainConfig, smoke
from segreg_lite.experiment import Data, check_methods, format_table, load_data, run_experiment

CFG = replace(smoke(TrainConfig()), features=4, reg_features=4, batch_size=2, n_atlas=2, n_tta=1, rounds=1)


def _data(n=12, size=32):
    labels = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        labels[i, 6 + i % 5 : 18 + i % 5, 6:24] = 1
        labels[i, 22:27, 4:28] = 2
    images = torch.where(labels == 1, 0.9, torch.where(labels == 2, 0.4, 0.0))[:, None].float()
    return Data(images, labels, [f"s{i}" for i in range(n)], ("background", "a", "b"), "toy")


def test_results_files_and_resume(tmp_path):
    data = _data()
    methods = ["supervised", "supervised_aug", "mean_teacher", "reg_only", "joint"]
    out = tmp_path / "run"
    summary = run_experiment(data, out, methods=methods, fraction=0.2, config=CFG, device="cpu", progress=False)
    assert list(summary["methods"]) == methods
    for name in methods:
        m = summary["methods"][name]["metrics"]
        assert 0 <= m["dice"] <= 1 and len(m["dice_per_class"]) == 2 and m["seconds"] > 0
    assert "folding" in summary["methods"]["reg_only"]["metrics"] and "history" in summary["methods"]["joint"]
    assert summary["config"] == CFG.to_dict() and summary["seed"] == 0 and summary["split"]["annotated"]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["methods"]["joint"]["metrics"]["dice"] == summary["methods"]["joint"]["metrics"]["dice"]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["method"] for r in rows] == methods and float(rows[0]["dice"]) == pytest.approx(summary["methods"]["supervised"]["metrics"]["dice"], abs=1e-5)
    # Started again: every method is read back, nothing is trained.
    logged = []
    again = run_experiment(data, out, methods=methods, fraction=0.2, config=CFG, device="cpu", progress=False, log=logged.append)
    assert again["methods"] == json.loads(json.dumps(summary["methods"]))
    assert all("earlier run" in line for line in logged)
    table = format_table(again)
    assert "joint" in table and "mean_teacher" in table


def test_another_run_in_the_folder_is_refused_unless_overwrite(tmp_path):
    data = _data()
    out = tmp_path / "run"
    run_experiment(data, out, methods=["supervised"], fraction=0.2, config=CFG, device="cpu", progress=False)
    before = (out / "results.json").read_bytes()
    with pytest.raises(ValueError, match="another run.*seed"):
        run_experiment(data, out, methods=["supervised"], fraction=0.2, config=CFG, seed=1, device="cpu", progress=False)
    assert (out / "results.json").read_bytes() == before
    summary = run_experiment(data, out, methods=["supervised"], fraction=0.2, config=CFG, seed=1, device="cpu",
                             progress=False, overwrite=True)
    assert summary["seed"] == 1
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a segreg-lite run"):
        run_experiment(data, stranger, methods=["supervised"], fraction=0.2, config=CFG, device="cpu", progress=False)


def test_bad_names():
    with pytest.raises(ValueError, match="unknown method.*teacher"):
        check_methods(["joint", "teacher"])
    with pytest.raises(ValueError, match="unknown preset"):
        run_experiment(_data(), "/nonexistent/never-written", methods=["supervised"], preset="gpu")
    with pytest.raises(FileNotFoundError, match="neither"):
        load_data("/no/such/folder")
    with pytest.raises(ValueError, match="annotates every"):
        run_experiment(_data(), "/nonexistent/never-written", methods=["joint"], fraction=1.0, config=CFG)
