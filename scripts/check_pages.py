#!/usr/bin/env python
"""Check the book as its readers see it: the built pages at 1280 px and 400 px, and the notebooks
as GitHub and Colab show them.

``scripts/check_book.py`` reads the built HTML as text; this script also lays the pages out. It
serves ``_build/html`` on a local port, opens every chapter of ``_toc.yml`` in headless Chromium
at each window width (1280 and 400 px by default) with a small checker script injected
(``scripts/check_pages.js``), and reads back what the checker measured. Per chapter it reports:

- **overflow**: anything that reaches past the text column and is not inside a box that scrolls
  sideways on its own (a wide table must scroll in its box, not be cut or widen the page), and
  output text (logs, run-time lines) that scrolls instead of wrapping;
- **echo**: ``name = value`` lines in the cell outputs (the old way of showing glued numbers);
- **raw role**: ``{glue``, ``{cite``, ``{doc`` ... shown as text in the page (read from the HTML,
  as ``check_book.py`` does);
- **figure**: a figure without alt text or caption, or whose smallest text is under 10 px as shown
  at 1280 px. Figures made with :func:`segreg_lite.plotting.use_book_style` say their smallest
  font size and dpi in the PNG (a ``segreg_lite`` text chunk); a figure without it is reported,
  as its text size is unknown.

and over the notebooks themselves, as GitHub renders them and Colab shows them (no MyST):

- **raw role** in a Markdown cell or a Markdown output (outside code);
- **unfolded solution**: a solution that is not inside ``<details>...</details>``;
- **echo** lines in the stored outputs.

It prints what it finds per chapter and exits 1 when anything is found (0 with ``--report``).

    python scripts/check_pages.py                        # after jupyter-book build (make book)
    python scripts/check_pages.py --report               # list everything, exit 0
    python scripts/check_pages.py --only results tta --screenshots /tmp/shots

Needs Chromium (or Chrome) on the PATH, or ``--chromium PATH``; without one the browser checks
are skipped with a note and the rest still runs.
"""
from __future__ import annotations

import argparse
import functools
import html
import http.server
import importlib.util
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Any, Iterator

import nbformat
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parent.parent
CHECKER_JS = Path(__file__).resolve().parent / "check_pages.js"
CHECKER_URL = "/__check_pages.js"
FRAME_URL = "/__frame.html"  # ?src=PAGE&width=W: the page in a frame W px wide
#: The frame page. Headless Chromium's window is never narrower than 500 px, so each page is
#: laid out in an iframe of the width asked for, where the theme's media queries see that width.
FRAME_PAGE = """<!DOCTYPE html><html><head><style>body{{margin:0}}iframe{{border:0;display:block}}
</style></head><body><iframe src="{src}" width="{width}" height="{height}"></iframe></body></html>"""
RESULT = re.compile(r'<pre id="check-pages-result"[^>]*>(.*?)</pre>', re.S)

#: A line that only echoes a value for the prose: ``pair_dice = 0.32``.
ECHO = re.compile(r"^[A-Za-z_]\w* = \S")
#: A MyST role as GitHub and Colab show it: ``{glue:text}`x```, ``{cite:t}`k```, ``{doc}`p```.
ROLE = re.compile(r"\{(glue|cite|doc|ref|numref|eq|term|download|footcite)(:[\w-]+)*\}`")
#: The smallest figure text a reader should meet, in CSS pixels, at the first (widest) width.
MIN_TEXT_PX = 10.0
#: The PNG text chunk that use_book_style() writes: "min_font_pt=10 dpi=100".
STYLE_KEY = "segreg_lite"

_spec = importlib.util.spec_from_file_location("check_book", Path(__file__).resolve().parent / "check_book.py")
check_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_book)


# --- the notebooks, as GitHub and Colab show them ----------------------------------------------

def _prose(markdown: str) -> str:
    """Markdown without its fenced blocks and inline code (where a role is shown on purpose)."""
    text = re.sub(r"^(`{3,}|~{3,}).*?^\1[ \t]*$", "", markdown, flags=re.M | re.S)

    def keep_roles(m: re.Match) -> str:  # {doc}`results` stays whole, `code` goes
        return m.group(0) if m.group(1) else ""

    return re.sub(r"(\{[\w:.+-]+\})?(`+)(?!`)(.*?)(?<!`)\2(?!`)", keep_roles, text, flags=re.S)


def _roles(markdown: str) -> list[str]:
    prose = _prose(markdown)
    return [prose[max(0, m.start() - 25): m.end() + 25].replace("\n", " ") for m in ROLE.finditer(prose)]


def _outside_details(markdown: str) -> str:
    """``markdown`` with every ``<details> ... </details>`` span removed."""
    return re.sub(r"<details\b.*?</details>", "", markdown, flags=re.S | re.I)


