"""Subject-level splits: who is trained on, annotated, validated and tested.

A :class:`Split` divides N subjects into disjoint train / validation / test sets and marks a
fraction of the training subjects as annotated; the rest of the training set is unannotated and
receives pseudo-labels (Li et al., "A Unified Framework for Semi-Supervised Image
Segmentation and Registration", arXiv 2502.03229, ISBI 2025). :func:`make_split` is seeded and
*nested*: for one seed the annotated set at 1% is contained in the one at 5%, which is contained
in the one at 10%, and so on, so a sweep over :data:`FRACTIONS` compares like with like. Splits
are saved as JSON beside the results they produced.
"""
from __future__ import annotations

import dataclasses
import json
import numbers
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from segreg_lite.io import write_json
from segreg_lite.limits import MIN_SUBJECTS, check_fraction, check_seed, is_int, is_number

#: The paper's annotated fractions (the upper bound, every training image annotated, is fraction 1).
FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5)

#: The fewest training and test subjects whose results mean something: below that, a mean
#: test Dice is one subject's, and one training image is all there is to learn from. Fewer
#: still run (smoke tests), with a warning.
MEANINGFUL = 2

_REQUIRED_KEYS = ("train", "val", "test", "annotated", "seed", "fraction")


def _int_tuple(values: Any, name: str) -> tuple[int, ...]:
    values = tuple(values)
    if not all(is_int(v) for v in values):
        raise ValueError(f"Split.{name} must hold integer subject indices, got {list(values)!r}")
    if any(v < 0 for v in values):
        raise ValueError(f"Split.{name} has negative subject indices: {list(values)!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"Split.{name} has repeated subject indices: {list(values)!r}")
    return tuple(int(v) for v in values)


@dataclasses.dataclass(frozen=True)
class Split:
    """Subject indices of one split. ``annotated`` is a subset of ``train``.

    ``subjects`` optionally names the subjects (index ``i`` is ``subjects[i]``); it is saved with
    the split so a results folder says which scans were used, not only their positions.
    """

    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]
    annotated: tuple[int, ...]
    seed: int
    fraction: float
    subjects: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("train", "val", "test", "annotated"):
            object.__setattr__(self, name, _int_tuple(getattr(self, name), name))
        tr, va, te = set(self.train), set(self.val), set(self.test)
        if tr & va or tr & te or va & te:
            raise ValueError(f"Split sets overlap: train&val={sorted(tr & va)}, "
                             f"train&test={sorted(tr & te)}, val&test={sorted(va & te)}")
        if not set(self.annotated) <= tr:
            raise ValueError(f"Split.annotated is not a subset of train: "
                             f"{sorted(set(self.annotated) - tr)} are not training subjects")
        if not is_int(self.seed):
            raise ValueError(f"Split.seed must be an integer, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))
        if not isinstance(self.fraction, numbers.Real) or not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"Split.fraction must be in (0, 1], got {self.fraction!r}")
        object.__setattr__(self, "fraction", float(self.fraction))
        if self.subjects is not None:
            object.__setattr__(self, "subjects", tuple(str(s) for s in self.subjects))
            top = max(tr | va | te, default=-1)
            if top >= len(self.subjects):
                raise ValueError(f"Split index {top} is out of range for {len(self.subjects)} "
                                 f"subject ids")

    @property
    def unannotated(self) -> tuple[int, ...]:
        """Training subjects without labels, in ``train`` order."""
        annotated = set(self.annotated)
        return tuple(i for i in self.train if i not in annotated)

    @property
    def n_subjects(self) -> int:
        return len(self.train) + len(self.val) + len(self.test)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; ``subjects`` appears only when the split has ids."""
        d: dict[str, Any] = {
            "seed": self.seed,
            "fraction": self.fraction,
            "n_subjects": self.n_subjects,
            "train": list(self.train),
            "val": list(self.val),
            "test": list(self.test),
            "annotated": list(self.annotated),
        }
        if self.subjects is not None:
            d["subjects"] = list(self.subjects)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Split":
        """Inverse of :meth:`to_dict`. Unknown keys (``n_subjects``) are ignored."""
        if not isinstance(d, dict):
            raise ValueError(f"a split must be a JSON object, got {type(d).__name__}")
        missing = [k for k in _REQUIRED_KEYS if k not in d]
        if missing:
            raise ValueError(f"not a split: missing key(s) {missing} (has {sorted(d)})")
        return cls(train=d["train"], val=d["val"], test=d["test"], annotated=d["annotated"],
                   seed=d["seed"], fraction=d["fraction"], subjects=d.get("subjects"))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the split as JSON, atomically. Returns the path."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Split":
        """Read a split written by :meth:`save`; errors name the file and what is wrong with it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"split file not found: {path}")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not a valid JSON split file ({e})") from e
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e


