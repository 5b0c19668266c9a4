"""scripts/time_tests.py and the README's generated "make test" line."""
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


time_tests, readme_results = _script("time_tests"), _script("readme_results")


def test_record_writes_every_part_and_the_total(tmp_path):
    path = tmp_path / "times.json"
    entry = time_tests.record({"unit": 61.04, "notebooks": 190.0, "book": 30.0}, "2-core CPU", path)
    held = json.loads(path.read_text())
    assert held == entry and held["total"] == pytest.approx(281.0) and held["parts"]["unit"] == 61.0
    assert held["machine"] == "2-core CPU" and len(held["date"]) == 10


def test_the_readme_line_is_made_from_the_recorded_times(tmp_path):
    path = tmp_path / "times.json"
    time_tests.record({"unit": 60.0, "notebooks": 180.0, "book": 30.0}, "test machine", path)
    line = readme_results.test_block(path)
    assert line.startswith("`make test` took 4 min on a test machine") and "unit tests 1.0 min" in line
    assert "smoke mode 3.0 min" in line and "book build 0.5 min" in line
    assert "not recorded" in readme_results.test_block(tmp_path / "missing.json")


def test_the_readme_holds_the_recorded_line():
    readme = (ROOT / "README.md").read_text()
    block = readme_results.test_block()
    assert f"{readme_results.TEST_START}\n{block}\n{readme_results.TEST_END}" in readme


def test_a_failing_part_records_nothing(tmp_path, monkeypatch):
    def fail(target, make="make"):
        raise subprocess.CalledProcessError(2, ["make", target])

    monkeypatch.setattr(time_tests, "time_part", fail)
    monkeypatch.setattr(time_tests.subprocess, "run", lambda *a, **k: None)  # no install
    assert time_tests.main(["--out", str(tmp_path / "t.json")]) == 1
    assert not (tmp_path / "t.json").exists()
