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
    # folded in Jupyter, Colab and on GitHub too, not only in the book
    assert "<details>\n<summary>Solution</summary>" in markdown
    assert ":class: dropdown" not in markdown
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


# --- issue 26: prose with computed numbers, folded solutions, citations, figures -----------------

import re  # noqa: E402

ROLE_IN_MARKDOWN = re.compile(r"\{(glue|cite|doc|ref|numref)(:[\w-]+)*\}`")


def _markdown_without_code(source: str) -> str:
    text = re.sub(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", "", source, flags=re.M | re.S)
    return re.sub(r"(?<!\})(`+)(?!`).*?(?<!`)\1(?!`)", "", text, flags=re.S)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_markdown_reads_the_same_on_github_and_colab(chapter):
    """No MyST role in the Markdown cells (GitHub and Colab show it raw), no glue, and no
    'name = value' echo lines: numbers are quoted by show_text paragraphs."""
    nb = nbformat.read(chapter, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for m in ROLE_IN_MARKDOWN.finditer(_markdown_without_code(cell.source)):
            raise AssertionError(f"cell {i}: raw role {m.group(0)!r}")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any("glue(" in c.source for c in code), "numbers go through show_text"
    streams = [o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream"]
    echoes = [line for text in streams for line in text.splitlines()
              if re.match(r"^[A-Za-z_]\w* = \S", line)]
    assert not echoes, echoes[:3]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_prose_cells_hide_their_code_and_show_their_paragraph(chapter):
    from segreg_lite.book import PROSE_CELL_METADATA

    nb = nbformat.read(chapter, as_version=4)
    prose = [c for c in nb.cells if c.cell_type == "code" and "show_text(f" in c.source
             and "remove-input" in c.metadata.get("tags", [])]
    assert prose, "a chapter writes its numbers with show_text"
    for cell in prose:
        for key, value in PROSE_CELL_METADATA.items():
            if key == "tags":
                assert set(value) <= set(cell.metadata.get("tags", []))
            else:
                assert cell.metadata.get(key) == value, (key, cell.source[:60])
        shown = [o for o in cell.outputs if "text/markdown" in o.get("data", {})]
        assert shown, f"a prose cell without its paragraph: {cell.source[:60]!r}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_figure_has_alt_text_and_a_caption(chapter):
    """myst-nb cell metadata: mystnb.image.alt and mystnb.figure.caption on every figure, whose
    cell shows the figure alone (myst-nb would wrap every display output in the figure)."""
    nb = nbformat.read(chapter, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        shown = [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]
        if not any("image/png" in o.get("data", {}) for o in shown):
            continue
        meta = cell.metadata.get("mystnb", {})
        assert meta.get("image", {}).get("alt"), f"cell {i}: no alt text"
        assert len(shown) == 1, f"cell {i}: a figure cell holds other displays too"
        figure = meta.get("figure", {})
        assert figure.get("caption") and figure.get("name"), f"cell {i}: no caption"


def _bib_entries():
    from pybtex.database import parse_file

    return parse_file(str(ROOT / "references.bib")).entries


def _citations():
    spec = importlib.util.spec_from_file_location("book_citations", ROOT / "_ext" / "book_citations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CITE_LINK = re.compile(r"\[([^\]]+)\]\(references\.md#cite-([\w-]+)\)")


def test_citation_links_name_their_entry():
    """Every [Author et al. (2025)](references.md#cite-KEY) link names an entry of references.bib
    with the words cite_text makes of it (textual "X (2025)" or parenthetical "X, 2025")."""
    entries, cite_text = _bib_entries(), _citations().cite_text
    seen = set()
    for chapter in CHAPTERS:
        nb = nbformat.read(chapter, as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            for words, key in CITE_LINK.findall(cell.source):
                assert key in entries, f"{chapter.stem}: no entry {key!r} in references.bib"
                allowed = {cite_text(entries[key], True), cite_text(entries[key], False)}
                assert words in allowed, f"{chapter.stem}: {words!r} for {key} (expected {allowed})"
                seen.add(key)
    # the works the issue asks to cite where they are used
    assert {"avants2008syn", "wang2019aleatoric", "li2024mrregnet", "balakrishnan2019voxelmorph",
            "tarvainen2017mean", "yang2023unimatch"} <= seen


def test_author_year_labels():
    entries, module = _bib_entries(), _citations()
    assert module.cite_text(entries["li2025unified"]) == "Li et al. (2025)"
    assert module.cite_text(entries["tarvainen2017mean"], textual=False) == "Tarvainen and Valpola, 2017"
    assert module.cite_text(entries["li2024mrregnet"], textual=False) == "Li et al., 2024"  # "and others"
    labels = list(module.AuthorYearLabelStyle().format_labels([entries["fonov2011unbiased"]] * 2))
    assert labels == ["Fonov et al., 2011a", "Fonov et al., 2011b"]


def test_the_bibliography_page_is_in_the_toc():
    import yaml

    assert "book/references" in check_book.toc_pages(ROOT / "_toc.yml")
    page = (ROOT / "book" / "references.md").read_text()
    assert "```{bibliography}" in page and ":all:" in page
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["sphinx"]
    assert config["config"]["bibtex_default_style"] == "authoryear"
    assert config["config"]["bibtex_cite_id"] == "cite-{key}"


def test_show_text_displays_dedented_markdown(monkeypatch):
    from segreg_lite import book

    shown = _captured_displays(monkeypatch)
    assert book.show_text("""
        The joint method is ahead, **0.748** against 0.736.

        - one
        """) is None
    assert shown[0].data == "The joint method is ahead, **0.748** against 0.736.\n\n- one"


@pytest.mark.parametrize("a, b, kw, word", [
    (0.7654, 0.7651, {}, "ties"),  # the same as printed
    (0.702, 0.680, {}, "beats"),
    (0.607, 0.680, {}, "is below"),
    (0.7649, 0.7551, {"digits": 2}, "ties"),  # both print as 0.76
    (0.791, 0.781, {"tol": 0.012}, "ties"),
    (5, 5, {"digits": 0, "words": ("more", "as many", "fewer")}, "as many"),
    (4.2, 9.4, {"words": ("is worse than", "matches", "is better than")}, "is better than"),
])
def test_compare_takes_its_word_from_the_numbers_as_shown(a, b, kw, word):
    from segreg_lite.book import compare

    assert compare(a, b, **kw) == word


def test_signed_never_prints_minus_zero():
    from segreg_lite.book import signed

    assert (signed(0.0123), signed(-0.005), signed(-0.00001), signed(0.5, 1)) == (
        "+0.012", "-0.005", "+0.000", "+0.5")


def test_difference_is_the_one_a_reader_works_out_from_the_printed_values():
    from segreg_lite.book import difference

    # 0.7546 and 0.7524 print as 0.755 and 0.752: the sentence must say +0.003, not +0.002.
    assert (difference(0.7546, 0.7524), difference(0.7596, 0.7524), difference(0.75, 0.75)) == (
        "+0.003", "+0.008", "+0.000")
    assert difference(0.81, 0.86, 2) == "-0.05"


def test_exercise_code_reads_the_blocks_from_the_exercises_on():
    from segreg_lite.book import exercise_code

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("```python\nnot_an_exercise()\n```"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_markdown_cell("## Exercises\n\n1. Try\n\n   ```python\n   setup = 2\n   ```\n\n"
                                      "<details>\n<summary>Solution</summary>\n\n```python\nprint(x)\n```\n\n"
                                      "```bash\nmake test\n```\n\n</details>"),
        nbformat.v4.new_markdown_cell("<details>\n<summary>Solution</summary>\n\n````python\n"
                                      "s = '```'\n````\n\n</details>"),
    ])
    assert exercise_code(nb) == [(2, "setup = 2\n"), (2, "print(x)\n"), (3, "s = '```'\n")]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_solutions_are_folded_and_their_code_parses(chapter):
    """Each solution is a <details> block; the exercises' Python blocks parse (they run in the
    notebook tests, book/conftest.py)."""
    from segreg_lite.book import exercise_code

    nb = nbformat.read(chapter, as_version=4)
    exercises = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown"
                          and "<summary>Solution</summary>" in c.source)
    assert exercises.count("<details>") == exercises.count("</details>") >= 3
    for _, code in exercise_code(nb):
        ast.parse(TransformerManager().transform_cell(code))


# --- scripts/check_pages.py ----------------------------------------------------------------------

spec = importlib.util.spec_from_file_location("check_pages", ROOT / "scripts" / "check_pages.py")
check_pages = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_pages)


def test_check_pages_finds_raw_roles_and_unfolded_solutions_in_a_notebook(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("As {cite:t}`li2025unified` and {doc}`results` show, "
                                      "`{glue:text}` is how you write it."),
        nbformat.v4.new_code_cell("glue('dice', 0.7)", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="dice = 0.7\n")]),
        nbformat.v4.new_markdown_cell(":::{admonition} Solution\n:class: dropdown\nx\n:::\n\n"
                                      "<details>\n<summary>Solution</summary>\n\ny\n\n</details>"),
    ])
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    kinds = [kind for kind, _ in check_pages.check_notebook(path)]
    assert kinds.count("raw role") == 2 and kinds.count("echo") == 1
    assert kinds.count("unfolded solution") == 1


