"""The shipped, unsupervised pre-trained registration network for the default cohort.

Li et al. (arXiv 2502.03229) pre-train their registration network for 200 epochs, and the authors'
script loads a shared pre-trained model. A laptop CPU cannot afford that schedule in every run,
so the package ships one such network, made by ``scripts/make_pretrained.py``:

- trained without labels (NCC and smoothness only) on training images of the default cohort:
  those that are training images under every split seed the book and the main command use
  (0, 1, 2), so that it has never seen a validation or test image of any of them;
- stored with its fingerprint (:func:`fingerprint`): the registration settings it was trained
  with, the cohort's image size, the names of its training subjects and each one's mean
  intensity, and how long it trained, on what;
- read with ``weights_only=True`` (:func:`segreg_lite.checkpoint.load_checkpoint`), and only
  when its SHA-256 is :data:`SHIPPED_SHA256`, the checksum in this code: a damaged or replaced
  file (a few flipped bytes still load, and cut the registration's Dice from 0.72 to 0.04 without
  a word) is refused by name, with how to restore it.

:func:`shipped_regnet` hands it to a run only when the fingerprint fits: the same registration
settings (``REG_KEYS`` of the config), the same image size, every one of its training subjects
among the run's training subjects with the same mean intensity (to 1e-3, so last-bit differences
between machines do not matter but another cohort does). Otherwise it says why, and the run
pre-trains its own network.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from segreg_lite.config import TrainConfig
from segreg_lite.limits import is_int, is_number

#: Where the shipped weights live inside the package.
SHIPPED = Path(__file__).parent / "data" / "regnet_cohort.pt"
#: The SHA-256 of the shipped file as ``scripts/make_pretrained.py`` wrote it. The script prints
#: the checksum of every file it makes; a re-made file ships with its checksum here, which
#: ``tests/test_pretrained.py`` checks against the file.
SHIPPED_SHA256 = "7762a38596284390e76ea10de58c95a3717835f884adb975154785edb2dacf61"
#: How to get the genuine shipped file back (the end of the error that refuses another).
RESTORE = ("reinstall segreg-lite (pip install --force-reinstall segreg-lite), or in a clone "
           "git checkout segreg_lite/data/regnet_cohort.pt, or make it again with scripts/make_pretrained.py "
           "and set SHIPPED_SHA256 in segreg_lite/pretrained.py to the checksum it prints")

#: The TrainConfig fields that define the network and its training objective; a run must share them.
REG_KEYS = ("reg_features", "diffeomorphic", "reg_affine", "reg_refine", "local_ncc", "reg_smoothness")

#: Mean intensities of the same image on two machines differ by far less; two subjects by far more.
MEAN_TOLERANCE = 1e-3


def fingerprint(images: Tensor, subjects: list[str], train: list[int], config: TrainConfig) -> dict[str, Any]:
    """What a pre-trained network must share with a run that uses it (plain values).

    images: (N, 1, H, W) of the whole data set; ``train``: the indices it was trained on;
    ``subjects``: a name per image.
    """
    means = images[train].mean(dim=(1, 2, 3))  # (T,)
    return {
        "config": {k: getattr(config, k) for k in REG_KEYS},
        "size": [int(s) for s in images.shape[-2:]],
        "subjects": [subjects[i] for i in train],
        "means": [round(float(m), 6) for m in means],
    }


def mismatch(saved: dict[str, Any], images: Tensor, split: Any, config: TrainConfig) -> str | None:
    """Why the network of fingerprint ``saved`` cannot serve this run, or None when it can."""
    want = {k: getattr(config, k) for k in REG_KEYS}
    differ = [f"{k} {saved['config'].get(k)!r} vs {v!r}" for k, v in want.items() if saved["config"].get(k) != v]
    if differ:
        return "it was trained with other registration settings: " + ", ".join(differ)
    if list(saved["size"]) != [int(s) for s in images.shape[-2:]]:
        return f"it was trained on {saved['size'][0]}x{saved['size'][1]} images, these are {images.shape[-2]}x{images.shape[-1]}"
    if split.subjects is None:
        return "the split carries no subject names to check its training images against"
    train = {split.subjects[i]: i for i in split.train}
    missing = [s for s in saved["subjects"] if s not in train]
    if missing:
        return (f"{len(missing)} of its {len(saved['subjects'])} training subjects are not training subjects "
                f"of this split (e.g. {missing[0]}): it would have seen validation or test images")
    ids = [train[s] for s in saved["subjects"]]
    means = images[ids].mean(dim=(1, 2, 3))
    worst = float((means - torch.tensor(saved["means"])).abs().max())
    if worst > MEAN_TOLERANCE:
        return f"its training subjects have other images here (mean intensity off by up to {worst:.3g}): another cohort"
    return None


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of the file at ``path`` (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _is_shipped(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the shipped file (:data:`SHIPPED`), by whatever name it is given."""
    try:
        return Path(path).resolve() == Path(SHIPPED).resolve()
    except OSError:
        return False


