"""Figures shared by the CLI and the book: label overlays, subject grids, deformation grids, the
cohort overview and the diagram of the method (Li et al., arXiv 2502.03229).

Sized for the book's page. At 1280 px the book's cell outputs are about 670 px wide, so a figure
of :data:`PAGE_WIDTH` (10 in, about 1020 px at 100 dpi) is shown at about 65% of its size: text
of :data:`FONT_SIZE` (12 pt, 17 px in the PNG) is then 10.8 px on screen, and never smaller
(``scripts/check_pages.py`` measures it). :func:`use_book_style` sets matplotlib's defaults to match (the
chapters call it once); narrower figures are shrunk less. matplotlib is imported inside the
functions, so importing this module stays cheap.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from segreg_lite.labels import SEG4_COLORS, SEG4_NAMES

#: Widest figure, in inches: the book's text column (wider ones are shrunk, their text with them).
PAGE_WIDTH = 10.0
#: Smallest font size, in points, of any text in a figure: 10 px or more on screen at 1280 px.
FONT_SIZE = 12
#: Resolution of the book's figures (matplotlib's default; the inline backend draws at it).
DPI = 100
#: matplotlib settings of the book's figures (:func:`use_book_style`): no text under FONT_SIZE.
BOOK_STYLE = {
    "font.size": FONT_SIZE + 1,
    "axes.titlesize": FONT_SIZE + 1,
    "axes.labelsize": FONT_SIZE + 1,
    "xtick.labelsize": FONT_SIZE,
    "ytick.labelsize": FONT_SIZE,
    "legend.fontsize": FONT_SIZE,
    "legend.title_fontsize": FONT_SIZE,
    "figure.titlesize": FONT_SIZE + 2,
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}
#: The PNG text chunk that tells scripts/check_pages.py the smallest text of a book figure.
STYLE_MARK = ("segreg_lite", f"min_font_pt={FONT_SIZE} dpi={DPI}")


def use_book_style() -> None:
    """Set matplotlib's defaults to the book's (:data:`BOOK_STYLE`), for every later figure.

    In a notebook it also marks each inline PNG with :data:`STYLE_MARK` (a text chunk, invisible),
    which ``scripts/check_pages.py`` reads to tell how large a figure's smallest text is shown.
    The marker promises what the style sets: a chapter that passes a smaller ``fontsize`` by hand
    breaks it, so the chapters do not.
    """
    import matplotlib

    matplotlib.rcParams.update(BOOK_STYLE)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:  # a script or the CLI: the rc settings are all
        return
    import warnings

    with warnings.catch_warnings():  # matplotlib_inline's traitlets observer is deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        from IPython.core.pylabtools import select_figure_formats
        from matplotlib_inline.config import InlineBackend

        # Kept in the inline backend's settings: a later `%matplotlib inline` keeps it too.
        config = InlineBackend.instance(parent=shell)
        config.print_figure_kwargs = {**config.print_figure_kwargs, "metadata": dict([STYLE_MARK])}
    select_figure_formats(shell, config.figure_formats, **config.print_figure_kwargs)


def label_rgba(label: np.ndarray, alpha: float = 0.45,
               colors: Sequence = SEG4_COLORS) -> np.ndarray:
    """Colour a label map (H, W) as RGBA (H, W, 4); background (0) fully transparent."""
    label = np.asarray(label)
    table = np.zeros((len(colors), 4), dtype=np.float32)
    table[:, :3] = np.asarray(colors, dtype=np.float32)
    table[1:, 3] = alpha
    return table[label]


def soft_rgba(probs: np.ndarray, alpha: float = 0.6, colors: Sequence = SEG4_COLORS) -> np.ndarray:
    """Colour class probabilities (K, H, W) as RGBA (H, W, 4): each pixel mixes the class colours
    by their probabilities and is as opaque as it is foreground (background transparent)."""
    probs = np.asarray(probs, dtype=np.float32)
    fg = probs[1:].sum(0)  # (H, W)
    rgb = np.einsum("khw,kc->hwc", probs[1:], np.asarray(colors, dtype=np.float32)[1:])
    rgb /= np.maximum(fg, 1e-6)[..., None]
    return np.concatenate([rgb, (alpha * fg)[..., None]], axis=-1).clip(0.0, 1.0)


def show_subject(ax, image: np.ndarray, label: np.ndarray | None = None, title: str | None = None,
                 alpha: float = 0.45) -> None:
    """Draw an image (H, W) or (1, H, W) in grey with an optional label overlay on ``ax``."""
    image = np.asarray(image).squeeze()  # (H, W)
    ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    if label is not None:
        ax.imshow(label_rgba(label, alpha), interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=FONT_SIZE)
    ax.set_axis_off()


def error_rgba(truth: np.ndarray, pred: np.ndarray, color: Sequence[float] = (1.0, 0.0, 0.0),
               alpha: float = 0.9) -> np.ndarray:
    """The pixels where ``pred`` differs from ``truth`` (label maps (H, W)) as RGBA (H, W, 4):
    ``color`` at ``alpha`` where they differ, fully transparent elsewhere."""
    wrong = np.asarray(truth) != np.asarray(pred)
    rgba = np.zeros((*wrong.shape, 4), dtype=np.float32)
    rgba[wrong] = (*color[:3], alpha)
    return rgba


def show_errors(ax, image: np.ndarray, truth: np.ndarray, pred: np.ndarray,
                title: str | None = None) -> float:
    """Draw an error map on ``ax``: the image in grey, the pixels ``pred`` labels differently
    from ``truth`` in red. Put it beside the prediction, so that a boundary one pixel off shows
    as a red line. Returns the share of pixels wrong."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    show_subject(ax, image, title=title)
    ax.imshow(error_rgba(truth, pred), interpolation="nearest")
    return float((truth != pred).mean())


