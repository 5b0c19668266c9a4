"""Tests for segreg_lite.splits: seeded nested splits, JSON round trip."""
from __future__ import annotations

import json

import pytest

from segreg_lite.splits import FRACTIONS, Split, make_split


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
    assert FRACTIONS == (0.01, 0.05, 0.1, 0.25, 0.5)
    for seed in range(3):
        splits = [make_split(60, seed=seed, fraction=f) for f in (*FRACTIONS, 1.0)]  # the paper's, then the upper bound
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
