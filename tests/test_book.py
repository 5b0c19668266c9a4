"""The chapter contract, checked on every chapter in _toc.yml, and the results runner's cleaning."""
import ast
import importlib.util
import json
from pathlib import Path

import nbformat
import papermill
import pytest
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("run_chapters", ROOT / "scripts" / "run_chapters.py")
run_chapters = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_chapters)

CHAPTERS = run_chapters.toc_chapters()


def test_toc_lists_the_chapters():
    names = [p.name for p in CHAPTERS]
    assert names[:2] == ["intro.ipynb", "data.ipynb"]
    assert all(p.exists() for p in CHAPTERS)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_contract(chapter):
    nb = nbformat.read(chapter, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "google.colab" in code[0].source and "%pip install" in code[0].source  # Colab-only install
    params = [i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one papermill parameters cell"
    assert "SMOKE" in code[params[0] + 1].source, "the cell after the parameters shrinks the work in smoke mode"
    # papermill --help-notebook lists each parameter; it skips any line holding two "=" (a comment's)
    assigned = {t.id for n in ast.parse(code[params[0]].source).body if isinstance(n, ast.Assign) for t in n.targets}
    assert set(papermill.inspect_notebook(str(chapter))) == assigned, "a parameter papermill cannot parse"
    outputs = [o for c in code for o in c.get("outputs", [])]
    assert outputs, "committed without outputs"
    assert not any(o.output_type == "error" for o in outputs)
    text = json.dumps(outputs)
    assert "settings: shrunk" not in text and "settings: full" in text, "committed outputs come from a smoke run"
    assert not any("papermill" in c.metadata for c in nb.cells), "volatile metadata not stripped"
    for cell in code:  # glue returns None: a cell that ends with one shows no stray repr of the value
        last = ast.parse(TransformerManager().transform_cell(cell.source)).body[-1:]  # magics made Python
        if last and isinstance(last[0], ast.Expr) and getattr(getattr(last[0].value, "func", None), "id", None) == "glue":
            assert not any(o.output_type == "execute_result" for o in cell.outputs), cell.source[-80:]


def test_strip_volatile_removes_run_specific_metadata():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", execution_count=7)])
    nb.metadata["papermill"] = {"duration": 3.2}
    nb.metadata["widgets"] = {"state": {}}
    nb.cells[0].metadata["papermill"] = {"start_time": "now"}
    nb.cells[0].metadata["execution"] = {"iopub.status.busy": "now"}
    out = run_chapters.strip_volatile(nb)
    assert "papermill" not in out.metadata and "widgets" not in out.metadata
    assert out.cells[0].metadata == {} and out.cells[0].execution_count == 1


def test_glue_returns_nothing_so_a_cell_ending_with_it_shows_no_repr():
    from segreg_lite.book import glue

    assert glue("answer", 42) is None
    assert glue("answer", 42, display=True) is None
