"""Figures shared by the CLI and the book: label overlays, subject grids, the cohort overview.

matplotlib is imported inside the functions, so importing this module stays cheap.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from segreg_lite.labels import SEG4_COLORS, SEG4_NAMES


def label_rgba(label: np.ndarray, alpha: float = 0.45, colors: Sequence = SEG4_COLORS) -> np.ndarray:
    """Colour a label map (H, W) as RGBA (H, W, 4); background (0) fully transparent."""
    label = np.asarray(label)
    table = np.zeros((len(colors), 4), dtype=np.float32)
    table[:, :3] = np.asarray(colors, dtype=np.float32)
    table[1:, 3] = alpha
    return table[label]


def show_subject(ax, image: np.ndarray, label: np.ndarray | None = None, title: str | None = None, alpha: float = 0.45) -> None:
    """Draw an image (H, W) or (1, H, W) in grey with an optional label overlay on ``ax``."""
    ax.imshow(np.asarray(image).squeeze(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    if label is not None:
        ax.imshow(label_rgba(label, alpha), interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def legend_handles(names: Sequence[str] = SEG4_NAMES, colors: Sequence = SEG4_COLORS) -> list:
    """Patches for a legend of the foreground classes."""
    from matplotlib.patches import Patch

    return [Patch(color=c, label=n) for n, c in zip(names[1:], colors[1:])]


def subject_grid(images, labels=None, *, titles: Sequence[str] | None = None, ncols: int = 6, size: float = 2.0):
    """A grid of subjects: images (N, 1, H, W), optional labels (N, H, W). Returns the Figure."""
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    n = images.shape[0]
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            show_subject(ax, images[i], None if labels is None else np.asarray(labels[i]), titles[i] if titles else None)
        else:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def cohort_overview(cohort, n_show: int = 6):
    """One figure for a generated cohort: subjects with and without labels, class frequencies,
    and the spread of atrophy. Returns the Figure."""
    import matplotlib.pyplot as plt

    n_show = min(n_show, len(cohort))
    fig = plt.figure(figsize=(2.2 * n_show, 7.0))
    # rows of square images, then a shorter row of plots
    grid = fig.add_gridspec(3, n_show, height_ratios=[1, 1, 1.1])
    for i in range(n_show):
        sev = cohort.params["severity"][i]
        show_subject(fig.add_subplot(grid[0, i]), cohort.images[i].numpy(), title=f"{cohort.subjects[i]} (atrophy {sev:.2f})")
        show_subject(fig.add_subplot(grid[1, i]), cohort.images[i].numpy(), cohort.labels[i].numpy())
    half = max(1, n_show // 2)
    ax = fig.add_subplot(grid[2, :half])
    freq = cohort.class_frequencies()
    ax.bar(range(len(freq)), freq, color=[(0.6, 0.6, 0.6), *SEG4_COLORS[1:]][: len(freq)])
    ax.set_xticks(range(len(freq)), cohort.label_names, rotation=20, fontsize=8)
    ax.set_ylabel("pixel fraction")
    ax.set_title(f"class frequencies ({len(cohort)} subjects)", fontsize=9)
    ax = fig.add_subplot(grid[2, half:])
    csf = (cohort.labels == 4).sum(dim=(1, 2)).numpy() * cohort.spacing_mm**2
    ax.scatter(cohort.params["severity"], csf, s=6, alpha=0.6, color=SEG4_COLORS[4])
    ax.set_xlabel("atrophy severity")
    ax.set_ylabel("CSF area (mm$^2$)")
    ax.set_title("atrophy enlarges CSF spaces", fontsize=9)
    fig.legend(handles=legend_handles(), loc="upper center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig
