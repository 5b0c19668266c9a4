#!/usr/bin/env python
"""Check the built book's HTML for what a warning-free build can still get wrong.

``jupyter-book build -W`` fails on Sphinx warnings, but three faults reach the reader without
one. This script reads ``_build/html/<page>.html`` for every page in ``_toc.yml`` and fails
(exit status 1, one line per fault naming the page and the offending text) when:

- **a computed table renders as text**: a paragraph or list item holding a Markdown table's
  delimiter row (``|---|---|``; Sphinx's smart quotes turn the dashes into ``—``/``–``). That is
  what a cell's Markdown table becomes when myst-nb renders it as CommonMark, or when a ``|``
  inside a cell splits the row;
- **a MyST role shows as raw text**: ``{glue:text}``, ``{cite}``, ``{doc}``, ``{ref}``,
  ``{numref}`` ... in the page's text, outside code and math (a role in a Markdown output, or in
  text Sphinx did not parse as MyST);
- **an output renders blank**: a widget view whose widget state is not stored in the page (the
  static book has no kernel to draw it), an output area with nothing visible in it, or a text
  output holding only white space.

    python scripts/check_book.py                    # after jupyter-book build . (the Makefile's book target)
    python scripts/check_book.py --html /tmp/_build/html

Uses BeautifulSoup, which jupyter-book installs (through pydata-sphinx-theme).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml
from bs4 import BeautifulSoup, NavigableString, Tag

ROOT = Path(__file__).resolve().parent.parent

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

# Text in these elements is shown as typed, on purpose (code, math, scripts).
LITERAL_TAGS = {"pre", "code", "kbd", "samp", "script", "style", "textarea", "math", "svg"}
LITERAL_CLASSES = {"math", "highlight", "MathJax", "mjx-container"}

# A delimiter row of a pipe table: cells of dashes (smart quotes make them em or en dashes),
# optional colons, separated by pipes.
_DELIMITER_ROW = re.compile(r"^\s*\|?\s*:?[-\u2014\u2013]+:?\s*(\|\s*:?[-\u2014\u2013]+:?\s*)*\|?\s*$")

# Role names MyST knows (Sphinx's, sphinxcontrib-bibtex's, myst-nb's); ``{name}`` of one of them
# in the text is a role that was never parsed. Any other ``{name}`` counts only when a backtick or
# inline code follows it, as in ``{name}`content```.
KNOWN_ROLES = {
    "glue", "cite", "doc", "ref", "numref", "eq", "term", "download", "abbr", "sub", "sup",
    "math", "any", "keyword", "option", "envvar", "token", "external", "footcite", "py", "func",
    "class", "meth", "mod", "attr", "obj", "data", "exc", "rst", "dfn", "guilabel", "menuselection",
    "file", "samp", "program", "pep", "rfc", "index", "u", "role",
}
_ROLE = re.compile(r"\{([A-Za-z][\w.+-]*)(:[\w.+-]+)*\}")


def toc_pages(toc: Path) -> list[str]:
    """The documents of a Jupyter Book ``_toc.yml`` (``root`` and every ``file``), extension dropped."""
    pages: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    pages.append(re.sub(r"\.(ipynb|md|rst)$", "", str(node[key])))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key) or []:
                    walk(child)

    walk(yaml.safe_load(toc.read_text()))
    return pages


def _is_literal(node: Tag | NavigableString) -> bool:
    """True when ``node`` lies inside code, math or a script (its text is shown as typed)."""
    for parent in [node, *node.parents] if isinstance(node, Tag) else node.parents:
        if parent.name in LITERAL_TAGS:
            return True
        if LITERAL_CLASSES.intersection(parent.get("class") or []):
            return True
    return False


def _short(text: str, width: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def text_tables(soup: BeautifulSoup) -> Iterator[str]:
    """Markdown tables that came out as text: a paragraph or list item with a delimiter row."""
    for block in soup.find_all(["p", "li", "dd", "td", "th"]):
        if _is_literal(block):
            continue
        lines = block.get_text().splitlines()
        for i, line in enumerate(lines):
            if "|" in line and _DELIMITER_ROW.match(line):
                header = lines[i - 1] if i else line
                yield f"computed table rendered as text: {_short(header)!r}"
                break


def raw_roles(soup: BeautifulSoup) -> Iterator[str]:
    """MyST roles left as raw text (``{glue:text}``, ``{cite}``, ...) outside code and math."""
    for string in soup.find_all(string=True):
        if type(string) is not NavigableString:
            continue  # comments, doctypes, CDATA
        if _is_literal(string):
            continue
        for match in _ROLE.finditer(string):
            name = match.group(1)
            after = string[match.end():]
            nxt = string.next_sibling if not after.strip() else None
            followed_by_code = after.startswith("`") or (isinstance(nxt, Tag) and nxt.name == "code")
            if name in KNOWN_ROLES or followed_by_code:
                context = string[max(0, match.start() - 30): match.end() + 40]
                if not after.strip() and isinstance(nxt, Tag):
                    context += nxt.get_text()
                yield f"MyST role shown as raw text: {_short(context)!r}"


def source_links(soup: BeautifulSoup) -> Iterator[str]:
    """Links to a chapter's source (``rounds.ipynb``, ``references.md#...``) instead of its page:
    what a computed paragraph's link becomes unless ``_ext/book_links.py`` rewrites it."""
    for a in soup.find_all("a", href=True):
        href = a["href"]
        # _sources/: the theme's "download the source" buttons, which the build does copy
        if "://" not in href and "_sources/" not in href and re.match(r"^[\w./-]+\.(ipynb|md)(#.*)?$", href):
            yield f"link to a source file the built book lacks: {href!r} ({_short(a.get_text(), 40)!r})"


