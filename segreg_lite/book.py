"""Helpers the book's chapters import: smoke mode, Colab detection, prose with computed numbers,
showing library source, exercise code.

Every chapter follows one contract (see ``book/intro.ipynb``): a Colab-only install cell, a
papermill ``parameters`` cell with the full settings, then a cell that shrinks the work when
:data:`SMOKE` is on. This module holds the little that contract needs, so that no chapter
re-implements it:

- :data:`SMOKE` is read once from the environment variable ``SEGREG_SMOKE`` (``1`` or ``true``,
  set by the notebook tests and by ``scripts/run_chapters.py --smoke``).
- :func:`show_text` displays a paragraph that quotes computed numbers as the Markdown output of
  its cell; the cell's input is hidden (:data:`PROSE_CELL_METADATA`), so the book, Colab, Binder
  and GitHub all show the paragraph, rendered, once, where it is read. :func:`compare` and
  :func:`signed` make the words and signs such a paragraph needs from the numbers themselves.
- :func:`glue` is the older way (``{glue:text}`name``` roles, read only by the built book, plus a
  printed ``name = value`` line for every other viewer); chapters move to :func:`show_text`.
- :func:`exercise_code` lists the Python blocks of a chapter's exercises and their folded
  solutions, which the notebook tests run after the chapter's own cells (``book/conftest.py``).
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

__all__ = [
    "SMOKE", "PROSE_CELL_METADATA", "compare", "exercise_code", "glue", "in_colab", "run_time",
    "show_run_time", "show_source", "show_table", "show_text", "signed", "difference",
]


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


#: The metadata of a cell that only writes prose (:func:`show_text`): its input is hidden in the
#: book (``remove-input``), in JupyterLab and Notebook 7 (``source_hidden``) and in Colab (a form
#: cell shows its output and folds its code), so every viewer shows the paragraph and not the
#: f-string that made it. GitHub shows the code above the rendered paragraph.
PROSE_CELL_METADATA: dict[str, Any] = {
    "tags": ["remove-input"],
    "jupyter": {"source_hidden": True},
    "cellView": "form",
}


def show_text(text: str) -> None:
    """Display ``text``, Markdown that quotes computed numbers, as the output of its cell.

    A chapter writes a paragraph whose numbers come from its run as an f-string, in a cell whose
    input is hidden (:data:`PROSE_CELL_METADATA`)::

        show_text(f\"\"\"
        The joint method {compare(joint, best)} the best baseline, {joint:.3f} against
        {best:.3f}.
        \"\"\")

    Why this and not ``{glue:text}`` roles: a role is filled in only by the built book. In Colab,
    Binder and on GitHub the reader saw the raw role in the prose and, to find the number, a
    ``name = value`` line that the cell printed for that purpose, often a dozen in a row between
    a result and the paragraph that explains it. A Markdown *output* is rendered by every viewer
    (myst-nb in the book, as GitHub-flavoured Markdown; JupyterLab, Colab, GitHub natively), so
    the paragraph and its numbers stand once, where they are read, and the sentence is written
    next to the code that computed its numbers. A paragraph without computed numbers stays a
    Markdown cell. What an output cannot hold: MyST roles and directives (write links as
    ``[text](chapter.ipynb)``) and, in the book, ``$math$``.

    The text is dedented and stripped, so a triple-quoted f-string can start on its own line.
    Returns None: a cell ending with the call shows no stray repr.
    """
    from IPython.display import Markdown, display

    display(Markdown(textwrap.dedent(text).strip()))


def compare(a: float, b: float, *, digits: int = 3, tol: float = 0.0,
            words: tuple[str, str, str] = ("beats", "ties", "is below")) -> str:
    """The word that compares ``a`` with ``b``: ``words[0]`` if above, ``words[1]`` if level,
    ``words[2]`` if below.

    The comparison is made on the numbers as the reader sees them, rounded to ``digits``
    decimals, so a sentence never says "beats" between two numbers it prints the same; ``tol``
    widens "level" to differences of at most ``tol`` (a seed-to-seed spread, say). For a
    measure where lower is better pass the words in that sense, e.g.
    ``words=("is worse than", "matches", "is better than")`` for a distance.

    >>> compare(0.7654, 0.7651), compare(0.702, 0.680), compare(0.607, 0.680, words=("", "", "trails"))
    ('ties', 'beats', 'trails')
    """
    da, db = round(float(a), digits), round(float(b), digits)
    if abs(da - db) <= tol + 0.5 * 10.0 ** -(digits + 3):  # float noise of the rounding
        return words[1]
    return words[0] if da > db else words[2]


def signed(x: float, digits: int = 3) -> str:
    """``x`` with its sign, as a difference reads: ``+0.012``, ``-0.005``, ``+0.000``."""
    text = f"{float(x):+.{digits}f}"
    return "+" + text[1:] if float(text) == 0 else text  # never "-0.000"


def difference(a: float, b: float, digits: int = 3) -> str:
    """``a - b`` as a reader works it out from the two values printed to ``digits`` decimals,
    with its sign: 0.755 and 0.752 differ by ``+0.003``, though 0.7546 - 0.7524 rounds to 0.002.

    >>> difference(0.7546, 0.7524), signed(0.7546 - 0.7524)
    ('+0.003', '+0.002')
    """
    return signed(round(float(a), digits) - round(float(b), digits), digits)


#: A fenced Python block in Markdown: ```python (or py, python3, ipython) ... ```, also indented
#: inside a list item.
_FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})[ \t]*(?:python3?|py|ipython3?)[ \t]*\n"
                    r"(?P<code>.*?)^[ ]*(?P=fence)[ \t]*$", re.M | re.S)


def exercise_code(nb: Any) -> list[tuple[int, str]]:
    """The Python blocks of a chapter's exercises, in order: ``(cell index, code)``.

    Every fenced Python block in the Markdown cells from the ``## Exercises`` heading on: the
    code a question hands the reader, and the code of each solution, folded in
    ``<details><summary>Solution</summary> ... </details>`` (which the book, Jupyter, Colab and
    GitHub all fold). The solution stays one piece of Markdown, the one source of its code and its
    explanation; the notebook tests (``book/conftest.py``) run these blocks after the chapter's
    own cells, in smoke mode, so a solution that no longer runs fails the tests. A block that is
    not meant to run is fenced as something else (```` ```bash ````, ```` ```text ````).
    ``nb`` is an ``nbformat`` notebook (or anything with ``.cells`` of dicts).
    """
    blocks: list[tuple[int, str]] = []
    started = False
    for i, cell in enumerate(nb.cells):
        if cell["cell_type"] != "markdown":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if not started:
            heading = re.search(r"^#{1,3}[ \t]+Exercises[ \t]*$", source, re.M)
            if heading is None:
                continue
            started, source = True, source[heading.end():]
        blocks += [(i, textwrap.dedent(m.group("code"))) for m in _FENCE.finditer(source)]
    return blocks


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
