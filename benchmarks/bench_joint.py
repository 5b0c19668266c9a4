"""Benchmark: joint round schedules, each from the same pre-trained models of a finished run.

    python benchmarks/bench_joint.py results/main [--variant KEY=VALUE[,KEY=VALUE...]] ...
        [--subjects 300] [--data-seed 0] [--mode combined] [--device cpu]

Reads the split, seed, config and the two pre-trained models of a ``segreg-lite run`` folder on
the default cohort (``checkpoints/pretrained_seg.pt``, ``pretrained_reg.pt``: the models every
joint method of the run starts from) and runs the joint rounds
(:func:`segreg_lite.joint.train_joint`) with the run's own config, then once per ``--variant``:
the run's config with some of the settings that only the rounds read changed, e.g.
``--variant seg_round_lr=1e-3`` or ``--variant rounds=3,seg_round_steps=300``. For each it
prints, round by round, the segmenter's test Dice and the pseudo-labels' Dice on the unannotated
images (the mask used, and the registration and segmentation masks alone), the registration
network's multi-atlas Dice on the test subjects, then the gain of the last round over round 0
(the pre-trained segmenter, i.e. the ``supervised_aug`` baseline) and the minutes it took. So a
question such as "would longer rounds or a higher learning rate help on this seed?" is answered
from one command, at the cost of the rounds alone. After Li et al. (arXiv 2502.03229). Nothing is
asserted.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from segreg_lite.checkpoint import load_checkpoint
from segreg_lite.config import TrainConfig
from segreg_lite.data import load_data
from segreg_lite.io import read_json
from segreg_lite.joint import train_joint
from segreg_lite.pseudo import MODES
from segreg_lite.splits import Split

#: The settings a variant may change: those the rounds read. Pre-training and the networks' shape
#: are fixed by the run's checkpoints.
ROUND_FIELDS = ("rounds", "seg_round_lr", "seg_round_steps", "reg_round_lr", "reg_round_steps", "batch_size",
                "augment", "soft_ce", "local_ncc", "reg_smoothness", "reg_passes", "label_weight", "n_atlas", "n_tta",
                "confidence_weight", "annotated_share", "amp")

#: Per round: the history key and its column title.
COLUMNS = (("test_dice", "test Dice"), ("pseudo_dice", "pseudo-labels"), ("pseudo_dice_reg", "reg masks"),
           ("pseudo_dice_seg", "seg masks"), ("reg_dice", "registration on test"))


def parse_variant(text: str, base: TrainConfig) -> dict[str, Any]:
    """``"seg_round_lr=1e-3,rounds=3"`` -> ``{"seg_round_lr": 0.001, "rounds": 3}``, each value of
    its field's type; a SystemExit naming the problem otherwise."""
    kinds = {f.name: type(getattr(base, f.name)) for f in fields(base)}
    changes: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise SystemExit(f"--variant {text!r}: expected KEY=VALUE pairs separated by commas, got {item!r}")
        if key not in kinds:
            raise SystemExit(f"--variant {text!r}: {key!r} is not a TrainConfig setting")
        if key not in ROUND_FIELDS:
            raise SystemExit(f"--variant {text!r}: {key!r} is fixed by the run's pre-trained models; "
                             f"a variant may change {', '.join(ROUND_FIELDS)}")
        value = value.strip()
        try:
            if kinds[key] is bool:
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                changes[key] = value.lower() in ("true", "1")
            else:
                changes[key] = kinds[key](value)
        except ValueError:
            kind = {bool: "true or false", int: "a whole number", float: "a number"}[kinds[key]]
            raise SystemExit(f"--variant {text!r}: {key} takes {kind}, got {value!r}") from None
    if not changes:
        raise SystemExit(f"--variant {text!r}: name at least one KEY=VALUE")
    try:
        replace(base, **changes)
    except ValueError as err:
        raise SystemExit(f"--variant {text!r}: {err}") from None
    return changes


def load_run(folder: Path) -> tuple[Split, TrainConfig, int, dict[str, Path]]:
    """The split, config, seed and pre-trained checkpoint paths of a finished run folder."""
    ckpts = {w: folder / "checkpoints" / f"pretrained_{w}.pt" for w in ("seg", "reg")}
    for path in [folder / "run.json", *ckpts.values()]:
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run `segreg-lite run` with a joint method into {folder} first")
    spec = read_json(folder / "run.json", "run file")
    return Split.from_dict(spec["split"]), TrainConfig.from_dict(spec["config"]), int(spec["seed"]), ckpts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a finished segreg-lite run folder on the default cohort")
    p.add_argument("--variant", action="append", default=[], help="KEY=VALUE[,KEY=VALUE...] of the round settings")
    p.add_argument("--subjects", type=int, default=300)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    p.add_argument("--mode", default="combined", choices=MODES, help="which masks the pseudo-labels average")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    split, base, seed, ckpts = load_run(args.run)
    variants = [("as run", {})] + [(text, parse_variant(text, base)) for text in args.variant]
    data = load_data("cohort", n_subjects=args.subjects, seed=args.data_seed, size=args.size)
    if split.n_subjects != len(data.images):
        raise SystemExit(f"{args.run} was run on {split.n_subjects} subjects, not this cohort's {len(data.images)}")
    seg0, reg0 = (load_checkpoint(ckpts[w]).models[w].eval() for w in ("seg", "reg"))
    print(f"{args.run}: {data.description}; seed {seed}, {len(split.annotated)} annotated, "
          f"{len(split.unannotated)} unannotated, {len(split.test)} test images; {args.mode} pseudo-labels\n"
          "Mean Dice over the foreground classes: the segmenter on the test images; the pseudo-labels, and the "
          "registration and segmentation masks alone, on the unannotated images; multi-atlas registration on "
          "the test images", flush=True)
    ends = []
    for name, changes in variants:
        config = replace(base, **changes)
        start = time.perf_counter()
        result = train_joint(data.images, data.labels, split, config, mode=args.mode, seed=seed,
                             num_classes=data.num_classes, segmenter=copy.deepcopy(seg0), regnet=copy.deepcopy(reg0),
                             device=args.device)
        minutes = (time.perf_counter() - start) / 60
        h = result.history
        print(f"\n{name}: {config.rounds} round(s) of {config.seg_round_steps} segmenter steps at lr "
              f"{config.seg_round_lr:g} and {config.reg_round_steps} registration steps at lr {config.reg_round_lr:g}")
        print("round | " + " | ".join(title for _, title in COLUMNS))
        print(" | ".join(["---"] * (len(COLUMNS) + 1)))
        for e in h:
            print(f"{e['round']} | " + " | ".join(f"{e[key]:.4f}" for key, _ in COLUMNS))
        gain = h[-1]["test_dice"] - h[0]["test_dice"]
        print(f"gain of the last round's segmenter over round 0: {gain:+.4f} test Dice, in {minutes:.1f} min", flush=True)
        ends.append((name, h[-1]["test_dice"], gain, minutes))
    print("\nvariant | last test Dice | gain over round 0 | minutes")
    print("--- | --- | --- | ---")
    for name, dice, gain, minutes in ends:
        print(f"{name} | {dice:.4f} | {gain:+.4f} | {minutes:.1f}")


if __name__ == "__main__":
    sys.exit(main())
