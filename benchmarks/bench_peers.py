"""Benchmark: the peers that say whether a gap is the method's or the budget's.

    python benchmarks/bench_peers.py RUN [RUN ...] [--um-steps 500] [--full-steps N]
        [--subjects 300] [--data-seed 0] [--device cpu]

For each finished ``segreg-lite run`` folder on the default cohort (with its pre-trained
segmenter, ``checkpoints/pretrained_seg.pt``), on the run's own split and seed:

- UniMatch (:func:`segreg_lite.unimatch.train_unimatch`) from the run's pre-trained segmenter for
  each ``--um-steps`` count: does a longer UniMatch than the run's own gain more?
- the U-Net trained on 100% of the training labels (``upper_bound``'s recipe: no augmentation)
  for ``--full-steps`` steps, by default the joint method's segmenter steps in all (pre-training
  plus its rounds): how much of the upper bound's lead is the schedule, not the labels?

It prints each model's test Dice beside the run's own ``supervised_aug``, ``unimatch``, ``joint``
and ``upper_bound`` (when its results hold them) and the minutes each took. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from segreg_lite.checkpoint import load_checkpoint
from segreg_lite.config import TrainConfig
from segreg_lite.data import load_data
from segreg_lite.io import read_json
from segreg_lite.splits import Split
from segreg_lite.supervised import pretrain_segmenter, test_metrics
from segreg_lite.train import new_models, phase_seed, seed_everything
from segreg_lite.unimatch import train_unimatch


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", type=Path, nargs="+", help="finished segreg-lite run folders on the default cohort")
    p.add_argument("--um-steps", type=int, action="append", default=[], help="UniMatch steps (repeatable)")
    p.add_argument("--full-steps", type=int, default=None,
                   help="steps of the 100%%-label U-Net (default: the joint method's segmenter steps in all)")
    p.add_argument("--subjects", type=int, default=300)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if any(s < 1 for s in args.um_steps) or (args.full_steps is not None and args.full_steps < 1):
        raise SystemExit("--um-steps and --full-steps must be positive step counts")
    runs = []
    for folder in args.runs:  # every folder checked before the cohort is made
        spec_path, ckpt = folder / "run.json", folder / "checkpoints" / "pretrained_seg.pt"
        for path in (spec_path, ckpt):
            if not path.is_file():
                raise SystemExit(f"{path} is missing: run `segreg-lite run` with supervised_aug into {folder} first")
        spec = read_json(spec_path, "run file")
        runs.append((folder, ckpt, Split.from_dict(spec["split"]), TrainConfig.from_dict(spec["config"]), int(spec["seed"])))
    data = load_data("cohort", n_subjects=args.subjects, seed=args.data_seed)
    rows = []
    for folder, ckpt, split, config, seed in runs:
        if split.n_subjects != len(data.images):
            raise SystemExit(f"{folder} was run on {split.n_subjects} subjects, not this cohort's {len(data.images)}")
        held = {}
        if (folder / "results.json").is_file():
            held = {m: r["metrics"]["dice"] for m, r in read_json(folder / "results.json", "results file")["methods"].items()}
        print(f"{folder}: seed {seed}; the run's own test Dice: "
              + ", ".join(f"{m} {d:.4f}" for m, d in held.items()), flush=True)
        for steps in args.um_steps:
            model = load_checkpoint(ckpt).models["seg"]
            s = phase_seed(seed, 0, "unimatch")
            seed_everything(s)
            start = time.perf_counter()
            train_unimatch(model, data.images, data.labels, split.annotated, split.unannotated,
                           replace(config, um_steps=steps), device=args.device, seed=s)
            dice = test_metrics(model, data, split, args.device)["dice"]
            rows.append((seed, f"unimatch, {steps} steps", dice, (time.perf_counter() - start) / 60))
            print(f"  {rows[-1][1]}: test Dice {dice:.4f} in {rows[-1][3]:.1f} min", flush=True)
        full = args.full_steps or config.seg_steps + config.rounds * config.seg_round_steps
        model = new_models(config, data.num_classes, seed)[0]
        every = replace(split, annotated=split.train, fraction=1.0)
        start = time.perf_counter()
        pretrain_segmenter(model, data.images, data.labels, every, replace(config, augment=False, seg_steps=full),
                           seed=seed, device=args.device)
        dice = test_metrics(model, data, split, args.device)["dice"]
        rows.append((seed, f"100% of the labels, {full} steps", dice, (time.perf_counter() - start) / 60))
        print(f"  {rows[-1][1]}: test Dice {dice:.4f} in {rows[-1][3]:.1f} min", flush=True)
    print("\nseed | model | test Dice | minutes")
    print("--- | --- | --- | ---")
    for seed, name, dice, minutes in rows:
        print(f"{seed} | {name} | {dice:.4f} | {minutes:.1f}")


if __name__ == "__main__":
    sys.exit(main())
