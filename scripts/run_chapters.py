#!/usr/bin/env python
"""Re-execute the book's chapters with papermill and store their outputs: the "results" target.

The book renders the outputs saved in its notebooks (``execute_notebooks: "off"``), so this script
is how those outputs are made. Each chapter listed in ``_toc.yml`` (or named on the command line)
runs top to bottom in a fresh ``python3`` kernel, at the full settings of its ``parameters`` cell,
with the repository root as working directory. The executed notebook then loses the metadata
that changes on every run (papermill's timings and status, cell execution timestamps, widget
state), its execution counts are renumbered 1, 2, 3, ..., and it replaces the chapter atomically,
so a regeneration diffs cleanly against the last one.

Widgets need a live kernel, and the static book has none: before the widget state goes, each
widget view in the outputs is replaced by plain text. A progress bar (``tqdm.auto`` becomes a
widget under papermill) becomes its final state, read from the stored widget state
(``segmenter: 100% 800/800 [04:10<00:00, 3.19it/s]``); any other widget (an ``interact`` slider)
becomes a line saying the control needs a live kernel and the static figure beside it shows the
same. Each chapter's wall time is stored in ``segreg_lite/data/chapter_times.json`` (under
``"full"``, or ``"smoke"`` for ``--smoke`` runs, with the machine and the date), where the chapter
itself reads it back (``segreg_lite.book.show_run_time``); a run with ``-p`` overrides is not
recorded, since it does not run the chapter's own settings.

    python scripts/run_chapters.py                          # every chapter, in place
    python scripts/run_chapters.py book/data.ipynb -p n_subjects 500
    python scripts/run_chapters.py --smoke                  # SEGREG_SMOKE=1, into a temporary folder
    python scripts/run_chapters.py --stamp-times            # only rewrite the run-time lines

``-p NAME VALUE`` goes to every selected chapter whose ``parameters`` cell defines NAME; VALUE is
read as a Python literal when it is one (``500``, ``0.1``, ``True``, ``[1, 2]``) and as a string
otherwise. ``--smoke`` never writes over a chapter. A chapter that fails stops the run; the
committed notebook is left as it was and the executed copy, traceback included, is kept for
reading. Method: Li et al., arXiv 2502.03229 (ISBI 2025).
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import html
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import nbformat
import papermill
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the working tree's package, the one the book documents

from segreg_lite.io import atomic_path, write_json  # noqa: E402

KERNEL = "python3"
INJECTED_TAG = "injected-parameters"  # papermill's tag for the cell holding -p values
TIMES_FILE = ROOT / "segreg_lite" / "data" / "chapter_times.json"  # read by segreg_lite.book.run_time
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # an output that shows a widget
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"  # nbclient's key in nb.metadata.widgets
LIVE_KERNEL_NOTE = ("[interactive control{names}: it needs a live kernel (Jupyter, Colab, Binder); "
                    "the static figure beside it shows the same]")


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


def _widget_text(value: str) -> str:
    """Plain text of a widget's HTML value (tqdm writes figure spaces and escapes ``<``)."""
    text = html.unescape(re.sub(r"<[^>]+>", "", value))
    text = text.replace("\u200b", "").replace("\u2007", " ").replace("\xa0", " ")
    return " ".join(text.split())


def widget_as_text(model_id: str, state: dict[str, Any]) -> str:
    """What a widget view shows, as one line of text, from the stored widget ``state``.

    ``state`` maps model ids to ``{"model_name": ..., "state": {...}}`` (nbclient's
    ``application/vnd.jupyter.widget-state+json``). A box holding a progress bar (tqdm's notebook
    bar: HTML, FloatProgress, HTML) gives its texts in order, e.g. ``segmenter: 100% 800/800
    [04:10<00:00, 3.19it/s]``, with the percentage computed from the bar when no text gives one;
    anything else gives :data:`LIVE_KERNEL_NOTE` naming its controls.
    """
    def model(mid: str) -> dict[str, Any]:
        return state.get(mid.removeprefix("IPY_MODEL_"), {})

    def leaves(mid: str, seen: frozenset = frozenset()) -> list[dict[str, Any]]:
        m = model(mid)
        if not m or mid in seen:
            return []
        children = m.get("state", {}).get("children") or []
        if not children:
            return [m]
        return [leaf for child in children for leaf in leaves(child, seen | {mid})]

    parts = leaves(model_id)
    bars = [p for p in parts if p.get("model_name", "").endswith("ProgressModel")]
    if bars:
        texts = []
        for p in parts:
            if p.get("model_name") in {"HTMLModel", "LabelModel", "HTMLMathModel"}:
                texts.append(_widget_text(str(p.get("state", {}).get("value", ""))))
        line = " ".join(t for t in texts if t)
        if "%" not in line:  # a bare progress bar: say how far it got
            st = bars[0].get("state", {})
            span = (st.get("max") or 0) - (st.get("min") or 0)
            pct = 100 * ((st.get("value") or 0) - (st.get("min") or 0)) / span if span else 0
            line = f"{line} {pct:.0f}%".strip()
        return line
    names = [p.get("state", {}).get("description") for p in parts]
    names = [n for n in names if n]
    return LIVE_KERNEL_NOTE.format(names=f" ({', '.join(names)})" if names else "")


