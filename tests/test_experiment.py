import csv
import json
import re

import pytest

from segreg_lite.experiment import run_experiment
from segreg_lite.report import format_table, load_results

METHODS = ["supervised", "supervised_aug", "mean_teacher", "reg_only", "joint"]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, make_data, tiny_config):
    """One run of five methods on the toy data: (data, its folder, its summary)."""
    data, out = make_data(), tmp_path_factory.mktemp("experiment") / "run"
    summary = run_experiment(data, out, methods=METHODS, fraction=0.2, config=tiny_config, device="cpu", progress=False)
    return data, out, summary


def test_results_files_and_resume(first_run, tiny_config):
    CFG, methods = tiny_config, METHODS
    data, out, summary = first_run
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
    assert all("earlier run" in line for line in logged if not line.startswith("note:"))
    table = format_table(again)
    assert "joint" in table and "mean_teacher" in table


def test_joint_round_0_is_the_augmented_supervised_baseline(first_run):
    """The joint method starts from the run's pre-trained segmenter, which *is* supervised_aug: its
    round 0 (before any joint round) scores exactly what supervised_aug scores."""
    methods = first_run[2]["methods"]
    round_0 = methods["joint"]["history"][0]
    assert round_0["round"] == 0
    assert round_0["test_dice"] == methods["supervised_aug"]["metrics"]["dice"]
    assert round_0["test_dice_per_class"] == methods["supervised_aug"]["metrics"]["dice_per_class"]
    # Another training of the same U-Net scores otherwise: the equality above is no accident of the toy data.
    assert methods["supervised"]["metrics"]["dice"] != methods["supervised_aug"]["metrics"]["dice"]
    # The method's metrics are those of its last round's segmenter.
    assert methods["joint"]["metrics"]["dice"] == methods["joint"]["history"][-1]["test_dice"]


def test_another_run_in_the_folder_is_refused_unless_overwrite(tmp_path, make_data, tiny_config):
    data = make_data()
    out = tmp_path / "run"
    run_experiment(data, out, methods=["supervised"], fraction=0.2, config=tiny_config, device="cpu", progress=False)
    before = (out / "results.json").read_bytes()
    with pytest.raises(ValueError, match="another run.*seed"):
        run_experiment(data, out, methods=["supervised"], fraction=0.2, config=tiny_config, seed=1, device="cpu", progress=False)
    assert (out / "results.json").read_bytes() == before
    summary = run_experiment(data, out, methods=["supervised"], fraction=0.2, config=tiny_config, seed=1, device="cpu",
                             progress=False, overwrite=True)
    assert summary["seed"] == 1
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a segreg-lite run"):
        run_experiment(data, stranger, methods=["supervised"], fraction=0.2, config=tiny_config, device="cpu", progress=False)


def test_bad_names(make_data, tiny_config):
    with pytest.raises(ValueError, match="unknown method.*teacher"):
        run_experiment(make_data(), "/nonexistent/never-written", methods=["joint", "teacher"], config=tiny_config)
    with pytest.raises(ValueError, match="unknown preset"):
        run_experiment(make_data(), "/nonexistent/never-written", methods=["supervised"], preset="gpu")
    with pytest.raises(ValueError, match="annotates every"):
        run_experiment(make_data(), "/nonexistent/never-written", methods=["joint"], fraction=1.0, config=tiny_config)


def _dice(summary, name="supervised"):
    return summary["methods"][name]["metrics"]["dice"]


