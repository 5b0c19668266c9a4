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
