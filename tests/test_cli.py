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