def legend_handles(names: Sequence[str] = SEG4_NAMES, colors: Sequence = SEG4_COLORS) -> list:
    """Patches for a legend of the foreground classes."""
    from matplotlib.patches import Patch

    return [Patch(color=c, label=n) for n, c in zip(names[1:], colors[1:])]


def label_legend(fig, ncol: int = 4):
    """The foreground classes' legend below the panels of ``fig``, at the book's font size.

    Outside the axes, so it covers no image: with ``layout="constrained"`` the panels make room
    for it. Returns the Legend.
    """
    return fig.legend(handles=legend_handles(), loc="outside lower center", ncol=ncol,
                      fontsize=FONT_SIZE, frameon=False)


def draw_grid(ax, flow, step: int = 8, color: str = "yellow", lw: float = 0.5) -> None:
    """Draw where a displacement field (2, H, W), in pixels, sends a grid of lines (p + u(p)).

    Lines of constant row and column every ``step`` pixels, drawn over an image shown on ``ax``;
    the axes keep the image's extent, so lines that leave it are clipped, not the image shrunk.
    """
    flow = np.asarray(flow, dtype=np.float64)
    h, w = flow.shape[-2:]
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    y, x = rows + flow[0], cols + flow[1]  # (H, W) each: where each pixel samples
    limits = ax.get_xlim(), ax.get_ylim()
    for i in range(0, h, step):
        ax.plot(x[i], y[i], color=color, lw=lw)
    for j in range(0, w, step):
        ax.plot(x[:, j], y[:, j], color=color, lw=lw)
    ax.set_xlim(*limits[0])
    ax.set_ylim(*limits[1])


