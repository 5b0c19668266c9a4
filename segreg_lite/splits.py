"""Subject-level splits and the torch datasets that read them.

A :class:`Split` divides N subjects into disjoint train / validation / test sets and marks a
fraction of the training subjects as annotated; the rest of the training set is unannotated and
receives pseudo-labels (Li et al., "A Unified Framework for Semi-Supervised Image
Segmentation and Registration", arXiv 2502.03229, ISBI 2025). :func:`make_split` is seeded and
*nested*: for one seed the annotated set at 1% is contained in the one at 5%, which is contained
in the one at 10%, and so on, so a sweep over :data:`FRACTIONS` compares like with like. Splits
are saved as JSON beside the results they produced.

The datasets index in-memory arrays (images ``(N, 1, H, W)`` float32, labels ``(N, H, W)`` int64)
with the subject indices of a split: :class:`LabelledDataset`, :class:`UnlabelledDataset`,
:class:`PseudoLabelledDataset` (soft masks from the joint rounds) and :class:`PairDataset`
(random moving/fixed pairs for the registration network).
"""
from __future__ import annotations

import dataclasses
import json
import numbers
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from segreg_lite.io import write_json

#: The annotated fractions of the design (1% ... 50%, and 100% for the upper bound).
FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.25, 0.50, 1.0)

_REQUIRED_KEYS = ("train", "val", "test", "annotated", "seed", "fraction")


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _int_tuple(values: Any, name: str) -> tuple[int, ...]:
    values = tuple(values)
    if not all(_is_int(v) for v in values):
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
        if not _is_int(self.seed):
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
    if _is_int(value):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
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
    if not _is_int(n_subjects):
        raise ValueError(f"n_subjects must be an integer, got {n_subjects!r}")
    if not _is_int(seed) or seed < 0:  # numpy's generators take no negative seed
        raise ValueError(f"seed must be a non-negative integer (0, 1, 2, ...), got {seed!r}")
    if (not isinstance(fraction, numbers.Real) or isinstance(fraction, bool)
            or not 0.0 < fraction <= 1.0):  # the comparison is False for NaN
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if subjects is not None and len(subjects) != n_subjects:
        raise ValueError(f"subjects has {len(subjects)} ids but n_subjects={n_subjects}")
    if n_subjects < 3:
        raise ValueError(f"n_subjects={n_subjects} is too small: need at least 1 train, 1 val "
                         f"and 1 test subject")
    n_val, n_test = _count(val, n_subjects, "val"), _count(test, n_subjects, "test")
    if n_val + n_test >= n_subjects:
        raise ValueError(f"val={val!r} and test={test!r} take {n_val} + {n_test} of "
                         f"{n_subjects} subjects, leaving no training subject")
    if n_val < 1 or n_test < 1:
        raise ValueError(f"val={val!r} and test={test!r} give {n_val} val and {n_test} test "
                         f"subjects of {n_subjects}; each needs at least 1")

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


# ---------------------------------------------------------------------------------------------
# Datasets


def _as_tensor(x: Any, dtype: torch.dtype, name: str) -> torch.Tensor:
    """numpy, torch or a list -> torch tensor of ``dtype``, sharing memory when the dtype fits."""
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        # from_numpy cannot take negative strides and warns on read-only arrays: copy those.
        if not x.flags.writeable or any(s < 0 for s in x.strides):
            x = x.copy()
        x = torch.from_numpy(x)
    elif not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a numpy array or a torch tensor, "
                         f"got {type(x).__name__}")
    if dtype.is_floating_point and not (x.dtype.is_floating_point):
        raise ValueError(f"{name} must be floating point (images in [0, 1]), got {x.dtype}")
    if not dtype.is_floating_point and (x.dtype.is_floating_point or x.dtype.is_complex):
        raise ValueError(f"{name} must hold integer class labels, got {x.dtype}")
    return x if x.dtype == dtype else x.to(dtype)


def _check_images(images: Any) -> torch.Tensor:
    images = _as_tensor(images, torch.float32, "images")
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (N, 1, H, W), got {tuple(images.shape)}")
    return images


def _check_labels(labels: Any, images: torch.Tensor) -> torch.Tensor:
    labels = _as_tensor(labels, torch.int64, "labels")
    want = (images.shape[0], *images.shape[2:])
    if tuple(labels.shape) != want:
        raise ValueError(f"labels must have shape (N, H, W) = {want} to match images "
                         f"{tuple(images.shape)}, got {tuple(labels.shape)}")
    return labels


def _check_indices(indices: Any, n: int) -> tuple[int, ...]:
    if isinstance(indices, torch.Tensor):
        indices = indices.tolist()
    indices = tuple(np.asarray(indices).reshape(-1).tolist())
    if not all(_is_int(i) for i in indices):
        raise ValueError(f"indices must be integers, got {list(indices)!r}")
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ValueError(f"indices {bad} are out of range for {n} images")
    return indices


def _item(idx: int, length: int) -> int:
    if not -length <= idx < length:
        raise IndexError(f"index {idx} out of range for dataset of length {length}")
    return idx % length


