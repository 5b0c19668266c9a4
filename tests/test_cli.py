import json
import subprocess
import sys

import pytest

from segreg_lite.cli import main


def test_cohort_command_prints_summary_and_writes_figure(tmp_path, capsys):
    assert main(["cohort", "--subjects", "12", "--fraction", "0.5", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "12 subjects" in out and "subcortical GM" in out and "annotated" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["subjects"] == 12 and set(summary["split"]) >= {"train", "annotated"}
    assert (tmp_path / "overview.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_argument_is_a_clear_error(tmp_path, capsys):
    assert main(["cohort", "--subjects", "0", "--out", str(tmp_path)]) == 2
    assert "--subjects must be an integer >= 3" in capsys.readouterr().err
    assert not (tmp_path / "summary.json").exists()


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "segreg_lite", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and "segreg-lite" in done.stdout


def test_run_command_prints_the_table_and_refuses_another_run(tmp_path, capsys):
    args = ["run", "--subjects", "12", "--size", "32", "32", "--fraction", "0.2", "--smoke", "--quiet",
            "--methods", "supervised_aug,joint", "--out", str(tmp_path / "r")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "supervised_aug" in out and "joint" in out and "white matter" in out
    assert (tmp_path / "r" / "results.csv").exists() and (tmp_path / "r" / "results.json").exists()
    assert main(args + ["--seed", "1"]) == 2
    assert "holds another run" in capsys.readouterr().err
    assert main(["run", "--methods", "joint,nonsense", "--out", str(tmp_path / "x")]) == 2
    assert "unknown method" in capsys.readouterr().err and not (tmp_path / "x").exists()


RUN = ["run", "--subjects", "12", "--size", "32", "32", "--fraction", "0.2", "--smoke", "--quiet", "--methods", "supervised"]


def _one_clear_line(capsys, *expected):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("segreg-lite: error: ") and all(e in err for e in expected), err
    return err


def test_expected_failures_are_one_line_and_write_nothing(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main([*RUN, "--out", str(tmp_path / "afile")]) == 2
    _one_clear_line(capsys, "afile is a file, not a folder")
    assert main([*RUN, "--out", str(tmp_path / "afile" / "below")]) == 2
    _one_clear_line(capsys, "cannot create the folder", "afile is a file")
    assert main([*RUN, "--device", "bogus", "--out", str(tmp_path / "d")]) == 2
    _one_clear_line(capsys, "unknown device 'bogus'")
    assert main([*RUN, "--seed", "-1", "--out", str(tmp_path / "s")]) == 2
    _one_clear_line(capsys, "seed must be a non-negative integer", "-1")
    assert main(["sweep", "--seeds", "0,-1", "--out", str(tmp_path / "w")]) == 2
    _one_clear_line(capsys, "--seeds must be a non-negative integer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def _refuse_writes_under(folder, monkeypatch):
    """Make ``folder`` (created here) behave as a read-only folder: os.open under it raises
    PermissionError, as it would for a user without write access (the tests may run as root)."""
    import os

    real_open = os.open

    def refuse(path, *args, **kw):
        if str(path).startswith(str(folder)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kw)

    folder.mkdir()
    monkeypatch.setattr(os, "open", refuse)


def test_a_read_only_output_folder(tmp_path, capsys, monkeypatch):
    _refuse_writes_under(tmp_path / "ro", monkeypatch)
    assert main([*RUN, "--out", str(tmp_path / "ro")]) == 2
    _one_clear_line(capsys, "cannot write in", "permission denied")
    assert main(["cohort", "--subjects", "3", "--out", str(tmp_path / "ro")]) == 2  # plain OS errors: one line too
    _one_clear_line(capsys, "cannot write in", "permission denied")


def test_damaged_results_file_is_named_and_debug_shows_the_traceback(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text('{"data": ')
    assert main(["summary", str(tmp_path / "r")]) == 2
    _one_clear_line(capsys, "results.json: damaged results file: not valid JSON")
    for args in (["--debug", "summary", str(tmp_path / "r")], ["summary", str(tmp_path / "r"), "--debug"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "damaged results file" in err


def test_a_busy_folder_from_the_command_line(tmp_path, capsys):
    from segreg_lite.runfolder import RunFolder

    with RunFolder(tmp_path / "r"):
        assert main([*RUN, "--out", str(tmp_path / "r")]) == 2
    _one_clear_line(capsys, "in use by another segreg-lite run (process")
    assert not (tmp_path / "r").exists()


def test_a_failed_cohort_command_leaves_no_folder(tmp_path, capsys):
    assert main(["cohort", "--subjects", "0", "--out", str(tmp_path / "new")]) == 2
    _one_clear_line(capsys, "--subjects must be an integer >= 3")
    assert not (tmp_path / "new").exists()


def test_warnings_are_one_line(monkeypatch, capsys):
    import warnings

    from segreg_lite import report

    def load_results(folders):  # stands in for a download that warns (OASIS without a pinned hash)
        warnings.warn("the archive was downloaded unverified:\n its SHA-256 is abc", UserWarning)
        return []

    monkeypatch.setattr(report, "load_results", load_results)
    monkeypatch.setattr(report, "format_summary", lambda summaries: "table")
    assert main(["summary", "x"]) == 0
    assert capsys.readouterr().err == "segreg-lite: warning: the archive was downloaded unverified: its SHA-256 is abc\n"


def test_a_users_temp_file_survives_every_run_path(tmp_path, capsys):
    # Issue 24: `mkdir f; echo draft > f/.thesis.autosave.tmp; segreg-lite run --out f`
    out = tmp_path / "f"
    out.mkdir()
    (out / ".thesis.autosave.tmp").write_text("draft\n")
    assert main([*RUN, "--out", str(out)]) == 2
    _one_clear_line(capsys, "not a segreg-lite run folder")
    assert main([*RUN, "--overwrite", "--out", str(out)]) == 2
    _one_clear_line(capsys, "did not write (.thesis.autosave.tmp)")
    assert sorted(p.name for p in out.iterdir()) == [".thesis.autosave.tmp"]
    assert (out / ".thesis.autosave.tmp").read_text() == "draft\n"


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    for out in ("", "   "):
        for args in ([*RUN, "--out", out], [*RUN, "--overwrite", "--out", out], ["cohort", "--subjects", "3", "--out", out],
                     ["sweep", "--smoke", "--out", out]):
            assert main(args) == 2
            _one_clear_line(capsys, "--out is empty", "name the output folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_lock_file_that_is_a_link_is_refused(tmp_path, capsys):
    (tmp_path / "victim.txt").write_text("precious")
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / ".segreg-lite.lock").symlink_to("../victim.txt")
    assert main([*RUN, "--out", str(tmp_path / "f")]) == 2
    _one_clear_line(capsys, ".segreg-lite.lock is a symbolic link", "remove it")
    assert (tmp_path / "victim.txt").read_text() == "precious"


@pytest.fixture
def no_data(monkeypatch):
    """Make generating or loading data fail the test: what is checked must be checked before."""
    def made(*args, **kw):
        raise AssertionError("the data was made before the arguments were checked")

    monkeypatch.setattr("segreg_lite.data.load_data", made)
    monkeypatch.setattr("segreg_lite.cohort.generate_cohort", made)


SWEEP = ["sweep", "--subjects", "12", "--size", "32", "32", "--fractions", "0.5", "--seeds", "0", "--smoke", "--quiet",
         "--methods", "supervised"]
COHORT = ["cohort", "--subjects", "12", "--size", "32", "32"]


@pytest.mark.parametrize("args, expected", [
    ([*RUN, "--fraction", "2"], "--fraction must be in (0, 1], got 2.0"),
    ([*RUN, "--fraction", "nan"], "--fraction must be in (0, 1]"),
    ([*RUN, "--preset", "bogus"], "unknown preset 'bogus' (--preset): choose one of cpu"),
    ([*RUN, "--data-seed", "-1"], "--data-seed must be a non-negative integer (0, 1, 2, ...), got -1"),
    ([*RUN, "--subjects", "2"], "--subjects must be an integer >= 3"),
    ([*RUN, "--rounds", "-1"], "--rounds must be a non-negative integer"),
    ([*RUN, "--size", "100000", "100000"], "--size must be multiples of 16 from 16 to 512, got 100000 100000"),
    ([*RUN, "--size", "8", "8"], "--size must be multiples of 16 from 16 to 512, got 8 8"),
    ([*RUN, "--size", "16", "16", "--methods", "reg_only"], "--size must be multiples of 16 from 32 (for reg_only)"),
    ([*SWEEP, "--jobs", "0"], "--jobs must be a positive integer, got 0"),
    ([*SWEEP, "--fractions", ""], "--fractions is empty"),
    ([*SWEEP, "--fractions", "0.5,x"], "--fractions must be comma-separated numbers, got '0.5,x'"),
    ([*SWEEP, "--fractions", "0.5,1"], "every fraction in --fractions must be in (0, 1) (the upper bound covers 1), got 1.0"),
    ([*SWEEP, "--seeds", "0.5"], "--seeds must be comma-separated integers"),
    ([*SWEEP, "--preset", "gpu"], "unknown preset 'gpu' (--preset)"),
    ([*SWEEP, "--data-seed", "-1"], "--data-seed must be a non-negative integer"),
    ([*SWEEP, "--size", "1024", "1024"], "--size must be multiples of 16 from 16 to 512"),
    ([*COHORT, "--fraction", "0"], "--fraction must be in (0, 1], got 0.0"),
    ([*COHORT, "--seed", "-1"], "--seed must be a non-negative integer (0, 1, 2, ...), got -1"),
    ([*COHORT, "--subjects", "2"], "--subjects must be an integer >= 3 (one training, one validation and one test subject)"),
    ([*COHORT, "--size", "100000", "100000"], "--size must be multiples of 16 from 16 to 512"),
    # Issue 24: --fraction 1 with the joint method failed only after the cohort was made; --subjects had no bound
    ([*RUN, "--fraction", "1", "--methods", "joint"], "--fraction 1 annotates every training image, so joint would have "
                                                      "nothing to pseudo-label: choose a smaller --fraction, or leave them out of --methods"),
    ([*RUN, "--fraction", "0.9", "--subjects", "5", "--methods", "supervised,unimatch,joint_reg"],
     "--fraction 0.9 annotates every training image (all 3 of 5 subjects), so unimatch, joint_reg would have nothing"),
    ([*SWEEP, "--fractions", "0.1,0.9", "--subjects", "5", "--methods", "joint"], "--fractions 0.9 annotates every training image"),
    ([*RUN, "--subjects", "3000000"], "--subjects must be at most 2000 (segreg_lite.limits.MAX_SUBJECTS: more takes minutes"),
    ([*SWEEP, "--subjects", "2001"], "--subjects must be at most 2000"),
    ([*COHORT, "--subjects", "100000"], "--subjects must be at most 2000"),
])
def test_arguments_are_checked_before_the_data_is_made(tmp_path, capsys, no_data, args, expected):
    # Issue 24: these failed only after the cohort was generated (~10 s at the defaults), and
    # --size 100000 100000 tried to allocate 160 GB first; --data-seed -1 said "expected
    # non-negative integer" without naming the flag.
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    _one_clear_line(capsys, expected)
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_used_is_refused_before_the_data_is_made(tmp_path, capsys, monkeypatch, no_data):
    from segreg_lite.runfolder import RunFolder

    (tmp_path / "afile").write_text("x")
    for command in (RUN, SWEEP):
        assert main([*command, "--out", str(tmp_path / "afile")]) == 2
        _one_clear_line(capsys, "--out: ", "afile is a file, not a folder")
        assert main([*command, "--out", str(tmp_path / "afile" / "below" / "deeper")]) == 2
        _one_clear_line(capsys, "--out: cannot create the folder", "afile is a file")
    with RunFolder(tmp_path / "busy"):
        assert main([*RUN, "--out", str(tmp_path / "busy")]) == 2
        _one_clear_line(capsys, "--out: ", "in use by another segreg-lite run (process")
    with RunFolder(tmp_path / "sweep" / "f0.5-s0"):  # a sweep whose run folder another run holds
        assert main([*SWEEP, "--out", str(tmp_path / "sweep")]) == 2
        _one_clear_line(capsys, "--out: ", "f0.5-s0 is in use by another segreg-lite run (process")
    _refuse_writes_under(tmp_path / "ro", monkeypatch)
    for command in (RUN, SWEEP, COHORT):
        assert main([*command, "--out", str(tmp_path / "ro")]) == 2
        _one_clear_line(capsys, "cannot write in", "permission denied")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "ro", "sweep"]  # nothing made by the checks
    assert not any((tmp_path / "ro").iterdir()) and not (tmp_path / "sweep" / "f0.5-s0").exists()


def test_a_damaged_shipped_network_stops_the_run_by_name(tmp_path, capsys, monkeypatch, make_flipped):
    # Issue 24: shipped weights with flipped bytes were used as genuine (exit status 0).
    from segreg_lite.pretrained import SHIPPED

    if not SHIPPED.exists():
        pytest.skip("the shipped weights are made by scripts/make_pretrained.py")
    flipped = make_flipped(SHIPPED, tmp_path / "regnet_cohort.pt")
    monkeypatch.setattr("segreg_lite.pretrained.SHIPPED", flipped)
    assert main([*RUN, "--methods", "reg_only", "--out", str(tmp_path / "r")]) == 2
    _one_clear_line(capsys, str(flipped), "is not the shipped pre-trained registration network", "SHA-256",
                    "pip install --force-reinstall segreg-lite", "git checkout segreg_lite/data/regnet_cohort.pt")
    # a shipped file whose checksum is right but whose fingerprint is malformed: one line, not a traceback
    from segreg_lite.checkpoint import load_checkpoint, save_checkpoint
    from segreg_lite.pretrained import sha256

    held = load_checkpoint(SHIPPED)
    malformed = tmp_path / "malformed.pt"
    save_checkpoint(malformed, models=held.models, config=held.config,
                    extra={**held.extra, "fingerprint": {**held.extra["fingerprint"], "config": "reg_features=16"}})
    monkeypatch.setattr("segreg_lite.pretrained.SHIPPED", malformed)
    monkeypatch.setattr("segreg_lite.pretrained.SHIPPED_SHA256", sha256(malformed))
    assert main([*RUN, "--methods", "reg_only", "--out", str(tmp_path / "m")]) == 2
    _one_clear_line(capsys, "malformed.pt' has a malformed fingerprint (config is not a table of settings)")
