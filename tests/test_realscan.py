"""to_cohort_grid: a real slice on the cohort's grid (shape, range, brain centre and size,
orientation), its errors, and dipy's T1 slice when dipy is installed."""
import numpy as np
import pytest

from segreg_lite.realscan import (brain_mask, cohort_brain, load_dipy_t1_slice,
                                  to_cohort_grid)


def ellipse_slice(shape=(256, 300), center=(110, 170), radii=(60, 75), value=800.0):
    """An ellipse "brain" (bright core, darker rim) off-centre in a larger dark frame."""
    rows, cols = np.indices(shape, dtype=np.float64)
    r = ((rows - center[0]) / radii[0]) ** 2 + ((cols - center[1]) / radii[1]) ** 2
    image = np.where(r <= 1, value * (1.2 - 0.5 * r), 0.0)
    noise = np.random.default_rng(0).normal(0, 2, shape).clip(0)  # a faint background
    return image + noise


def box_of(mask):
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max(), cols.min(), cols.max()


def test_cohort_brain_is_centred_and_most_of_the_width():
    target = cohort_brain()
    assert target.size == (128, 128)
    assert 0.6 * 128 < target.width < 0.95 * 128 and 0.5 * 128 < target.height < 128
    assert abs(target.center[0] - 63.5) < 6 and abs(target.center[1] - 63.5) < 6


def test_ellipse_lands_centred_and_sized_as_the_cohort_brain():
    target = cohort_brain()
    out = to_cohort_grid(ellipse_slice())
    assert out.image.shape == (128, 128) and out.image.dtype == np.float32
    assert out.image.min() == 0.0 and out.image.max() == 1.0
    assert out.box == (50, 171, 95, 246)  # the ellipse's bounding box in the input
    r0, r1, c0, c1 = box_of(out.brain)
    assert abs((c1 - c0 + 1) - target.width) <= 1.5  # as wide as the cohort's brain
    assert abs((r0 + r1) / 2 - target.center[0]) <= 1
    assert abs((c0 + c1) / 2 - target.center[1]) <= 1
    # an ellipse stays an ellipse: aspect ratio kept (isotropic zoom)
    assert (r1 - r0 + 1) / (c1 - c0 + 1) == pytest.approx(121 / 151, abs=0.03)
    assert out.zoom == pytest.approx(target.width / 151)
    # background at 0 away from the brain (the faint noise is below 2% after rescaling)
    from scipy.ndimage import binary_dilation

    assert out.image[~binary_dilation(out.brain, iterations=2)].max() < 0.02
    assert out.image[out.brain].mean() > 0.5


def test_spacing_gives_the_cohort_pixel_size():
    out = to_cohort_grid(ellipse_slice(), spacing_mm=1.0)
    assert out.zoom == pytest.approx(1.0 / (180 / 128))
    assert out.spacing_mm == pytest.approx(1.0)
    with pytest.raises(ValueError, match="spacing_mm"):
        to_cohort_grid(ellipse_slice(), spacing_mm=0)


def test_a_brain_too_tall_for_the_frame_is_shrunk_to_fit_with_the_margin():
    tall = ellipse_slice(shape=(400, 200), center=(200, 100), radii=(180, 40))
    out = to_cohort_grid(tall, margin=4)
    r0, r1, c0, c1 = box_of(out.brain)
    assert r0 >= 4 and r1 <= 123 and (r1 - r0 + 1) >= 118  # fills the height, margin kept


def test_orientation_rot90_and_flip():
    marked = np.zeros((256, 300))
    marked[60:180, 100:240] = 1.0
    marked[60:80, 100:120] = 3.0  # a bright corner, top left
    plain = to_cohort_grid(marked).image
    assert plain[:64, :64].mean() > plain[64:, 64:].mean()
    upright = to_cohort_grid(np.rot90(marked, k=-1), rot90=1).image  # turned back
    np.testing.assert_allclose(upright, plain, atol=1e-6)
    flipped = to_cohort_grid(marked[:, ::-1], flip_lr=True).image
    np.testing.assert_allclose(flipped, plain, atol=1e-6)


def test_largest_region_is_the_brain():
    image = ellipse_slice()
    image[5:10, 5:10] = 900.0  # a bright speck apart from the brain
    mask = brain_mask(image)
    assert not mask[5:10, 5:10].any() and mask[110, 170]
    assert to_cohort_grid(image).box == (50, 171, 95, 246)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 64, 64)), "2D slice"),
    (np.zeros((1, 64, 64)) + np.arange(64), r"\.squeeze\(\)"),
    (np.zeros(64), "2D slice"),
    (np.full((64, 64), 3.0), "constant"),
    (np.where(np.eye(64) > 0, np.nan, 1.0), "NaN"),
    (np.where(np.eye(64) > 0, np.inf, 1.0), "NaN or infinite"),
    (np.zeros((4, 4)), "too small"),
    ([["a", "b"], ["c", "d"]], "2D image of numbers"),
])
def test_bad_input_is_refused_clearly(bad, message):
    with pytest.raises(ValueError, match=message):
        to_cohort_grid(bad)


def test_dipy_t1_slice():
    pytest.importorskip("dipy")
    scan = load_dipy_t1_slice()
    assert scan is not None and scan.shape == (256, 256)
    out = to_cohort_grid(scan)
    target = cohort_brain()
    r0, r1, c0, c1 = box_of(out.brain)
    assert abs((c1 - c0 + 1) - target.width) <= 1.5
    assert 0.8 < out.spacing_mm < 1.25  # a 1 mm T1, by its brain's width
    # superior up, like the cohort: narrow at the top, wider towards the middle
    width = out.brain.sum(1)
    assert width[r0 + 5] < width[(r0 + r1) // 2]


def test_without_dipy_says_how_to_get_it(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_dipy(name, *args, **kwargs):
        if name == "dipy" or name.startswith("dipy."):
            raise ImportError("No module named 'dipy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dipy)
    assert load_dipy_t1_slice() is None
    said = capsys.readouterr().out
    assert "pip install dipy" in said and ".[realscan]" in said
