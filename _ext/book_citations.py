"""Citations that read the same in the built book, in Colab and on GitHub.

A MyST role such as ``{cite:t}`li2025unified``` is rendered only by the built book: Colab and
GitHub show it as raw text. The chapters therefore cite with an ordinary Markdown link to the
entry on the bibliography page,

    [Li et al. (2025)](references.md#cite-li2025unified)

which every viewer shows as the words "Li et al. (2025)". This Sphinx extension (loaded by
``_config.yml``, ``sphinx.local_extensions``) makes the book agree with those words:

- the bibliography (``book/references.md``, ``{bibliography}`` with ``:all:``) labels its entries
  author-year, "[Li et al., 2025]", instead of pybtex's alpha labels ("[LFA+25]"): the style
  ``authoryear`` registered here (``bibtex_default_style``), sorted by author, year and title;
- each entry's anchor ``cite-KEY`` (``bibtex_cite_id``) is made known to MyST as an anchor of the
  bibliography page, so a link to a key that exists resolves and a link to one that does not
  fails the ``-W`` build ("local id not found").

:func:`cite_text` is the one place the words of a citation are made from a ``references.bib``
entry; the tests check every chapter's citation links against it.
"""
from __future__ import annotations

import re
from typing import Any

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle

ANCHOR_PREFIX = "cite-"


def _surname(person: Any) -> str:
    """A person's last name as plain text (braces and simple LaTeX accents dropped)."""
    text = " ".join(person.prelast_names + person.last_names)
    text = re.sub(r"\\['`^\"~=.]\{?(\w)\}?", r"\1", text)  # {\'e} -> e
    return re.sub(r"[{}]", "", text)


def author_year(entry: Any) -> tuple[str, str]:
    """``("Li et al.", "2025")`` for a pybtex entry: one surname, two joined by "and", or the
    first and "et al." for three or more."""
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(p) for p in people]
    if names[1:] and names[-1] == "others":  # "and others" in the .bib: an incomplete list
        names = names[:1] + ["others", "others"]
    if not names:
        who = entry.fields.get("title", "Anon.")
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return who, str(entry.fields.get("year", "n.d."))


def cite_text(entry: Any, textual: bool = True) -> str:
    """The words of a citation: ``Li et al. (2025)`` (textual) or ``Li et al., 2025`` (in a
    parenthesis)."""
    who, year = author_year(entry)
    return f"{who} ({year})" if textual else f"{who}, {year}"


class AuthorYearLabelStyle(BaseLabelStyle):
    """Bibliography labels ``Li et al., 2025``; a second label alike gets ``2025b``, and so on."""

    def format_labels(self, sorted_entries):
        labels = [cite_text(entry, textual=False) for entry in sorted_entries]
        seen: dict[str, int] = {}
        for label in labels:
            seen[label] = seen.get(label, 0) + 1
        count: dict[str, int] = {}
        for label in labels:
            if seen[label] == 1:
                yield label
            else:
                count[label] = count.get(label, 0) + 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[count[label] - 1]


class AuthorYearStyle(PlainStyle):
    """pybtex's plain style (sorted by author, year, title), with author-year labels."""

    default_label_style = "authoryear"


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def _note_citation_anchors(app: Any, doctree: Any) -> None:
    """On the page with the bibliography, list ``cite-KEY`` for every entry as a MyST anchor."""
    if not any(type(node).__name__ == "bibliography" for node in doctree.traverse()):
        return
    env = app.env
    domain = env.get_domain("cite")
    slugs = env.metadata[env.docname].setdefault("myst_slugs", {})
    for key in domain.bibdata.data.entries:
        anchor = ANCHOR_PREFIX + key
        slugs.setdefault(anchor, (0, anchor, cite_text(domain.bibdata.data.entries[key])))


def setup(app: Any) -> dict[str, Any]:
    app.connect("doctree-read", _note_citation_anchors)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
