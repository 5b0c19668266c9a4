"""The notebook tests also run each chapter's exercise code (its folded solutions included).

``pytest --nbval-lax book/`` (``make notebooks``, with ``SEGREG_SMOKE=1``) makes one test item per
code cell of a chapter and runs them in one kernel. The exercises' code is Markdown (fenced blocks
inside ``<details>``, so that every viewer folds the solutions), which nbval never sees; this hook
appends one item per block, ``Exercise code 1``, ``Exercise code 2``, ..., after the chapter's
last cell, in the same kernel: a block runs with everything the chapter defined, in smoke mode,
as a reader would run it after the chapter. The blocks are read by
:func:`segreg_lite.book.exercise_code`. Outputs are not compared (the item's cell has none).
"""
from __future__ import annotations

from collections import defaultdict

import nbformat
import pytest


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    try:
        from nbval.plugin import IPyNbCell, IPyNbFile
    except ImportError:  # nbval not installed: nothing collected the notebooks either
        return
    from segreg_lite.book import exercise_code

    last_of: dict[IPyNbFile, int] = {}
    for index, item in enumerate(items):
        if isinstance(item, IPyNbCell) and isinstance(item.parent, IPyNbFile):
            last_of[item.parent] = index
    # from the end, so that inserting keeps the earlier positions valid
    for notebook, index in sorted(last_of.items(), key=lambda kv: kv[1], reverse=True):
        code_cells = sum(1 for c in notebook.nb.cells if c.cell_type == "code")
        extra = []
        for k, (cell_index, code) in enumerate(exercise_code(notebook.nb), 1):
            cell = nbformat.v4.new_code_cell(code)
            extra.append(IPyNbCell.from_parent(
                notebook, name=f"Exercise code {k} (Markdown cell {cell_index})",
                cell_num=code_cells + k - 1, cell=cell, options=defaultdict(bool, check=False)))
        items[index + 1:index + 1] = extra
