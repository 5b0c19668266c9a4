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
    # A guide through the chapter: what it teaches, needs and costs up front; a summary and
    # exercises with folded solutions at the end; code that fits the page.
    opening = nb.cells[0].source
    assert nb.cells[0].cell_type == "markdown" and ":::{admonition} In this chapter" in opening
    assert "**You will learn**" in opening and "**You need**" in opening
    assert "show_run_time(" in code[1].source, "the run time is printed right after the Colab cell"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "## Summary" in markdown and "## Exercises" in markdown
    assert ":class: dropdown" in markdown, "exercise solutions are folded away"
    long = [line for c in code for line in c.source.splitlines() if len(line) > 90]
    assert not long, f"code lines over 90 characters: {long[:3]}"
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


def test_readme_binder_links_open_the_book_buttons_interface():
    import yaml

    interface = yaml.safe_load((ROOT / "_config.yml").read_text())["launch_buttons"]["notebook_interface"]
    readme = (ROOT / "README.md").read_text()
    links = [part.split(")")[0].split("`")[0] for part in readme.split("https://mybinder.org/")[1:]]
    assert links
    # The book's Binder button (sphinx-book-theme) opens ?urlpath=lab/tree/<path> for JupyterLab.
    prefix = "urlpath=lab/tree/" if interface == "jupyterlab" else "urlpath=tree/"
    assert all(prefix in link for link in links), links


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


# --- segreg_lite.book: glue, show_source, show_table, run_time -------------------------------------

def _captured_displays(monkeypatch):
    """Record what segreg_lite.book hands to IPython's display (it imports display at call time)."""
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    return shown


@pytest.mark.parametrize("myst_nb_importable", [True, False], ids=["with-myst-nb", "without-myst-nb"])
def test_glue_prints_the_value_so_colab_and_github_show_it(monkeypatch, capsys, myst_nb_importable):
    import sys

    from segreg_lite import book

    if not myst_nb_importable:
        monkeypatch.setitem(sys.modules, "myst_nb", None)  # import myst_nb raises ImportError
    book.glue("dice_1", "0.712")
    book.glue("n_subjects", 300)
    assert capsys.readouterr().out.splitlines() == ["dice_1 = 0.712", "n_subjects = 300"]


def test_glue_with_display_shows_the_value_itself_and_prints_no_line(monkeypatch, capsys):
    import sys

    from segreg_lite import book

    monkeypatch.setitem(sys.modules, "myst_nb", None)
    shown = _captured_displays(monkeypatch)
    book.glue("fig", 3.5, display=True)
    assert shown == [3.5]
    assert "fig =" not in capsys.readouterr().out