def test_old_results_are_never_reused_under_new_settings(tmp_path, make_data, tiny_config):
    # Issue 14, case 1: a run at fraction 0.5, run.json deleted, then fraction 0.3 with overwrite.
    data, out = make_data(), tmp_path / "run"
    kw = dict(methods=["supervised", "supervised_aug"], config=tiny_config, device="cpu", progress=False)
    half = run_experiment(data, out, fraction=0.5, **kw)
    (out / "run.json").unlink()
    with pytest.raises(ValueError, match="no run.json"):
        run_experiment(data, out, fraction=0.3, **kw)
    logged = []
    third = run_experiment(data, out, fraction=0.3, overwrite=True, log=logged.append, **kw)
    assert not any("earlier run" in line for line in logged)
    fresh = run_experiment(data, tmp_path / "fresh", fraction=0.3, **kw)
    assert json.loads((out / "results.json").read_text())["fraction"] == 0.3
    for name in kw["methods"]:
        assert _dice(third, name) == _dice(fresh, name) != _dice(half, name)
    # The same state reached without an rm (a race, a copied file): the fingerprint catches it.
    other = tmp_path / "other"
    run_experiment(data, other, fraction=0.5, **kw)
    for rel in ("methods/supervised.json", "methods/supervised_aug.json", "checkpoints/pretrained_seg.pt"):
        (out / rel).write_bytes((other / rel).read_bytes())
    logged.clear()
    again = run_experiment(data, out, fraction=0.3, log=logged.append, **kw)
    assert any("methods/supervised.json was made by another run (differs in split)" in line for line in logged)
    # the checkpoint is listed under this run's fingerprint, but its bytes are not those this run wrote
    assert any("pretrained_seg.pt was changed after segreg-lite wrote it" in line for line in logged)
    for name in kw["methods"]:
        assert _dice(again, name) == _dice(fresh, name)
        assert again["methods"][name]["fingerprint"]["method"] == name


def test_a_busy_folder_is_refused_at_once(tmp_path, make_data, tiny_config):
    from segreg_lite.runfolder import FolderBusy, RunFolder

    out = tmp_path / "run"
    with RunFolder(out):  # another run holds the folder
        with pytest.raises(FolderBusy, match=r"in use by another segreg-lite run \(process \d+\)"):
            run_experiment(make_data(), out, methods=["supervised"], fraction=0.2, config=tiny_config, device="cpu", progress=False)
        assert sorted(p.name for p in out.iterdir()) == [".segreg-lite.lock"]  # nothing written


def test_overwrite_keeps_a_users_files(tmp_path, make_data, tiny_config):
    data, out = make_data(), tmp_path / "run"
    kw = dict(methods=["supervised"], fraction=0.2, config=tiny_config, device="cpu", progress=False)
    run_experiment(data, out, **kw)
    (out / "notes.txt").write_text("mine")
    before = (out / "results.json").read_bytes()
    with pytest.raises(ValueError, match=r"did not write \(notes.txt\).*move those away"):
        run_experiment(data, out, seed=1, overwrite=True, **kw)
    assert (out / "notes.txt").read_text() == "mine" and (out / "results.json").read_bytes() == before


def test_bad_settings_are_refused_before_anything_is_written(tmp_path, make_data, tiny_config):
    out = tmp_path / "never"
    kw = dict(methods=["supervised"], fraction=0.2, config=tiny_config, progress=False)
    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        run_experiment(make_data(), out, device="bogus", **kw)
    with pytest.raises(ValueError, match="seed must be a non-negative integer.*-1"):
        run_experiment(make_data(), out, seed=-1, device="cpu", **kw)
    with pytest.raises(ValueError, match="slices of 20x20 pixels.*multiples of 16"):
        run_experiment(make_data(size=20), out, device="cpu", **kw)
    with pytest.raises(ValueError, match="slices of 16x16 pixels.*at least 32 \\(for reg_only\\)"):
        run_experiment(make_data(size=16), out, device="cpu", **{**kw, "methods": ["reg_only"]})
    assert not out.exists()


def test_a_rounded_up_fraction_is_said(tmp_path, make_data, tiny_config):
    logged = []
    summary = run_experiment(make_data(), tmp_path / "run", methods=["supervised"], fraction=0.0001, config=tiny_config, device="cpu",
                             progress=False, log=logged.append)
    held = json.loads((tmp_path / "run" / "run.json").read_text())["annotation"]
    assert held == summary["annotation"] and held["rounded_up"] and held["n_annotated"] == 1
    assert held["annotated_fraction"] == pytest.approx(1 / held["n_train"])
    assert any("fraction 0.0001" in line and "rounded up to 1 annotated" in line for line in logged)
    logged.clear()
    run_experiment(make_data(n=23), tmp_path / "exact", methods=["supervised"], fraction=0.25, config=tiny_config, device="cpu",
                   progress=False, log=logged.append)  # 16 training images: 0.25 is exactly 4
    assert not any("rounded" in line for line in logged)


