"""Helpers the book's chapters import: smoke mode, Colab detection, glue, showing library source.

Every chapter follows one contract (see ``book/intro.ipynb``): a Colab-only install cell, a
papermill ``parameters`` cell with the full settings, then a cell that shrinks the work when
:data:`SMOKE` is on. This module holds the little that contract needs, so that no chapter
re-implements it:

- :data:`SMOKE` is read once from the environment variable ``SEGREG_SMOKE`` (``1`` or ``true``,
  set by the notebook tests and by ``scripts/run_chapters.py --smoke``).
- :func:`glue` records a computed value for the book's prose (``{glue:text}`name```) through
  ``myst_nb.glue``; where myst-nb is not installed (Colab, Binder) it only returns the value.
- :func:`show_table` displays rows as a Markdown table (no pandas needed).
- :func:`show_source` displays the package's own source of a function or class, so the book shows
  library code from the library and never a copy of it.

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

__all__ = ["SMOKE", "in_colab", "glue", "show_source", "show_table"]


#: True when the chapters should run a tiny version of their work (tests, quick checks).
SMOKE: bool = os.environ.get("SEGREG_SMOKE", "").strip().lower() in {"1", "true"}


def in_colab() -> bool:
    """True inside a Google Colab kernel (which imports ``google.colab`` at start-up)."""
    return "google.colab" in sys.modules


def glue(name: str, value: Any, display: bool = False) -> None:
    """Store ``value`` under ``name`` for myst-nb's ``{glue:...}`` roles.

    The book is built from the outputs saved in the notebooks, so the glued value must be
    computed in a run made by papermill. Without myst-nb (Colab, Binder) nothing is stored; with
    ``display=True`` the value is then shown the ordinary way, as myst-nb would show it. Returns
    None, so a cell that ends with a glue shows no stray repr of the value.
    """
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
    """Display rows as a Markdown table (renders in Jupyter, Colab and the static book)."""
    from IPython.display import Markdown, display

    fmt = lambda v: format(v, floatfmt) if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    display(Markdown("\n".join(lines)))
