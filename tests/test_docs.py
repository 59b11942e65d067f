"""The documentation site (`make docs`) builds, and every page of it reads offline.

One build per module (Sphinx + MyST-NB into a tmp dir, the notebooks executed at
NESF_VIZ_SIZE=small, a private Jupyter setup whose kernel runs this interpreter). The fast test
reads the HTML: no Sphinx warning, every figure of every executed notebook on its page, plotly.js
shared from _static (never inline, never from a CDN), no stored widget state, nothing fetched from
the network. The browser test opens every page in Chromium with every request that is not a local
file aborted: every Plotly figure drawn, no console error, nothing blocked.

The build runs from a copy of docs/ beside a link to benchmarks/ (the pages include its figures),
so the checkout is left as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .browser.export import WIDGET_STATE, expected_figures
from .browser.lab import CHROMIUM, CHROMIUM_ARGS, jupyter_env

pytestmark = pytest.mark.nbconvert

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIGURE_DIV = re.compile(r'<div[^>]*class="plotly-graph-div[ "]')  # a figure's div (not code that names it)
SPHINX_PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL|SEVERE):")


@dataclass
class Site:
    html: Path  # the built site
    executed: Path  # the notebooks as MyST-NB executed them
    log: str  # sphinx-build's output
    seconds: float


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Site:
    pytest.importorskip("myst_nb", reason="the docs need the test extras (pip install -e '.[test]')")
    tmp = tmp_path_factory.mktemp("docs")
    src = tmp / "root" / "docs"
    shutil.copytree(ROOT / "docs", src, ignore=shutil.ignore_patterns("_build", "notebooks", "__pycache__"))
    (src / "notebooks").mkdir()
    for nb in NOTEBOOKS:  # what `make docs` copies
        shutil.copy(nb, src / "notebooks" / nb.name)
    (tmp / "root" / "benchmarks").symlink_to(ROOT / "benchmarks")
    (tmp / "tmp").mkdir()
    env = jupyter_env(tmp / "jupyter")
    # notebooks at their small size; whatever they write goes under this test's tmp dir
    env.update({"NESF_VIZ_SIZE": "small", "TMPDIR": str(tmp / "tmp"), "NESF_VIZ_CACHE": str(tmp / "cache"),
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    env.pop("NESF_VIZ_OUT", None)
    html = tmp / "build" / "html"
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(src), str(html)],
                          env=env, cwd=tmp, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"sphinx-build failed:\n{log[-6000:]}"
    print(f"docs built in {seconds:.0f} s")
    return Site(html=html, executed=tmp / "build" / "jupyter_execute", log=log, seconds=seconds)


def _pages(site: Site) -> list[Path]:
    return sorted(site.html.rglob("*.html"))


def test_the_site_builds_without_warnings_and_holds_every_page(site):
    problems = [line for line in site.log.splitlines() if SPHINX_PROBLEM.search(line)]
    assert not problems, "\n".join(problems)
    names = {p.relative_to(site.html).as_posix() for p in _pages(site)}
    wanted = {f"{p.stem}.html" for p in (ROOT / "docs").glob("*.md")}
    wanted |= {f"notebooks/{nb.stem}.html" for nb in NOTEBOOKS}
    assert wanted <= names, wanted - names


def test_every_notebook_page_holds_all_its_figures_and_needs_no_network(site):
    plotlyjs = site.html / "_static" / "plotly.min.js"
    assert plotlyjs.stat().st_size > 1_000_000
    for nb in NOTEBOOKS:
        n, bare = expected_figures(site.executed / "notebooks" / nb.name)
        assert n > 0 and not bare, (nb.name, bare)
        text = (site.html / "notebooks" / f"{nb.stem}.html").read_text()
        assert len(FIGURE_DIV.findall(text)) == n, nb.name
        # plotly.js once, from the site's own copy; no widget state for a manager the page lacks
        assert text.count('src="../_static/plotly.min.js"') == 1, nb.name
        assert len(text) < plotlyjs.stat().st_size, f"{nb.name}: plotly.js inline?"
        assert WIDGET_STATE not in text, nb.name
    for page in _pages(site):
        text = page.read_text()
        remote = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//[^"]+"', text)
        assert not remote, (page.name, remote[:3])


@pytest.mark.browser
def test_every_page_draws_its_figures_offline_without_console_errors(site, playwright_sync):
    blocked: list[str] = []
    failures: dict[str, object] = {}
    n_figures = 0
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            # offline: every request that is not a local file is aborted (and recorded)
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                       else (blocked.append(route.request.url), route.abort()))
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            for path in _pages(site):
                name = path.relative_to(site.html).as_posix()
                errors.clear()
                n = len(FIGURE_DIV.findall(path.read_text()))
                page.goto(path.as_uri(), wait_until="load", timeout=60_000)
                drawn = []
                if n:
                    page.wait_for_function(
                        f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {n}", timeout=60_000)
                    # drawn: plotly made its SVG and there is something in it (traces, or shapes of a diagram)
                    drawn = page.evaluate("""() => [...document.querySelectorAll('.plotly-graph-div')].map(gd =>
                        !!gd.querySelector('.main-svg')
                        && (gd.data || []).length + ((gd.layout || {}).shapes || []).length > 0)""")
                n_figures += n
                if errors or len(drawn) != n or not all(drawn):
                    failures[name] = {"console errors": list(errors), "figures": n, "drawn": drawn}
        finally:
            browser.close()
    assert not failures, failures
    assert not blocked, blocked[:10]  # the site needs nothing from the network
    assert n_figures >= sum(expected_figures(site.executed / "notebooks" / nb.name)[0] for nb in NOTEBOOKS)