def subject_grid(images, labels=None, *, titles: Sequence[str] | None = None, ncols: int = 4,
                 size: float = 2.5):
    """A grid of subjects: images (N, 1, H, W), optional labels (N, H, W). Returns the Figure.

    Panels are ``size`` inches square, or smaller where ``ncols`` of them would be wider than the
    page; fewer than ``ncols`` subjects take one row of just as many panels.
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    n = images.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    size = min(size, PAGE_WIDTH / ncols)
    title_lines = max((str(t).count("\n") + 1 for t in titles), default=0) if titles else 0
    row = size + 0.2 * title_lines + 0.05  # inches: the panel and its title
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, row * nrows), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i < n:
            label = None if labels is None else np.asarray(labels[i])
            show_subject(ax, images[i], label, titles[i] if titles else None)
        else:
            ax.set_axis_off()
    return fig


def cohort_overview(cohort, n_show: int = 6):
    """One figure for a generated cohort: subjects with and without labels, class frequencies,
    and the spread of atrophy. Returns the Figure."""
    import matplotlib.pyplot as plt

    n_show = min(n_show, len(cohort))
    col = min(2.0, PAGE_WIDTH / n_show)
    fig = plt.figure(figsize=(col * n_show, 2 * col + 3.2), layout="constrained")
    # subjects above, plots below: two subfigures, so neither shapes the other's columns
    top, bottom = fig.subfigures(2, 1, height_ratios=[2 * col + 0.5, 2.7])
    axes = top.subplots(2, n_show, squeeze=False)
    for i in range(n_show):
        sev = cohort.params["severity"][i]
        image = cohort.images[i].numpy()
        title = f"{cohort.subjects[i]}\natrophy {sev:.2f}"
        show_subject(axes[0, i], image, title=title)
        show_subject(axes[1, i], image, cohort.labels[i].numpy())
    bars, ax = bottom.subplots(1, 2)
    freq = cohort.class_frequencies()
    bars.bar(range(len(freq)), freq, color=[(0.6, 0.6, 0.6), *SEG4_COLORS[1:]][: len(freq)])
    bars.set_xticks(range(len(freq)), cohort.label_names, rotation=20, fontsize=FONT_SIZE)
    bars.set_ylabel("pixel fraction")
    bars.set_title(f"class frequencies ({len(cohort)} subjects)", fontsize=FONT_SIZE + 1)
    csf = (cohort.labels == 4).sum(dim=(1, 2)).numpy() * cohort.spacing_mm**2
    ax.scatter(cohort.params["severity"], csf, s=6, alpha=0.6, color=SEG4_COLORS[4])
    ax.set_xlabel("atrophy severity")
    ax.set_ylabel("CSF area (mm$^2$)")
    ax.set_title("atrophy enlarges CSF spaces", fontsize=FONT_SIZE + 1)
    label_legend(bottom)
    return fig


def _deck(fig, x: float, y: float, side: float, layers: list, title: str,
          step: float = 0.2) -> None:
    """Up to a few square panels stacked like cards, the first at the back, top-left corner at
    (x, y) in figure inches; ``layers`` holds (image (H, W), RGBA overlay (H, W, 4) or None)."""
    fw, fh = fig.get_size_inches()
    for k, (image, overlay) in enumerate(layers):
        left, top = x + k * step, y - k * step
        ax = fig.add_axes((left / fw, (top - side) / fh, side / fw, side / fh))
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        if overlay is not None:
            ax.imshow(overlay, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("white")
            spine.set_linewidth(1.5)
    fig.text((x + side / 2 + step * (len(layers) - 1) / 2) / fw, (y + 0.08) / fh, title,
             ha="center", va="bottom", fontsize=FONT_SIZE)


def plot_method_overview(seed: int = 0, n_atlas: int = 3):
    """The method as one diagram on real subjects of the embedded cohort. Returns the Figure.

    Top: annotated atlases registered onto an unannotated image give warped labels; bottom: the
    same image, augmented (rotated or shifted, the test-time augmentation), goes through the
    segmenter and back; both kinds of maps average into the soft mask, and the rounds retrain
    both networks on it. Nothing is trained: the atlases are warped by the shipped pre-trained
    registration network (:mod:`segreg_lite.pretrained`), and as no segmenter is trained for a
    diagram, the soft mask drawn averages the warped atlases only.
    """
    import matplotlib.pyplot as plt

    from segreg_lite.cohort import generate_cohort
    from segreg_lite.config import TrainConfig
    from segreg_lite.labels import NUM_CLASSES
    from segreg_lite.pretrained import load_pretrained
    from segreg_lite.registration import register
    from segreg_lite.transforms import warp, warp_labels
    from segreg_lite.tta import TTAParams, augment_fields

    if n_atlas < 1:
        raise ValueError(f"n_atlas must be >= 1, got {n_atlas}")
    cohort = generate_cohort(n_atlas + 1, seed=seed)
    x, atlas_images, atlas_labels = cohort.images[:1], cohort.images[1:], cohort.labels[1:]
    regnet, _ = load_pretrained()
    flows = register(regnet, atlas_images, x, passes=TrainConfig().reg_passes)  # (A, 2, H, W)
    warped = warp_labels(atlas_labels, flows, NUM_CLASSES)  # (A, K, H, W), one-hot warped
    # Three fixed augmentations in the ranges of segreg_lite.tta: a rotation, a shift, a rotation.
    h, w = x.shape[-2:]
    params = [TTAParams(15.0, (0.0, 0.0), False), TTAParams(0.0, (0.08 * h, -0.1 * w), False),
              TTAParams(-12.0, (0.0, 0.0), False)]
    forward, _ = augment_fields(params, (h, w))
    augmented = warp(x.expand(len(params), -1, -1, -1), forward)  # (T, 1, H, W)

    img = lambda t: t.squeeze().numpy()  # noqa: E731  (1, H, W) or (H, W) -> (H, W)
    fig = plt.figure(figsize=(PAGE_WIDTH, 5.0))
    bg = fig.add_axes((0, 0, 1, 1))  # a canvas in inches for the boxes, arrows and words
    bg.set_xlim(0, PAGE_WIDTH)
    bg.set_ylim(0, 5.0)
    bg.set_axis_off()
    side = 1.0
    atlases = [(img(a), label_rgba(lab.numpy())) for a, lab in zip(atlas_images, atlas_labels)]
    _deck(fig, 0.2, 4.55, side, atlases, "annotated atlases $(x_a, y_a)$")
    _deck(fig, 0.37, 1.75, side, [(img(x), None)], "unannotated image $x$")
    _deck(fig, 2.75, 1.95, side, [(img(a), None) for a in augmented], "augmented $T_t\\,x$")
    _deck(fig, 5.35, 4.55, side, [(img(x), label_rgba(p.argmax(0).numpy())) for p in warped],
          "warped labels $Y_a \\circ \\phi_a$")
    _deck(fig, 8.05, 3.2, 1.5, [(img(x), soft_rgba(warped.mean(0).numpy()))],
          "soft mask $\\tilde Y(x)$")
    bg.text(8.8, 1.6, "drawn here: the mean of\nthe warped atlases only", fontsize=FONT_SIZE,
            color="0.35", ha="center", va="top")

    def box(cx, cy, text, color):
        bg.text(cx, cy, text, ha="center", va="center", fontsize=FONT_SIZE, zorder=3,
                bbox=dict(boxstyle="round,pad=0.45", facecolor=color, edgecolor="0.3"))

    def arrow(start, end, text="", rad=0.0, **kw):
        bg.annotate("", xy=end, xytext=start, zorder=2, arrowprops=dict(
            arrowstyle="-|>", color="0.25", lw=1.3, shrinkA=0, shrinkB=0,
            connectionstyle=f"arc3,rad={rad}"))
        if text:
            middle = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
            bg.text(*middle, text, fontsize=FONT_SIZE, **kw)

    box(3.6, 3.8, "registration\nnetwork", "#dbe9f6")
    box(5.15, 1.2, "segmenter $S$,\nmapped back\n$T_t^{-1}(S(T_t\\,x))$", "#fbe3d0")
    arrow((1.6, 3.8), (2.95, 3.8), "moving", ha="center", va="bottom")
    arrow((1.1, 2.05), (3.0, 3.45), "fixed", ha="left", va="top")
    arrow((4.25, 3.8), (5.25, 3.8))
    arrow((1.45, 1.2), (2.65, 1.2), "$T_t$", ha="center", va="bottom")
    arrow((4.2, 1.2), (4.35, 1.2))
    arrow((6.7, 3.4), (7.95, 2.95), "mean of\nall maps", ha="left", va="bottom")
    arrow((5.95, 1.2), (7.95, 1.95))
    bg.text(7.05, 1.55, "$1 + n_\\mathrm{tta}$ maps", fontsize=FONT_SIZE, ha="center", va="top")
    # The rounds: the soft mask becomes the training target of both networks, again and again.
    arrow((8.8, 3.5), (3.6, 4.25), rad=0.25)
    arrow((9.55, 1.2), (5.15, 0.6), rad=-0.3)
    bg.text(8.15, 4.55, "rounds: both networks\nretrain on $\\tilde Y$", fontsize=FONT_SIZE,
            ha="center", va="bottom")
    return fig
