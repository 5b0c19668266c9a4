"""What every training run shares: the device, mixed precision, seeds, fresh models and one loop.

The package trains three kinds of network step (the segmenter's, the registration network's and
Mean Teacher's); :func:`fit` is the loop around each of them: Adam, the learning-rate schedule,
the optimizer step through the AMP grad scaler, the progress bar, the per-step history and the
caller's callback. A trainer supplies only its step: a function of the step number that draws a
batch and returns the loss to minimise with the terms to record.

Seeds: :func:`seed_everything` seeds Python, NumPy and torch; :func:`phase_seed` gives each phase
of each round of a run (``"seg"``, ``"reg"``, ``"pseudo"``, ``"eval"``, ...) its own stable seed,
so that a resumed run draws what an uninterrupted one draws. :func:`new_models` makes the two
networks a config describes, from the run's seed.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import zlib
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from segreg_lite.config import TrainConfig
    from segreg_lite.regnet import RegNet
    from segreg_lite.unet import UNet


def pick_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks cuda > mps > cpu; any other name is used as given (and checked)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def check_device(name: str) -> torch.device:
    """The torch device for ``name`` (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``);
    an unknown or unavailable one is a ValueError, raised before anything is written."""
    try:
        device = pick_device(name)
    except RuntimeError:  # torch's "Expected one of cpu, cuda, ... device type at start of device string"
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} asked for, but MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported: use auto, cpu, cuda, cuda:N or mps")
    return device


def as_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a torch device; None picks the best available (:func:`pick_device`)."""
    return torch.device(device) if device is not None else pick_device()


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision (float16) on CUDA when ``enabled``; a no-op context elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator seeded the same (for samplers)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return torch.Generator().manual_seed(seed)


def phase_seed(seed: int, round_: int, phase: str) -> int:
    """A seed for one phase of one round, stable across runs and Python processes."""
    return zlib.crc32(f"{seed}/{round_}/{phase}".encode()) % 2**31


def new_models(config: "TrainConfig", num_classes: int, seed: int) -> tuple["UNet", "RegNet"]:
    """Fresh segmenter and registration network as ``config`` describes them, seeded initial
    weights (both from one seed, the segmenter made first)."""
    from segreg_lite.regnet import RegNet
    from segreg_lite.unet import UNet

    seed_everything(phase_seed(seed, 0, "init"))
    seg = UNet(num_classes=num_classes, features=config.features, dropout=config.dropout, residual=config.residual)
    reg = RegNet(features=config.reg_features, diffeomorphic=config.diffeomorphic, affine=config.reg_affine,
                 refine=config.reg_refine)
    return seg, reg


#: What a trainer's step returns: the loss to minimise and the values to record for the step.
Step = Callable[[int], "tuple[Tensor, dict[str, float]]"]


def fit(
    params: Iterable[torch.nn.Parameter],
    step: Step,
    *,
    steps: int,
    lr: float,
    keys: Sequence[str],
    device: torch.device,
    amp: bool = True,
    cosine: bool = True,
    desc: str = "training",
    progress: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    after_step: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Run ``steps`` optimizer steps of ``step`` on ``params``; return the history.

    Adam at ``lr``, decayed to zero along a cosine over ``steps`` (constant if not ``cosine``).
    Each step: ``total, terms = step(i)``; backward and update through the AMP grad scaler
    (active on CUDA with ``amp`` only); the schedule's step; ``after_step(i)`` (Mean Teacher's
    teacher update); then ``terms`` are appended to the history, whose lists are ``keys``
    (in that order, present even when ``steps`` is 0), the total shows on a tqdm bar named
    ``desc`` when ``progress``, and ``callback(i, terms)`` is called.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))) if cosine else 1.0)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.type == "cuda")
    history: dict[str, list[float]] = {key: [] for key in keys}
    bar = range(steps)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc=desc, unit="step")
    for i in bar:
        total, terms = step(i)
        opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
        if after_step is not None:
            after_step(i)
        for key in keys:
            history[key].append(terms[key])
        if progress:
            bar.set_postfix(loss=f"{terms[keys[0]]:.3f}", refresh=False)
        if callback is not None:
            callback(i, terms)
    return history
