"""Training settings and their named presets.

One frozen dataclass, :class:`TrainConfig`, holds every training hyperparameter, with a comment
on each default; variants are made with ``dataclasses.replace``, and the config is saved in every
checkpoint and result. :meth:`TrainConfig.smoke` shrinks any config's schedules to a few steps
(the same code paths, in seconds). Five presets:

- ``"cpu"``: finishes each chapter in minutes on a 2-core laptop CPU (128x128, short schedules;
  pseudo-labels weighted towards the segmenter, see ``CPU_PSEUDO``);
- ``"quick"``: shorter still, so the README's main command (four methods) ends within 15 minutes;
- ``"sweep"``: shorter again (at a higher learning rate, without dropout), for the results
  chapter's sweep over fractions and seeds;
- ``"paper"``: the settings of Li et al. (arXiv 2502.03229) for a GPU: Adam, batch 5, segmenter
  pre-training at lr 1e-4 for 500 epochs then 1e-5 for 100 epochs per round, registration
  pre-training at lr 1e-3 for 200 epochs then 1e-4 for 50 epochs per round, 10 rounds. Its
  lengths are epochs converted to optimizer steps for the data at hand (:func:`get_preset`);
- ``"smoke"``: ``"cpu"`` with tiny schedules, for tests and trying the machinery.

Training lengths are counted in optimizer steps (one batch each), so a schedule means the same
whatever the dataset size.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


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
    reg_io_steps: int = 0  # registration inference: instance optimisation steps on each pair's field after the passes (0: none)
    reg_io_lr: float = 0.3  # Adam rate of those steps (registration.instance_optimise)
    shipped_regnet: bool = True  # start from the shipped pre-trained RegNet when it fits the run (segreg_lite.pretrained)
    label_weight: float = 1.0  # weight of the warped-label Dice term in the joint phase
    # Joint method
    rounds: int = 3  # joint rounds after pre-training (paper: 10)
    n_atlas: int = 5  # registration masks per pseudo-label
    n_tta: int = 4  # augmented segmentation masks per pseudo-label (plus the plain one)
    tta: str = "affine"  # the segmentation masks' TTA: "affine" (the paper's n_tta rotations or shifts) or "mirror" (plain + mirrored; n_tta only weighs)
    confidence_weight: bool = False  # weight the pseudo-label loss by each pixel's confidence
    annotated_share: float = 0.5  # share of a round's segmenter samples drawn from the annotated images (0: every image equally likely)
    strong_views: bool = False  # a round learns its pseudo-labelled images through strong views (intensity, blur, CutMix; augment.StrongConfig)
    online_share: float = 0.0  # share of the segmenter's own weak-view prediction in a pseudo-labelled image's target, made afresh at each step (0: the round's masks alone)
    pair_share: float = 0.0  # share of a round's segmenter samples that are label-exact pairs (atlases warped onto the unannotated images)
    appearance: str = "quantile"  # how a label-exact pair's image takes its target's appearance: "quantile" (intensity mapping) or "none"
    em_iters: int = 0  # EM iterations that refine each round's pseudo-labels by the image's own intensities (pseudo.intensity_em; 0: none)
    em_prior_power: float = 2.0  # power of the pseudo-label prior in that EM (above 1: the masks count more than the intensities)
    em_sigma_px: float = 4.0  # std in pixels of the window over which that EM's class intensity models vary
    # UniMatch baseline (Yang et al. CVPR 2023), continuing from the pre-trained segmenter
    um_steps: int = 600  # UniMatch steps (each about 3 segmenter steps): about the wall time of the default's 3 joint rounds
    um_lr: float = 1e-3  # Adam learning rate of the UniMatch steps
    um_threshold: float = 0.95  # confidence a weak-view pseudo-label needs to be learnt
    um_feature_dropout: float = 0.5  # channel dropout of the feature-perturbed branch
    # Mean Teacher baseline (Tarvainen & Valpola 2017), trained for seg_steps at seg_lr
    mt_ema: float = 0.99  # EMA decay of the teacher's weights
    mt_consistency: float = 1.0  # weight of the softmax-MSE consistency term after ramp-up
    mt_rampup: float = 0.4  # sigmoid ramp-up over this fraction of the steps
    mt_noise: float = 0.05  # std of the Gaussian input noise of student and teacher
    # Runtime
    amp: bool = True  # mixed precision, used on CUDA only

    def __post_init__(self) -> None:
        if self.appearance not in APPEARANCES:
            raise ValueError(f"unknown appearance mode {self.appearance!r}: choose one of {', '.join(APPEARANCES)}")
        if self.tta not in TTA_MODES:
            raise ValueError(f"unknown test-time augmentation tta={self.tta!r}: choose one of {', '.join(TTA_MODES)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or f.name in ("appearance", "tta"):
                continue
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"TrainConfig.{f.name} must be a finite number >= 0, got {value!r}")
        if self.batch_size < 1 or self.features < 1 or self.reg_features < 1 or self.reg_passes < 1:
            raise ValueError(f"batch_size, features, reg_features and reg_passes must be >= 1, got {self.batch_size}, "
                             f"{self.features}, {self.reg_features}, {self.reg_passes}")
        if self.reg_io_lr <= 0:
            raise ValueError(f"reg_io_lr (instance optimisation's Adam rate) must be > 0, got {self.reg_io_lr}")
        if not 0 <= self.annotated_share < 1:
            raise ValueError(f"annotated_share must be in [0, 1), got {self.annotated_share}")
        if self.annotated_share + self.pair_share >= 1:
            raise ValueError(f"the shares of a round's samples must sum to one with some left for the pseudo-labelled images: "
                             f"annotated_share {self.annotated_share} + pair_share {self.pair_share} = "
                             f"{self.annotated_share + self.pair_share:g}, which leaves none")
        if not 0 <= self.online_share <= 1:
            raise ValueError(f"online_share is a share of the target and must be in [0, 1], got {self.online_share}")
        if self.em_iters != int(self.em_iters):
            raise ValueError(f"em_iters counts EM iterations and must be a whole number, got {self.em_iters}")
        if self.em_prior_power <= 0 or self.em_sigma_px <= 0:
            raise ValueError(f"em_prior_power and em_sigma_px must be > 0, got {self.em_prior_power} and {self.em_sigma_px}")
        if not 0 < self.um_threshold < 1:
            raise ValueError(f"um_threshold is a confidence and must be in (0, 1), got {self.um_threshold}")
        if not 0 <= self.um_feature_dropout < 1:
            raise ValueError(f"um_feature_dropout must be in [0, 1), got {self.um_feature_dropout}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def smoke(self) -> "TrainConfig":
        """The same config with tiny schedules: every code path runs, in seconds (tests, the
        chapters' and the CLI's smoke mode). Only lengths change, never what runs."""
        return replace(self, seg_steps=4, seg_round_steps=2, reg_steps=4, reg_round_steps=min(self.reg_round_steps, 2),
                       rounds=min(self.rounds, 2), batch_size=min(self.batch_size, 4), um_steps=2,
                       reg_io_steps=min(self.reg_io_steps, 2))

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


#: How a label-exact pair's warped atlas image takes its target's appearance.
APPEARANCES = ("quantile", "none")

#: The segmentation masks' test-time augmentations (segreg_lite.pseudo.make_pseudo_labels): the
#: paper's random rotations or shifts, or the plain image and its left-right mirror image.
TTA_MODES = ("affine", "mirror")

#: The paper's smoothness weights, coarsest level first (``TrainConfig.reg_smoothness`` scales them).
PAPER_REG_WEIGHTS = (128.0, 64.0, 32.0, 16.0, 8.0)


def reg_weights(config: TrainConfig) -> tuple[float, ...]:
    """The per-level smoothness weights of ``config``, coarsest first."""
    return tuple(w * config.reg_smoothness for w in PAPER_REG_WEIGHTS)


def reg_inference(config: TrainConfig) -> dict[str, Any]:
    """How ``config`` registers at inference, as keywords of :func:`segreg_lite.registration.register`
    and of everything that calls it: network passes, then instance optimisation steps and rate."""
    return {"passes": config.reg_passes, "io_steps": config.reg_io_steps, "io_lr": config.reg_io_lr}


#: The paper's schedule in epochs (Li et al., section 3).
PAPER_EPOCHS = {"seg": 500, "seg_round": 100, "reg": 200, "reg_round": 50}

PRESETS = ("cpu", "quick", "sweep", "paper", "smoke")

#: Pseudo-label settings of the CPU presets, which run on the synthetic cohort: twice as many
#: segmentation maps as atlases (1 + 9 against 5, where the paper has 1 + 4 against 5) and a
#: confidence-weighted loss. With one or two annotated images the segmenter's maps are the better
#: source, and where the atlases are poor the paper's equal split pulls the combined mask below the
#: segmenter's maps alone; this balance keeps it above both sources. ``benchmarks/bench_pseudo.py``
#: prints both balances and the whole weight curve for a finished run. In the joint rounds of
#: ``make main``'s three seeds the two balances gain the same on the mean, and the paper's falls
#: furthest behind on the seed with the weakest registration, where its round-0 mask drops below
#: the segmenter's maps (``benchmarks/bench_joint.py RUNS --variant n_tta=4,confidence_weight=false``
#: prints both per round; the "beyond the paper" chapter shows the test Dice), so the presets keep
#: theirs.
CPU_PSEUDO: dict[str, Any] = {"n_tta": 9, "confidence_weight": True}


def check_preset(name: Any, flag: str = "") -> str:
    """``name`` when it is one of :data:`PRESETS`; otherwise a ValueError listing them, naming
    the command line's ``flag`` when given. The CLI calls it before it makes any data, and
    :func:`get_preset` calls it too, so both refuse a name alike."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}{f' ({flag})' if flag else ''}: choose one of {', '.join(PRESETS)}")
    return name