def static_widgets(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Replace every widget-view output by plain text (see :func:`widget_as_text`).

    Run before :func:`strip_volatile` drops the widget state: a view without its state renders
    blank in the book, and tqdm's text/plain fallback is the bar's first state (``0%``). Each
    text becomes a stdout stream output where the view stood.
    """
    state = (nb.metadata.get("widgets") or {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(output)
                continue
            text = widget_as_text(view.get("model_id", ""), state)
            outputs.append(nbformat.v4.new_output("stream", name="stdout", text=text + "\n"))
        cell.outputs = outputs
    return nb


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


def keep_output_widgets_local() -> None:
    """Stop nbclient from sending Output-widget updates to the kernel while a cell runs.

    nbclient mirrors each ``ipywidgets.Output`` (``interact`` draws into one) and, for every
    output the widget captures, sends the new state back to the kernel on the shell channel, while
    it is itself waiting on that channel for the cell's reply. Now and then the reply is then never
    seen and the run hangs for good, the kernel idle (jupyter/nbclient#312, jupyter/nbconvert#2029;
    here 2 of 6 runs of a notebook of 40 ``interact`` cells, and the registration chapter in smoke
    mode). The kernel has no use for that echo in a batch run; the widget state that this script
    reads is kept on the client side as before. Patched once, for this process.
    """
    from nbclient.output_widget import OutputWidget

    if getattr(OutputWidget.sync_state, "_segreg_local", False):
        return

    def sync_state(self: OutputWidget) -> None:
        self.executor.widget_state[self.comm_id]["outputs"] = self.outputs

    sync_state._segreg_local = True  # type: ignore[attr-defined]
    OutputWidget.sync_state = sync_state


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
    keep_output_widgets_local()
    papermill.execute_notebook(
        str(source),
        str(executed),
        parameters=parameters or None,
        kernel_name=KERNEL,
        cwd=str(ROOT),
        progress_bar=False,
        log_output=verbose,
    )
    return strip_volatile(static_widgets(nbformat.read(executed, as_version=4)))


def stamp_run_time(nb: nbformat.NotebookNode, chapter: str, times_file: Path | None = None) -> int:
    """Give the cells that call ``show_run_time`` the line :func:`segreg_lite.book.run_time`
    makes now from ``times_file``; returns how many cells were stamped.

    A chapter prints its run time before the run that measures it has ended, so the executed
    output would always be one run late (or "not yet measured"). The line is the same function's
    output on the times just recorded, put where the cell's own output stood.
    """
    from segreg_lite.book import run_time

    text = run_time(chapter, times_file if times_file is not None else TIMES_FILE) + "\n"
    stamped = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and "show_run_time(" in cell.source:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
            stamped += 1
    return stamped


def write_notebook(nb: nbformat.NotebookNode, target: Path) -> None:
    """Write ``nb`` over ``target`` atomically, keeping ``target``'s file mode (0644 when new)."""
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    with atomic_path(target) as tmp:
        nbformat.write(nb, str(tmp))
        tmp.chmod(mode)  # the temporary file is created private (0600)


def describe_machine() -> str:
    """The machine the chapters run on, as the book states it: the GPU's name, or ``N-core CPU``.

    The chapters pick their device with ``device="auto"`` (cuda > mps > cpu), so this asks torch
    the same question in this process (the kernel inherits its environment).
    """
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "Apple GPU (MPS)"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cores}-core CPU"


def record_time(chapter: str, mode: str, seconds: float, machine: str,
                date: datetime.date | None = None, times_file: Path | None = None) -> dict[str, Any]:
    """Store ``chapter``'s wall time under ``mode`` (``"full"`` or ``"smoke"``) in ``times_file``
    (default :data:`TIMES_FILE`).

    The file maps chapter stems to ``{mode: {"seconds", "machine", "date"}}``; other chapters and
    the other mode are kept. Written atomically (a reader never sees half a file); returns the
    whole mapping.
    """
    if mode not in {"full", "smoke"}:
        raise ValueError(f"mode must be 'full' or 'smoke', not {mode!r}")
    times_file = Path(times_file) if times_file is not None else TIMES_FILE
    times_file.parent.mkdir(parents=True, exist_ok=True)
    with _locked(times_file.parent):  # two runs at once: neither loses the other's time
        times = json.loads(times_file.read_text()) if times_file.exists() else {}
        times.setdefault(chapter, {})[mode] = {
            "seconds": round(float(seconds), 1),
            "machine": machine,
            "date": (date or datetime.date.today()).isoformat(),
        }
        times = {name: dict(sorted(entry.items())) for name, entry in sorted(times.items())}
        write_json(times_file, times)
    return times


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on ``folder`` (flock on the folder itself: no lock file is left behind)."""
    try:
        import fcntl
    except ImportError:  # Windows: no locking, the atomic write still keeps the file whole
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


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
    parser.add_argument("--stamp-times", action="store_true",
                        help="execute nothing: rewrite each chapter's run-time line from the recorded times")
    args = parser.parse_args(argv)

    chapters = resolve_chapters(args.chapters)
    if args.stamp_times:
        for chapter in chapters:
            nb = nbformat.read(chapter, as_version=4)
            stamped = stamp_run_time(nb, chapter.stem)
            if stamped:
                write_notebook(nb, chapter)
            print(f"{shown_path(chapter)}: {stamped} run-time cell(s) stamped")
        return 0
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

    machine = describe_machine()
    run_mode = "smoke" if args.smoke else "full"
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
        seconds = time.perf_counter() - t0
        if params:
            note = "not recorded (run with -p overrides)"
        else:
            record_time(chapter.stem, run_mode, seconds, machine)
            note = f"recorded as its {run_mode} time on a {machine} in {shown_path(TIMES_FILE)}"
            stamp_run_time(nb, chapter.stem)  # the time just measured, not the previous run's
        target = out_dir / chapter.name if out_dir else chapter
        write_notebook(nb, target)
        shutil.rmtree(work)
        print(f"[{i}/{len(chapters)}] {name} done in {seconds:.1f} s -> {shown_path(target)}; {note}",
              flush=True)
    print(f"{len(chapters)} chapter(s) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
