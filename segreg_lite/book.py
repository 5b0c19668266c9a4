"""Helpers the book's chapters import: smoke mode, Colab detection, glue, showing library source.

Every chapter follows one contract (see ``book/intro.ipynb``): a Colab-only install cell, a
papermill ``parameters`` cell with the full settings, then a cell that shrinks the work when
:data:`SMOKE` is on. This module holds the little that contract needs, so that no chapter
re-implements it:

- :data:`SMOKE` is read once from the environment variable ``SEGREG_SMOKE`` (``1`` or ``true``,
  set by the notebook tests and by ``scripts/run_chapters.py --smoke``).
- :func:`glue` records a computed value for the book's prose (``{glue:text}`name```) through
  ``myst_nb.glue`` and prints it as one line ``name = value``, so that a reader without myst-nb
  (Colab, Binder, GitHub's notebook view) sees every number the prose relies on.
- :func:`show_table` displays rows as a Markdown table (no pandas needed).
- :func:`show_source` displays the package's own source of a function or class, so the book shows
  library code from the library and never a copy of it.
- :func:`run_time` / :func:`show_run_time` say how long a chapter takes, from the times that
  ``scripts/run_chapters.py`` measured and stored in ``segreg_lite/data/chapter_times.json``
  (shipped with the package, so Colab reads them too).

IPython and myst-nb are imported inside the functions: importing this module only reads one
environment variable. Method: Li et al., arXiv 2502.03229 (ISBI 2025).
"""
from __future__ import annotations

import inspect
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

__all__ = ["SMOKE", "in_colab", "glue", "run_time", "show_run_time", "show_source", "show_table"]


#: True when the chapters should run a tiny version of their work (tests, quick checks).
SMOKE: bool = os.environ.get("SEGREG_SMOKE", "").strip().lower() in {"1", "true"}


#: Where scripts/run_chapters.py stores each chapter's measured wall time (full and smoke runs).
TIMES_FILE = Path(__file__).resolve().parent / "data" / "chapter_times.json"


def in_colab() -> bool:
    """True inside a Google Colab kernel (which imports ``google.colab`` at start-up)."""
    return "google.colab" in sys.modules


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for myst-nb's ``{glue:...}`` roles, and show it in the output.

    The book is built from the outputs saved in the notebooks, so the glued value must be
    computed in a run made by papermill. myst-nb stores it in an output that only the book reads
    (Colab, Binder and GitHub show nothing of it), so the value is also printed as one plain line
    ``name = value``: every number the prose relies on stands in a cell output wherever the
    notebook is read. With ``display=True`` the value itself is displayed instead (by myst-nb, or
    the ordinary way where myst-nb is not installed) and no line is printed. Returns None, so a
    cell that ends with a glue shows no stray repr of the value.
    """
    if not display:
        print(f"{name} = {value}")
    try:
        from myst_nb import glue as _myst_glue
    except ImportError:
        if display:
            from IPython.display import display as _display

            _display(value)
        return
    _myst_glue(name, value, display=display)


def _source_label(obj: Any) -> str:
    """``module.qualname (path, line N)`` for the caption of :func:`show_source`."""
    obj = inspect.unwrap(obj)  # a decorated function's own file, not the decorator's
    path = Path(inspect.getsourcefile(obj) or "?")
    root = Path(__file__).resolve().parent.parent  # the folder that holds segreg_lite/
    try:
        shown = path.resolve().relative_to(root).as_posix()
    except ValueError:
        shown = path.name
    _, line = inspect.getsourcelines(obj)
    name = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
    return f"`{obj.__module__}.{name}` ({shown}, line {line})"


def show_source(obj: Any) -> None:
    """Display the source of a function, class or method as a highlighted Markdown code block.

    The source is read from the installed package at run time (``inspect.getsource``), so the
    notebook output always matches the library that produced the chapter's numbers.
    """
    # Decorators such as torch.no_grad() wrap the function with functools.wraps: read the
    # function itself (its file and line, not torch's _contextlib.py).
    obj = inspect.unwrap(obj)
    try:
        source = inspect.getsource(obj)
    except (TypeError, OSError) as err:
        raise TypeError(f"show_source: no Python source for {obj!r} ({err})") from err
    # A fence longer than any backtick run inside the source, so a docstring cannot close it.
    longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
    fence = "`" * max(3, longest + 1)
    from IPython.display import Markdown, display

    code = textwrap.dedent(source).rstrip()  # methods come indented
    display(Markdown(f"{_source_label(obj)}:\n\n{fence}python\n{code}\n{fence}"))


def show_table(rows: list[list[Any]], headers: list[str], floatfmt: str = ".3f") -> None:
    """Display rows as a Markdown table (renders in Jupyter, Colab and the static book).

    The book renders it as GitHub-flavoured Markdown (``nb_render_markdown_format: gfm`` in
    ``_config.yml``). A ``|`` inside a cell (``std log|J|``) is escaped, or it would split the cell
    and the whole table would come out as a paragraph of text.
    """
    from IPython.display import Markdown, display

    def fmt(v: Any) -> str:
        text = format(v, floatfmt) if isinstance(v, float) else str(v)
        return text.replace("|", "\\|")

    headers = [fmt(h) for h in headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    display(Markdown("\n".join(lines)))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def run_time(chapter: str, times_file: str | os.PathLike | None = None) -> str:
    """One sentence on how long ``chapter`` (a notebook stem such as ``"segmentation"``) runs.

    Read from the times ``scripts/run_chapters.py`` recorded: per chapter, per mode (``"full"``,
    ``"smoke"``), the wall ``seconds``, the ``machine`` it ran on and the ``date``. A mode never
    measured is said to be so, never guessed.
    """
    import json

    path = Path(times_file) if times_file is not None else TIMES_FILE
    try:
        entry = json.loads(path.read_text()).get(chapter, {})
    except FileNotFoundError:
        entry = {}
    measured = {mode: entry.get(mode) for mode in ("full", "smoke")}
    where = {mode: f"({m['machine']}, {m['date']})" for mode, m in measured.items() if m}
    shared = len(where) == 2 and len(set(where.values())) == 1  # one machine, one day: say it once
    parts = []
    for mode, what in (("full", "at full settings"), ("smoke", "on the tests' tiny settings")):
        m = measured[mode]
        if not m:
            parts.append(f"not yet measured {what}")
        else:
            parts.append(f"{_duration(m['seconds'])} {what}" + ("" if shared else f" {where[mode]}"))
    return f"Run time: {parts[0]}, {parts[1]}" + (f" {where['full']}." if shared else ".")


def show_run_time(chapter: str) -> None:
    """Print :func:`run_time` in the cell output, where the rendered book, Colab and GitHub all show it."""
    print(run_time(chapter))