def test_glue_hands_the_value_to_myst_nb(monkeypatch, capsys):
    import sys
    import types

    from segreg_lite import book

    calls = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display: calls.append((name, value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    book.glue("gap", "0.05")
    book.glue("fig", 1.0, display=True)
    assert calls == [("gap", "0.05", False), ("fig", 1.0, True)]
    assert capsys.readouterr().out == "gap = 0.05\n"


@pytest.mark.parametrize("qualname", ["segreg_lite.pseudo.make_pseudo_labels", "segreg_lite.meanteacher.update_ema"])
def test_show_source_of_a_decorated_function_shows_the_function_not_the_decorator(monkeypatch, qualname):
    import importlib
    import inspect

    from segreg_lite import book

    module_name, name = qualname.rsplit(".", 1)
    module = importlib.import_module(module_name)
    fn = getattr(module, name)
    assert fn is not inspect.unwrap(fn), "no longer decorated: this test checks nothing"
    shown = _captured_displays(monkeypatch)
    book.show_source(fn)
    text = shown[0].data
    caption = text.split("\n", 1)[0]
    module_file = module_name.replace(".", "/") + ".py"
    _, line = inspect.getsourcelines(inspect.unwrap(fn))
    assert caption == f"`{qualname}` ({module_file}, line {line}):"
    assert "_contextlib" not in text
    assert f"def {name}(" in text


def test_show_table_escapes_pipes_so_the_table_stays_a_table(monkeypatch):
    from markdown_it import MarkdownIt

    from segreg_lite import book

    shown = _captured_displays(monkeypatch)
    book.show_table([["diffeomorphic", 0.12345, "a|b"]], ["field", "std log|J|", "note"])
    html = MarkdownIt("commonmark").enable("table").render(shown[0].data)  # as myst-nb's gfm renders it
    assert "<th>std log|J|</th>" in html and "<td>0.123</td>" in html and "<td>a|b</td>" in html
    assert html.count("<th>") == 3 and html.count("<td>") == 3


def test_run_time_reads_the_recorded_times(tmp_path):
    from segreg_lite.book import run_time

    times = tmp_path / "times.json"
    times.write_text(json.dumps({
        "segmentation": {"full": {"seconds": 1440.0, "machine": "2-core CPU", "date": "2025-12-01"},
                         "smoke": {"seconds": 41.6, "machine": "2-core CPU", "date": "2025-12-02"}},
        "data": {"smoke": {"seconds": 12.0, "machine": "NVIDIA H200", "date": "2025-12-03"}},
    }))
    assert run_time("segmentation", times) == (
        "Run time: 24 min at full settings (2-core CPU, 2025-12-01), "
        "42 s on the tests' tiny settings (2-core CPU, 2025-12-02).")
    same_day = {"full": {"seconds": 600.0, "machine": "2-core CPU", "date": "2025-12-01"},
                "smoke": {"seconds": 30.0, "machine": "2-core CPU", "date": "2025-12-01"}}
    times.write_text(json.dumps({"segmentation": same_day, **json.loads(times.read_text())} | {"tta": same_day}))
    assert run_time("tta", times) == "Run time: 10 min at full settings, 30 s on the tests' tiny settings (2-core CPU, 2025-12-01)."
    assert run_time("data", times) == (
        "Run time: not yet measured at full settings, 12 s on the tests' tiny settings (NVIDIA H200, 2025-12-03).")
    assert run_time("owndata", times).count("not yet measured") == 2
    assert run_time("data", tmp_path / "absent.json").count("not yet measured") == 2


def test_the_shipped_times_file_is_valid():
    from segreg_lite.book import TIMES_FILE

    if not TIMES_FILE.exists():
        pytest.skip("no chapter timed yet")
    for chapter, entry in json.loads(TIMES_FILE.read_text()).items():
        assert (ROOT / "book" / f"{chapter}.ipynb").exists(), chapter
        assert set(entry) <= {"full", "smoke"}
        for m in entry.values():
            assert set(m) == {"seconds", "machine", "date"} and m["seconds"] > 0


# --- scripts/check_book.py: the checks on the built HTML -------------------------------------------

spec = importlib.util.spec_from_file_location("check_book", ROOT / "scripts" / "check_book.py")
check_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_book)

TABLE_AS_TEXT = """<div class="cell_output docutils container">
<p>| label | class | share |
|\u2014|\u2014|\u2014|
| 0 | background | 54.1% |</p></div>"""


@pytest.mark.parametrize("html", [
    TABLE_AS_TEXT,
    "<p>| a | b |\n|---|---|\n| 1 | 2 |</p>",
    "<p>| a | b |\n| :--- | ---: |\n| 1 | 2 |</p>",
    "<p>| field | std log|J| |\n|\u2013|\u2013|\n| x | 1 |</p>",
    "<ul><li>| a | b |\n|---|---|</li></ul>",
])
def test_a_table_rendered_as_text_is_caught(html):
    problems = check_book.check_html(html)
    assert len(problems) == 1 and problems[0].startswith("computed table rendered as text: '| ")


@pytest.mark.parametrize("html", [
    "<table><tr><th>a</th></tr><tr><td>1</td></tr></table>",
    "<div class='highlight'><pre>| a | b |\n|---|---|</pre></div>",  # a table printed as text on purpose
    "<p>The pipe <code>|---|</code> starts a table.</p>",
    "<p>x | y and a dash --- here</p>",
    "<p>a line\n---\nbelow</p>",
])
def test_no_table_fault_where_there_is_none(html):
    assert check_book.check_html(html) == []


@pytest.mark.parametrize("html, shown", [
    ("<p>as in {cite}<code class='docutils literal'>Li2025</code>.</p>", "{cite}Li2025"),
    ("<p>Dice {glue:text}<code>dice_1</code> at 1%</p>", "{glue:text}dice_1"),
    ("<p>see {doc}`results` for more</p>", "{doc}`results`"),
    ("<td>{ref}<code>sec-data</code></td>", "{ref}sec-data"),
    ("<p>the {numref} role</p>", "{numref}"),
    ("<p>{myrole}<code>x</code></p>", "{myrole}x"),
])
def test_a_raw_myst_role_is_caught(html, shown):
    problems = check_book.check_html(html)
    assert len(problems) == 1 and problems[0].startswith("MyST role shown as raw text")
    assert shown in problems[0]


@pytest.mark.parametrize("html", [
    "<p>Dice <span class='pasted-text'>0.712</span> at 1%</p>",
    "<p>write <code>{glue:text}`dice_1`</code> in the prose</p>",
    "<div class='highlight'><pre>glue('x', 1)  # {glue:text}`x`</pre></div>",
    "<p><span class='math notranslate nohighlight'>\\(\\frac{a}{b}\\)</span></p>",
    "<p>a set {x} of things</p>",
    "<script>var a = {ref};</script>",
])
def test_no_role_fault_where_there_is_none(html):
    assert check_book.check_html(html) == []


VIEW = '<script type="application/vnd.jupyter.widget-view+json">{"model_id": "abc", "version_major": 2}</script>'
STATE = ('<script type="application/vnd.jupyter.widget-state+json">'
         '{"version_major": 2, "state": {"abc": {"model_name": "HBoxModel", "state": {}}}}</script>')


def _cell(outputs: str) -> str:
    return (f'<div class="cell docutils container"><div class="cell_input docutils container"><pre>'
            f'for i in tqdm(range(3)): pass</pre></div>'
            f'<div class="cell_output docutils container">{outputs}</div></div>')


@pytest.mark.parametrize("html, fault", [
    (_cell(VIEW), "widget view abc has no stored widget state and renders blank (cell: 'for i in tqdm"),
    (_cell(VIEW + '<div class="output stream"><pre>done</pre></div>'), "widget view abc has no stored"),
    (_cell(""), "empty output area (cell: 'for i in tqdm"),
    (_cell("\n  \n"), "empty output area"),
    (_cell('<div class="output stream"><pre>\n</pre></div><img src="x.png"/>'), "blank output (stream)"),
])
def test_a_blank_output_is_caught(html, fault):
    problems = check_book.check_html(html)
    assert len(problems) == 1 and problems[0].startswith(fault), problems


@pytest.mark.parametrize("html", [
    _cell(VIEW) + STATE,  # the page stores the widget's state: the widget is drawn
    _cell('<img src="fig.png" alt=""/>'),
    _cell('<div class="output stream"><pre>segmenter: 100% 800/800 [04:10]</pre></div>'),
    _cell('<div class="pst-scrollable-table-container"><table><tr><td>1</td></tr></table></div>'),
])
def test_no_blank_fault_where_the_output_shows_something(html):
    assert check_book.check_html(html) == []


def test_check_book_reads_every_page_of_the_toc(tmp_path, capsys):
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                       "  - file: book/data\n  - file: book/results.ipynb\n")
    assert check_book.toc_pages(tmp_path / "_toc.yml") == ["book/intro", "book/data", "book/results"]
    html = tmp_path / "html" / "book"
    html.mkdir(parents=True)
    (html / "intro.html").write_text("<p>fine</p>")
    (html / "data.html").write_text(TABLE_AS_TEXT)
    args = ["--html", str(tmp_path / "html"), "--toc", str(tmp_path / "_toc.yml")]
    assert check_book.main(args) == 1
    err = capsys.readouterr().err
    assert "book/data.html: computed table rendered as text: '| label | class | share |'" in err
    assert "book/results.html: missing" in err and "book/intro.html" not in err
    (html / "data.html").write_text("<table></table>")
    (html / "results.html").write_text("<p>fine</p>")
    assert check_book.main(args) == 0
