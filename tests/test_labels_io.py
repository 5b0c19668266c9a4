import json

import numpy as np
import pytest

from segreg_lite.io import atomic_path, write_json
from segreg_lite.labels import check_image, check_labels, rescale_unit


def test_check_labels_accepts_whole_floats_and_ints():
    out = check_labels(np.array([[0.0, 4.0], [1.0, 2.0]]))
    assert out.dtype == np.int64 and out.tolist() == [[0, 4], [1, 2]]


@pytest.mark.parametrize(
    "label, match",
    [
        (np.array([0, 5]), r"label values \[5\] are outside"),
        (np.array([-1, 0]), r"\[-1\]"),
        (np.array([0.5, 1.0]), "non-integer"),
        (np.array([np.nan, 1.0]), "NaN"),
        (np.array(["a"]), "dtype"),
    ],
)
def test_check_labels_errors_name_the_values(label, match):
    with pytest.raises(ValueError, match=match):
        check_labels(label, name="case7.nii.gz")
    with pytest.raises(ValueError, match="case7.nii.gz"):
        check_labels(label, name="case7.nii.gz")


def test_check_image_and_rescale():
    with pytest.raises(ValueError, match="NaN"):
        check_image(np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="constant"):
        check_image(np.full((3, 3), 7.0), name="flat.nii")
    img = rescale_unit(check_image(np.array([2.0, 4.0, 6.0])))
    assert img.tolist() == [0.0, 0.5, 1.0] and img.dtype == np.float32


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "results.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left


def test_a_full_disk_is_named_and_keeps_the_old_file(tmp_path, monkeypatch):
    """ENOSPC in the middle of a write: one line naming the file and "no space left on device",
    the old file as it was and no temporary file left behind."""
    import errno
    import pathlib

    target = tmp_path / "results.json"
    write_json(target, {"a": 1})
    real = pathlib.Path.write_text

    def full(self, text, *args, **kwargs):
        real(self, text[:3])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", full)
    with pytest.raises(OSError, match=r"no space left on device") as err:
        write_json(target, {"a": 2})
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target) and "\n" not in str(err.value)
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
    from segreg_lite.cli import _one_line

    assert _one_line(err.value).startswith(f"{target}: no space left on device")


def test_read_json_names_the_file_and_the_problem(tmp_path):
    from segreg_lite.io import read_json

    path = tmp_path / "results.json"
    for text, said in [("", "it is empty"), ('{"a": ', "Expecting value at line 1, column 7")]:
        path.write_text(text)
        with pytest.raises(ValueError, match=f"results.json: damaged results file: not valid JSON \\({said}\\)"):
            read_json(path, "results file")
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="results.json: damaged JSON file: not UTF-8"):
        read_json(path)
    write_json(path, {"a": [1]})
    assert read_json(path) == {"a": [1]}


def test_temp_names_of_killed_writes(tmp_path):
    from segreg_lite.io import is_temp_name, temp_target

    seen = []
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "joint.pt") as tmp:
            seen.append(tmp.name)
            raise RuntimeError
    assert is_temp_name(seen[0])  # what a write killed at this point would leave
    assert temp_target(seen[0]) == "joint.pt" and seen[0].endswith(".segreg-lite.tmp")
    # other programs' temporary files (and those of segreg-lite before the marker) are not ours
    assert not any(is_temp_name(n) for n in ("joint.pt", "notes.tmp", ".hidden", "run.json.tmp", ".thesis.autosave.tmp",
                                             ".joint.pt.q8w7e6r5.tmp", ".segreg-lite.tmp"))