def test_leftovers_and_damaged_files(tmp_path, make_data, tiny_config):
    data, out = make_data(), tmp_path / "run"
    kw = dict(methods=["supervised"], fraction=0.2, config=tiny_config, device="cpu", progress=False)
    first = run_experiment(data, out, **kw)
    orphan = out / "methods" / ".supervised.json.q8w7e6r5.segreg-lite.tmp"  # a result write killed mid-way
    orphan.write_bytes(b"torn")
    (out / "methods" / "supervised.json").write_text("{")
    logged = []
    again = run_experiment(data, out, log=logged.append, **kw)
    assert not orphan.exists() and any("removed methods/.supervised.json.q8w7e6r5.segreg-lite.tmp" in line for line in logged)
    assert any("supervised.json: damaged method result" in line for line in logged)
    assert _dice(again) == _dice(first)
    aug = run_experiment(data, tmp_path / "aug", **{**kw, "methods": ["supervised_aug"]})
    (tmp_path / "aug" / "methods" / "supervised_aug.json").unlink()
    ckpt = tmp_path / "aug" / "checkpoints" / "pretrained_seg.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # damaged in place (a disk error, a bad copy)
    logged.clear()
    assert _dice(run_experiment(data, tmp_path / "aug", log=logged.append, **{**kw, "methods": ["supervised_aug"]}),
                 "supervised_aug") == _dice(aug, "supervised_aug")
    assert any("pretrained_seg.pt was changed after segreg-lite wrote it" in line and "computing again" in line
               for line in logged)  # its digest tells, before torch reads a byte of it
    (out / "run.json").write_text("not json")
    with pytest.raises(ValueError, match=r"run.json: damaged run description: not valid JSON"):
        run_experiment(data, out, **kw)
    (out / "results.json").write_text("")
    with pytest.raises(ValueError, match=r"results.json: damaged results file: not valid JSON \(it is empty\)"):
        load_results([out])


def test_overwrite_and_resume_keep_a_users_files_anywhere_in_the_folder(tmp_path, make_data, tiny_config):
    # Issue 24: a user's files in the folder, methods/ and checkpoints/ (temp-named ones too)
    data, out = make_data(), tmp_path / "run"
    kw = dict(methods=["supervised_aug"], fraction=0.2, config=tiny_config, device="cpu", progress=False)
    run_experiment(data, out, **kw)
    mine = [".thesis.autosave.tmp", "notes.txt", "methods/mine.json", "methods/.mine.json.draft1.tmp",
            "checkpoints/mine.pt", "checkpoints/.mine.pt.abcdefgh.segreg-lite.tmp"]
    for rel in mine:
        (out / rel).write_text(f"mine: {rel}")
    ours = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.relative_to(out).as_posix() not in mine}
    assert run_experiment(data, out, **kw)["seed"] == 0  # resumed
    with pytest.raises(ValueError, match=r"did not write \(.*checkpoints/mine.pt.*methods/mine.json"):
        run_experiment(data, out, seed=1, overwrite=True, **kw)
    assert all((out / rel).read_text() == f"mine: {rel}" for rel in mine)
    assert {p: p.read_bytes() for p in ours} == ours


