#!/usr/bin/env python
"""Write the sweep's results table into the README, between its two marker lines.

    python scripts/readme_results.py [--root results/sweep] [--readme README.md]

The table (``segreg_lite.sweep.markdown_sweep``: mean test Dice +- std over seeds, per method and
annotated fraction) and the line under it are made from the run folders' ``results.json``, never
typed: ``make results`` runs this after the results chapter has run the sweep. The README is
replaced atomically; without both markers, or without finished runs, nothing is written.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segreg_lite.io import write_text  # noqa: E402
from segreg_lite.sweep import collect_sweep, compute_minutes, markdown_sweep  # noqa: E402

START, END = "<!-- results table: start (scripts/readme_results.py) -->", "<!-- results table: end -->"


def results_block(root: Path) -> str:
    collected = collect_sweep(root)
    first = next(iter(collected.values()))[0]
    seeds = sorted({s["seed"] for runs in collected.values() for s in runs})
    note = (f"Mean test Dice over the four classes, mean ± std over seeds {', '.join(map(str, seeds))}; "
            f"{first['data']}, preset `{first['preset']}`, {len(first['split']['test'])} test subjects per "
            f"seed; best of each fraction in bold (upper bound aside); "
            f"{compute_minutes(collected):.0f} min of compute in all. Made by `scripts/readme_results.py` "
            f"from `{root.as_posix()}`.")
    return f"{markdown_sweep(collected)}\n\n{note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("results/sweep"))
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        print(f"{args.readme}: needs one {START!r} line followed by one {END!r} line", file=sys.stderr)
        return 1
    try:
        block = results_block(args.root)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    head, rest = text.split(START)
    tail = rest.split(END)[1]
    write_text(args.readme, f"{head}{START}\n{block}\n{END}{tail}")
    print(f"wrote the results table of {args.root} into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