def _stored_widget_ids(soup: BeautifulSoup) -> set[str]:
    ids: set[str] = set()
    for script in soup.find_all("script", attrs={"type": WIDGET_STATE}):
        try:
            ids.update((json.loads(script.string or "{}").get("state") or {}).keys())
        except json.JSONDecodeError:
            pass
    return ids


_MEDIA = ["img", "svg", "video", "audio", "iframe", "canvas", "object", "embed", "table", "math"]


def blank_outputs(soup: BeautifulSoup) -> Iterator[str]:
    """Outputs that show nothing: widget views without stored state, empty output areas."""
    stored = _stored_widget_ids(soup)
    drawn: set[int] = set()  # the output areas holding a widget the page can draw
    for script in soup.find_all("script", attrs={"type": WIDGET_VIEW}):
        try:
            model_id = json.loads(script.string or "{}").get("model_id", "?")
        except json.JSONDecodeError:
            model_id = "?"
        area = script.find_parent("div", class_="cell_output")
        if model_id in stored:
            if area is not None:
                drawn.add(id(area))
            continue
        cell = script.find_parent("div", class_="cell")
        source = cell.find("div", class_="cell_input") if cell else None
        shown = f" (cell: {_short(source.get_text(), 80)!r})" if source else ""
        yield f"widget view {model_id} has no stored widget state and renders blank{shown}"
    for area in soup.find_all("div", class_="cell_output"):
        if id(area) in drawn or area.get_text(strip=True) or area.find(_MEDIA):
            continue
        if area.find("script", attrs={"type": WIDGET_VIEW}):
            continue  # reported above
        cell = area.find_parent("div", class_="cell")
        source = cell.find("div", class_="cell_input") if cell else None
        yield f"empty output area (cell: {_short(source.get_text() if source else '?', 80)!r})"
    for output in soup.find_all("div", class_="output"):
        if output.get_text(strip=True) or output.find(_MEDIA):
            continue
        if output.find("script", attrs={"type": WIDGET_VIEW}):
            continue
        kind = " ".join(c for c in output.get("class", []) if c != "output")
        yield f"blank output ({kind or 'output'}): {_short(str(output), 80)!r}"


def check_html(html: str) -> list[str]:
    """Every fault found in one page's HTML, as messages (empty when the page is fine)."""
    soup = BeautifulSoup(html, "html.parser")
    return [*text_tables(soup), *raw_roles(soup), *blank_outputs(soup), *source_links(soup)]


def check_book(html_dir: Path, toc: Path) -> list[str]:
    """Faults of every page in ``toc``, each prefixed with the page's path under ``html_dir``."""
    problems = []
    for page in toc_pages(toc):
        path = html_dir / f"{page}.html"
        if not path.exists():
            problems.append(f"{page}.html: missing from {html_dir} (build the book first)")
            continue
        problems += [f"{page}.html: {p}" for p in check_html(path.read_text(encoding="utf-8"))]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built HTML folder")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml", help="the book's table of contents")
    args = parser.parse_args(argv)
    problems = check_book(args.html, args.toc)
    for problem in problems:
        print(problem, file=sys.stderr)
    pages = len(toc_pages(args.toc))
    if problems:
        print(f"check_book: {len(problems)} fault(s) in the built book ({args.html})", file=sys.stderr)
        return 1
    print(f"check_book: {pages} page(s) fine: tables render as tables, no raw roles, no blank outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
