#!/usr/bin/env python
"""Write the README's generated blocks: the sweep's results table, what ``make main`` printed, the
same command over seeds and how long ``make test`` takes.

    python scripts/readme_results.py [--root DIR] [--main DIR] [--seeds DIR] [--readme README.md]

Both come from results files, never typed, by default the ones the package ships
(``segreg_lite/data/shipped_results``, written by ``scripts/export_results.py``), so the README
shows the same numbers as the results chapter, which reads them too:

- between ``<!-- results table: start ... -->`` and ``<!-- results table: end -->``: the sweep
  under ``--root`` (``segreg_lite.report.markdown_sweep``: mean test Dice +- std over seeds, per
  method and annotated fraction) and a line on what it is and what it cost;
- between ``<!-- make main: start ... -->`` and ``<!-- make main: end -->``, where the README has
  those markers: the run under ``--main`` as ``segreg-lite run`` prints it at the end
  (``segreg_lite.report.format_table``), with its measured time where its ``export.json``
  records one;
- between ``<!-- make main seeds: start ... -->`` and ``<!-- make main seeds: end -->``, where the
  README has those markers: the same command's runs over seeds under ``--seeds`` (one run folder
  per seed), as ``segreg-lite summary`` prints them (``segreg_lite.report.format_summary``: mean
  +- std, the joint rounds, the gain over the augmented baseline seed by seed);
- between ``<!-- make test: start ... -->`` and ``<!-- make test: end -->``, where the README has
  those markers: the time of ``make test`` and of its parts, as ``scripts/time_tests.py``
  recorded them in ``segreg_lite/data/test_times.json``.

``--root results/sweep`` writes the table of a sweep just run. The README is replaced
atomically; without the table's markers, or without finished runs, nothing is written.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segreg_lite.report import compute_minutes, format_summary, format_table, load_results, markdown_sweep  # noqa: E402
from segreg_lite.io import read_json, write_text  # noqa: E402
from segreg_lite.methods import DEFAULT_METHODS  # noqa: E402
from segreg_lite.sweep import SHIPPED_RESULTS, collect_sweep  # noqa: E402

START, END = "<!-- results table: start (scripts/readme_results.py) -->", "<!-- results table: end -->"
MAIN_START, MAIN_END = "<!-- make main: start (scripts/readme_results.py) -->", "<!-- make main: end -->"
TEST_START, TEST_END = "<!-- make test: start (scripts/readme_results.py) -->", "<!-- make test: end -->"
SEEDS_START, SEEDS_END = "<!-- make main seeds: start (scripts/readme_results.py) -->", "<!-- make main seeds: end -->"
#: Where scripts/time_tests.py records how long each part of ``make test`` took.
TEST_TIMES = ROOT / "segreg_lite" / "data" / "test_times.json"


def shown(path: Path) -> str:
    """``path`` relative to the repository when inside it (the README never shows this machine's paths)."""
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.as_posix()


def export_record(folder: Path) -> dict | None:
    """The ``export.json`` that scripts/export_results.py wrote into ``folder``, if any."""
    path = Path(folder) / "export.json"
    return json.loads(path.read_text()) if path.exists() else None


def results_block(root: Path) -> str:
    """The sweep's table and the line under it."""
    collected = collect_sweep(root)
    first = next(iter(collected.values()))[0]
    seeds = sorted({s["seed"] for runs in collected.values() for s in runs})
    record = export_record(root)
    timing = (record or {}).get("timing")
    wall = (f", {timing['busy_minutes']:.0f} min of wall time with {timing['runs_at_once']} runs at a time"
            f"{' on a ' + record['machine'] if record.get('machine') else ''}") if timing else ""
    note = (f"Mean test Dice over the four classes, mean ± std over seeds {', '.join(map(str, seeds))}; "
            f"{first['data']}, preset `{first['preset']}`, {len(first['split']['test'])} test subjects per "
            f"seed; best of each fraction in bold (upper bound aside); "
            f"{compute_minutes(collected):.0f} min of compute in all{wall}. Made by "
            f"`scripts/readme_results.py` from `{shown(root)}`.")
    return f"{markdown_sweep(collected)}\n\n{note}"


def main_block(folder: Path) -> str:
    """How long the main run took and the table ``segreg-lite run`` printed at its end."""
    summary = load_results([folder])[0]
    record = export_record(folder)
    timing = (record or {}).get("timing")
    if timing:
        took = (f"`make main` took {timing['busy_minutes']:.0f} min"
                f"{' on a ' + record['machine'] if record.get('machine') else ''} "
                f"({timing['first_start'][:10]}), measured from the run's start to its last method by "
                f"the run folder's file times (`{shown(folder)}/export.json`); generating the cohort, "
                "and the first time creating `.venv`, come on top.")
    else:
        took = "The time of `make main` was not recorded."
    n_test = len(summary["split"]["test"])
    printed = f"mean over {n_test} test subjects (Dice; Hausdorff distances in pixels)\n\n{format_table(summary)}"
    return (f"{took} The end of what it printed (preset `{summary['preset']}`, fraction "
            f"{summary['fraction']:g}, seed {summary['seed']}; made by `scripts/readme_results.py` from "
            f"`{shown(folder)}`):\n\n```text\n{printed}\n```")


def seeds_block(root: Path) -> str:
    """``segreg-lite summary`` of the main command's runs over seeds (one run folder per seed in ``root``)."""
    folders = sorted(p.parent for p in Path(root).glob("*/results.json"))
    if not folders:
        raise FileNotFoundError(f"no finished run folder (*/results.json) in {root}")
    summaries = load_results(folders)
    seeds = ", ".join(str(s["seed"]) for s in summaries)
    extra = sorted({m for s in summaries for m in s["methods"]} - set(DEFAULT_METHODS))
    added = (f", each folder run again with `--methods {','.join([*DEFAULT_METHODS, *extra])}` to add "
             f"{', '.join(f'`{m}`' for m in extra)}") if extra else ""
    return (f"The same command over seeds {seeds}{added} (`segreg-lite summary` of one run folder per seed, as "
            f"above; made by `scripts/readme_results.py` from `{shown(root)}`):\n\n```text\n{format_summary(summaries)}\n```")


def test_block(path: Path = TEST_TIMES) -> str:
    """How long ``make test`` took, part by part, as ``scripts/time_tests.py`` recorded it."""
    if not path.exists():
        return "The time of `make test` was not recorded (`python scripts/time_tests.py` records it)."
    t = read_json(path, "test times")
    parts = t["parts"]
    return (f"`make test` took {t['total'] / 60:.0f} min on a {t['machine']} ({t['date']}): unit tests "
            f"{parts['unit'] / 60:.1f} min, the chapters in smoke mode {parts['notebooks'] / 60:.1f} min, the book "
            f"build {parts['book'] / 60:.1f} min; creating `.venv` the first time comes on top. Measured by "
            f"`scripts/time_tests.py` (`{shown(path)}`).")


def replace_block(text: str, start: str, end: str, block: str) -> str:
    head, rest = text.split(start)
    tail = rest.split(end)[1]
    return f"{head}{start}\n{block}\n{end}{tail}"


def has_markers(text: str, start: str, end: str) -> bool:
    return text.count(start) == 1 and text.count(end) == 1 and text.index(start) < text.index(end)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=SHIPPED_RESULTS / "sweep", help="the sweep's root folder")
    parser.add_argument("--main", type=Path, default=SHIPPED_RESULTS / "main", help="the make main run folder")
    parser.add_argument("--seeds", type=Path, default=SHIPPED_RESULTS / "main-seeds",
                        help="a folder of make main's runs, one per seed")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    if not has_markers(text, START, END):
        print(f"{args.readme}: needs one {START!r} line followed by one {END!r} line", file=sys.stderr)
        return 1
    try:
        text = replace_block(text, START, END, results_block(args.root))
        optional = [(MAIN_START, MAIN_END, lambda: main_block(args.main)),
                    (SEEDS_START, SEEDS_END, lambda: seeds_block(args.seeds)),
                    (TEST_START, TEST_END, test_block)]
        for start, end, block in optional:
            if start in text or end in text:
                if not has_markers(text, start, end):
                    print(f"{args.readme}: needs one {start!r} line followed by one {end!r} line", file=sys.stderr)
                    return 1
                text = replace_block(text, start, end, block())
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    write_text(args.readme, text)
    print(f"wrote the results of {shown(args.root)} into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
