"""Links in the chapters' computed paragraphs that lead where the same link in a Markdown cell does.

A paragraph that quotes computed numbers is the Markdown output of its cell
(:func:`segreg_lite.book.show_text`), and its links are written as in any Markdown cell,
``[Iterative joint rounds](rounds.ipynb)`` or ``[Avants et al., 2008](references.md#cite-avants2008syn)``,
which Jupyter, Colab and GitHub follow as they are. myst-nb renders such an output with an
isolated GitHub-flavoured parser (``nb_render_markdown_format: gfm``), which keeps every link as
an external URL: in the built book it pointed at ``rounds.ipynb``, a file the HTML does not have.
This extension (loaded by ``_config.yml``, ``sphinx.local_extensions``) rewrites such a link, a
relative one to a page of the book (``.ipynb`` or ``.md``, with or without an ``#anchor``), to
that page's HTML, as MyST does for the same link in a Markdown cell. A link to a file that is not
a page of the book is left alone.
"""
from __future__ import annotations

import posixpath
import re
from typing import Any

from docutils import nodes

_PAGE_LINK = re.compile(r"^(?P<path>[\w./-]+)\.(?:ipynb|md)(?P<anchor>#[\w.-]*)?$")


def _rewrite_page_links(app: Any, doctree: nodes.document, docname: str) -> None:
    folder = posixpath.dirname(docname)
    for ref in doctree.findall(nodes.reference):
        m = _PAGE_LINK.match(ref.get("refuri", ""))
        if m is None:
            continue
        target = posixpath.normpath(posixpath.join(folder, m.group("path")))
        if target not in app.env.found_docs:
            continue
        uri = app.builder.get_relative_uri(docname, target) + (m.group("anchor") or "")
        ref["refuri"] = uri
        ref["internal"] = True
        ref["classes"] = [c for c in ref.get("classes", []) if c != "external"]


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-resolved", _rewrite_page_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
