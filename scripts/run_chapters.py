#!/usr/bin/env python
"""Re-execute the book's chapters with papermill and store their outputs: the "results" target.

The book renders the outputs saved in its notebooks (``execute_notebooks: "off"``), so this script
is how those outputs are made. Each chapter listed in ``_toc.yml`` (or named on the command line)
runs top to bottom in a fresh ``python3`` kernel, at the full settings of its ``parameters`` cell,
with the repository root as working directory. The executed notebook then loses the metadata
that changes on every run (papermill's timings and status, cell execution timestamps, widget
state), its execution counts are renumbered 1, 2, 3, ..., and it replaces the chapter atomically,
so a regeneration diffs cleanly against the last one.

    python scripts/run_chapters.py                          # every chapter, in place
    python scripts/run_chapters.py book/data.ipynb -p n_subjects 500
    python scripts/run_chapters.py --smoke                  # SEGREG_SMOKE=1, into a temporary folder

``-p NAME VALUE`` goes to every selected chapter whose ``parameters`` cell defines NAME; VALUE is
read as a Python literal when it is one (``500``, ``0.1``, ``True``, ``[1, 2]``) and as a string
otherwise. ``--smoke`` never writes over a chapter. A chapter that fails stops the run; the
committed notebook is left as it was and the executed copy, traceback included, is kept for
reading. Method: Li et al., arXiv 2502.03229 (ISBI 2025).
"""
from __future__ import annotations

import argparse
import ast
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
import papermill
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the working tree's package, the one the book documents

from segreg_lite.io import atomic_path  # noqa: E402

KERNEL = "python3"
INJECTED_TAG = "injected-parameters"  # papermill's tag for the cell holding -p values


def toc_chapters(toc: Path = ROOT / "_toc.yml") -> list[Path]:
    """The notebooks listed in a Jupyter Book ``_toc.yml``, in reading order (Markdown pages skipped)."""
    entries: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "root" in node:
                entries.append(node["root"])
            if "file" in node:
                entries.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key) or []:
                    walk(child)

    walk(yaml.safe_load(toc.read_text()))
    chapters = []
    for entry in entries:
        named = Path(entry).suffix in {".ipynb", ".md"}
        candidates = [ROOT / entry] if named else [ROOT / f"{entry}.ipynb", ROOT / f"{entry}.md"]
        path = next((p for p in candidates if p.exists()), None)
        if path is None:
            raise SystemExit(f"{toc.name} lists {entry!r}, but no {' or '.join(p.name for p in candidates)} exists")
        if path.suffix == ".ipynb":
            chapters.append(path)
    return chapters


def parse_value(text: str) -> Any:
    """A ``-p`` value: a Python literal when it parses as one, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def strip_volatile(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what changes on every run (timings, papermill status, widget state); renumber counts."""
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    count = 0
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.metadata.get("tags") == []:  # papermill adds empty tag lists
            del cell.metadata["tags"]
        if INJECTED_TAG in cell.metadata.get("tags", []):
            cell["id"] = INJECTED_TAG  # papermill draws a random id for it each run
        if cell.cell_type != "code":
            continue
        if cell.get("execution_count") is not None:
            count += 1
            cell.execution_count = count
        for output in cell.get("outputs", []):
            if "execution_count" in output:
                output.execution_count = cell.execution_count
    return nb


def run_chapter(chapter: Path, parameters: dict[str, Any], work: Path, verbose: bool) -> nbformat.NotebookNode:
    """Execute ``chapter`` into ``work``; return the executed notebook with volatile metadata stripped.

    Raises papermill's ``PapermillExecutionError`` (or the kernel's failure) when a cell fails; the
    partial executed copy is then left at ``work / chapter.name``.
    """
    nb = nbformat.read(chapter, as_version=4)
    # A stale injected cell from an earlier `-p` run would silently override the full settings.
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.metadata.get("tags", [])]
    source = work / f"input-{chapter.name}"
    nbformat.write(nb, source)
    executed = work / chapter.name
    papermill.execute_notebook(
        str(source),
        str(executed),
        parameters=parameters or None,
        kernel_name=KERNEL,
        cwd=str(ROOT),
        progress_bar=False,
        log_output=verbose,
    )
    return strip_volatile(nbformat.read(executed, as_version=4))


