"""Benchmark: how long the embedded cohort takes to generate on this machine.

    python benchmarks/bench_cohort.py [--subjects 500] [--repeats 3] [--size 128 128]

Prints the one-off template preparation time (cached per process) and the median, min and max
wall time over repeats of ``generate_cohort``; the target is 500 subjects at 128x128 in < 10 s.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from segreg_lite.cohort import CohortConfig, generate_cohort
from segreg_lite.template import load_template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128))
    args = parser.parse_args()
    start = time.perf_counter()
    load_template()
    prep = time.perf_counter() - start
    times = []
    for seed in range(args.repeats):
        start = time.perf_counter()
        generate_cohort(args.subjects, seed=seed, config=CohortConfig(size=tuple(args.size)))
        times.append(time.perf_counter() - start)
    med = statistics.median(times)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"template preparation (once per process): {prep:.2f} s")
    print(
        f"generate_cohort({args.subjects}) at {args.size[0]}x{args.size[1]}: median {med:.2f} s "
        f"(min {min(times):.2f}, max {max(times):.2f}, {args.repeats} runs), {args.subjects / med:.0f} subjects/s"
    )
    print(f"first call including template preparation: {prep + times[0]:.2f} s (target < 10 s)")


if __name__ == "__main__":
    main()
