"""Tests for segreg_lite.splits: seeded nested splits, JSON round trip, datasets."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from segreg_lite.splits import (
    FRACTIONS,
    LabelledDataset,
    PairDataset,
    PseudoLabelledDataset,
    Split,
    UnlabelledDataset,
    make_split,
)


# --- make_split ---------------------------------------------------------------------------------


def test_disjoint_and_covering():
    s = make_split(50, seed=3, fraction=0.25)
    tr, va, te = set(s.train), set(s.val), set(s.test)
    assert not (tr & va or tr & te or va & te)
    assert tr | va | te == set(range(50))
    assert (len(s.val), len(s.test), len(s.train)) == (5, 10, 35)
    assert set(s.annotated) <= tr
    assert len(s.annotated) == round(0.25 * 35)


def test_unannotated_is_train_minus_annotated_in_train_order():
    s = make_split(30, seed=1, fraction=0.5)
    ann = set(s.annotated)
    assert s.unannotated == tuple(i for i in s.train if i not in ann)
    assert set(s.unannotated) | ann == set(s.train)


def test_deterministic_for_seed_and_different_across_seeds():
    assert make_split(40, seed=7, fraction=0.1) == make_split(40, seed=7, fraction=0.1)
    a, b = make_split(40, seed=0, fraction=0.1), make_split(40, seed=1, fraction=0.1)
    assert (a.train, a.annotated) != (b.train, b.annotated)


def test_annotated_sets_nested_across_fractions():
    for seed in range(3):
        splits = [make_split(60, seed=seed, fraction=f) for f in FRACTIONS]
        # The held-out sets do not depend on the fraction.
        assert len({(s.train, s.val, s.test) for s in splits}) == 1
        for small, large in zip(splits, splits[1:]):
            assert set(small.annotated) <= set(large.annotated)
            assert len(small.annotated) <= len(large.annotated)
        assert splits[-1].annotated == splits[-1].train  # 100%: everything annotated
        assert splits[-1].unannotated == ()


def test_at_least_one_annotated_at_one_percent():
    s = make_split(20 + 2 + 4, seed=0, fraction=0.01, val=2, test=4)
    assert len(s.train) == 20
    assert len(s.annotated) == 1


def test_int_and_float_held_out_sizes():
    s = make_split(10, val=2, test=3)
    assert (len(s.val), len(s.test), len(s.train)) == (2, 3, 5)
    s = make_split(10, val=0.01, test=0.01)  # a fraction never rounds a held-out set to 0
    assert (len(s.val), len(s.test)) == (1, 1)
    assert make_split(3).train and make_split(3).val and make_split(3).test


def test_subjects_kept():
    ids = [f"sub-{i:02d}" for i in range(12)]
    s = make_split(12, subjects=ids)
    assert s.subjects == tuple(ids)


def test_bad_seed():
    for seed in (-1, 1.5, "0", True):
        with pytest.raises(ValueError, match=f"seed must be a non-negative integer .*got {seed!r}"):
            make_split(20, seed=seed)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.01, float("nan"), float("inf")])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        make_split(20, fraction=fraction)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_subjects(n):
    with pytest.raises(ValueError, match=f"n_subjects={n}"):
        make_split(n)


@pytest.mark.parametrize("kw, match", [
    ({"val": -1}, "val must be >= 0, got -1"),
    ({"test": -0.2}, r"test as a fraction must be in \[0, 1\), got -0.2"),
    ({"val": 0.5, "test": 0.5}, "leaving no training subject"),
    ({"val": 4, "test": 6}, "leaving no training subject"),
    ({"val": 1.0}, "val as a fraction"),
    ({"val": 0}, "each needs at least 1"),
    ({"test": 0.0}, "each needs at least 1"),
    ({"val": "2"}, "val must be an int"),
])
def test_bad_val_test(kw, match):
    with pytest.raises(ValueError, match=match):
        make_split(10, **kw)


def test_subjects_length_mismatch():
    with pytest.raises(ValueError, match="3 ids but n_subjects=10"):
        make_split(10, subjects=["a", "b", "c"])


def test_split_rejects_inconsistent_sets():
    with pytest.raises(ValueError, match="overlap"):
        Split(train=(0, 1), val=(1,), test=(2,), annotated=(0,), seed=0, fraction=0.5)
    with pytest.raises(ValueError, match="not a subset of train"):
        Split(train=(0, 1), val=(2,), test=(3,), annotated=(2,), seed=0, fraction=0.5)


# --- save / load --------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    s = make_split(15, seed=4, fraction=0.05, subjects=[f"s{i}" for i in range(15)])
    path = s.save(tmp_path / "sub" / "split.json")
    assert Split.load(path) == s
    d = json.loads(path.read_text())
    assert d["subjects"][0] == "s0" and d["fraction"] == 0.05
    s2 = make_split(15, seed=4)
    assert "subjects" not in s2.to_dict()
    assert Split.from_dict(s2.to_dict()) == s2


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        Split.load(tmp_path / "nope.json")


def test_load_half_written_file(tmp_path):
    path = tmp_path / "split.json"
    text = json.dumps(make_split(10).to_dict())
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="split.json: not a valid JSON"):
        Split.load(path)


def test_load_wrong_json(tmp_path):
    path = tmp_path / "config.json"
    d = make_split(10).to_dict()
    del d["annotated"]
    path.write_text(json.dumps(d))
    missing = r"config.json: not a split: missing key\(s\) \['annotated'\]"
    with pytest.raises(ValueError, match=missing):
        Split.load(path)
    path.write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match="config.json: a split must be a JSON object"):
        Split.load(path)


# --- datasets -----------------------------------------------------------------------------------

N, H, W, K = 6, 8, 10, 3


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    images = rng.random((N, 1, H, W), dtype=np.float32)
    labels = rng.integers(0, K, size=(N, H, W)).astype(np.int64)
    return images, labels


def test_labelled_dataset(data):
    images, labels = data
    ds = LabelledDataset(images, labels, [4, 1])
    assert len(ds) == 2
    x, y = ds[0]
    assert x.shape == (1, H, W) and x.dtype == torch.float32
    assert y.shape == (H, W) and y.dtype == torch.int64
    assert np.array_equal(x.numpy(), images[4]) and np.array_equal(y.numpy(), labels[4])
    # numpy input of the right dtype is shared, not copied.
    assert np.shares_memory(ds.images.numpy(), images)
    with pytest.raises(IndexError):
        ds[2]


def test_unlabelled_dataset_accepts_torch(data):
    images = torch.from_numpy(data[0])
    ds = UnlabelledDataset(images, np.array([0, 5]))
    assert ds.images is images
    assert ds[1].shape == (1, H, W) and torch.equal(ds[1], images[5])
    assert len(UnlabelledDataset(images, [])) == 0  # 100% annotated: nothing unlabelled


def test_pseudo_labelled_dataset(data):
    images = data[0]
    soft = torch.softmax(torch.randn(2, K, H, W), dim=1)
    ds = PseudoLabelledDataset(images, soft, [3, 0])
    x, p, w = ds[1]
    assert x.shape == (1, H, W) and torch.equal(x, torch.from_numpy(images[0]))
    assert p.shape == (K, H, W) and p.dtype == torch.float32 and torch.equal(p, soft[1])
    assert w.shape == () and w.dtype == torch.float32 and w.item() == 1.0
    ds = PseudoLabelledDataset(images, soft, [3, 0], weights=[0.5, 0.25])
    assert ds[1][2].item() == 0.25
    with pytest.raises(ValueError, match=r"\(2, K, 8, 10\), got \(6, 3, 8, 10\)"):
        PseudoLabelledDataset(images, torch.zeros(N, K, H, W), [3, 0])
    with pytest.raises(ValueError, match=r"weights must have shape"):
        PseudoLabelledDataset(images, soft, [3, 0], weights=[1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PseudoLabelledDataset(images, soft * 2, [3, 0])


def test_pair_dataset(data):
    images, labels = data
    ds = PairDataset(images, [0, 2, 3, 5], labels=labels, seed=1)
    assert len(ds) == 4 * 3
    item = ds[3]
    assert set(item) == {"moving", "fixed", "moving_index", "fixed_index",
                         "moving_label", "fixed_label"}
    assert item["moving"].shape == item["fixed"].shape == (1, H, W)
    assert item["moving_label"].shape == (H, W) and item["moving_label"].dtype == torch.int64
    assert torch.equal(item["fixed"], torch.from_numpy(images[item["fixed_index"]]))
    pairs = [(ds[k]["moving_index"], ds[k]["fixed_index"]) for k in range(len(ds))]
    assert all(m != f and m in (0, 2, 3, 5) and f in (0, 2, 3, 5) for m, f in pairs)
    assert len(set(pairs)) > 1
    # Deterministic per (seed, item), also in a fresh dataset; another seed differs.
    again = PairDataset(images, [0, 2, 3, 5], seed=1)
    assert pairs == [(again[k]["moving_index"], again[k]["fixed_index"]) for k in range(len(ds))]
    other = PairDataset(images, [0, 2, 3, 5], seed=2)
    assert pairs != [(other[k]["moving_index"], other[k]["fixed_index"]) for k in range(len(ds))]
    assert "moving_label" not in again[0]
    assert len(PairDataset(images, [0, 1], length=7)) == 7
    assert len(PairDataset(np.zeros((100, 1, 2, 2), np.float32), range(100))) == 1024


def test_pair_dataset_with_dataloader(data):
    loader = torch.utils.data.DataLoader(PairDataset(data[0], [0, 1, 2]), batch_size=4)
    batch = next(iter(loader))
    assert batch["moving"].shape == (4, 1, H, W) and batch["moving_index"].shape == (4,)


@pytest.mark.parametrize("indices", [[0], [2, 2, 2]])
def test_pair_dataset_needs_two_subjects(data, indices):
    with pytest.raises(ValueError, match="at least 2 distinct subjects"):
        PairDataset(data[0], indices)


def test_bad_shapes(data):
    images, labels = data
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\), got \(6, 8, 10\)"):
        UnlabelledDataset(images[:, 0], [0])
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\), got \(6, 2, 8, 10\)"):
        UnlabelledDataset(np.concatenate([images, images], 1), [0])
    with pytest.raises(ValueError, match=r"\(6, 8, 10\) to match images \(6, 1, 8, 10\), "
                                         r"got \(5, 8, 10\)"):
        LabelledDataset(images, labels[:5], [0])
    with pytest.raises(ValueError, match=r"got \(6, 1, 8, 10\)"):
        PairDataset(images, [0, 1], labels=labels[:, None])
    with pytest.raises(ValueError, match=r"indices \[6, -1\] are out of range for 6 images"):
        LabelledDataset(images, labels, [0, 6, -1])
    with pytest.raises(ValueError, match="integer class labels"):
        LabelledDataset(images, labels.astype(np.float32), [0])
    with pytest.raises(ValueError, match="floating point"):
        UnlabelledDataset((images * 255).astype(np.uint8), [0])


def test_dtype_conversion(data):
    images, labels = data
    ds = LabelledDataset(images.astype(np.float64)[..., ::-1], labels.astype(np.uint8), [1])
    x, y = ds[0]
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert math.isclose(float(x[0, 0, 0]), float(images[1, 0, 0, -1]), rel_tol=1e-6)