def test_check_pages_finds_echo_lines_in_the_html():
    html = ('<div class="cell_output"><div class="output stream"><pre>settings: full\n'
            'pair_dice = 0.32\n</pre></div></div>')
    assert [k for k, _ in check_pages.check_page_html(html)] == ["echo"]
    assert check_pages.check_page_html('<div class="cell_output"><pre>x: 1</pre></div>') == []


def test_check_pages_reads_the_book_style_mark_of_a_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from segreg_lite.plotting import FONT_SIZE, STYLE_MARK

    fig = plt.figure(figsize=(1, 1))
    fig.savefig(tmp_path / "marked.png", metadata=dict([STYLE_MARK]))
    fig.savefig(tmp_path / "plain.png")
    plt.close(fig)
    assert check_pages.png_style(tmp_path / "marked.png") == {"min_font_pt": FONT_SIZE, "dpi": 100}
    assert check_pages.png_style(tmp_path / "plain.png") is None
    result = {"figures": [{"src": "marked.png", "natural": 1000, "shown": 600, "alt": "a",
                           "caption": "b"}]}
    found = list(check_pages.figure_findings(result, tmp_path))
    px = FONT_SIZE * 100 / 72 * 0.6
    assert (px < 10) == bool(found)


@pytest.mark.parametrize("solution, passes", [("print(answer + 1)", True), ("print(answr)", False)])
def test_the_notebook_tests_run_the_exercise_code_after_the_chapter(tmp_path, solution, passes):
    """book/conftest.py appends one nbval item per exercise block, in the chapter's kernel: a
    solution that no longer runs fails the notebook tests."""
    import shutil
    import subprocess
    import sys

    shutil.copy(ROOT / "book" / "conftest.py", tmp_path / "conftest.py")
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("answer = 41"),
        nbformat.v4.new_markdown_cell("## Exercises\n\n1. Add one.\n\n<details>\n<summary>Solution"
                                      f"</summary>\n\n```python\n{solution}\n```\n\n</details>"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "chapter.ipynb")
    done = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "chapter.ipynb", "-q",
                           "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "Exercise code 1" in done.stdout or passes, done.stdout[-2000:]
    assert (done.returncode == 0) == passes, done.stdout[-2000:]
    assert ("2 passed" in done.stdout) == passes


@pytest.mark.parametrize("html, bad", [
    ('<p>See <a href="rounds.ipynb">the rounds</a>.</p>', True),
    ('<p><a class="reference external" href="references.md#cite-avants2008syn">Avants</a></p>', True),
    ('<p><a href="rounds.html">the rounds</a> and <a href="references.html#cite-x">x</a></p>', False),
    ('<p><a href="https://github.com/x/y/blob/main/book/rounds.ipynb">source</a></p>', False),
])
def test_a_link_to_a_chapter_source_instead_of_its_page_is_caught(html, bad):
    # A computed paragraph's links stay as written unless _ext/book_links.py rewrites them.
    problems = check_book.check_html(html)
    assert bool(problems) == bad and all(p.startswith("link to a source file") for p in problems)


def test_the_themes_download_links_to_the_sources_are_not_faults():
    assert check_book.check_html('<a href="../_sources/book/intro.ipynb">.ipynb</a>') == []
