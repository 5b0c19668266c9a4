import pytest

from segreg_lite.data import load_data


def test_cohort_description_names_a_non_default_grid():
    # run.json compares descriptions: runs on different grids must not share a folder
    assert "of 32x32" in load_data("cohort", n_subjects=3, size=(32, 32)).description
    assert "x" not in load_data("cohort", n_subjects=3, size=(128, 128)).description.split(",")[1]


def test_a_missing_folder_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="neither"):
        load_data("/no/such/folder")