def unfolded_solutions(markdown: str) -> list[str]:
    """Solutions that a reader sees open: a 'Solution' (title, heading, bold or admonition) that
    is not inside ``<details>``. A dropdown admonition folds only in the built book."""
    found = []
    for m in re.finditer(r"^.*\bSolutions?\b.*$", _outside_details(markdown), re.M):
        line = m.group(0).strip()
        if re.search(r"admonition\}\s*Solution|^#+\s*Solutions?\b|\*\*Solutions?[.:]?\*\*|^Solutions?[.:]", line):
            found.append(line[:80])
    return found


def _echoes(outputs: list[Any]) -> list[str]:
    lines = []
    for out in outputs:
        if out.get("output_type") == "stream":
            lines += [line for line in out.get("text", "").splitlines() if ECHO.match(line)]
    return lines


def check_notebook(path: Path) -> list[tuple[str, str]]:
    """Findings ``(kind, message)`` in one notebook as GitHub renders it and Colab shows it."""
    nb = nbformat.read(path, as_version=4)
    findings: list[tuple[str, str]] = []
    for i, cell in enumerate(nb.cells):
        where = f"cell {i}"
        if cell.cell_type == "markdown":
            findings += [("raw role", f"{where} (Markdown): ...{r}...") for r in _roles(cell.source)]
            findings += [("unfolded solution", f"{where}: {s!r}") for s in unfolded_solutions(cell.source)]
            continue
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            text = out.get("data", {}).get("text/markdown")
            if text:
                text = text if isinstance(text, str) else "".join(text)
                findings += [("raw role", f"{where} (Markdown output): ...{r}...") for r in _roles(text)]
        echoes = _echoes(cell.get("outputs", []))
        if echoes:
            shown = ", ".join(e.split(" = ")[0] for e in echoes[:4]) + (", ..." if len(echoes) > 4 else "")
            findings.append(("echo", f"{where}: {len(echoes)} echo line(s) ({shown})"))
    return findings


# --- the built pages, as text -----------------------------------------------------------------

def check_page_html(page_html: str) -> list[tuple[str, str]]:
    """Findings in one built page's HTML: raw roles (as check_book.py finds them), echo outputs."""
    soup = BeautifulSoup(page_html, "html.parser")
    findings = [("raw role", msg.split(": ", 1)[1]) for msg in check_book.raw_roles(soup)]
    for area in soup.find_all("div", class_="cell_output"):
        for pre in area.find_all("pre"):
            echoes = [line for line in pre.get_text().splitlines() if ECHO.match(line)]
            if echoes:
                findings.append(("echo", f"{len(echoes)} echo line(s): {', '.join(echoes[:3])}"))
    return findings


def png_style(path: Path) -> dict[str, float] | None:
    """The ``segreg_lite`` text chunk of a PNG as numbers (``min_font_pt``, ``dpi``), or None."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            key, _, rest = body.partition(b"\0")
            if key.decode("latin-1") == STYLE_KEY:
                if kind == b"zTXt":
                    rest = zlib.decompress(rest[1:])
                elif kind == b"iTXt":  # compression flag, method, language\0, translated key\0
                    flag, rest = rest[0], rest[2:]
                    rest = rest.split(b"\0", 2)[2]
                    rest = zlib.decompress(rest) if flag else rest
                pairs = dict(p.split("=", 1) for p in rest.decode("utf-8", "replace").split() if "=" in p)
                try:
                    return {k: float(v) for k, v in pairs.items()}
                except ValueError:
                    return None
        if kind == b"IEND":
            break
        pos += 12 + length
    return None


# --- the built pages, laid out in Chromium ----------------------------------------------------

class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the built book, with the checker script added to every HTML page."""

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if path == CHECKER_URL:
            return self._send(CHECKER_JS.read_bytes(), "application/javascript")
        if path == FRAME_URL:
            from urllib.parse import parse_qs, urlsplit

            query = parse_qs(urlsplit(self.path).query)
            page = FRAME_PAGE.format(src=html.escape(query["src"][0], quote=True),
                                     width=int(query["width"][0]), height=int(query.get("height", ["900"])[0]))
            return self._send(page.encode("utf-8"), "text/html; charset=utf-8")
        if path.endswith(".html"):
            file = Path(self.translate_path(path))
            if file.is_file():
                text = file.read_text(encoding="utf-8")
                tag = f'<script src="{CHECKER_URL}"></script>'
                text = text.replace("</body>", tag + "</body>", 1) if "</body>" in text else text + tag
                return self._send(text.encode("utf-8"), "text/html; charset=utf-8")
        return super().do_GET()

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_Handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def find_chromium(given: str | None) -> str | None:
    if given:
        return given
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _chromium(chromium: str, profile: str, height: int, *extra: str) -> list[str]:
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
            f"--window-size={WINDOW},{height}", *extra]


#: The browser window, wider than any width checked; the page lies in a frame of that width.
WINDOW = 1400


def framed(base: str, page: str, width: int, height: int) -> str:
    from urllib.parse import quote

    return f"{base}{FRAME_URL}?src={quote('/' + page + '.html')}&width={width}&height={height}"


