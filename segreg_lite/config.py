"""Training settings, named presets, the device and reproducible seeds.

One frozen dataclass, :class:`TrainConfig`, holds every training hyperparameter, with a comment
on each default; variants are made with ``dataclasses.replace``, and the config is saved in every
checkpoint and result. Four presets:

- ``"cpu"``: finishes each chapter in minutes on a 2-core laptop CPU (128x128, short schedules;
  pseudo-labels weighted towards the segmenter, see ``CPU_PSEUDO``);
- ``"quick"``: shorter still, so the README's main command (four methods) ends within 15 minutes;
- ``"sweep"``: shorter again (at a higher learning rate, without dropout), for the results
  chapter's sweep over fractions and seeds;
- ``"paper"``: the settings of Li et al. (arXiv 2502.03229) for a GPU: Adam, batch 5, segmenter
  pre-training at lr 1e-4 for 500 epochs then 1e-5 for 100 epochs per round, registration
  pre-training at lr 1e-3 for 200 epochs then 1e-4 for 50 epochs per round, 10 rounds. Its
  lengths are epochs converted to optimizer steps for the data at hand (:func:`get_preset`).

Training lengths are counted in optimizer steps (one batch each), so a schedule means the same
whatever the dataset size.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class TrainConfig:
    """Every training hyperparameter of the package (see the module docstring for presets)."""

    # Segmenter (U-Net)
    features: int = 16  # channels at the top level, doubling at each of the 5 levels
    residual: bool = False  # residual blocks instead of plain double convolutions
    dropout: float = 0.2  # channel dropout in every block
    batch_size: int = 8  # images per step, for both networks
    seg_lr: float = 1e-3  # Adam learning rate of supervised (pre-)training
    seg_steps: int = 800  # supervised (pre-)training steps
    seg_round_lr: float = 3e-4  # Adam learning rate within a joint round
    seg_round_steps: int = 300  # segmenter steps per joint round
    augment: bool = True  # random affine + elastic + intensity augmentation (the "supervised" baseline turns it off)
    soft_ce: bool = False  # soft cross-entropy against soft targets instead of their argmax
    # Registration network (MrRegNet-style)
    reg_features: int = 16  # channels at every level (the paper: 32; on a CPU, 16 reaches a better network within the same minutes)
    reg_lr: float = 1e-3  # Adam learning rate of unsupervised pre-training
    reg_steps: int = 600  # unsupervised pre-training steps (random pairs)
    reg_round_lr: float = 1e-4  # Adam learning rate within a joint round
    reg_round_steps: int = 200  # registration steps per joint round (with the label term)
    diffeomorphic: bool = False  # integrate each level's field as a stationary velocity
    reg_affine: bool = True  # an affine head before the deformable levels (the cohort's subjects differ by an affine; off in the paper)
    reg_refine: bool = True  # each finer level sees the moving image warped by the coarser field (off in the paper)
    local_ncc: bool = True  # local NCC (window 9) instead of global NCC (the paper's)
    reg_smoothness: float = 0.25  # multiplies the paper's smoothness weights 128, 64, 32, 16, 8 (coarsest..finest)
    reg_passes: int = 2  # registration inference: passes of the network, each aligning what the last left (paper: 1)
    shipped_regnet: bool = True  # start from the shipped pre-trained RegNet when it fits the run (segreg_lite.pretrained)
    label_weight: float = 1.0  # weight of the warped-label Dice term in the joint phase
    # Joint method
    rounds: int = 3  # joint rounds after pre-training (paper: 10)
    n_atlas: int = 5  # registration masks per pseudo-label
    n_tta: int = 4  # augmented segmentation masks per pseudo-label (plus the plain one)
    confidence_weight: bool = False  # weight the pseudo-label loss by each pixel's confidence
    annotated_share: float = 0.5  # share of a round's segmenter samples drawn from the annotated images (0: every image equally likely)
    # Mean Teacher baseline (Tarvainen & Valpola 2017), trained for seg_steps at seg_lr
    mt_ema: float = 0.99  # EMA decay of the teacher's weights
    mt_consistency: float = 1.0  # weight of the softmax-MSE consistency term after ramp-up
    mt_rampup: float = 0.4  # sigmoid ramp-up over this fraction of the steps
    mt_noise: float = 0.05  # std of the Gaussian input noise of student and teacher
    # Runtime
    amp: bool = True  # mixed precision, used on CUDA only

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"TrainConfig.{f.name} must be a finite number >= 0, got {value!r}")
        if self.batch_size < 1 or self.features < 1 or self.reg_features < 1 or self.reg_passes < 1:
            raise ValueError(f"batch_size, features, reg_features and reg_passes must be >= 1, got {self.batch_size}, "
                             f"{self.features}, {self.reg_features}, {self.reg_passes}")
        if not 0 <= self.annotated_share < 1:
            raise ValueError(f"annotated_share must be in [0, 1), got {self.annotated_share}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from :meth:`to_dict`; unknown keys are an error (a config of another version)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}: saved by another version of segreg-lite?")
        return cls(**d)


#: The paper's smoothness weights, coarsest level first (``TrainConfig.reg_smoothness`` scales them).
PAPER_REG_WEIGHTS = (128.0, 64.0, 32.0, 16.0, 8.0)


def reg_weights(config: TrainConfig) -> tuple[float, ...]:
    """The per-level smoothness weights of ``config``, coarsest first."""
    return tuple(w * config.reg_smoothness for w in PAPER_REG_WEIGHTS)


#: The paper's schedule in epochs (Li et al., section 3).
PAPER_EPOCHS = {"seg": 500, "seg_round": 100, "reg": 200, "reg_round": 50}

PRESETS = ("cpu", "quick", "sweep", "paper")

#: Pseudo-label settings of the CPU presets, which run on the synthetic cohort: twice as many
#: segmentation maps as atlases (1 + 9 against 5, where the paper has 1 + 4 against 5) and a
#: confidence-weighted loss. With one or two annotated images the segmenter's maps are the better
#: source, and where the atlases are poor the paper's equal split pulls the combined mask below the
#: segmenter's maps alone; this balance keeps it above both sources. ``benchmarks/bench_pseudo.py``
#: prints both balances and the whole weight curve for a finished run.
CPU_PSEUDO: dict[str, Any] = {"n_tta": 9, "confidence_weight": True}


def get_preset(name: str, *, n_annotated: int | None = None, n_train: int | None = None) -> TrainConfig:
    """A named preset. ``"paper"`` needs the data sizes to turn its epochs into steps:
    ``n_annotated`` images for pre-training and ``n_train`` (annotated + pseudo-labelled) per round.
    """
    if name == "cpu":
        return TrainConfig(**CPU_PSEUDO)
    if name == "quick":
        # The README's main command: the whole 1% comparison within 15 minutes on 2 CPU cores.
        return TrainConfig(seg_round_steps=150, reg_steps=200, reg_round_steps=60, rounds=2, **CPU_PSEUDO)
    if name == "sweep":
        # The results chapter's sweep (6 methods x 4 fractions x 3 seeds on the 128x128 grid)
        # within 120 minutes on 2 CPU cores: half the segmenter steps of "quick" and one joint
        # round. Half the steps need twice the learning rate and no dropout: at the defaults, 400
        # steps ended before the U-Net had learned to predict the small subcortical class at all.
        return TrainConfig(seg_steps=400, seg_lr=2e-3, dropout=0.0, seg_round_steps=100, reg_steps=150,
                           reg_round_steps=40, rounds=1, **CPU_PSEUDO)
    if name == "paper":
        if not n_annotated or not n_train:
            raise ValueError("the 'paper' preset counts epochs: pass n_annotated and n_train (numbers of images)")
        batch = 5
        steps = lambda epochs, n: epochs * math.ceil(n / batch)  # noqa: E731
        return TrainConfig(
            batch_size=batch,
            seg_lr=1e-4,
            seg_steps=steps(PAPER_EPOCHS["seg"], n_annotated),
            seg_round_lr=1e-5,
            seg_round_steps=steps(PAPER_EPOCHS["seg_round"], n_train),
            reg_lr=1e-3,
            reg_steps=steps(PAPER_EPOCHS["reg"], n_train),
            reg_round_lr=1e-4,
            reg_round_steps=steps(PAPER_EPOCHS["reg_round"], n_train),
            reg_features=32,
            reg_affine=False,
            reg_refine=False,
            local_ncc=False,
            reg_smoothness=1.0,
            reg_passes=1,
            shipped_regnet=False,
            rounds=10,
        )
    raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")


def smoke(config: TrainConfig) -> TrainConfig:
    """The same config with tiny schedules: every code path runs, in seconds (tests, smoke mode)."""
    return replace(config, seg_steps=4, seg_round_steps=2, reg_steps=4, reg_round_steps=2, rounds=min(config.rounds, 2), batch_size=min(config.batch_size, 4))


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


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision (float16) on CUDA when ``enabled``; a no-op context elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def optimizer_step(opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, total: torch.Tensor) -> None:
    """One training step's backward and update, through the (possibly disabled) AMP grad scaler."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    scaler.step(opt)
    scaler.update()


def cosine_schedule(opt: torch.optim.Optimizer, steps: int, enabled: bool = True) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate decayed from its start to zero along a cosine over ``steps`` (constant if not ``enabled``)."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(steps, 1))) if enabled else 1.0)


def record_step(history: dict[str, list[float]], step: int, terms: dict[str, float], bar=None, callback=None) -> None:
    """Append a step's loss terms to ``history``; show the total on a tqdm ``bar``; call ``callback``."""
    for key, value in terms.items():
        history[key].append(value)
    if bar is not None:
        bar.set_postfix(loss=f"{terms['loss']:.3f}", refresh=False)
    if callback is not None:
        callback(step, terms)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator seeded the same (for samplers)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return torch.Generator().manual_seed(seed)