def shown_path(path: Path) -> str:
    """``path`` relative to the repository root where it lies inside it."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def resolve_chapters(names: list[str]) -> list[Path]:
    """Chapters named on the command line (relative to the current folder or the repo root)."""
    if not names:
        return toc_chapters()
    chapters = []
    for name in names:
        path = next((p for p in (Path(name), ROOT / name) if p.exists()), None)
        if path is None or path.suffix != ".ipynb":
            raise SystemExit(f"not a notebook: {name!r} (give paths like book/intro.ipynb)")
        chapters.append(path.resolve())
    return chapters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="notebooks to run (default: every chapter in _toc.yml)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override a parameter in every chapter that defines it")
    parser.add_argument("--smoke", action="store_true",
                        help="set SEGREG_SMOKE=1 and write into --out instead of over the chapters")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for --smoke outputs (default: a new temporary folder)")
    parser.add_argument("-v", "--verbose", action="store_true", help="stream each cell's output")
    args = parser.parse_args(argv)

    chapters = resolve_chapters(args.chapters)
    overrides = {name: parse_value(value) for name, value in args.parameter}
    declared = {c: set(papermill.inspect_notebook(str(c))) for c in chapters}
    unknown = sorted(set(overrides) - set().union(*declared.values()))
    if unknown:
        raise SystemExit(f"no selected chapter has a parameter named {unknown}; "
                         f"parameters: { {shown_path(c): sorted(p) for c, p in declared.items()} }")

    # The kernel inherits this environment: smoke mode on only when asked for, and the working
    # tree's package first on the path.
    if args.smoke:
        os.environ["SEGREG_SMOKE"] = "1"
        out_dir = args.out or Path(tempfile.mkdtemp(prefix="segreg-smoke-"))
        out_dir.mkdir(parents=True, exist_ok=True)
        if any(c.parent == out_dir.resolve() for c in chapters):
            raise SystemExit(f"--out {out_dir} holds the chapters themselves; smoke runs never write over them")
        print(f"smoke mode: outputs go to {out_dir}, the chapters are not touched")
    else:
        if os.environ.pop("SEGREG_SMOKE", None) is not None:
            print("note: ignoring SEGREG_SMOKE from the environment (full run; use --smoke for a quick check)")
        out_dir = None
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

    start = time.perf_counter()
    for i, chapter in enumerate(chapters, 1):
        name = shown_path(chapter)
        params = {k: v for k, v in overrides.items() if k in declared[chapter]}
        shown = " ".join(f"{k}={v!r}" for k, v in params.items())
        print(f"[{i}/{len(chapters)}] {name}{' with ' + shown if shown else ''} ...", flush=True)
        t0 = time.perf_counter()
        work = Path(tempfile.mkdtemp(prefix=f"segreg-run-{chapter.stem}-"))
        try:
            nb = run_chapter(chapter, params, work, args.verbose)
        except papermill.PapermillExecutionError as err:
            print(f"FAILED {name} after {time.perf_counter() - t0:.1f} s: cell [{err.exec_count}] raised "
                  f"{err.ename}: {err.evalue}\n{name} is unchanged; the executed copy with the traceback "
                  f"is {work / chapter.name}", file=sys.stderr)
            return 1
        except Exception as err:  # kernel died, timeout, unreadable notebook: same contract
            print(f"FAILED {name} after {time.perf_counter() - t0:.1f} s: {type(err).__name__}: {err}\n"
                  f"{name} is unchanged; work folder {work}", file=sys.stderr)
            return 1
        target = out_dir / chapter.name if out_dir else chapter
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
        with atomic_path(target) as tmp:
            nbformat.write(nb, str(tmp))
            tmp.chmod(mode)  # the temporary file is created private (0600); keep the chapter's mode
        shutil.rmtree(work)
        print(f"[{i}/{len(chapters)}] {name} done in {time.perf_counter() - t0:.1f} s -> "
              f"{shown_path(target)}", flush=True)
    print(f"{len(chapters)} chapter(s) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