def measure(chromium: str, base: str, page: str, width: int, profile: str,
            timeout: float = 60.0) -> dict[str, Any]:
    """What the injected checker found on ``page`` laid out ``width`` px wide."""
    url = framed(base, page, width, 900)
    cmd = _chromium(chromium, profile, 900, "--virtual-time-budget=8000", "--dump-dom", url)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    match = RESULT.search(done.stdout)
    if not match:
        raise RuntimeError(f"no result from the checker on {url} at {width} px "
                           f"(exit {done.returncode}): {done.stderr.strip()[-300:]}")
    return json.loads(html.unescape(match.group(1)))


def screenshot(chromium: str, base: str, page: str, width: int, profile: str, target: Path,
               height: int) -> None:
    """A screenshot of the top ``height`` px of ``page`` laid out ``width`` px wide (the PNG is
    the browser window: the page fills its left ``width`` px)."""
    cmd = _chromium(chromium, profile, height, f"--screenshot={target}",
                    framed(base, page, width, height))
    subprocess.run(cmd, capture_output=True, timeout=120)


def figure_findings(result: dict[str, Any], page_dir: Path) -> Iterator[tuple[str, str]]:
    """Figures without alt text or caption, or whose smallest text is under MIN_TEXT_PX."""
    for k, fig in enumerate(result.get("figures", []), 1):
        name = f"figure {k}"
        if not fig["alt"]:
            yield "figure", f"{name}: no alt text"
        if not fig["caption"]:
            yield "figure", f"{name}: no caption"
        style = png_style(page_dir / "_images" / fig["src"]) or png_style(
            next((p for p in page_dir.parent.rglob(fig["src"]) if p.is_file()), Path("/nonexistent")))
        scale = fig["shown"] / fig["natural"] if fig["natural"] else 1.0
        if style is None:
            yield "figure", (f"{name}: shown at {scale:.0%} of its {fig['natural']} px; made without "
                             f"the book style, so its text size is unknown (use_book_style)")
            continue
        px = style.get("min_font_pt", 0) * style.get("dpi", 100) / 72 * scale
        if px < MIN_TEXT_PX:
            yield "figure", (f"{name}: smallest text {px:.1f} px as shown ({style.get('min_font_pt')} pt "
                             f"at {scale:.0%} of {fig['natural']} px)")


# --- the report --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built HTML folder")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml", help="the book's table of contents")
    parser.add_argument("--widths", type=int, nargs="+", default=[1280, 400], help="window widths in px")
    parser.add_argument("--only", nargs="+", default=None, help="chapter names (stems) to check")
    parser.add_argument("--chromium", default=None, help="the browser binary (default: chromium on the PATH)")
    parser.add_argument("--screenshots", type=Path, default=None, help="also save full-page screenshots here")
    parser.add_argument("--report", action="store_true", help="list the findings but exit 0")
    args = parser.parse_args(argv)

    pages = [p for p in check_book.toc_pages(args.toc) if args.only is None or Path(p).name in args.only]
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("check_pages: no Chromium found (--chromium PATH): the layout checks are skipped", file=sys.stderr)
    server, base = serve(args.html) if chromium else (None, "")
    profile = tempfile.mkdtemp(prefix="check-pages-")
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    total: dict[str, int] = {}
    try:
        for page in pages:
            findings: list[tuple[str, str]] = []
            notebook = ROOT / f"{page}.ipynb"
            if notebook.exists():
                findings += [(k, f"[ipynb] {m}") for k, m in check_notebook(notebook)]
            built = args.html / f"{page}.html"
            if not built.exists():
                findings.append(("missing", f"{built} is not built"))
            else:
                findings += [(k, f"[html] {m}") for k, m in check_page_html(built.read_text(encoding="utf-8"))]
                for i, width in enumerate(args.widths if chromium else []):
                    try:
                        result = measure(chromium, base, page, width, profile)
                    except (RuntimeError, subprocess.TimeoutExpired) as err:
                        findings.append(("browser", f"[{width} px] {err}"))
                        continue
                    findings += [(f["kind"], f"[{width} px] {f['what']}") for f in result["findings"]]
                    if i == 0:  # figure text is judged at the widest window
                        findings += [(k, f"[{width} px, column {result['column']} px] {m}")
                                     for k, m in figure_findings(result, built.parent)]
                    if args.screenshots:
                        shot = args.screenshots / f"{Path(page).name}-{width}.png"
                        screenshot(chromium, base, page, width, profile, shot, 6000)
            kinds: dict[str, int] = {}
            for kind, _ in findings:
                kinds[kind] = kinds.get(kind, 0) + 1
                total[kind] = total.get(kind, 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "fine"
            print(f"{page}: {summary}")
            for kind, message in findings:
                print(f"  {kind}: {message}")
    finally:
        if server is not None:
            server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    count = sum(total.values())
    overall = ", ".join(f"{n} {k}" for k, n in sorted(total.items())) or "nothing"
    print(f"check_pages: {len(pages)} chapter(s), {count} finding(s): {overall}")
    return 0 if args.report or count == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
