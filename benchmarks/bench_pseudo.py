"""Benchmark: round-0 pseudo-labels of a finished run, at the paper's balance and at the presets'.

    python benchmarks/bench_pseudo.py results/main [--subjects 300] [--data-seed 0] [--seed 0]
        [--settings 5:4,5:9] [--io-steps 0,20] [--device cpu]

Reads the split and the two pre-trained models of a ``segreg-lite run`` folder on the default
cohort (``checkpoints/pretrained_seg.pt`` and ``pretrained_reg.pt``: the models the joint method
starts from) and makes the pseudo-labels of every unannotated training image
(:func:`segreg_lite.pseudo.make_pseudo_labels`, with the run's ``reg_passes``) with each
``n_atlas:n_tta`` setting (the paper's is 5 atlases and 1 + 4 segmentation maps, ``5:4``), and
with each ``--io-steps`` value (instance optimisation of every atlas-to-image field after the
network's passes, :func:`segreg_lite.registration.instance_optimise`; 0 for none). For
each it prints the mean Dice over the four classes of the argmax against the hidden truth: the
registration masks alone, the segmentation masks alone and the combined mask; then, for the
first setting and the first ``--io-steps``, the combined mask as the weight of the segmentation maps goes from 0
(registration only) to 1 (segmentation only), which says which balance is best on this run. After Li et al. (arXiv 2502.03229). Nothing is
asserted.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from segreg_lite.checkpoint import load_checkpoint
from segreg_lite.config import TrainConfig
from segreg_lite.data import load_data
from segreg_lite.io import read_json
from segreg_lite.train import phase_seed
from segreg_lite.metrics import dice_per_class
from segreg_lite.pseudo import make_pseudo_labels
from segreg_lite.registration import check_io
from segreg_lite.splits import Split


def dice(soft: torch.Tensor, truth: torch.Tensor, k: int) -> float:
    return float(np.mean(dice_per_class(soft.argmax(1), truth, k)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a finished segreg-lite run folder on the default cohort")
    p.add_argument("--subjects", type=int, default=300)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--settings", default="5:4,5:9", help="n_atlas:n_tta pairs, comma-separated")
    p.add_argument("--io-steps", default="0,20", help="instance optimisation steps, comma-separated (0: none)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    try:
        settings = [tuple(int(v) for v in s.split(":")) for s in args.settings.split(",")]
    except ValueError:
        raise SystemExit(f"--settings: expected n_atlas:n_tta pairs such as 5:4,5:9, got {args.settings!r}") from None
    if any(len(s) != 2 or s[0] < 1 or s[1] < 0 for s in settings):
        raise SystemExit(f"--settings: each needs n_atlas >= 1 and n_tta >= 0, got {args.settings!r}")
    try:
        io_steps = [int(v) for v in args.io_steps.split(",")]
        for steps in io_steps:
            check_io(steps, TrainConfig().reg_io_lr)
    except ValueError as err:
        raise SystemExit(f"--io-steps: expected whole numbers >= 0 such as 0,20, got {args.io_steps!r} ({err})") from None
    ckpts = {w: args.run / "checkpoints" / f"pretrained_{w}.pt" for w in ("seg", "reg")}
    for path in [args.run / "run.json", *ckpts.values()]:
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run `segreg-lite run` with a joint method into {args.run} first")
    spec = read_json(args.run / "run.json")
    split = Split.from_dict(spec["split"])
    config = TrainConfig.from_dict(spec["config"])
    passes = config.reg_passes  # the run's registration inference
    data = load_data("cohort", n_subjects=args.subjects, seed=args.data_seed)
    if split.n_subjects != len(data.images):
        raise SystemExit(f"{args.run} was run on {split.n_subjects} subjects, not this cohort's {len(data.images)}")
    seg, reg = (load_checkpoint(ckpts[w]).models[w].eval() for w in ("seg", "reg"))
    k = len(data.label_names)
    unann = list(split.unannotated)
    truth = data.labels[unann]
    print(f"{args.run}: {data.description}; split seed {split.seed}, {len(split.annotated)} annotated, "
          f"{len(unann)} unannotated images scored; {passes} registration pass{'es' if passes > 1 else ''} per atlas")
    print("setting | instance optimisation | registration masks | segmentation masks | combined | seconds")
    print("--- | --- | --- | --- | --- | ---")
    first = None
    for n_atlas, n_tta in settings:
        for steps in io_steps:
            gen = torch.Generator().manual_seed(phase_seed(split.seed, 0, "pseudo"))
            start = time.perf_counter()
            pl = make_pseudo_labels(seg, reg, data.images, data.labels, split.annotated, unann, n_atlas=n_atlas,
                                    n_tta=n_tta, generator=gen, device=args.device, passes=passes, io_steps=steps,
                                    io_lr=config.reg_io_lr)
            seconds = time.perf_counter() - start
            first = first or (pl, n_atlas, n_tta)
            print(f"{n_atlas} atlases, 1 + {n_tta} TTA | {f'{steps} steps' if steps else 'none'} | "
                  f"{dice(pl.reg, truth, k):.3f} | {dice(pl.seg, truth, k):.3f} | {dice(pl.soft, truth, k):.3f} | "
                  f"{seconds:.0f}", flush=True)
    pl, n_atlas, n_tta = first
    print(f"\ncombined mask against the weight w of the segmentation maps ({n_atlas} atlases, 1 + {n_tta} TTA; "
          f"equal weight per map is w = {(1 + n_tta) / (1 + n_tta + n_atlas):.2f})")
    for w in np.linspace(0, 1, 11):
        print(f"w = {w:.1f}: {dice((1 - w) * pl.reg + w * pl.seg, truth, k):.3f}")


if __name__ == "__main__":
    sys.exit(main())
