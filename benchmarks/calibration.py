"""Calibration of the default cohort: is the 1%-label problem real?

    python benchmarks/calibration.py [--subjects 300] [--steps 800] [--full-steps 2500] [--seed 0]

Trains the U-Net of the CPU preset three times on one cohort and prints mean foreground test Dice:
1% of the training subjects labelled without augmentation, the same with augmentation (the
strongest supervised baseline), and 100% labelled (the ceiling; trained without augmentation,
since with it and a shorter schedule it stayed lower on this cohort). The cohort is hard enough
when the augmented 1% baseline stays at least 0.10 below the 100% model and the ceiling is
>= 0.85.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

from segreg_lite.cohort import generate_cohort
from segreg_lite.config import TrainConfig
from segreg_lite.train import seed_everything
from segreg_lite.labels import SEG4_NAMES
from segreg_lite.supervised import evaluate_segmenter, train_segmenter
from segreg_lite.splits import make_split
from segreg_lite.unet import UNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--steps", type=int, default=TrainConfig().seg_steps)
    parser.add_argument("--full-steps", type=int, default=2500)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    cfg = TrainConfig()
    cohort = generate_cohort(args.subjects, seed=args.seed)
    split = make_split(len(cohort), seed=args.seed, fraction=args.fraction)
    test = list(split.test)
    runs = {
        f"{args.fraction:g} labels, no augmentation": (split.annotated, False, args.steps),
        f"{args.fraction:g} labels, augmentation": (split.annotated, True, args.steps),
        "all labels": (split.train, False, args.full_steps),
    }
    print(f"{len(cohort)} subjects: {len(split.train)} train ({len(split.annotated)} annotated), {len(test)} test")
    results = {}
    for name, (indices, augment, steps) in runs.items():
        seed_everything(args.seed)
        model = UNet(features=cfg.features, dropout=cfg.dropout)
        start = time.perf_counter()
        train_segmenter(model, cohort.images, cohort.labels, indices, replace(cfg, augment=augment), steps=steps, seed=args.seed, device="cpu")
        metrics = evaluate_segmenter(model, cohort.images[test], cohort.labels[test])
        results[name] = {"dice": metrics["dice"], "per_class": dict(zip(SEG4_NAMES[1:], metrics["dice_per_class"])), "hd95": metrics["hd95"], "seconds": time.perf_counter() - start}
        per = " ".join(f"{n}={d:.3f}" for n, d in results[name]["per_class"].items())
        print(f"{name:<32} mean Dice {metrics['dice']:.3f}  HD95 {metrics['hd95']:.1f} px  ({per})  {steps} steps, {results[name]['seconds']:.0f} s", flush=True)
    names = list(runs)
    gap = results[names[2]]["dice"] - results[names[1]]["dice"]
    print(f"gap (all labels - augmented {args.fraction:g}): {gap:.3f}   ceiling {results[names[2]]['dice']:.3f}")
    if args.json:
        from segreg_lite.io import write_json

        write_json(args.json, {"args": vars(args), "results": results, "gap": gap})


if __name__ == "__main__":
    main()
