"""Benchmark: the package's registration network against ANTs SyN on the same atlas -> target pairs.

    python benchmarks/bench_registration.py [--subjects 300] [--data-seed 0] [--seed 0]
        [--fractions 0.01,0.05] [--targets 20] [--presets quick,cpu] [--shipped | --no-shipped]
        [--checkpoint FILE ...] [--passes 1,2] [--io-steps 20] [--io-lr 0.3] [--no-ants] [--threads 2]
        [--device auto]

Pairs, as the pseudo-labels of Li et al. (arXiv 2502.03229) use them: the annotated images of a
split are the atlases (moving), the first ``--targets`` test subjects the targets (fixed); every
atlas is registered onto every target and its one-hot label warped bilinearly. Methods, each on
the same pairs:

- ``no warp``: the atlas label as it is (the floor);
- ``shipped``: the pre-trained RegNet that ships with the package (``segreg_lite.pretrained``),
  when its fingerprint matches this cohort and split (otherwise a line says why it is skipped);
- ``<preset>``: a RegNet pre-trained here by the package's own ``pretrain_regnet`` with that
  preset's settings (``--presets``; ``paper@N`` trains the paper's settings for N steps);
- ``--checkpoint FILE``: the regnet of any segreg-lite checkpoint;
- ``ANTs SyN[s]``: ``antsRegistrationSyN[s]`` (rigid, affine, then SyN with local CC) from
  ``antspyx``, the optional extra ``pip install -e .[peers]``, through ``segreg_lite.peers``;
  without it the run says so.

Printed per method and split: Dice per foreground class and its mean over every pair, the
multi-atlas Dice (argmax of the mean of the warped one-hot maps, as the pseudo-labels fuse
them), folding (% of pixels with det J <= 0) and the std of log|J| of the full fields (ANTs':
its composite transform as a displacement field), seconds per pair of registration (inference
for the networks, on ``--threads`` threads; training is reported separately), and how many
times faster than ANTs. Each network gets a row per ``--passes`` value (1 and 2 by default: the
CPU presets apply the network twice, the second time to the image the first pass warped), and a
row per ``--io-steps`` value: the most passes, then that many steps of instance optimisation on
each pair's field (``segreg_lite.registration.instance_optimise``). Each row ends with the bar
it is held to against ANTs: the network alone at least 100 times faster, at a pair Dice no lower
than ANTs'; with instance optimisation, at least 0.02 above ANTs' pair Dice, folding under 0.5%,
at least 10 times faster. Nothing is asserted; the figures back the presets and the book.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from segreg_lite.checks import one_hot
from segreg_lite.config import get_preset
from segreg_lite.data import load_data
from segreg_lite.train import pick_device
from segreg_lite.metrics import dice_per_class, folding_fraction, log_jacobian_std
from segreg_lite.peers import ants_available, ants_fields
from segreg_lite.registration import IO_LR, check_io
from segreg_lite.splits import make_split
from segreg_lite.transforms import warp


def _list(kind: type, what: str, *, empty: bool = False):
    """An argparse type: comma-separated ``kind`` values, none at all only if ``empty``. Its error
    names ``what`` and argparse puts the flag before it ("argument --fractions: expected
    comma-separated fractions, got ''"), where a lambda gave "invalid <lambda> value"."""
    def parse(text: str) -> list:
        try:
            values = [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            values = None
        if values is None or not (values or empty):
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        return values
    return parse


def check_args(args: argparse.Namespace) -> None:
    """Bad settings fail here, with the value named, before any cohort is generated."""
    from segreg_lite.checkpoint import load_checkpoint
    from segreg_lite.limits import check_int, check_seed
    from segreg_lite.splits import MIN_SUBJECTS

    try:  # the package's own checks, named by flag
        check_int(args.subjects, "--subjects", low=MIN_SUBJECTS)
        check_seed(args.data_seed, "--data-seed")
        check_seed(args.seed, "--seed")
    except ValueError as err:
        raise SystemExit(str(err)) from None
    for f in args.fractions:
        if not 0 < f < 1:
            raise SystemExit(f"--fractions: each must be in (0, 1), got {f}")
    if args.targets < 1:
        raise SystemExit(f"--targets must be >= 1, got {args.targets}")
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    if not args.passes or min(args.passes) < 1:
        raise SystemExit(f"--passes: each must be >= 1, got {args.passes}")
    try:
        for steps in args.io_steps:
            check_io(steps, args.io_lr)
    except ValueError as err:
        raise SystemExit(f"--io-steps / --io-lr: {err}") from None
    for p in args.presets:
        name, _, steps = p.partition("@")
        if steps and not steps.isdigit():
            raise SystemExit(f"--presets: {p!r}: the steps after '@' must be a whole number")
        try:
            get_preset(name, n_annotated=1, n_train=1)
        except ValueError as err:
            raise SystemExit(f"--presets: {err}") from None
    for path in args.checkpoint:
        if not os.path.isfile(path):
            raise SystemExit(f"--checkpoint: no such file: {path}")
        try:
            models = load_checkpoint(path).models  # a few MB at most: read now, not after the cohort
        except ValueError as err:
            raise SystemExit(f"--checkpoint: {err}") from None
        if not any(type(m).__name__ == "RegNet" for m in models.values()):
            raise SystemExit(f"--checkpoint {path}: holds no registration network (models: {', '.join(models) or 'none'})")


def score(warped: torch.Tensor, truth: torch.Tensor, num_classes: int) -> dict:
    """warped: (T, A, K, H, W) soft maps of A atlases on T targets; truth: (T, H, W) int labels."""
    t, a = warped.shape[:2]
    pair = np.stack([dice_per_class(warped[i].argmax(1), truth[i].expand(a, -1, -1), num_classes) for i in range(t)])  # (T, A, K-1)
    fused = dice_per_class(warped.mean(1).argmax(1), truth, num_classes)  # (T, K-1)
    return {"per_class": np.nanmean(pair, axis=(0, 1)), "pair": float(np.nanmean(pair)), "multi": float(np.nanmean(fused))}


def field_stats(flows: torch.Tensor) -> dict:
    """flows (P, 2, H, W) -> folding % and std of log|J| (means over pairs)."""
    return {"folding": 100 * float(folding_fraction(flows).mean()), "log_jac_std": float(np.nanmean(log_jacobian_std(flows)))}


def run_regnet(model, atlases: torch.Tensor, atlas_labels: torch.Tensor, targets: torch.Tensor, k: int, device,
               passes: int = 1, io_steps: int = 0, io_lr: float = IO_LR) -> dict:
    """Register every atlas onto every target; returns the warped maps, fields and time per pair."""
    from segreg_lite.registration import register

    a, t = len(atlases), len(targets)
    moving = atlases.repeat(t, 1, 1, 1)  # (T * A, 1, H, W), target-major
    fixed = targets.repeat_interleave(a, 0)
    # Batches of 4 pairs, as the pseudo-labels register (propagate_labels): faster per pair on a
    # CPU than 16. Warm-up first: the first calls allocate.
    settings = dict(batch_size=4, device=device, passes=passes, io_steps=io_steps, io_lr=io_lr)
    register(model, moving[:8], fixed[:8], **settings)
    start = time.perf_counter()
    flows = register(model, moving, fixed, **settings)  # (T * A, 2, H, W)
    seconds = (time.perf_counter() - start) / len(moving)
    warped = warp(one_hot(atlas_labels, k).repeat(t, 1, 1, 1), flows).clamp(0, 1)  # (T * A, K, H, W)
    return {"warped": warped.view(t, a, *warped.shape[1:]), "flows": flows, "seconds": seconds}


def run_ants(atlases: torch.Tensor, atlas_labels: torch.Tensor, targets: torch.Tensor, k: int) -> dict:
    """antsRegistrationSyN[s] of every atlas onto every target (no labels used), as :func:`run_regnet`."""
    a, t = len(atlases), len(targets)
    flows, seconds = ants_fields(atlases.repeat(t, 1, 1, 1), targets.repeat_interleave(a, 0))  # target-major
    warped = warp(one_hot(atlas_labels, k).repeat(t, 1, 1, 1), flows).clamp(0, 1)  # (T * A, K, H, W)
    return {"warped": warped.view(t, a, *warped.shape[1:]), "flows": flows, "seconds": seconds}


def train_preset(spec: str, data, split, device) -> tuple[str, torch.nn.Module, float]:
    """A RegNet pre-trained by the package with the settings of preset ``name[@steps]``."""
    from segreg_lite.registration import pretrain_regnet
    from segreg_lite.train import new_models

    name, _, steps = spec.partition("@")
    config = get_preset(name, n_annotated=len(split.annotated), n_train=len(split.train))
    if steps:
        config = replace(config, reg_steps=int(steps))
    reg = new_models(config, len(data.label_names), split.seed)[1]
    start = time.perf_counter()
    pretrain_regnet(reg, data.images, split, config, seed=split.seed, device=device, progress=True, shipped=False)
    label = f"{name} ({config.reg_steps} steps)"
    return label, reg, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subjects", type=int, default=300)
    p.add_argument("--data-seed", type=int, default=0, help="the cohort's seed")
    p.add_argument("--seed", type=int, default=0, help="the split's seed")
    p.add_argument("--fractions", type=_list(float, "fractions"), default=[0.01, 0.05])
    p.add_argument("--targets", type=int, default=20, help="test subjects used as targets")
    p.add_argument("--presets", type=_list(str, "preset names", empty=True), default=[],
                   help="train a RegNet per preset here (name or name@steps), e.g. quick,cpu,paper@600")
    p.add_argument("--shipped", action=argparse.BooleanOptionalAction, default=True,
                   help="evaluate the shipped pre-trained RegNet (default on)")
    p.add_argument("--checkpoint", action="append", default=[], help="a checkpoint whose regnet to evaluate")
    p.add_argument("--passes", type=_list(int, "whole numbers"), default=[1, 2],
                   help="inference passes of each network, one row each (the CPU presets use reg_passes=2)")
    p.add_argument("--io-steps", type=_list(int, "whole numbers", empty=True), default=[20],
                   help="a row per value: the most passes, then this many instance optimisation steps ('' for none)")
    p.add_argument("--io-lr", type=float, default=IO_LR, help="Adam rate of the instance optimisation")
    p.add_argument("--no-ants", action="store_true", help="skip ANTs even when antspyx is installed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    check_args(args)
    # ANTs (ITK) reads its thread count from the environment: the same budget as torch.
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    use_ants = not args.no_ants and ants_available()

    data = load_data("cohort", n_subjects=args.subjects, seed=args.data_seed)
    k = len(data.label_names)
    splits = {f: make_split(len(data.images), seed=args.seed, fraction=f, subjects=data.subjects) for f in args.fractions}
    first = splits[args.fractions[0]]
    print(f"{data.description}; split seed {args.seed}; {args.targets} test targets; {args.threads} threads, {device}")

    models: list[tuple[str, torch.nn.Module]] = []
    if args.shipped:
        from segreg_lite.pretrained import shipped_regnet

        config = get_preset("cpu")
        try:
            model, why = shipped_regnet(data.images, first, config)
        except ValueError as err:  # a damaged shipped file: one line, how to restore it
            raise SystemExit(f"shipped: {err}") from None
        if model is None:
            print(f"shipped: skipped ({why})")
        else:
            models.append(("shipped", model))
    for path in args.checkpoint:
        from segreg_lite.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        regs = [m for m in ckpt.models.values() if type(m).__name__ == "RegNet"]
        if not regs:
            raise SystemExit(f"--checkpoint {path}: holds no registration network (models: {', '.join(ckpt.models)})")
        models.append((os.path.basename(path), regs[0]))
    for spec in args.presets:
        label, model, seconds = train_preset(spec, data, first, device)
        print(f"{label}: trained in {seconds / 60:.1f} min")
        models.append((label, model))
    if not use_ants:
        print("ANTs SyN[s]: skipped (" + ("--no-ants" if args.no_ants else
              "antspyx is not installed: pip install -e .[peers]") + ")")

    classes = data.label_names[1:]
    for f, split in splits.items():
        atl = list(split.annotated)
        tg = list(split.test)[: args.targets]
        atlases, atlas_labels, targets = data.images[atl], data.labels[atl], data.images[tg]
        truth = data.labels[tg]
        rows: list[tuple[str, dict]] = []
        ident = atlases.new_zeros(len(atl) * len(tg), 2, *atlases.shape[-2:])
        rows.append(("no warp", {"warped": one_hot(atlas_labels, k)[None].expand(len(tg), -1, -1, -1, -1),
                                 "flows": ident, "seconds": 0.0}))
        for label, model in models:
            for n in args.passes:
                name = label if len(args.passes) == 1 else f"{label}, {n} pass{'es' if n > 1 else ''}"
                rows.append((name, run_regnet(model, atlases, atlas_labels, targets, k, device, n)))
            for steps in (s for s in args.io_steps if s > 0):
                n = max(args.passes)
                rows.append((f"{label}, {n} pass{'es' if n > 1 else ''} + IO {steps}",
                             run_regnet(model, atlases, atlas_labels, targets, k, device, n, steps, args.io_lr)))
        if use_ants:
            rows.append(("ANTs SyN[s]", run_ants(atlases, atlas_labels, targets, k)))
        ants_s = rows[-1][1]["seconds"] if use_ants else float("nan")
        print(f"\nfraction {f:g}: {len(atl)} atlases x {len(tg)} targets = {len(atl) * len(tg)} pairs")
        head = ["method", *classes, "pair Dice", "multi-atlas", "folding %", "std log|J|", "s/pair", "x ANTs"]
        print(" | ".join(head))
        print(" | ".join("---" for _ in head))
        scored = []
        for label, r in rows:
            s, fs = score(r["warped"], truth, k), field_stats(r["flows"])
            speed = ants_s / r["seconds"] if r["seconds"] > 0 and use_ants else float("nan")
            cells = [label, *(f"{v:.3f}" for v in s["per_class"]), f"{s['pair']:.3f}", f"{s['multi']:.3f}",
                     f"{fs['folding']:.3f}", f"{fs['log_jac_std']:.3f}", f"{r['seconds']:.4f}", f"{speed:.0f}"]
            print(" | ".join(cells), flush=True)
            scored.append((label, s, fs, speed))
        if use_ants:  # each network against the peer, unrounded, and the bar it is held to
            ants = scored[-1][1]
            for label, s, fs, speed in scored[1:-1]:
                if " + IO " in label:
                    ok, bar = (s["pair"] >= ants["pair"] + 0.02 and fs["folding"] < 0.5 and speed >= 10,
                               "pair Dice >= ANTs + 0.02, folding < 0.5%, >= 10x")
                else:
                    ok, bar = s["pair"] >= ants["pair"] and fs["folding"] < 0.5 and speed >= 100, \
                        "pair Dice >= ANTs, folding < 0.5%, >= 100x"
                print(f"{label} - ANTs: pair Dice {s['pair'] - ants['pair']:+.4f}, multi-atlas "
                      f"{s['multi'] - ants['multi']:+.4f}, {speed:.0f}x the speed; "
                      f"{'meets' if ok else 'misses'} the bar ({bar})")


if __name__ == "__main__":
    sys.exit(main())
