import json
import subprocess
import sys

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
    assert "n_subjects must be a positive integer" in capsys.readouterr().err
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
    _one_clear_line(capsys, "seed must be a non-negative integer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_read_only_output_folder(tmp_path, capsys, monkeypatch):
    import os

    real_open = os.open

    def refuse(path, *args, **kw):  # what a read-only folder does (the tests may run as root)
        if str(path).startswith(str(tmp_path / "ro")):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kw)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", refuse)
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
    _one_clear_line(capsys, "n_subjects must be a positive integer")
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
