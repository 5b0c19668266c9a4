#!/usr/bin/env python
"""Copy the small result files of finished runs into the package, where the book reads them.

    python scripts/export_results.py SRC DST [--machine TEXT] [--max-bytes 5000000]

    python scripts/export_results.py results/sweep segreg_lite/data/shipped_results/sweep
    python scripts/export_results.py results/sweep-longer segreg_lite/data/shipped_results/sweep-longer
    python scripts/export_results.py results/main segreg_lite/data/shipped_results/main

SRC is one run folder (``results.json`` inside, as ``segreg-lite run`` writes it) or a folder of
run folders (``*/results.json``, as ``segreg-lite sweep`` writes it). ``results/`` is ignored by
git, so the results chapter would otherwise have nothing to read in a fresh clone or in Colab,
where the package is pip-installed; the package ships what this script writes
(``segreg_lite.sweep.SHIPPED_RESULTS``).

What is copied, per run: ``results.json``, which holds everything the readers use
(:func:`segreg_lite.sweep.collect_sweep`, :func:`segreg_lite.report.load_results`: every
method's metrics, per-class scores, seconds and joint rounds, the config, the split), and
``results.csv``, the same table for a person browsing the repository. Checkpoints, the
per-method files, manifests and ``run.json`` stay behind. Before anything is written the copy is
read back through the same reader and must equal what the source gives, so nothing a number of
the book depends on is dropped.

Refused, with nothing written: a file that is a checkpoint (named ``.pt``/``.pth``/``.ckpt``/...,
or holding a zip or pickle, as ``torch.save`` writes them), any file but JSON and CSV, an
export over ``--max-bytes`` in all, results the reader refuses, and a DST that holds anything
but an earlier export. DST is built in a temporary folder beside it and renamed into place.

DST also gets ``export.json``: the source, each file's bytes and SHA-256, and the run times
measured from the source folders' file times (each run from its ``run.json``, written when it
starts, to its last ``methods/*.json``, written when a method finishes): the time during which
at least one run was running (``busy_minutes``) and how many ran at once at most; with
``--machine``, what the runs ran on (the files do not record it), e.g. ``--machine "2-core CPU"``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from segreg_lite.report import compute_minutes, load_results  # noqa: E402
from segreg_lite.sweep import collect_sweep  # noqa: E402

#: The files of a run folder that the readers need.
RUN_FILES = ("results.json", "results.csv")
ALLOWED_SUFFIXES = (".json", ".csv")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".npz", ".npy", ".pkl")
#: How torch.save files begin: a zip archive (torch >= 1.6) or a pickle (older, or pickled tensors).
CHECKPOINT_MAGIC = (b"PK\x03\x04", b"\x80")
EXPORT = "export.json"
FORMAT = "segreg-lite-results-export"
MAX_BYTES = 5_000_000


class ExportError(ValueError):
    """The export refuses: a checkpoint, a foreign file, too many bytes, unreadable results."""


def check_file(path: Path) -> None:
    """Refuse ``path`` unless it is a small text result: JSON or CSV, not a checkpoint."""
    name = path.name.lower()
    if name.endswith(CHECKPOINT_SUFFIXES):
        raise ExportError(f"{path}: a checkpoint or array file; the export copies results (JSON, CSV) only")
    if not name.endswith(ALLOWED_SUFFIXES):
        raise ExportError(f"{path}: not JSON or CSV; the export copies results only")
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(CHECKPOINT_MAGIC):
        raise ExportError(f"{path}: holds a zip or pickle, as torch.save writes checkpoints; "
                          "the export copies results only")


def run_folders(src: Path) -> tuple[list[Path], bool]:
    """The run folders under ``src`` and whether ``src`` is a sweep (a folder of run folders)."""
    if not src.is_dir():
        raise ExportError(f"{src}: not a folder (give a run folder or a sweep's root)")
    if (src / "results.json").exists():
        return [src], False
    runs = sorted(p.parent for p in src.glob("*/results.json"))
    if not runs:
        raise ExportError(f"{src}: no results.json in it or in its subfolders: not a finished run or sweep")
    return runs, True


def read_back(folder: Path, sweep: bool) -> Any:
    """What the readers get from ``folder``: collect_sweep for a sweep, load_results for a run."""
    try:
        return collect_sweep(folder) if sweep else load_results([folder])
    except (FileNotFoundError, ValueError) as err:
        raise ExportError(f"the results cannot be read back: {err}") from None


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def run_times(runs: list[Path]) -> dict[str, Any] | None:
    """When the runs ran, from their files' modification times (None without ``run.json``s).

    A run starts when ``run.json`` is written and has ended when its last ``methods/*.json`` is;
    ``busy_minutes`` is the length of the union of those intervals (a sweep stopped and resumed
    later does not count the pause) and ``runs_at_once`` the most intervals that overlap.
    """
    spans = []
    for run in runs:
        ends = [_mtime(p) for p in (run / "methods").glob("*.json")]
        if not (run / "run.json").exists() or not ends:
            return None
        spans.append((_mtime(run / "run.json"), max(ends)))
    busy, reach = 0.0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            busy += end - start
            reach = end
        elif end > reach:
            busy += end - reach
            reach = end
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    iso = lambda t: dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")  # noqa: E731
    return {
        "first_start": iso(min(s for s, _ in spans)),
        "last_end": iso(max(e for _, e in spans)),
        "busy_minutes": round(busy / 60, 2),
        "runs_at_once": most,
        "how": "from the source's file times: each run from its run.json (written when it starts) "
               "to its last methods/*.json (written when a method finishes)",
    }


def _canonical(results: Any) -> str:
    """Results as comparable text (NaN, as in a registration-free method's folding, != itself)."""
    return json.dumps(results, sort_keys=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shown(path: Path) -> str:
    path = path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.as_posix()


def _check_destination(dst: Path) -> None:
    """DST may be absent, empty, or an earlier export holding only the files it lists."""
    if not dst.exists():
        return
    if not dst.is_dir():
        raise ExportError(f"{dst}: exists and is not a folder")
    held = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    if not held:
        return
    try:
        listed = json.loads((dst / EXPORT).read_text())
        ours = listed.get("format") == FORMAT and set(held) <= {EXPORT, *listed["files"]}
    except (OSError, ValueError, KeyError, AttributeError):
        ours = False
    if not ours:
        raise ExportError(f"{dst}: holds files that are not an earlier export of this script; "
                          "choose another folder or empty it first")


def export(src: str | os.PathLike, dst: str | os.PathLike, max_bytes: int = MAX_BYTES,
           machine: str | None = None) -> dict[str, Any]:
    """Copy the results under ``src`` into ``dst`` (see the module docstring); return export.json."""
    src, dst = Path(src), Path(dst)
    runs, sweep = run_folders(src)
    plan = []
    for run in runs:
        for name in RUN_FILES:
            path = run / name
            if path.exists():
                check_file(path)
                plan.append((path, path.relative_to(src).as_posix()))
    total = sum(p.stat().st_size for p, _ in plan)
    if total > max_bytes:
        raise ExportError(f"{src}: the export would hold {total} bytes, over the limit of {max_bytes}")
    expected = read_back(src, sweep)
    _check_destination(dst)

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.export-", dir=dst.parent))
    try:
        for path, rel in plan:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp / rel)
        if _canonical(read_back(tmp, sweep)) != _canonical(expected):
            raise ExportError(f"{tmp}: the copy reads back differently from {src}")
        collected = expected if sweep else {expected[0]["fraction"]: expected}
        record = {
            "format": FORMAT,
            "source": _shown(src),
            "kind": "sweep" if sweep else "run",
            "runs": [run.relative_to(src).as_posix() or "." for run in runs],
            "compute_minutes": round(compute_minutes(collected), 2),
            "timing": run_times(runs),
            "machine": machine,
            "files": {rel: {"bytes": (tmp / rel).stat().st_size, "sha256": _sha256(tmp / rel)} for _, rel in plan},
        }
        (tmp / EXPORT).write_text(json.dumps(record, indent=2) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700
        old = None
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
            os.replace(dst, old / dst.name)
        os.replace(tmp, dst)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="a run folder or a sweep's root")
    parser.add_argument("dst", type=Path,
                        help="where the export goes (e.g. segreg_lite/data/shipped_results/sweep)")
    parser.add_argument("--machine", default=None, help="what the runs ran on, e.g. '2-core CPU'")
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES, help=f"refuse bigger exports (default {MAX_BYTES})")
    args = parser.parse_args(argv)
    try:
        record = export(args.src, args.dst, args.max_bytes, args.machine)
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    size = sum(f["bytes"] for f in record["files"].values())
    timing = record["timing"]
    ran = (f"; ran {timing['busy_minutes']:.1f} min wall, at most {timing['runs_at_once']} run(s) at once"
           if timing else "")
    print(f"exported {len(record['runs'])} run(s), {len(record['files'])} files, {size} bytes, "
          f"from {record['source']} to {_shown(args.dst)} ({record['compute_minutes']:.1f} min of compute{ran})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
