"""The ``segreg-lite`` command (also ``python -m segreg_lite``).

    segreg-lite cohort [--subjects 200] [--seed 0] [--size 128 128] [--out results/cohort]

``cohort`` generates the default embedded cohort, prints a summary (subjects, the seg4 label
table, class frequencies) and writes an overview figure and ``summary.json``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from segreg_lite import __version__


def _cohort(args: argparse.Namespace) -> int:
    from segreg_lite.cohort import CohortConfig, generate_cohort
    from segreg_lite.io import atomic_path, write_json
    from segreg_lite.labels import SEG4_NAMES
    from segreg_lite.splits import make_split

    start = time.perf_counter()
    cohort = generate_cohort(args.subjects, seed=args.seed, config=CohortConfig(size=tuple(args.size)), progress=True)
    elapsed = time.perf_counter() - start
    summary = cohort.summary()
    split = make_split(len(cohort), seed=args.seed, fraction=args.fraction, subjects=cohort.subjects)
    h, w = cohort.config.size
    print(f"\nsegreg-lite {__version__}: embedded MNI ICBM152 cohort")
    print(f"  {len(cohort)} subjects, {h}x{w} pixels of {cohort.spacing_mm:.2f} mm, seed {args.seed}, made in {elapsed:.1f} s")
    print(
        f"  split: {len(split.train)} train ({len(split.annotated)} annotated at {args.fraction:g}), "
        f"{len(split.val)} validation, {len(split.test)} test"
    )
    print(f"\n  {'label':>5}  {'class':<15} {'pixels':>7}  {'area mm2 (median, 5-95%)':>26}")
    for k, name in enumerate(SEG4_NAMES):
        c = summary["classes"][name]
        print(
            f"  {k:>5}  {name:<15} {100 * c['frequency']:6.2f}%  "
            f"{c['area_mm2_median']:9.0f} ({c['area_mm2_p5']:.0f}-{c['area_mm2_p95']:.0f})"
        )
    out = Path(args.out)
    summary["split"] = split.to_dict()
    write_json(out / "summary.json", summary)
    import matplotlib

    matplotlib.use("Agg")
    from segreg_lite.plotting import cohort_overview

    fig = cohort_overview(cohort)
    with atomic_path(out / "overview.png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    print(f"\n  wrote {out / 'overview.png'} and {out / 'summary.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segreg-lite", description="Semi-supervised segmentation with registration-made pseudo-labels.")
    parser.add_argument("--version", action="version", version=f"segreg-lite {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("cohort", help="generate the embedded cohort, print its summary, write an overview figure")
    p.add_argument("--subjects", type=int, default=200, help="number of subjects (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"), help="image size, multiples of 16 (default 128 128)")
    p.add_argument("--fraction", type=float, default=0.01, help="annotated fraction of the training subjects (default 0.01)")
    p.add_argument("--out", default="results/cohort", help="output folder (default results/cohort)")
    p.set_defaults(func=_cohort)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"segreg-lite: error: {err}", file=sys.stderr)
        return 2