def test_an_empty_out_is_refused(tmp_path, make_data, tiny_config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in ("", " "):
        with pytest.raises(ValueError, match="out is empty"):
            run_experiment(make_data(), out, methods=["supervised"], fraction=0.2, config=tiny_config, device="cpu",
                           progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_live_run_whose_lock_file_was_deleted_keeps_its_folder(tmp_path, make_data, tiny_config):
    from segreg_lite.runfolder import LOCK, FolderBusy, RunFolder

    data, out = make_data(), tmp_path / "run"
    kw = dict(methods=["supervised"], fraction=0.2, config=tiny_config, device="cpu", progress=False)
    run_experiment(data, out, **kw)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with RunFolder(out):  # the run is live (resumed) ...
        (out / LOCK).unlink()  # ... and someone removes its lock file
        with pytest.raises(FolderBusy, match="in use by another segreg-lite run"):
            run_experiment(data, out, seed=1, overwrite=True, **kw)
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != LOCK} == before


def test_a_hand_edited_result_or_changed_code_is_computed_again(tmp_path, make_data, tiny_config, monkeypatch):
    # Issue 24: a methods/<m>.json whose Dice was edited to 0.999 was read back as done, even with
    # --overwrite; results made by changed code were read back (the only code identity was the version).
    data, out = make_data(), tmp_path / "run"
    kw = dict(methods=["supervised", "joint"], fraction=0.2, config=tiny_config, device="cpu", progress=False)
    first = run_experiment(data, out, **kw)
    path = out / "methods" / "supervised.json"
    held = json.loads(path.read_text())
    held["metrics"]["dice"] = 0.999
    path.write_text(json.dumps(held, indent=2))
    logged = []
    again = run_experiment(data, out, log=logged.append, **kw)
    assert any(f"{path} was changed after segreg-lite wrote it" in line and "computing supervised again" in line
               for line in logged)
    assert _dice(again) == _dice(first) != 0.999 and _dice(load_results([out])[0]) == _dice(first)
    assert any("joint: done in an earlier run" in line for line in logged)  # the untouched one is read back
    results = json.loads((out / "results.json").read_text())
    results["methods"]["joint"]["metrics"]["dice"] = 0.999
    (out / "results.json").write_text(json.dumps(results))
    with pytest.raises(ValueError, match=r"results.json was changed after segreg-lite wrote it .*run the same `segreg-lite run`"):
        load_results([out])
    # Other code (the package's source changed): every result and checkpoint is made again.
    monkeypatch.setattr("segreg_lite.runfolder.code_digest", lambda: "c0de" * 16)
    logged.clear()
    third = run_experiment(data, out, log=logged.append, **kw)
    assert not any("earlier run" in line for line in logged)
    assert any("supervised.json was made by another run (differs in code" in line for line in logged)
    assert any("pretrained_seg.pt was made by another run (differs in code" in line for line in logged)
    assert third["methods"]["supervised"]["fingerprint"]["code"] == "c0de" * 4
    assert _dice(third) == _dice(first) and _dice(third, "joint") == _dice(first, "joint")  # seeded: the same numbers


def test_data_built_by_hand_is_checked_before_anything_is_written(tmp_path, make_data, tiny_config):
    # Found by scripts/battery.py: NaN images and labels past the table trained without a word,
    # float64 images failed deep in torch.
    import dataclasses

    import torch

    data = make_data()
    nan = data.images.clone()
    nan[0, 0, 0, 0] = float("nan")
    past = data.labels.clone()
    past[0, 0, 0] = 9
    cases = [(dict(images=nan), "data.images contains NaN or inf"),
             (dict(images=data.images.double()), "data.images must be float32, got torch.float64: convert them"),
             (dict(images=data.images - 2), "data.images reach -2, but segreg-lite takes intensities in [0, 1]"),
             (dict(labels=data.labels.float()), "data.labels must be integer labels"),
             (dict(labels=past), "data.labels values [9] are outside"),
             (dict(subjects=data.subjects[:2]), "data.subjects has 2 ids for")]
    for change, said in cases:
        with pytest.raises(ValueError, match=re.escape(said)):
            run_experiment(dataclasses.replace(data, **change), tmp_path / "run", methods=["supervised"], fraction=0.2,
                           config=tiny_config, device="cpu", progress=False)
    assert not (tmp_path / "run").exists()
    assert torch.equal(data.labels, make_data().labels)  # the checks changed nothing
