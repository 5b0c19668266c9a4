"""The run folder: lock, manifest, fingerprints, overwrite and leftovers (no training here)."""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from segreg_lite.runfolder import (LOCK, MANIFEST, FolderBusy, RunFolder, RunFolderError, data_digest, differences,
                                   fingerprint, probe_folder)

SPEC = {"data": "toy", "seed": 0, "fraction": 0.5, "config": {"a": 1}, "split": {"train": [1, 2]}}
METRICS = {"dice": 0.5, "hd": 9.0, "hd95": 3.0, "dice_per_class": [0.5, 0.5], "seconds": 1.0}
FP = fingerprint(data="d" * 64, split={"train": [1]}, config={"a": 1}, seed=0, method="supervised")


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_lock_refuses_a_second_writer_and_names_it(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        assert (out / LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(FolderBusy, match=f"in use by another segreg-lite run \\(process {os.getpid()}\\)"):
            RunFolder(out).__enter__()
        folder.start(SPEC)
    assert not (out / LOCK).exists() and _files(out) == [MANIFEST, "run.json"]
    with RunFolder(out):  # released: the next run gets in
        pass


def test_a_failed_start_leaves_no_new_folder_behind(tmp_path):
    out = tmp_path / "new"
    with RunFolder(out):
        pass
    assert not out.exists()


def _hold(path, started, release):  # a process that holds the lock until told to let go
    with RunFolder(path):
        started.set()
        release.wait(30)


def _contend(path, barrier, results):
    barrier.wait()
    try:
        with RunFolder(path) as folder:
            folder.start(SPEC)
            time.sleep(1.0)  # still running when the other one arrives
            results.put(("ran", os.getpid()))
    except FolderBusy as err:
        results.put(("busy", str(err)))


def test_two_runs_started_at_the_same_moment(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(tmp_path / "run", barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcome = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    assert [o[0] for o in outcome] == ["busy", "ran"]
    assert f"process {outcome[1][1]}" in outcome[0][1]  # the refusal names the runner's pid


def _holder(out: Path) -> subprocess.Popen:
    """A child process that holds ``RunFolder(out)`` for a minute, returned once it holds it;
    the caller kills it."""
    code = textwrap.dedent(f"""
        import time
        from segreg_lite.runfolder import RunFolder
        with RunFolder({str(out)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_the_lock_dies_with_its_process(tmp_path):
    out = tmp_path / "run"
    child = _holder(out)
    try:
        with pytest.raises(FolderBusy, match=f"process {child.pid}"):
            RunFolder(out).__enter__()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with RunFolder(out) as folder:  # SIGKILL left the lock file, but not the lock
        assert folder.removed_temp == []


def test_overwrite_removes_only_what_segreg_lite_wrote(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
        folder.write_result("supervised", {"metrics": {}}, FP)
        folder.claim(folder.checkpoint_path("joint"), FP).write_bytes(b"ckpt")
    (out / "notes.txt").write_text("mine")
    (out / "methods" / "mine.csv").write_text("mine too")
    before = {f: (out / f).read_bytes() for f in _files(out)}
    with RunFolder(out) as folder, pytest.raises(RunFolderError, match=r"did not write \(methods/mine.csv, notes.txt\)"):
        folder.start({**SPEC, "seed": 1}, overwrite=True)
    assert {f: (out / f).read_bytes() for f in _files(out)} == before  # nothing removed
    (out / "notes.txt").rename(tmp_path / "notes.txt")
    (out / "methods" / "mine.csv").unlink()
    with RunFolder(out) as folder:
        folder.start({**SPEC, "seed": 1}, overwrite=True)
    assert _files(out) == [MANIFEST, "run.json"] and json.loads((out / "run.json").read_text())["seed"] == 1


def test_another_run_is_refused_naming_the_difference(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
    with RunFolder(out) as folder, pytest.raises(RunFolderError, match=r"another run \(differs in fraction \(0.5 vs 0.3\)\)"):
        folder.start({**SPEC, "fraction": 0.3})
    with RunFolder(out) as folder:
        folder.start(SPEC)  # the same run: resumed, nothing to say


def test_files_without_run_json(tmp_path):
    # segreg-lite's files but no run.json (deleted): refused, then replaced with overwrite
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
        folder.write_result("supervised", {"metrics": {}}, FP)
    (out / "run.json").unlink()
    with RunFolder(out) as folder, pytest.raises(RunFolderError, match="files of a segreg-lite run but no run.json"):
        folder.start(SPEC)
    with RunFolder(out) as folder:
        folder.start({**SPEC, "fraction": 0.3}, overwrite=True)
        assert folder.read_result("supervised", FP) == (None, "")
    # a folder of someone else's files is never a run folder, and overwrite does not empty it
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    for overwrite, match in ((False, "not a segreg-lite run folder"), (True, "did not write \\(notes.txt\\)")):
        with RunFolder(stranger) as folder, pytest.raises(RunFolderError, match=match):
            folder.start(SPEC, overwrite=overwrite)
    assert (stranger / "notes.txt").read_text() == "mine"


def test_a_folder_written_before_manifests_is_still_ours(tmp_path):
    out = tmp_path / "old"
    (out / "methods").mkdir(parents=True)
    (out / "checkpoints").mkdir()
    (out / "run.json").write_text(json.dumps({"config": {}, "split": {}, "seed": 0}))
    for rel in ("methods/joint.json", "checkpoints/joint.pt", "results.json", "results.csv"):
        (out / rel).write_text("x")
    with RunFolder(out) as folder, pytest.raises(RunFolderError, match="written by a segreg-lite without fingerprints"):
        folder.start({**SPEC, "segreg_lite": "0.1.0"})  # no fingerprint, no version: never read back
    with RunFolder(out) as folder:
        folder.start(SPEC, overwrite=True)
    assert _files(out) == [MANIFEST, "run.json"]


def test_damaged_run_json_is_named(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
    (out / "run.json").write_text("")
    with RunFolder(out) as folder, pytest.raises(RunFolderError, match=r"run.json: damaged run description: not valid JSON \(it is empty\)"):
        folder.start(SPEC)
    with RunFolder(out) as folder:
        folder.start(SPEC, overwrite=True)
    assert json.loads((out / "run.json").read_text()) == SPEC


def test_results_carry_fingerprints_and_stale_ones_are_not_read_back(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
        written = folder.write_result("supervised", {"metrics": METRICS}, FP)
        assert written["fingerprint"] == FP and folder.read_result("supervised", FP) == (written, "")
        for key, value in (("split", "other"), ("data", "other"), ("seed", 3), ("segreg_lite", "9.9")):
            held, why = folder.read_result("supervised", {**FP, key: value})
            assert held is None and f"differs in {key}" in why and "methods/supervised.json" in why
        folder.method_path("supervised").write_text('{"metrics": ')  # damaged
        held, why = folder.read_result("supervised", FP)
        assert held is None and "supervised.json: damaged method result" in why
        assert json.loads((out / MANIFEST).read_text())["files"]["methods/supervised.json"] == FP


def test_a_result_of_the_wrong_shape_is_not_read_back(tmp_path):
    """A result without metrics, or with a Dice edited into a string, carries the right
    fingerprint but would fail only once written into results.json: it is named and computed
    again instead."""
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
        for result, said in (({"method": "supervised"}, "no 'metrics' table"),
                             ({"metrics": {**METRICS, "dice": "0.5"}}, "metrics 'dice' must be a number, got '0.5'")):
            folder.write_result("supervised", result, FP)
            held, why = folder.read_result("supervised", FP)
            assert held is None and f"methods/supervised.json: damaged method result: {said}" in why


def test_stale_checkpoints_are_removed_and_foreign_ones_refused(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
        path = folder.claim(folder.checkpoint_path("joint"), FP)
        path.write_bytes(b"ckpt")
        folder.seal(path)  # its digest, recorded once it is saved
        assert folder.stale_checkpoint("joint", FP) == "" and path.exists()
        assert "differs in data" in folder.stale_checkpoint("joint", {**FP, "data": "x"}) and not path.exists()
        foreign = folder.checkpoint_path("joint_reg")
        foreign.write_bytes(b"someone's")
        with pytest.raises(RunFolderError, match="joint_reg.pt was not written by segreg-lite"):
            folder.stale_checkpoint("joint_reg", FP)
        assert foreign.exists()


def test_temp_files_of_killed_writes_are_removed(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
        folder.write_result("joint", {"metrics": {}}, FP)
        folder.claim(folder.checkpoint_path("joint"), FP)  # killed while the checkpoint was written
        folder.write_json("results.json", {})
    leftovers = [out / "checkpoints" / ".joint.pt.k2j3h4g5.segreg-lite.tmp", out / "methods" / ".joint.json.a_b9c8d7.segreg-lite.tmp",
                 out / ".results.json.x1y2z3w4.segreg-lite.tmp", out / ".manifest.json.abc123.segreg-lite.tmp"]
    for p in leftovers:
        p.write_bytes(b"half")
    users = [out / "notes.tmp", out / ".notes.txt.abcdefgh.segreg-lite.tmp",  # marked, but no file of ours
             out / "methods" / ".supervised.json.abcdefgh.segreg-lite.tmp"]
    for p in users:
        p.write_text("a user's file with a .tmp name")
    with RunFolder(out) as folder:
        assert sorted(folder.removed_temp) == sorted(p.relative_to(out).as_posix() for p in leftovers)
    assert not any(p.exists() for p in leftovers) and all(p.exists() for p in users)


def test_output_paths_that_cannot_be_written(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="file is a file, not a folder"):
        RunFolder(tmp_path / "file").__enter__()
    with pytest.raises(RunFolderError, match="cannot create the folder .*/file/below: .*/file is a file"):
        RunFolder(tmp_path / "file" / "below").__enter__()
    (tmp_path / "ro").mkdir()
    real_open = os.open

    def refuse(path, *args, **kw):  # what a read-only folder does (the tests may run as root)
        if str(path).endswith(LOCK):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(RunFolderError, match="cannot write in .*/ro: permission denied"):
        RunFolder(tmp_path / "ro").__enter__()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(RunFolderError, match="permission denied"):
            RunFolder(ro).__enter__()
    finally:
        ro.chmod(0o755)


def test_fingerprint_parts():
    images = np.zeros((2, 1, 4, 4), np.float32)
    labels = np.zeros((2, 4, 4), np.int64)
    base = data_digest(images, labels, ["bg", "a"], ["s0", "s1"])
    changed = images.copy()
    changed[1, 0, 2, 2] = 1e-3
    assert data_digest(changed, labels, ["bg", "a"], ["s0", "s1"]) != base
    assert data_digest(images, labels, ["bg", "a"], ["s0", "s2"]) != base
    assert data_digest(images.astype(np.float64), labels, ["bg", "a"], ["s0", "s1"]) != base
    assert differences(FP, FP) == [] and differences(None, FP) == ["fingerprint (none recorded)"]
    assert differences({**FP, "seed": 2, "config": "x"}, FP) == ["config", "seed (2 vs 0)"]


def test_many_foreign_files_are_listed_briefly(tmp_path):
    out = tmp_path / "home"
    for i in range(20):
        (out / f"d{i}").mkdir(parents=True)
        (out / f"d{i}" / "f.txt").write_text("x")
    with RunFolder(out) as folder, pytest.raises(RunFolderError) as err:
        folder.start(SPEC, overwrite=True)
    assert str(err.value).count("f.txt") == 8 and "and more" in str(err.value)
    assert len(list(out.rglob("f.txt"))) == 20


# Issue 24: a run never deletes (or writes into) a user's file.

USERS_TEMP = (".thesis.autosave.tmp", "methods/.notes.draft01.tmp", "checkpoints/.model.pt.backup.tmp",
              ".joint.pt.q8w7e6r5.tmp", ".notes.txt.abcdefgh.segreg-lite.tmp")


def _plant(out: Path, rels) -> dict[str, bytes]:
    for rel in rels:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(f"draft of {rel}")
    return {rel: (out / rel).read_bytes() for rel in rels}


def test_a_users_temp_named_files_survive_a_folder_that_is_not_a_run(tmp_path):
    out = tmp_path / "f"
    planted = _plant(out, USERS_TEMP)
    for overwrite, match in ((False, "not a segreg-lite run folder"), (True, "did not write")):
        with RunFolder(out) as folder, pytest.raises(RunFolderError, match=match):
            assert folder.removed_temp == []
            folder.start(SPEC, overwrite=overwrite)
    assert {rel: (out / rel).read_bytes() for rel in planted} == planted and _files(out) == sorted(planted)


def test_a_users_temp_named_files_survive_a_run_folder_and_overwrite(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
        folder.write_result("supervised", {"metrics": {}}, FP)
        folder.claim(folder.checkpoint_path("joint"), FP).write_bytes(b"ckpt")
    planted = _plant(out, USERS_TEMP)
    with RunFolder(out) as folder:  # resumed: nothing of the user's is a leftover of ours
        assert folder.removed_temp == []
        folder.start(SPEC)
    with RunFolder(out) as folder, pytest.raises(RunFolderError, match=r"did not write \(.*\.thesis\.autosave\.tmp"):
        folder.start({**SPEC, "seed": 1}, overwrite=True)
    assert {rel: (out / rel).read_bytes() for rel in planted} == planted


def test_overwrite_keeps_a_users_files_in_methods_and_checkpoints(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
        folder.write_result("supervised", {"metrics": {}}, FP)
        folder.claim(folder.checkpoint_path("joint"), FP).write_bytes(b"ckpt")
    planted = _plant(out, ["methods/mine.json", "checkpoints/mine.pt"])
    with RunFolder(out) as folder, pytest.raises(RunFolderError, match=r"did not write \(checkpoints/mine.pt, methods/mine.json\)"):
        folder.start({**SPEC, "seed": 1}, overwrite=True)
    assert {rel: (out / rel).read_bytes() for rel in planted} == planted
    assert (out / "checkpoints" / "joint.pt").read_bytes() == b"ckpt"  # refused before anything was removed


def test_a_users_file_is_never_written_over(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
    planted = _plant(out, ["methods/supervised.json", "results.csv"])  # where this run would write next
    with RunFolder(out) as folder:
        with pytest.raises(RunFolderError, match=r"methods/supervised.json was not written by segreg-lite .*move it away"):
            folder.write_result("supervised", {"metrics": {}}, FP)
        with pytest.raises(RunFolderError, match=r"results.csv was not written by segreg-lite"):
            folder.write_text("results.csv", "method,dice\n")
        with pytest.raises(RunFolderError, match=r"supervised.json was not written by segreg-lite"):
            folder.claim(out / "methods" / "supervised.json", FP)
    assert {rel: (out / rel).read_bytes() for rel in planted} == planted
    assert set(json.loads((out / MANIFEST).read_text())["files"]) == {"run.json"}


def test_an_empty_path_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path in ("", "  "):
        with pytest.raises(RunFolderError, match="path is empty"):
            RunFolder(path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links")
def test_the_lock_never_follows_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "f"
    out.mkdir()
    (out / LOCK).symlink_to("../victim.txt")
    with pytest.raises(RunFolderError, match=r"f/\.segreg-lite\.lock is a symbolic link, not segreg-lite's lock file: remove it"):
        RunFolder(out).__enter__()
    assert victim.read_text() == "precious" and (out / LOCK).is_symlink()
    (out / LOCK).unlink()
    (out / LOCK).symlink_to("../created.txt")  # dangling: opening it would create the target
    with pytest.raises(RunFolderError, match="is a symbolic link"):
        RunFolder(out).__enter__()
    assert not (tmp_path / "created.txt").exists()
    (out / LOCK).unlink()
    os.link(victim, out / LOCK)  # a second name of the victim
    with pytest.raises(RunFolderError, match="is not segreg-lite's lock file"):
        RunFolder(out).__enter__()
    assert victim.read_text() == "precious"


def test_deleting_the_lock_file_does_not_free_a_live_run(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
        folder.write_result("supervised", {"metrics": {}}, FP)
    def held():
        return {f: (out / f).read_bytes() for f in _files(out) if f != LOCK}

    before = held()
    child = _holder(out)
    try:
        (out / LOCK).unlink()  # by hand, while the run is live
        with pytest.raises(FolderBusy, match="in use by another segreg-lite run"):
            with RunFolder(out) as folder:
                folder.start({**SPEC, "seed": 1}, overwrite=True)
        assert held() == before  # nothing wiped
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with RunFolder(out) as folder:  # the run is gone: the folder is free again
        folder.start({**SPEC, "seed": 1}, overwrite=True)
    assert json.loads((out / "run.json").read_text())["seed"] == 1


def test_probe_folder_fails_as_the_run_would_and_leaves_nothing(tmp_path):
    # Issue 24: the command line checks its output folder before it makes the data, with this.
    probe_folder(tmp_path / "a" / "b" / "c", "--out")
    assert not (tmp_path / "a").exists()  # every folder it made is removed again
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunFolderError, match="^--out: .*afile is a file, not a folder"):
        probe_folder(tmp_path / "afile", "--out")
    with RunFolder(tmp_path / "r"):
        with pytest.raises(FolderBusy, match=f"^--out: .*in use by another segreg-lite run \\(process {os.getpid()}\\)"):
            probe_folder(tmp_path / "r", "--out")
        probe_folder(tmp_path / "r", "--out", lock=False)  # a sweep's root: writable is enough
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


# Issue 24: a result is read back only if it is ours and unchanged.
def test_the_code_identity_ignores_comments_and_docstrings_but_not_code(tmp_path):
    from segreg_lite.runfolder import code_digest, source_digest

    pkg = tmp_path / "pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "a.py").write_text('"""A module."""\nSTEPS = 10\n\n\ndef f(x):\n    """Twice."""\n    return 2 * x\n')
    base = source_digest(pkg)
    (pkg / "a.py").write_text('"""Reworded."""\n# a comment\nSTEPS = (\n    10\n)\n\ndef f(x):  # note\n    return 2*x\n')
    assert source_digest(pkg) == base  # comments, docstrings and formatting are not code
    (pkg / "data" / "x.py").write_text("shipped = 1\n")
    assert source_digest(pkg) == base  # nor are the shipped data files
    (pkg / "a.py").write_text('STEPS = 11\n\ndef f(x):\n    return 2 * x\n')
    assert source_digest(pkg) != base
    (pkg / "a.py").write_text("STEPS = 10\n")
    (pkg / "b.py").write_text("")
    assert source_digest(pkg) not in (base, source_digest(tmp_path / "none"))
    assert FP["code"] == code_digest()[:16] and code_digest.cache_info().hits >= 1  # once per process


def test_results_of_changed_code_are_not_read_back(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
        folder.write_result("supervised", {"metrics": METRICS}, FP)
        held, why = folder.read_result("supervised", {**FP, "code": "0" * 16})
        assert held is None and "supervised.json was made by another run (differs in code (segreg-lite's source changed since))" in why
        path = folder.claim(folder.checkpoint_path("joint"), FP)
        path.write_bytes(b"ckpt")
        folder.seal(path)
        assert "differs in code" in folder.stale_checkpoint("joint", {**FP, "code": "0" * 16}) and not path.exists()


def test_a_result_edited_by_hand_is_not_read_back(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
        written = folder.write_result("supervised", {"metrics": METRICS}, FP)
    manifest = json.loads((out / MANIFEST).read_text())
    assert set(manifest["sha256"]) == {"run.json", "methods/supervised.json"}
    path = out / "methods" / "supervised.json"
    held = json.loads(path.read_text())
    held["metrics"]["dice"] = 0.999  # right fingerprint, right shape: only the digest tells
    path.write_text(json.dumps(held, indent=2) + "\n")
    with RunFolder(out) as folder:
        back, why = folder.read_result("supervised", FP)
        assert back is None and why == (f"{path} was changed after segreg-lite wrote it (its SHA-256 is not the one "
                                        f"{MANIFEST} records: edited by hand, or damaged)")
        folder.write_result("supervised", {"metrics": METRICS}, FP)  # computed again: read back once more
        assert folder.read_result("supervised", FP) == (written, "")
    assert RunFolder(out).read_result("supervised", FP) == (written, "")  # without the lock too (sweep's finished)
    path.write_text(path.read_text().replace("0.5", "0.6", 1))
    assert "was changed after segreg-lite wrote it" in RunFolder(out).read_result("supervised", FP)[1]


def test_a_checkpoint_changed_or_never_sealed_is_not_resumed(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
        path = folder.claim(folder.checkpoint_path("joint"), FP)
        path.write_bytes(b"round 1")  # killed before its digest was recorded
        assert folder.stale_checkpoint("joint", FP) == (f"{path} has no SHA-256 in {MANIFEST} (its write was cut short, "
                                                        "or an older segreg-lite wrote it); removed, computing again")
        assert not path.exists()
        folder.claim(path, FP).write_bytes(b"round 1")
        folder.seal(path)
        assert json.loads((out / MANIFEST).read_text())["sha256"]["checkpoints/joint.pt"] == \
            __import__("hashlib").sha256(b"round 1").hexdigest()
    path.write_bytes(b"round 9")  # replaced by hand, or damaged on disk
    with RunFolder(out) as folder:
        assert "joint.pt was changed after segreg-lite wrote it" in folder.stale_checkpoint("joint", FP)
        assert not path.exists()


def test_a_damaged_manifest_is_one_line_with_a_remedy(tmp_path):
    out = tmp_path / "run"
    with RunFolder(out) as folder:
        folder.start(SPEC)
    for text, said in (("{", "damaged segreg-lite manifest: not valid JSON"), ('{"files": []}', "no 'files' table"),
                       ('{"files": {}, "sha256": [1]}', "'sha256' is not a table of digests")):
        (out / MANIFEST).write_text(text)
        with pytest.raises(RunFolderError, match="no longer knows which files here it wrote") as err:
            RunFolder(out).__enter__()
        assert said in str(err.value) and "\n" not in str(err.value)
    assert (out / "run.json").exists()  # nothing removed


def test_a_lock_that_is_a_folder_is_named(tmp_path):
    # Found by scripts/battery.py: "cannot write in f: Is a directory" named neither the lock nor the remedy.
    (tmp_path / "f" / LOCK).mkdir(parents=True)
    with pytest.raises(RunFolderError, match=r"\.segreg-lite\.lock is not segreg-lite's lock file .*remove it"):
        RunFolder(tmp_path / "f").__enter__()
