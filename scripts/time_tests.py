#!/usr/bin/env python
"""Time ``make test`` part by part and record it, for the README's generated "make test" line.

``make test`` is three targets: ``unit`` (pytest), ``notebooks`` (every chapter under nbval in
smoke mode) and ``book`` (the Jupyter Book build with its HTML check). This script runs each
with ``make`` in the repository root, once ``.venv`` exists (creating it is timed apart, as it
happens once), and writes their wall times to ``segreg_lite/data/test_times.json`` (atomically,
with the machine and the date); ``scripts/readme_results.py`` turns that file into the README's
line. A part that fails stops the script and nothing is recorded. Run it on an idle machine:
anything else running slows every part.

    python scripts/time_tests.py --machine "2-core CPU"
    python scripts/readme_results.py
"""
from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segreg_lite.io import write_json  # noqa: E402

TIMES = ROOT / "segreg_lite" / "data" / "test_times.json"
#: The targets ``make test`` runs, in its order.
PARTS = ("unit", "notebooks", "book")


def time_part(target: str, make: str = "make") -> float:
    """Wall seconds of ``make <target>``; a failure is a CalledProcessError."""
    start = time.perf_counter()
    subprocess.run([make, "-s", target], cwd=ROOT, check=True)
    return time.perf_counter() - start


def record(seconds: dict[str, float], machine: str, path: Path = TIMES) -> dict:
    """Write the parts' times, their total, the machine and today's date to ``path``."""
    entry = {"parts": {k: round(v, 1) for k, v in seconds.items()}, "total": round(sum(seconds.values()), 1),
             "machine": machine, "date": datetime.date.today().isoformat()}
    write_json(path, entry)
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machine", default="2-core CPU", help="what to call this machine in the README")
    parser.add_argument("--out", type=Path, default=TIMES)
    args = parser.parse_args(argv)
    subprocess.run(["make", "-s", "install"], cwd=ROOT, check=True)  # .venv, once; not part of the timing
    seconds = {}
    for part in PARTS:
        print(f"make {part} ...", flush=True)
        try:
            seconds[part] = time_part(part)
        except subprocess.CalledProcessError as err:
            print(f"make {part} failed (exit {err.returncode}): nothing recorded", file=sys.stderr)
            return 1
        print(f"make {part}: {seconds[part]:.0f} s", flush=True)
    entry = record(seconds, args.machine, args.out)
    print(f"make test: {entry['total'] / 60:.1f} min in all; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