def _count(value: Any, n: int, name: str) -> int:
    """Turn ``val``/``test`` (a count, or a fraction of ``n``) into a number of subjects."""
    if is_int(value):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
        return int(value)
    if is_number(value):
        if not 0.0 <= value < 1.0:  # also rejects NaN
            raise ValueError(f"{name} as a fraction must be in [0, 1), got {value}")
        # A requested held-out set never rounds down to nothing.
        return max(1, round(value * n)) if value > 0 else 0
    raise ValueError(f"{name} must be an int (count) or a float (fraction), got {value!r}")


def make_split(n_subjects: int, *, seed: int = 0, fraction: float = 0.01,
               val: int | float = 0.1, test: int | float = 0.2,
               subjects: Sequence[str] | None = None) -> Split:
    """Split ``n_subjects`` subjects into train/val/test and pick the annotated training subjects.

    One ``numpy`` Generator seeded with ``seed`` draws a permutation of all subjects (test first,
    then val, the rest train) and then a permutation of ``train``; the annotated set is the first
    ``max(1, round(fraction * len(train)))`` of the latter (Python's ``round``, ties to even).
    Neither draw depends on ``fraction``, so for one seed and one ``val``/``test`` the annotated
    sets are nested across fractions. ``val``/``test`` are counts (int) or fractions of
    ``n_subjects`` (float, rounded, at least 1). The index tuples are sorted.
    """
    if not is_int(n_subjects):
        raise ValueError(f"n_subjects must be an integer, got {n_subjects!r}")
    check_seed(seed)  # numpy's generators take no negative seed
    check_fraction(fraction)
    if subjects is not None and len(subjects) != n_subjects:
        raise ValueError(f"subjects has {len(subjects)} ids but n_subjects={n_subjects}")
    if n_subjects < MIN_SUBJECTS:
        raise ValueError(f"n_subjects={n_subjects} is too small: need at least 1 train, 1 val "
                         f"and 1 test subject")
    n_val, n_test = _count(val, n_subjects, "val"), _count(test, n_subjects, "test")
    if n_val + n_test >= n_subjects:
        raise ValueError(f"val={val!r} and test={test!r} take {n_val} + {n_test} of "
                         f"{n_subjects} subjects, leaving no training subject")
    if n_val < 1 or n_test < 1:
        raise ValueError(f"val={val!r} and test={test!r} give {n_val} val and {n_test} test "
                         f"subjects of {n_subjects}; each needs at least 1")

    if n_subjects - n_val - n_test < MEANINGFUL or n_test < MEANINGFUL:
        warnings.warn(f"a split of {n_subjects} subjects has {n_subjects - n_val - n_test} training and {n_test} test "
                      f"subject(s): too small for its Dice to mean anything (a smoke test at most); use subjects enough "
                      f"for at least {MEANINGFUL} of each (8 with the default val and test shares)", stacklevel=2)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_subjects)
    test_idx, val_idx = order[:n_test], order[n_test:n_test + n_val]
    train_idx = np.sort(order[n_test + n_val:])
    n_annotated = max(1, round(fraction * len(train_idx)))
    annotated = rng.permutation(train_idx)[:n_annotated]
    return Split(train=tuple(train_idx.tolist()), val=tuple(np.sort(val_idx).tolist()),
                 test=tuple(np.sort(test_idx).tolist()),
                 annotated=tuple(np.sort(annotated).tolist()), seed=int(seed),
                 fraction=float(fraction),
                 subjects=None if subjects is None else tuple(str(s) for s in subjects))
