import numpy as np
import pytest
import torch

from segreg_lite.template import CHANNELS, hard_labels, load_slab, load_template


def test_slab_is_the_vendored_template():
    raw = load_slab()
    assert raw["t1"].dtype == np.uint8 and raw["t1"].shape == raw["gm"].shape == raw["wm"].shape
    assert raw["t1"].shape[0] == 197 and raw["t1"].shape[2] == 189  # full x and z of the 1 mm MNI grid
    assert int(raw["y_start"]) < 116 < int(raw["y_start"]) + raw["t1"].shape[1]


def test_derived_maps_are_soft_seg4_classes():
    tpl = load_template()
    assert tpl.maps.shape[0] == len(CHANNELS)
    classes = tpl.maps[1:6]
    assert classes.min() >= 0
    np.testing.assert_allclose(classes.sum(0), 1.0, atol=1e-5)
    labels = tpl.labels()
    counts = np.bincount(labels.ravel(), minlength=5)
    assert (counts > 0).all()
    # Tissue intensities are ordered as on a T1: CSF < GM < WM.
    means = tpl.tissue_means
    assert means[4] < means[1] < means[3]
    # The template is symmetric about x = 98: so are the derived labels (almost everywhere).
    mid = labels[:, labels.shape[1] // 2]
    assert (mid[98 - 40 : 98] == mid[98 + 40 : 98 : -1]).mean() > 0.95


def test_hard_labels_splits_gm_after_choosing_tissue():
    # GM 0.3 + 0.3 beats WM 0.4 although each GM share alone does not.
    probs = torch.tensor([0.0, 0.3, 0.25, 0.4, 0.05]).view(1, 5, 1)
    assert hard_labels(probs).item() == 1
    probs = torch.tensor([0.0, 0.2, 0.35, 0.4, 0.05]).view(1, 5, 1)
    assert hard_labels(probs).item() == 2
    probs = torch.tensor([[0.9, 0.0, 0.0, 0.1, 0.0], [0.0, 0.0, 0.0, 0.2, 0.8]]).T[None]
    assert hard_labels(probs).tolist() == [[0, 4]]
