"""The joint method: rounds of segmenter, registration and pseudo-label updates.

After Li et al., "A Unified Framework for Semi-Supervised Image Segmentation and Registration"
(arXiv 2502.03229, ISBI 2025). It starts from the pre-trained networks: the segmenter trained on
the annotated images (:func:`segreg_lite.supervised.pretrain_segmenter`, the supervised
baseline) and the registration network trained unsupervised on all training images
(:func:`segreg_lite.registration.pretrain_regnet`). :func:`train_joint` makes the first
pseudo-labels (:mod:`segreg_lite.pseudo`, with :mod:`segreg_lite.tta`) and runs
``config.rounds`` rounds, each:

1. train the segmenter on annotated (one-hot) + unannotated (soft pseudo-label) images; beyond
   the paper, and measured in the "beyond the paper" chapter: with ``strong_views`` the
   pseudo-labelled images are learnt through strong views (:func:`segreg_lite.augment.strong_view`),
   with ``online_share`` > 0 their targets mix in the segmenter's own prediction of each weak
   view, made afresh at every step, and with ``pair_share`` > 0 label-exact pairs
   (:mod:`segreg_lite.pairs`) join the batches;
2. train the registration network on random pairs of the same pool with the warped-label term
   (``reg_round_steps`` 0 skips this phase: the quick preset's default, as it lowered the
   registration's test Dice);
3. regenerate the pseudo-labels (:func:`segreg_lite.pseudo.make_pseudo_labels`);
4. evaluate: the segmenter on the test set, the pseudo-labels against the hidden truth of the
   unannotated images, and multi-atlas registration onto the test set (Dice and folding).

Round 0 of the history is the state after pre-training. Every phase reseeds all generators from
``(seed, round, phase)``, and a checkpoint is written atomically after pre-training and after
each round, so a killed run resumes from the last finished round and, on the CPU, ends with the
same numbers as an uninterrupted one.

:func:`run_joint`, :func:`run_joint_seg` and :func:`run_joint_reg` are the comparison's joint
methods (combined soft masks, and the two single-source ablations).
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, NamedTuple

import numpy as np
import torch
from torch import Tensor

from segreg_lite.checks import one_hot
from segreg_lite.config import TrainConfig, reg_inference
from segreg_lite.labels import NUM_CLASSES
from segreg_lite.metrics import dice_per_class
from segreg_lite.pairs import label_exact_pairs
from segreg_lite.pseudo import PseudoLabels, check_mode, confidence, intensity_em, make_pseudo_labels
from segreg_lite.registration import evaluate_registration, pretrain_regnet, train_registration
from segreg_lite.regnet import RegNet
from segreg_lite.splits import Split
from segreg_lite.supervised import evaluate_segmenter, pretrain_segmenter, test_metrics, train_segmenter
from segreg_lite.train import as_device, new_models, phase_seed, seed_everything
from segreg_lite.unet import UNet

if TYPE_CHECKING:
    from segreg_lite.container import Data
    from segreg_lite.context import Run


class JointResult(NamedTuple):
    segmenter: UNet
    regnet: RegNet
    history: list[dict]  # one entry per round, round 0 = after pre-training
    pseudo: PseudoLabels  # the last pseudo-labels of the unannotated images


def _dice(soft: Tensor, truth: Tensor, num_classes: int) -> float:
    return float(dice_per_class(soft.argmax(1), truth, num_classes).mean())


def _evaluate(seg, reg, pseudo, images, labels, split, config, num_classes, seed, round_, device) -> dict:
    test = list(split.test)
    unann = list(split.unannotated)
    seg_eval = evaluate_segmenter(seg, images[test], labels[test], device=device)
    truth = labels[unann]
    entry = {
        "round": round_,
        "test_dice": seg_eval["dice"],
        "test_hd": seg_eval["hd"],
        "test_hd95": seg_eval["hd95"],
        "test_dice_per_class": seg_eval["dice_per_class"],
        "pseudo_dice": _dice(pseudo.soft, truth, num_classes),
        "pseudo_dice_reg": _dice(pseudo.reg, truth, num_classes),
        "pseudo_dice_seg": _dice(pseudo.seg, truth, num_classes),
    }
    if pseudo.prior is not None:  # the mask the intensity refinement started from
        entry["pseudo_dice_prior"] = _dice(pseudo.prior, truth, num_classes)
    # The same atlas draws every round, so that rounds are compared on the same pairs.
    reg_eval = evaluate_registration(reg, images, labels, split.annotated, test, n_atlas=config.n_atlas,
                                     num_classes=num_classes, seed=phase_seed(seed, 0, "eval"), device=device,
                                     **reg_inference(config))
    entry.update(reg_dice=reg_eval["dice"], reg_hd95=reg_eval["hd95"], folding=reg_eval["folding"],
                 log_jac_std=reg_eval["log_jac_std"])
    return entry


def _pseudo(seg, reg, images, labels, split, config, mode, seed, round_, device) -> PseudoLabels:
    gen = torch.Generator().manual_seed(phase_seed(seed, round_, "pseudo"))
    pseudo = make_pseudo_labels(seg, reg, images, labels, split.annotated, split.unannotated, mode=mode,
                                n_atlas=config.n_atlas, n_tta=config.n_tta, tta=config.tta, generator=gen, device=device,
                                **reg_inference(config))
    if not config.em_iters:
        return pseudo
    refined = intensity_em(pseudo.soft, images[list(split.unannotated)], iters=config.em_iters,
                           prior_power=config.em_prior_power, sigma_px=config.em_sigma_px)
    return pseudo._replace(soft=refined, prior=pseudo.soft)


def _fingerprint(config: TrainConfig, split: Split, mode: str, seed: int) -> dict:
    """What a checkpoint must share with the run that resumes from it."""
    return {"config": config.to_dict(), "split": split.to_dict(), "mode": mode, "seed": int(seed)}


def _sampling_pool(n_annotated: int, n_unannotated: int, share: float, n_pairs: int = 0, pair_share: float = 0.0) -> list[int]:
    """Positions (annotated first, then unannotated, then label-exact pairs) to draw segmenter
    batches from, uniformly with replacement: the annotated images repeated so that they make up
    about ``share`` of the draws (0: once each), the pairs about ``pair_share`` (0: none), the
    pseudo-labelled images the rest."""
    rest = 1 - share - pair_share

    def repeat(n: int, s: float) -> int:
        return max(1, round(s / rest * n_unannotated / n))

    draws = list(range(n_annotated)) * (1 if share <= 0 else repeat(n_annotated, share))
    draws += list(range(n_annotated, n_annotated + n_unannotated))
    if n_pairs and pair_share > 0:
        draws += list(range(n_annotated + n_unannotated, n_annotated + n_unannotated + n_pairs)) * repeat(n_pairs, pair_share)
    return draws


def _mean_terms(history: dict[str, list[float]], prefix: str) -> dict[str, float]:
    return {f"{prefix}_{k}": float(np.mean(v)) if v else float("nan") for k, v in history.items()}


def train_joint(
    images: Tensor,
    labels: Tensor,
    split: Split,
    config: TrainConfig,
    *,
    mode: str = "combined",
    seed: int = 0,
    num_classes: int = NUM_CLASSES,
    segmenter: UNet | None = None,
    regnet: RegNet | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    callback: Callable[[dict, PseudoLabels], None] | None = None,
    phase: Callable[[str], ContextManager] | None = None,
) -> JointResult:
    """Run the joint method on ``images`` (N, 1, H, W) and ``labels`` (N, H, W) with ``split``.

    ``segmenter`` / ``regnet``: pre-trained models to start from (they are trained further in
    place); when omitted they are made and pre-trained here. Labels of unannotated training
    images are read only to measure pseudo-label quality, never for training. ``checkpoint``: a
    file written after pre-training and after each round; when it exists the run resumes from
    it, after checking that it was written by the same config, split, mode and seed (otherwise a
    ValueError, and the file is left alone). ``callback(entry, pseudo)`` gets each round's history
    entry and the pseudo-labels made at its end (for figures of the rounds). Each round's entry
    holds the wall time of its phases in ``entry["seconds"]`` (``seg``, ``reg``, ``pseudo``,
    ``eval``); ``phase(name)``, when given, is a context manager entered around each of them
    (the phase benchmark measures memory with it).
    """
    check_mode(mode)
    if not split.unannotated:
        raise ValueError("the joint method needs unannotated training images; this split annotates all of them")
    device = as_device(device)
    if segmenter is not None and segmenter.config["num_classes"] != num_classes:
        raise ValueError(f"the segmenter has {segmenter.config['num_classes']} classes but num_classes={num_classes}")
    fingerprint = _fingerprint(config, split, mode, seed)
    history: list[dict] = []
    start = 0
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        from segreg_lite.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        saved = ckpt.extra.get("fingerprint")
        if saved != fingerprint:
            keys = [k for k in fingerprint if saved is None or saved.get(k) != fingerprint[k]]
            raise ValueError(f"{path} is a checkpoint of another run (differs in {', '.join(keys) or 'format'}); "
                             "remove it or use another output folder")
        segmenter, regnet = ckpt.models["segmenter"], ckpt.models["regnet"]
        history = list(ckpt.extra["history"])
        start = int(ckpt.extra["round"]) + 1
    else:
        if segmenter is None or regnet is None:
            seg_new, reg_new = new_models(config, num_classes, seed)
            if segmenter is None:
                segmenter = seg_new
                pretrain_segmenter(segmenter, images, labels, split, config, seed=seed, device=device, progress=progress)
            if regnet is None:
                regnet = reg_new
                pretrain_regnet(regnet, images, split, config, seed=seed, device=device, progress=progress)
    segmenter.to(device).eval()
    regnet.to(device).eval()
    # The pseudo-labels of the last finished round: regenerated from its models (deterministic).
    last = start - 1 if start > 0 else 0
    pseudo = _pseudo(segmenter, regnet, images, labels, split, config, mode, seed, last, device)

    def save(round_: int) -> None:
        if path is not None:
            from segreg_lite.checkpoint import save_checkpoint

            save_checkpoint(path, models={"segmenter": segmenter, "regnet": regnet}, config=config,
                            extra={"round": round_, "history": history, "fingerprint": fingerprint})

    if start == 0:
        history.append(_evaluate(segmenter, regnet, pseudo, images, labels, split, config, num_classes, seed, 0, device))
        save(0)
        if callback is not None:
            callback(history[-1], pseudo)
        start = 1

    annotated, unann = list(split.annotated), list(split.unannotated)
    pool = annotated + unann
    pool_images = images[pool]  # (P, 1, H, W): annotated first, then unannotated
    n_pairs = len(unann) if config.pair_share > 0 else 0
    draws = _sampling_pool(len(annotated), len(unann), config.annotated_share, n_pairs, config.pair_share)
    bar = range(start, config.rounds + 1)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc=f"joint rounds ({mode})", unit="round", initial=start - 1, total=config.rounds)
    for r in bar:
        seconds: dict[str, float] = {}

        @contextlib.contextmanager
        def timed(name: str):
            start = time.perf_counter()
            with phase(name) if phase is not None else contextlib.nullcontext():
                yield
            seconds[name] = time.perf_counter() - start

        # 1. Segmenter on true labels (one-hot) + soft pseudo-labels.
        with timed("seg"):
            seg_images = pool_images
            soft = torch.cat([one_hot(labels[annotated], num_classes), pseudo.soft])  # (P, K, H, W)
            if n_pairs:  # label-exact pairs from the current fields (annotated, pseudo-labelled, pairs)
                gen = torch.Generator().manual_seed(phase_seed(seed, r, "pairs"))
                pair_images, pair_labels = label_exact_pairs(
                    regnet, images, labels, annotated, unann, num_classes=num_classes, appearance=config.appearance,
                    generator=gen, device=device, **reg_inference(config))
                seg_images, soft = torch.cat([pool_images, pair_images]), torch.cat([soft, pair_labels])
            weights = None
            if config.confidence_weight:  # exact labels weigh 1, pseudo-labels their confidence
                weights = torch.ones(soft.shape[0], *soft.shape[-2:])
                weights[len(annotated):len(pool)] = confidence(pseudo.soft)
            pseudo_labelled = (torch.arange(soft.shape[0]) >= len(annotated)) & (torch.arange(soft.shape[0]) < len(pool))
            strong = pseudo_labelled if config.strong_views else None
            online = pseudo_labelled if config.online_share > 0 else None
            s = phase_seed(seed, r, "seg")
            seed_everything(s)
            seg_hist = train_segmenter(segmenter, seg_images, soft, draws, config, steps=config.seg_round_steps,
                                       lr=config.seg_round_lr, weights=weights, strong=strong, online=online, device=device,
                                       seed=s)
        # 2. Registration on pairs of the same pool, with the warped-label term (reg_round_steps 0
        # skips the phase: the network stays as pre-trained).
        with timed("reg"):
            s = phase_seed(seed, r, "reg")
            seed_everything(s)
            reg_hist = train_registration(regnet, pool_images, range(len(pool)), config, steps=config.reg_round_steps,
                                          lr=config.reg_round_lr, labels=soft[:len(pool)], num_classes=num_classes, device=device,
                                          seed=s)
        # 3. New pseudo-labels; 4. evaluation.
        with timed("pseudo"):
            pseudo = _pseudo(segmenter, regnet, images, labels, split, config, mode, seed, r, device)
        with timed("eval"):
            entry = _evaluate(segmenter, regnet, pseudo, images, labels, split, config, num_classes, seed, r, device)
        entry.update(_mean_terms(seg_hist, "seg"))
        entry.update(_mean_terms(reg_hist, "reg"))
        entry["seconds"] = seconds
        history.append(entry)
        save(r)
        if callback is not None:
            callback(entry, pseudo)
    return JointResult(segmenter=segmenter, regnet=regnet, history=history, pseudo=pseudo)


def run_joint(data: "Data", split: "Split", config: TrainConfig, folder: "Run", *, mode: str = "combined") -> dict[str, Any]:
    """The joint method from the run's pre-trained segmenter and registration network, with the
    pseudo-labels of ``mode``; resumes from its checkpoint in the run folder. The metrics are the
    final segmenter's on the test subjects, with the last round's registration figures; the
    round-by-round history is kept in ``history``."""
    name = {"combined": "joint", "reg": "joint_reg", "seg": "joint_seg"}[check_mode(mode)]
    result = train_joint(data.images, data.labels, split, config, mode=mode, seed=folder.seed,
                         num_classes=data.num_classes, segmenter=folder.pretrained("seg"),
                         regnet=folder.pretrained("reg"), checkpoint=folder.checkpoint(name), device=folder.device,
                         progress=folder.progress,
                         callback=lambda e, _: (folder.saved(name),  # the checkpoint was saved just before
                                                folder.log(f"  {name} round {e['round']}: test Dice {e['test_dice']:.3f}, "
                                                           f"pseudo-label Dice {e['pseudo_dice']:.3f}")))
    last = result.history[-1]
    return {**test_metrics(result.segmenter, data, split, folder.device), "folding": last["folding"],
            "log_jac_std": last["log_jac_std"], "reg_dice": last["reg_dice"], "history": result.history}


def run_joint_seg(data: "Data", split: "Split", config: TrainConfig, folder: "Run") -> dict[str, Any]:
    """The joint method whose pseudo-labels are the segmenter's (TTA) maps only."""
    return run_joint(data, split, config, folder, mode="seg")


def run_joint_reg(data: "Data", split: "Split", config: TrainConfig, folder: "Run") -> dict[str, Any]:
    """The joint method whose pseudo-labels are the registration (multi-atlas) maps only."""
    return run_joint(data, split, config, folder, mode="reg")
