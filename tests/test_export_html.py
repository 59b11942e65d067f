"""Notebooks exported with `jupyter nbconvert --to html --execute` show every figure offline.

The fast test exports a small notebook made here (two figures and a widget) and reads the HTML:
plotly.js inline once, a figure div per figure, nothing of ours fetched. The browser test exports
every notebook of notebooks/ (NESF_VIZ_SIZE=small) and opens each page in Chromium with every
request that is not a local file aborted: every figure must be drawn, and the only failed loads
are the ones nbconvert's own template makes (require.js, MathJax, the widget manager). Pages and
screenshots are left in the test's tmp dir, and copied to /tmp/nesf_export_<notebook>.png.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from .browser.export import TEMPLATE_URLS, expected_figures, export_html, page_parts
from .browser.lab import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.nbconvert

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

SMALL_NOTEBOOK = [
    "import nesf_viz as nv\nfrom nesf_viz.viz import notebook_mode\nnotebook_mode()",
    "import plotly.graph_objects as go\ngo.Figure(go.Scatter(x=[1, 2, 3], y=[2, 1, 3]), layout=dict(title='one'))",
    "go.Figure(go.Bar(x=[1, 2], y=[2, 1]), layout=dict(title='two'))",
    "from pymatgen.core import Lattice, Structure\nfrom nesf_viz.viz.widgets import FieldExplorer\n"
    "s = Structure.from_spacegroup('Fm-3m', Lattice.cubic(5.64), ['Na', 'Cl'], [[0, 0, 0], [0.5, 0.5, 0.5]])\n"
    "batch, vocab = nv.CrystalBatch.from_structures([s], ids=['NaCl'])\n"
    "fields = nv.ExactFields(batch, num_species=len(vocab))\n"
    "FieldExplorer(fields, fields.latents(), batch.to_crystals(vocab), vocab)",
]


def _small_notebook(path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(src) for src in SMALL_NOTEBOOK]
    nbformat.write(nb, path)
    return path


def test_an_exported_notebook_holds_plotlyjs_once_and_a_drawn_div_per_figure(tmp_path):
    executed, html = export_html(_small_notebook(tmp_path / "small.ipynb"), tmp_path / "out")
    n, bare = expected_figures(executed)
    assert n == 3 and not bare  # two figures and the explorer's snapshot
    text = html.read_text()
    parts = page_parts(text)
    assert parts["plotlyjs_copies"] == 1 and parts["figure_divs"] == 3
    # nothing of ours is fetched: the only <script src> are nbconvert's template's
    assert all(TEMPLATE_URLS.match(u) for u in parts["script_src"]), parts["script_src"]
    # the page without the stored widget state is plotly.js plus the figures: no other copy of plotly.js
    rest = parts["bytes"] - parts["widget_state_bytes"]
    assert parts["plotlyjs_bytes"] < rest < parts["plotlyjs_bytes"] + 1_500_000, parts
    # the widget's own output reads one line where widgets cannot be drawn; its snapshot follows
    outputs = json.loads(executed.read_text())["cells"][3]["outputs"]
    assert "".join(outputs[0]["data"]["text/plain"]).startswith("FieldExplorer (interactive")
    assert outputs[1]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] == ""
    assert "Position field · NaCl" in "".join(outputs[1]["data"]["text/html"])


@pytest.mark.browser
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_exported_to_html_draws_all_its_figures_offline(notebook, playwright_sync, tmp_path):
    out = tmp_path / "out"
    shutil.copy(notebook, tmp_path / notebook.name)
    executed, html = export_html(tmp_path / notebook.name, out,
                                 env={"NESF_VIZ_SIZE": "small", "NESF_VIZ_OUT": str(tmp_path / "nb_out")})
    n, bare = expected_figures(executed)
    assert n > 0 and not bare, f"figures without their HTML copy (notebook_mode() not called?): {bare}"
    parts = page_parts(html.read_text())
    assert parts["plotlyjs_copies"] == 1 and parts["figure_divs"] == n, parts
    blocked, errors = [], []
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            # offline: every request that is not the page's own file is aborted
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                       else (blocked.append(route.request.url), route.abort()))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            page.goto(html.as_uri(), wait_until="load", timeout=180_000)
            page.wait_for_function(f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {n}",
                                   timeout=120_000)
            # drawn: plotly made its SVG, and there is something in it (traces, or shapes for a diagram)
            drawn = page.evaluate("""() => [...document.querySelectorAll('.plotly-graph-div')].map(gd => ({
                svg: !!gd.querySelector('.main-svg'),
                items: (gd.data || []).length + ((gd.layout || {}).shapes || []).length,
                title: String(((gd.layout || {}).title || {}).text || '')}))""")
            shot = tmp_path / f"{notebook.stem}.png"
            page.screenshot(path=str(shot), full_page=True)
            shutil.copy(shot, Path(f"/tmp/nesf_export_{notebook.stem}.png"))
        finally:
            browser.close()
    assert len(drawn) == n and all(d["svg"] and d["items"] > 0 for d in drawn), drawn
    assert all(TEMPLATE_URLS.match(u) for u in blocked), blocked  # nothing of ours wanted the network
    ours = [e for e in errors if not re.fullmatch(r"Failed to load resource: net::ERR_FAILED", e)]
    assert not ours, ours
    assert len(errors) == len(blocked)  # one failed load per blocked template script, nothing else
