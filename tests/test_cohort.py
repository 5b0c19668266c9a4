import numpy as np
import pytest
import torch

from segreg_lite.cohort import CohortConfig, generate_cohort, template_plane


@pytest.fixture(scope="module")
def cohort():
    return generate_cohort(6, seed=3)


def test_shapes_dtypes_ranges(cohort):
    assert cohort.images.shape == (6, 1, 128, 128) and cohort.images.dtype == torch.float32
    assert cohort.labels.shape == (6, 128, 128) and cohort.labels.dtype == torch.int64
    assert 0.0 <= cohort.images.min() and cohort.images.max() <= 1.0
    assert set(torch.unique(cohort.labels).tolist()) == {0, 1, 2, 3, 4}
    assert cohort.subjects[0] == "sub-0000" and len(cohort.params["severity"]) == 6


def test_seeded_and_independent_of_cohort_size(cohort):
    assert torch.equal(generate_cohort(6, seed=3).images, cohort.images)  # bitwise for the same call
    # Another size and chunking gives the same subjects (to float rounding of batched kernels).
    again = generate_cohort(3, seed=3, chunk=2)
    torch.testing.assert_close(again.images, cohort.images[:3], atol=1e-5, rtol=0)
    assert torch.equal(again.labels, cohort.labels[:3])
    other = generate_cohort(3, seed=4)
    assert not torch.equal(other.labels, cohort.labels[:3])


def test_subjects_differ_and_are_not_the_template(cohort):
    _, tpl_labels = template_plane()
    for lab in cohort.labels:
        assert (lab != tpl_labels).float().mean() > 0.05
    assert (cohort.labels[0] != cohort.labels[1]).float().mean() > 0.05


def test_image_follows_labels(cohort):
    # Mean intensity by class is ordered as on a T1 for every subject: CSF < GM < WM.
    for img, lab in zip(cohort.images[:, 0], cohort.labels):
        mean = [img[lab == k].mean().item() for k in range(5)]
        assert mean[4] < mean[1] < mean[3]
        assert mean[0] < 0.1  # skull-stripped background


def test_atrophy_enlarges_csf_in_image_and_labels():
    young = generate_cohort(1, seed=0, config=CohortConfig(ventricle_mm=0.0, thinning_mm=0.0, noise_max=0.0))
    cfg_old = CohortConfig(ventricle_mm=8.0, thinning_mm=1.5, noise_max=0.0)
    old = generate_cohort(1, seed=0, config=cfg_old)
    assert old.params["severity"][0] == young.params["severity"][0]  # same subject, more atrophy
    csf_young, csf_old = (young.labels == 4).sum(), (old.labels == 4).sum()
    assert csf_old > 1.2 * csf_young
    # Pixels that became CSF are dark in the image, as CSF is.
    became = (old.labels[0] == 4) & (young.labels[0] != 4)
    assert old.images[0, 0][became].mean() < young.images[0, 0][became].mean() - 0.05


def test_other_size():
    c = generate_cohort(2, seed=1, config=CohortConfig(size=(160, 192)))
    assert c.images.shape == (2, 1, 160, 192) and c.labels.shape == (2, 160, 192)
    assert c.spacing_mm == pytest.approx(180 / 192)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_subject_count(bad):
    with pytest.raises(ValueError, match="n_subjects"):
        generate_cohort(bad)


def test_a_bad_seed_or_an_oversized_grid_is_refused_naming_the_parameter(monkeypatch):
    # Issue 24: a negative seed reached NumPy ("expected non-negative integer", no name), and any
    # size that was a multiple of 16 was accepted: 100000 x 100000 tried to allocate 160 GB.
    from segreg_lite.data import load_data
    from segreg_lite.limits import MAX_SIZE

    monkeypatch.setattr("segreg_lite.cohort.load_template", lambda: pytest.fail("the template was read before the check"))
    with pytest.raises(ValueError, match=r"^seed must be a non-negative integer \(0, 1, 2, ...\), got -1$"):
        generate_cohort(3, seed=-1)
    for size in ((100000, 100000), (MAX_SIZE + 16, 128), (128, 2 * MAX_SIZE)):
        with pytest.raises(ValueError, match=f"^size must be multiples of 16 from 16 to {MAX_SIZE}, got {size[0]} {size[1]}"):
            CohortConfig(size=size)
        with pytest.raises(ValueError, match=f"to {MAX_SIZE}, got {size[0]} {size[1]}"):
            load_data("cohort", n_subjects=3, size=size)
    with pytest.raises(ValueError, match="size must be two numbers, H and W"):
        CohortConfig(size=(128,))
    with pytest.raises(ValueError, match="size must be multiples of 16"):
        CohortConfig(size=(128.0, 128))
    assert CohortConfig(size=(MAX_SIZE, 16)).size == (MAX_SIZE, 16)


def test_bad_config():
    with pytest.raises(ValueError, match="multiples of 16"):
        CohortConfig(size=(100, 128))
    with pytest.raises(ValueError, match="noise_max"):
        CohortConfig(noise_max=-1.0)
    with pytest.raises(ValueError, match="elastic_mm"):
        CohortConfig(elastic_mm=float("nan"))


def test_summary(cohort):
    s = cohort.summary()
    freqs = [c["frequency"] for c in s["classes"].values()]
    assert s["subjects"] == 6 and sum(freqs) == pytest.approx(1.0)
    np.testing.assert_allclose(freqs, cohort.class_frequencies())