def get_preset(name: str, *, n_annotated: int | None = None, n_train: int | None = None) -> TrainConfig:
    """A named preset. ``"paper"`` needs the data sizes to turn its epochs into steps:
    ``n_annotated`` images for pre-training and ``n_train`` (annotated + pseudo-labelled) per round.
    """
    check_preset(name)
    if name == "cpu":
        return TrainConfig(**CPU_PSEUDO)
    if name == "quick":
        # The README's main command: the whole 1% comparison in minutes on 2 CPU cores (the
        # README's generated "make main" block gives the measured time). Rounds of half the cpu
        # preset's segmenter steps take them at the pre-training's learning rate: at the default
        # round rate the segmenter ended short of what the pseudo-labels teach, on each of seeds
        # 0, 1 and 2 (benchmarks/bench_joint.py compares round schedules from a run's models).
        # The rounds learn their pseudo-labelled images through strong views, and skip the
        # registration phase, which lowered the registration's test Dice on seeds 0, 1 and 2
        # (the ablation table of the "beyond the paper" chapter measures both). Each round's
        # pseudo-labels are refined by each image's own intensities (pseudo.intensity_em), which
        # raised the last test Dice on each of seeds 0, 1 and 2 (the same chapter measures it).
        # UniMatch gets the joint rounds' wall time: 250 of its steps take about what the two
        # rounds take.
        return TrainConfig(seg_round_steps=150, seg_round_lr=1e-3, reg_steps=200, reg_round_steps=0, rounds=2,
                           strong_views=True, em_iters=4, um_steps=250, **CPU_PSEUDO)
    if name == "sweep":
        # The results chapter's sweep (7 methods x 3 fractions x 3 seeds on the 128x128 grid) on
        # 2 CPU cores within about two hours (the chapter gives the recorded cost): half the
        # segmenter steps of "quick" and one joint round, with quick's rounds (strong views, no
        # registration phase). Half the steps need twice the learning rate and no dropout, or the
        # U-Net may end before it predicts the small subcortical class at all.
        return TrainConfig(seg_steps=400, seg_lr=2e-3, dropout=0.0, seg_round_steps=100, reg_steps=150,
                           reg_round_steps=0, rounds=1, strong_views=True, um_steps=120, **CPU_PSEUDO)
    if name == "smoke":
        return get_preset("cpu").smoke()
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
    raise AssertionError(f"preset {name!r} is listed in PRESETS but get_preset does not make it")