class LabelledDataset(Dataset):
    """Items ``(image (1, H, W) float32, label (H, W) int64)`` for ``images[indices]``.

    ``images`` (N, 1, H, W) float, ``labels`` (N, H, W) integer; numpy or torch.
    """

    def __init__(self, images: Any, labels: Any, indices: Sequence[int]) -> None:
        self.images = _check_images(images)
        self.labels = _check_labels(labels, self.images)
        self.indices = _check_indices(indices, self.images.shape[0])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = self.indices[_item(idx, len(self))]
        return self.images[i], self.labels[i]


class UnlabelledDataset(Dataset):
    """Items ``image (1, H, W) float32`` for ``images[indices]``; ``images`` (N, 1, H, W)."""

    def __init__(self, images: Any, indices: Sequence[int]) -> None:
        self.images = _check_images(images)
        self.indices = _check_indices(indices, self.images.shape[0])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> torch.Tensor:
        return self.images[self.indices[_item(idx, len(self))]]


class PseudoLabelledDataset(Dataset):
    """Items ``(image (1, H, W), soft (K, H, W) float32, weight () float32)``.

    ``soft_labels`` (M, K, H, W) in [0, 1] and ``weights`` (M,) (default all 1) are aligned with
    ``indices`` (M of them): ``soft_labels[j]`` is the pseudo-label of ``images[indices[j]]``,
    which is how the joint rounds produce them (one soft mask per unannotated image).
    """

    def __init__(self, images: Any, soft_labels: Any, indices: Sequence[int],
                 weights: Any | None = None) -> None:
        self.images = _check_images(images)
        self.indices = _check_indices(indices, self.images.shape[0])
        m, (h, w) = len(self.indices), self.images.shape[2:]
        soft = _as_tensor(soft_labels, torch.float32, "soft_labels")
        if soft.ndim != 4 or soft.shape[0] != m or tuple(soft.shape[2:]) != (h, w):
            raise ValueError(f"soft_labels must have shape (len(indices), K, H, W) = "
                             f"({m}, K, {h}, {w}), got {tuple(soft.shape)}")
        if soft.numel() and not (soft.min() >= 0 and soft.max() <= 1):
            raise ValueError(f"soft_labels must lie in [0, 1], got range "
                             f"[{soft.min().item()}, {soft.max().item()}]")
        self.soft_labels = soft
        if weights is None:
            weights = torch.ones(m, dtype=torch.float32)
        weights = _as_tensor(weights, torch.float32, "weights")
        if tuple(weights.shape) != (m,):
            raise ValueError(f"weights must have shape (len(indices),) = ({m},), "
                             f"got {tuple(weights.shape)}")
        if not bool(torch.all(torch.isfinite(weights) & (weights >= 0))):
            raise ValueError(f"weights must be finite and >= 0, got {weights.tolist()}")
        self.weights = weights

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        j = _item(idx, len(self))
        return self.images[self.indices[j]], self.soft_labels[j], self.weights[j]


#: Default cap on the number of pairs per epoch of a :class:`PairDataset`.
MAX_DEFAULT_PAIRS = 1024


class PairDataset(Dataset):
    """Random (moving, fixed) pairs of distinct subjects from ``indices``, for registration.

    Item ``k`` is drawn by a numpy Generator seeded with ``(seed, k)``, so it is the same on every
    call, in every worker and after a resume. Items are dicts with ``"moving"``/``"fixed"``
    (1, H, W) float32 and ``"moving_index"``/``"fixed_index"`` (ints into ``images``), plus
    ``"moving_label"``/``"fixed_label"`` (H, W) int64 when ``labels`` (N, H, W) are given.
    ``length`` defaults to the number of ordered pairs, ``n * (n - 1)``, capped at
    :data:`MAX_DEFAULT_PAIRS`.
    """

    def __init__(self, images: Any, indices: Sequence[int], *, labels: Any | None = None,
                 length: int | None = None, seed: int = 0) -> None:
        self.images = _check_images(images)
        self.labels = None if labels is None else _check_labels(labels, self.images)
        self.indices = _check_indices(indices, self.images.shape[0])
        # Repeated indices are one subject: a pair must be two different subjects.
        self._pool = tuple(dict.fromkeys(self.indices))
        n = len(self._pool)
        if n < 2:
            raise ValueError(f"a pair dataset needs at least 2 distinct subjects, got {n} "
                             f"(indices={list(self.indices)})")
        if length is None:
            length = min(n * (n - 1), MAX_DEFAULT_PAIRS)
        if not _is_int(length) or length < 1:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.length, self.seed = int(length), int(seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, idx: int) -> dict[str, Any]:
        k = _item(idx, self.length)
        rng = np.random.default_rng((self.seed, k))
        a, b = rng.choice(len(self._pool), size=2, replace=False)
        mi, fi = self._pool[int(a)], self._pool[int(b)]
        item: dict[str, Any] = {"moving": self.images[mi], "fixed": self.images[fi],
                                "moving_index": mi, "fixed_index": fi}
        if self.labels is not None:
            item["moving_label"] = self.labels[mi]
            item["fixed_label"] = self.labels[fi]
        return item
