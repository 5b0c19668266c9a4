"""Benchmark: one joint round broken down by phase, time and peak memory.

    python benchmarks/bench_round.py [--device auto|cpu|cuda] [--preset quick] [--rounds 3]
                                     [--subjects 300] [--size 128] [--fraction 0.01] [--threads N]

A round of the joint method (Li et al., arXiv 2502.03229) has four phases, timed inside
``segreg_lite.joint.train_joint`` (``entry["seconds"]``): segmenter training on annotated +
pseudo-labelled images (``seg_round_steps``), registration training with the warped-label term
(``reg_round_steps``), pseudo-label generation for every unannotated image (``n_atlas``
registrations + 1 + ``n_tta`` segmentations each) and evaluation (the segmenter and multi-atlas
registration on the test set, pseudo-label Dice). Pre-training is cut to a few steps: it is not
measured, and a round costs the same whatever the models have learnt. For each phase the run
prints the median seconds over ``--rounds`` rounds, its share of the round and the peak memory
above the phase's start (the largest over rounds; ``bench_models.PeakMemory`` says how it is
read on each device). On CPU it ends by saying how busy the machine was. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections import defaultdict
from dataclasses import replace

import torch

from bench_models import PeakMemory, other_cpu_seconds
from segreg_lite.cohort import CohortConfig, generate_cohort
from segreg_lite.config import get_preset
from segreg_lite.train import pick_device
from segreg_lite.joint import train_joint
from segreg_lite.labels import NUM_CLASSES
from segreg_lite.splits import make_split

PHASES = {"seg": "segmenter training", "reg": "registration training", "pseudo": "pseudo-label generation",
          "eval": "evaluation"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--preset", default="quick", help="training settings of the round (default quick, the main command's)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds to time (default 3)")
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--fraction", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)

    cohort = generate_cohort(args.subjects, seed=0, config=CohortConfig(size=(args.size, args.size)))
    split = make_split(len(cohort), seed=0, fraction=args.fraction, subjects=cohort.subjects)
    preset = get_preset(args.preset, n_annotated=len(split.annotated), n_train=len(split.train))
    config = replace(preset, seg_steps=10, reg_steps=10, rounds=args.rounds)
    peaks: dict[str, list[float]] = defaultdict(list)
    how = []  # how PeakMemory read the peak on this device

    @contextlib.contextmanager
    def phase(name: str):
        with PeakMemory(device) as mem:
            yield
        peaks[name].append(mem.mib)
        how[:] = [mem.how]

    print(f"device {device}, {torch.get_num_threads()} threads; preset {args.preset}: {args.subjects} subjects "
          f"{args.size}x{args.size}, {len(split.annotated)} annotated, {len(split.unannotated)} pseudo-labelled, "
          f"{len(split.test)} test; seg_round_steps {config.seg_round_steps}, reg_round_steps "
          f"{config.reg_round_steps}, n_atlas {config.n_atlas}, n_tta {config.n_tta}, batch {config.batch_size}")
    other_start, wall_start = other_cpu_seconds(), time.perf_counter()
    result = train_joint(cohort.images, cohort.labels, split, config, seed=0, num_classes=NUM_CLASSES, device=device,
                         progress=True, phase=phase)
    rounds = [e["seconds"] for e in result.history[1:]]
    medians = {p: statistics.median(r[p] for r in rounds) for p in PHASES}
    total = sum(medians.values())
    print(f"\n{'phase':26} {'seconds':>8} {'(min-max)':>13} {'share':>6} {'peak MiB':>9}")
    for p, label in PHASES.items():
        times = [r[p] for r in rounds]
        print(f"{label:26} {medians[p]:>8.1f} {f'({min(times):.1f}-{max(times):.1f})':>13} "
              f"{medians[p] / total:>6.0%} {max(peaks[p]):>9.0f}")
    print(f"{'one round':26} {total:>8.1f}")
    print(f"medians over {len(rounds)} rounds; peak MiB: {how[0]}")
    per_image = medians["pseudo"] / len(split.unannotated)
    print(f"pseudo-labels: {1e3 * per_image:.0f} ms per unannotated image "
          f"({config.n_atlas} registrations + {1 + config.n_tta} segmentations)")
    other_end = other_cpu_seconds()
    if device.type == "cpu" and other_start is not None and other_end is not None:
        cores = (other_end - other_start) / (time.perf_counter() - wall_start)
        note = " (figures are pessimistic: rerun on an idle machine)" if cores > 0.2 else ""
        print(f"other processes used {cores:.2f} CPU cores on average during the run{note}")


if __name__ == "__main__":
    main()