def verify_shipped(path: str | os.PathLike | None = None) -> None:
    """Refuse, in one line that names the file and says how to restore it, a shipped file
    (``path``, default :data:`SHIPPED`) whose SHA-256 is not :data:`SHIPPED_SHA256`."""
    path = SHIPPED if path is None else path
    got = sha256(path)
    if got != SHIPPED_SHA256:
        raise ValueError(f"{str(path)!r} is not the shipped pre-trained registration network: its SHA-256 is "
                         f"{got[:16]}..., the package ships {SHIPPED_SHA256[:16]}... (the file is damaged or was "
                         f"replaced); to restore it, {RESTORE}")


def _check_fingerprint(saved: Any, path: str | os.PathLike) -> None:
    """Refuse, naming the file, a fingerprint that :func:`mismatch` could not read: a damaged or
    hand-edited file would otherwise fail there with a traceback, or be compared as garbage."""
    if not isinstance(saved, dict) or not {"config", "size", "subjects", "means"} <= set(saved):
        raise ValueError(f"{str(path)!r} carries no fingerprint of the data and settings it was trained on; "
                         "make it with scripts/make_pretrained.py")
    size, subjects, means = saved["size"], saved["subjects"], saved["means"]
    problems = [
        what for what, bad in (
            ("config is not a table of settings", not isinstance(saved["config"], dict)),
            ("size is not two whole numbers", not (isinstance(size, (list, tuple)) and len(size) == 2
                                                  and all(map(is_int, size)))),
            ("subjects is not a list of names", not (isinstance(subjects, (list, tuple)) and subjects
                                                     and all(isinstance(v, str) for v in subjects))),
            ("means is not one number per subject", not (isinstance(means, (list, tuple)) and all(map(is_number, means))
                                                         and isinstance(subjects, (list, tuple))
                                                         and len(means) == len(subjects))),
        ) if bad
    ]
    if problems:
        raise ValueError(f"{str(path)!r} has a malformed fingerprint ({'; '.join(problems)}): the file is damaged or "
                         "was not made by scripts/make_pretrained.py" + (f"; to restore it, {RESTORE}" if _is_shipped(path) else ""))


def load_pretrained(path: str | os.PathLike | None = None):
    """The checked (RegNet, extra) of a pre-trained file; ValueError naming the file otherwise.

    A missing file is FileNotFoundError; the shipped file (``path`` None, or :data:`SHIPPED` by
    any name) with another SHA-256 than :data:`SHIPPED_SHA256`, a truncated or foreign file, one
    without a registration network, without a fingerprint or with a malformed one is a
    ValueError that says which.
    """
    from segreg_lite.checkpoint import load_checkpoint

    path = SHIPPED if path is None else path
    if _is_shipped(path) and Path(path).is_file():
        verify_shipped(path)  # before torch reads it: flipped bytes in the weights load without complaint
    ckpt = load_checkpoint(path)  # weights_only; corrupt and foreign files are refused there
    reg = ckpt.models.get("regnet")
    if reg is None or type(reg).__name__ != "RegNet":
        raise ValueError(f"{str(path)!r} holds no 'regnet' model (it has {', '.join(ckpt.models) or 'none'}): "
                         "not a pre-trained registration network")
    _check_fingerprint(ckpt.extra.get("fingerprint"), path)
    return reg.eval(), ckpt.extra


def shipped_regnet(images: Tensor, split: Any, config: TrainConfig, path: str | os.PathLike | None = None):
    """``(regnet, note)``: the pre-trained network at ``path`` if it fits this run, else ``(None, why)``.

    images: (N, 1, H, W), the run's data; split: its :class:`~segreg_lite.splits.Split`. The note
    says what was loaded (training steps and time, as stored) or why nothing was. A corrupt or
    foreign file raises (see :func:`load_pretrained`): that is a broken install, not a mismatch.
    """
    path = SHIPPED if path is None else path
    if not Path(path).is_file():
        return None, f"no pre-trained file at {path}"
    reg, extra = load_pretrained(path)
    why = mismatch(extra["fingerprint"], images, split, config)
    if why is not None:
        return None, why
    info = extra.get("training") if isinstance(extra.get("training"), dict) else {}  # a note only: never fatal
    minutes = info.get("minutes")
    minutes = f"{minutes:.0f}" if isinstance(minutes, (int, float)) and not isinstance(minutes, bool) else "?"
    note = (f"{Path(path).name}: {info.get('steps', '?')} unsupervised steps on {len(extra['fingerprint']['subjects'])} "
            f"training subjects ({minutes} min on {info.get('device', '?')})")
    return reg, note
