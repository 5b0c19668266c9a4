"""Figures: overlay colours (known answers), grids that fit the page, the method diagram."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from segreg_lite.labels import SEG4_COLORS  # noqa: E402
from segreg_lite.plotting import (  # noqa: E402
    PAGE_WIDTH,
    cohort_overview,
    draw_grid,
    label_legend,
    label_rgba,
    plot_method_overview,
    show_subject,
    soft_rgba,
    subject_grid,
)


def test_label_rgba_background_transparent_classes_coloured():
    rgba = label_rgba(np.array([[0, 3]]), alpha=0.5)  # (1, 2, 4)
    assert rgba.shape == (1, 2, 4)
    assert rgba[0, 0, 3] == 0.0
    np.testing.assert_allclose(rgba[0, 1], [*SEG4_COLORS[3], 0.5])


def test_soft_rgba_mixes_by_probability_and_is_as_opaque_as_foreground():
    probs = np.zeros((5, 1, 2), dtype=np.float32)  # (K, H, W)
    probs[0, 0, 0] = 1.0  # sure background
    probs[[0, 1], 0, 1] = 0.5  # half background, half cortex
    rgba = soft_rgba(probs, alpha=0.8)
    assert rgba[0, 0, 3] == 0.0
    np.testing.assert_allclose(rgba[0, 1], [*SEG4_COLORS[1], 0.4], atol=1e-6)


def test_draw_grid_keeps_the_image_extent():
    fig, ax = plt.subplots()
    show_subject(ax, np.zeros((16, 16)))
    before = ax.get_xlim(), ax.get_ylim()
    flow = np.full((2, 16, 16), 5.0)  # everything samples 5 px down-right: lines leave the image
    draw_grid(ax, flow, step=4)
    assert (ax.get_xlim(), ax.get_ylim()) == before
    plt.close(fig)


def test_subject_grid_fits_the_page_and_drops_empty_columns():
    images = np.zeros((2, 1, 8, 8), dtype=np.float32)
    fig = subject_grid(images, np.zeros((2, 8, 8), dtype=np.int64), ncols=6)
    assert len(fig.axes) == 2  # two subjects, two panels
    plt.close(fig)
    fig = subject_grid(np.zeros((12, 1, 8, 8), dtype=np.float32), ncols=6, size=3.0)
    assert fig.get_size_inches()[0] <= PAGE_WIDTH
    label_legend(fig)  # needs the constrained layout subject_grid uses
    plt.close(fig)


def test_cohort_overview_fits_the_page():
    from segreg_lite.cohort import generate_cohort

    fig = cohort_overview(generate_cohort(8, seed=0), n_show=8)
    assert fig.get_size_inches()[0] <= PAGE_WIDTH
    plt.close(fig)


def test_method_overview_is_a_figure_of_page_width():
    fig = plot_method_overview(n_atlas=2)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert fig.get_size_inches()[0] <= PAGE_WIDTH
    assert len(fig.axes) > 5  # the canvas and the image panels
    plt.close(fig)


def test_method_overview_rejects_no_atlas():
    with pytest.raises(ValueError, match="n_atlas"):
        plot_method_overview(n_atlas=0)


def test_book_style_sets_no_font_under_the_minimum():
    from segreg_lite.plotting import BOOK_STYLE, FONT_SIZE, use_book_style

    with matplotlib.rc_context():
        use_book_style()  # outside IPython: the rc settings only
        for key in ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize",
                    "ytick.labelsize", "legend.fontsize"):
            assert matplotlib.rcParams[key] == BOOK_STYLE[key] >= FONT_SIZE


@pytest.mark.parametrize("make", ["grid", "overview"])
def test_the_figures_of_the_package_have_no_text_under_the_minimum(make):
    from segreg_lite.plotting import FONT_SIZE, use_book_style

    with matplotlib.rc_context():
        use_book_style()
        if make == "grid":
            fig = subject_grid(np.zeros((3, 1, 8, 8), dtype=np.float32), titles=["a", "b", "c"])
            label_legend(fig)
        else:
            fig = plot_method_overview(n_atlas=1)
        fig.canvas.draw()
        sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
        plt.close(fig)
    assert sizes and min(sizes) >= FONT_SIZE


def test_error_map_marks_exactly_the_wrong_pixels():
    from segreg_lite.plotting import error_rgba, show_errors

    truth = np.array([[0, 1], [2, 2]])
    pred = np.array([[0, 1], [2, 3]])
    rgba = error_rgba(truth, pred)
    assert rgba.shape == (2, 2, 4)
    assert (rgba[..., 3] > 0).tolist() == [[False, False], [False, True]]
    fig, ax = plt.subplots()
    assert show_errors(ax, np.zeros((2, 2)), truth, pred) == 0.25
    plt.close(fig)
