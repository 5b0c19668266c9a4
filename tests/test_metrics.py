"""Tests for segreg_lite.metrics: known answers, edge cases, bad inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from segreg_lite.metrics import (
    dice_per_class,
    folding_fraction,
    hausdorff,
    log_jacobian_std,
    mean_dice,
    summarize,
)
from segreg_lite.transforms import affine_flow


def _square(h: int, w: int, top: int, left: int, size: int, value: int = 1) -> np.ndarray:
    lab = np.zeros((h, w), dtype=np.int64)
    lab[top : top + size, left : left + size] = value
    return lab


# --- Dice ---------------------------------------------------------------------------------------


def test_identical_maps():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 4, size=(2, 16, 16))
    np.testing.assert_array_equal(dice_per_class(lab, lab, 4), np.ones((2, 3)))
    np.testing.assert_array_equal(hausdorff(lab, lab, 4), np.zeros((2, 3)))
    np.testing.assert_array_equal(hausdorff(lab, lab, 4, percentile=95), np.zeros((2, 3)))


def test_dice_known_overlap():
    pred = np.zeros((5, 5), dtype=np.int64)
    target = np.zeros((5, 5), dtype=np.int64)
    pred[0, 0:2] = 1  # 2 pixels
    target[0, 0:4] = 1  # 4 pixels, 2 shared
    assert dice_per_class(pred, target, 2).shape == (1, 1)  # a single map counts as B = 1
    assert dice_per_class(pred, target, 2)[0, 0] == pytest.approx(2 * 2 / (2 + 4))


def test_dice_per_class_columns_and_mean():
    pred = np.array([[1, 1, 2, 2]])
    target = np.array([[1, 2, 2, 2]])
    d = dice_per_class(pred, target, 3)
    np.testing.assert_allclose(d, [[2 * 1 / 3, 2 * 2 / 5]])
    np.testing.assert_allclose(mean_dice(pred, target, 3), [(2 / 3 + 4 / 5) / 2])


def test_dice_empty_cases():
    empty = np.zeros((4, 4), dtype=np.int64)
    one = _square(4, 4, 0, 0, 2)
    assert dice_per_class(empty, empty, 3).tolist() == [[1.0, 1.0]]  # both empty -> 1
    assert dice_per_class(one, empty, 3).tolist() == [[0.0, 1.0]]  # one empty -> 0
    assert dice_per_class(empty, one, 3).tolist() == [[0.0, 1.0]]


def test_torch_input_and_batch():
    pred = torch.zeros(3, 6, 6, dtype=torch.long)
    pred[:, 1:4, 1:4] = 1
    out = dice_per_class(pred, pred.clone(), 2)
    assert isinstance(out, np.ndarray) and out.shape == (3, 1)
    assert hausdorff(pred, pred, 2).shape == (3, 1)


# --- Hausdorff ----------------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", [True, False])
def test_hausdorff_offset_squares(boundary):
    pred = _square(16, 20, 2, 3, 8)  # target moved 3 columns to the right
    target = _square(16, 20, 2, 0, 8)
    assert hausdorff(pred, target, 2, boundary=boundary)[0, 0] == pytest.approx(3.0)
    assert hausdorff(pred, target, 2, spacing=(1.4, 1.4), boundary=boundary)[0, 0] == pytest.approx(4.2)
    # anisotropic pixels: the offset is along the columns, so only dx counts
    assert hausdorff(pred, target, 2, spacing=(2.0, 0.5), boundary=boundary)[0, 0] == pytest.approx(1.5)


def test_hausdorff_is_symmetric():
    a = _square(16, 16, 2, 2, 6)
    b = _square(16, 16, 5, 4, 9)
    np.testing.assert_allclose(hausdorff(a, b, 2), hausdorff(b, a, 2))


def test_outlier_changes_hd_not_hd95():
    target = _square(40, 40, 2, 2, 10)
    pred = _square(40, 40, 2, 3, 10)  # one column to the right
    hd, hd95 = hausdorff(pred, target, 2)[0, 0], hausdorff(pred, target, 2, percentile=95)[0, 0]
    assert hd == pytest.approx(1.0) and hd95 == pytest.approx(1.0)
    pred[30, 30] = 1  # a single stray pixel far away; nearest target pixel is the corner (11, 11)
    assert hausdorff(pred, target, 2)[0, 0] == pytest.approx(19 * math.sqrt(2))
    assert hausdorff(pred, target, 2, percentile=95)[0, 0] == pytest.approx(hd95)


def test_boundary_sees_holes():
    # a hole in the prediction: its rim is a boundary far from the target's boundary, while the
    # whole-region distance only sees the one missing pixel
    target = _square(20, 20, 4, 4, 11)
    pred = target.copy()
    pred[9, 9] = 0
    assert hausdorff(pred, target, 2, boundary=False)[0, 0] == pytest.approx(1.0)
    assert hausdorff(pred, target, 2)[0, 0] == pytest.approx(4.0)  # (8, 9) -> top edge row 4


def test_hausdorff_empty_cases():
    empty = np.zeros((8, 8), dtype=np.int64)
    one = _square(8, 8, 1, 1, 3)
    assert hausdorff(empty, empty, 2)[0, 0] == 0.0
    assert math.isnan(hausdorff(one, empty, 2)[0, 0])
    assert math.isnan(hausdorff(empty, one, 2, percentile=95)[0, 0])
    # counting them: summarize reports the NaNs apart from the mean
    hd = np.stack([hausdorff(one, one, 2)[0], hausdorff(one, empty, 2)[0]])  # (2, 1)
    assert summarize(hd) == {"mean": 0.0, "std": 0.0, "n": 1, "n_nan": 1}


def test_hausdorff_bad_options():
    lab = _square(8, 8, 1, 1, 3)
    with pytest.raises(ValueError, match="percentile"):
        hausdorff(lab, lab, 2, percentile=0)
    with pytest.raises(ValueError, match="spacing"):
        hausdorff(lab, lab, 2, spacing=(1.0, -1.0))


# --- bad label inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [dice_per_class, mean_dice, hausdorff])
def test_bad_label_inputs(fn):
    lab = np.zeros((2, 6, 6), dtype=np.int64)
    with pytest.raises(ValueError, match=r"\(2, 6, 6\).*\(2, 6, 7\)"):
        fn(lab, np.zeros((2, 6, 7), dtype=np.int64), 3)
    with pytest.raises(ValueError, match=r"\[3\]"):
        fn(lab, np.full((2, 6, 6), 3), 3)
    with pytest.raises(ValueError, match=r"\[-1\]"):
        fn(np.full((2, 6, 6), -1), lab, 3)
    with pytest.raises(ValueError, match="non-integer"):
        fn(np.full((2, 6, 6), 0.5), lab, 3)
    with pytest.raises(ValueError, match=r"\(1, 2, 6, 6\)"):
        fn(lab[None], lab[None], 3)
    with pytest.raises(ValueError, match="num_classes"):
        fn(lab, lab, 1)


def test_whole_number_floats_are_accepted():
    lab = _square(6, 6, 1, 1, 3)
    assert dice_per_class(lab.astype(np.float32), lab, 2)[0, 0] == 1.0


# --- Jacobian statistics ------------------------------------------------------------------------


def test_folding_fraction_identity_and_mirror():
    np.testing.assert_array_equal(folding_fraction(torch.zeros(2, 2, 8, 10)), [0.0, 0.0])
    mirror = torch.zeros(1, 2, 8, 10)
    mirror[:, 1] = -2.0 * torch.arange(10.0)  # u_w = -2 x: det J = -1 everywhere
    np.testing.assert_array_equal(folding_fraction(mirror), [1.0])


def test_folding_fraction_and_log_jacobian_std_known_field():
    # one column pushed 3 pixels: central differences give det 1 + 3/2 on its left neighbour,
    # 1 - 3/2 < 0 on its right neighbour, 1 elsewhere
    flow = torch.zeros(1, 2, 8, 10)
    flow[:, 1, :, 5] = 3.0
    np.testing.assert_allclose(folding_fraction(flow), [1 / 10])
    expected = math.log(2.5) * math.sqrt(8) / 9  # std of {log 2.5, 0 x 8} over 9 unfolded columns
    np.testing.assert_allclose(log_jacobian_std(flow), [expected], rtol=1e-6)
    np.testing.assert_allclose(folding_fraction(flow.numpy()), [1 / 10])  # numpy input too


def test_log_jacobian_std_rigid_and_all_folded():
    np.testing.assert_allclose(log_jacobian_std(torch.zeros(1, 2, 6, 6)), [0.0])
    rot = affine_flow(25.0, (1.0, 2.0), (12, 12))  # a rigid motion has det J = 1
    np.testing.assert_allclose(log_jacobian_std(rot), [0.0], atol=1e-6)
    assert folding_fraction(rot)[0] == 0.0
    mirror = torch.zeros(1, 2, 6, 6)
    mirror[:, 1] = -2.0 * torch.arange(6.0)
    assert math.isnan(log_jacobian_std(mirror)[0])


def test_flow_shape_errors():
    with pytest.raises(ValueError, match=r"\(1, 3, 6, 6\)"):
        folding_fraction(torch.zeros(1, 3, 6, 6))


# --- summarize ----------------------------------------------------------------------------------


def test_summarize():
    s = summarize([1.0, 2.0, math.nan, 3.0])
    assert s["n"] == 3 and s["n_nan"] == 1
    assert s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(math.sqrt(2 / 3))
    assert summarize(np.array([1.0, 3.0]), ddof=1)["std"] == pytest.approx(math.sqrt(2))
    empty = summarize([math.nan, math.nan])
    assert empty["n"] == 0 and empty["n_nan"] == 2 and math.isnan(empty["mean"]) and math.isnan(empty["std"])
    assert summarize(torch.tensor([0.5, 0.5]))["mean"] == 0.5
