"""`jupyter nbconvert` a notebook to HTML the way a reader would (`--execute`), and read back what
the page must show: how many Plotly figures, how many copies of plotly.js, what it fetches.

Execution and conversion are two nbconvert calls (`--to notebook --execute`, then `--to html`):
the same steps `--to html --execute` runs, with the executed notebook kept so that its outputs
say how many figures the page must draw.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from .lab import jupyter_env

PLOTLY_MIMETYPE = "application/vnd.plotly.v1+json"
FIGURE_DIV = 'class="plotly-graph-div nesf-figure"'
WIDGET_STATE = '<script type="application/vnd.jupyter.widget-state+json">'
# what nbconvert's own HTML template fetches (not our outputs): require.js, MathJax, the widget manager
TEMPLATE_URLS = re.compile(r"^https://(cdnjs\.cloudflare\.com/ajax/libs/(require\.js|mathjax)/|unpkg\.com/@jupyter-widgets/)")


def export_html(notebook: Path, out_dir: Path, env: dict[str, str] | None = None,
                timeout_s: int = 900) -> tuple[Path, Path]:
    """Execute a copy of `notebook` in `out_dir` with nbconvert and convert it to HTML: returns
    (executed .ipynb, .html). Kernels run this interpreter (`jupyter_env`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run_env = jupyter_env(out_dir / "jupyter")
    run_env.update(env or {})
    executed = out_dir / f"{notebook.stem}.executed.ipynb"
    html = out_dir / f"{notebook.stem}.html"
    jupyter = [sys.executable, "-m", "jupyter", "nbconvert"]
    for args in ([str(notebook), "--to", "notebook", "--execute", f"--ExecutePreprocessor.timeout={timeout_s}",
                  "--output-dir", str(out_dir), "--output", executed.name],
                 [str(executed), "--to", "html", "--output-dir", str(out_dir), "--output", html.stem]):
        done = subprocess.run([*jupyter, *args], env=run_env, cwd=out_dir, capture_output=True, text=True,
                              timeout=timeout_s + 120)
        if done.returncode != 0:
            raise RuntimeError(f"nbconvert {' '.join(args[1:3])} of {notebook.name} failed:\n{done.stderr[-4000:]}")
    return executed, html


def expected_figures(executed: Path) -> tuple[int, list[str]]:
    """How many Plotly figures the executed notebook's outputs hold (a figure output, or each
    figure of a widget's static snapshot), and the outputs that hold a figure without its HTML."""
    nb = json.loads(executed.read_text())
    n, bare = 0, []
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            html = "".join(data.get("text/html", ""))
            if PLOTLY_MIMETYPE in data:
                n += 1
                if FIGURE_DIV not in html:
                    bare.append(f"cell {i}")
            elif "nesf-snapshot" in html:
                n += html.count(FIGURE_DIV)
    return n, bare


def page_parts(html_text: str) -> dict:
    """Sizes of the page: total, the stored widget state (nbclient keeps every widget's model;
    a plotly FigureWidget's holds plotly's widget bundle), and the rest; copies of plotly.js;
    figure divs; the URLs of <script src> tags."""
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    k = js.index('"', len(js) // 2)  # a piece with a quote: a JSON-escaped copy (widget state) does not count
    state_at = html_text.find(WIDGET_STATE)
    state = len(html_text) - state_at if state_at >= 0 else 0
    return {
        "bytes": len(html_text.encode()),
        "widget_state_bytes": state,
        "plotlyjs_bytes": len(js),
        "plotlyjs_copies": html_text.count(js[k - 100:k + 100]),
        "figure_divs": html_text.count(FIGURE_DIV),
        "script_src": re.findall(r'<script[^>]*\bsrc="([^"]+)"', html_text),
    }
