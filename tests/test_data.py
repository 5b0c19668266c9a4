import pytest

from segreg_lite.data import load_data


def test_cohort_description_names_a_non_default_grid():
    # run.json compares descriptions: runs on different grids must not share a folder
    assert "of 32x32" in load_data("cohort", n_subjects=3, size=(32, 32)).description
    assert "x" not in load_data("cohort", n_subjects=3, size=(128, 128)).description.split(",")[1]


def test_a_missing_folder_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="neither"):
        load_data("/no/such/folder")


def test_the_recipe_makes_the_same_data_again(tmp_path, make_data):
    """What a sweep's job on another machine does: ``from_recipe(data.recipe)`` is the same data
    (a folder by its absolute path, whatever the working directory)."""
    import torch

    from segreg_lite.data import DataRecipe, from_recipe
    from segreg_lite.nifti import save_nifti_folder

    cohort = load_data("cohort", n_subjects=3, size=(32, 32))
    assert cohort.recipe == DataRecipe("cohort", 3, 0, (32, 32), None)
    again = from_recipe(cohort.recipe)
    assert torch.equal(again.images, cohort.images) and again.description == cohort.description
    toy = make_data(n=4)
    save_nifti_folder(tmp_path / "slices", toy.images, toy.labels, names=toy.subjects)
    folder = load_data(str(tmp_path / "slices"))
    assert folder.recipe.source == str((tmp_path / "slices").resolve())
    assert torch.equal(from_recipe(folder.recipe).labels, folder.labels) and "DataRecipe" not in repr(folder)
