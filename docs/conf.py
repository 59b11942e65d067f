"""Sphinx configuration of the nesf_viz documentation (`make docs`).

The tool: Sphinx with MyST-NB and the furo theme. Why: Sphinx is the Python world's conventional,
well-kept documentation tool, and it renders the API reference from the docstrings (autodoc);
MyST-NB, of the Executable Books project, executes Jupyter notebooks at build time and renders
their outputs, `text/html` included, so the notebooks are pages of the site as a reader runs them;
the pages are Markdown (MyST), like the README; furo is a maintained, readable theme. All of it
builds from installed packages, with no network.

The results tables inside the pages are generated from results JSON by
`python benchmarks/tables.py`. Everything builds and reads offline:

- every Plotly figure carries a ``text/html`` copy that draws with the page's plotly.js
  (`nesf_viz.viz.notebook_mode`); the notebook's inline copy of plotly.js is replaced by one file,
  ``_static/plotly.min.js``, shared by every page (`_shared_plotlyjs`);
- widgets are shown as their static snapshots (`nesf_viz.viz.notebook.SnapshotDisplay`): the
  widget views themselves are not rendered (they need a kernel, or ipywidgets' HTML manager from a
  CDN), and the widget state the execution stores is left out of the pages (`_no_widget_state`).
"""

import functools
import os
from pathlib import Path

project = "nesf_viz"
author = "the nesf_viz authors"
copyright = "2026, the nesf_viz authors"

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.viewcode"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = "nesf_viz"

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

# The notebooks run at the size a reader would run them; NESF_VIZ_SIZE=small (the suite) builds faster.
# An error in a notebook fails the build.
nb_execution_mode = os.environ.get("NESF_VIZ_DOCS_EXECUTE", "force")
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
# Widget views need a kernel or ipywidgets' HTML manager from a CDN: never rendered here. The widget's
# text/plain line shows instead, and its snapshot (a second output) shows its figures as HTML.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_ipywidgets_js = {}  # no require.js or html-manager from a CDN
# Plotly's own mimetype has no static renderer here; each figure also carries text/html
suppress_warnings = ["mystnb.unknown_mime_type"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}


def _plain_docstrings(app, what, name, obj, options, lines):
    """The docstrings are plain text, not reStructuredText: |x| means a norm, not a substitution."""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not (stripped.startswith("|") and stripped.endswith("|") and len(stripped) > 1):  # keep table rows
            lines[i] = line.replace("|", r"\|")


def _no_widget_state(app, doctree):
    """Executing a notebook stores every widget's state in it (a Plotly FigureWidget's holds plotly's
    widget bundle, several MB); MyST-NB would write it into the page for a widget manager that these
    pages do not load. Drop it."""
    js_files = getattr(app.env, "nb_metadata", {}).get(app.env.docname, {}).get("js_files", {})
    js_files.pop("ipywidgets_state", None)


@functools.lru_cache(maxsize=1)
def _plotlyjs() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _shared_plotlyjs(app, doctree):
    """`notebook_mode` puts plotly.js inline into a notebook's outputs, once (a notebook is a
    self-contained page). Here every page of the site shares one copy: the inline script becomes a
    <script src> of _static/plotly.min.js (loaded in place, so the figures after it find Plotly).
    Done when the page is read, so the stored doctrees do not keep a copy each either."""
    from docutils import nodes

    js = _plotlyjs()
    docname = app.env.docname
    src = "../" * docname.count("/") + "_static/plotly.min.js"
    for node in doctree.findall(nodes.raw):
        text = node.astext()
        if js in text:
            new = text.replace(js, "").replace('<script type="text/javascript"></script>',
                                               f'<script type="text/javascript" src="{src}"></script>', 1)
            node.rawsource = new  # docutils keeps the source beside the text: drop both copies
            node.children = [nodes.Text(new)]


def _write_plotlyjs(app, exception):
    if exception is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        static.mkdir(parents=True, exist_ok=True)
        (static / "plotly.min.js").write_text(_plotlyjs(), encoding="utf-8")


def setup(app):
    app.connect("autodoc-process-docstring", _plain_docstrings)
    app.connect("doctree-read", _no_widget_state)
    app.connect("doctree-read", _shared_plotlyjs)
    app.connect("build-finished", _write_plotlyjs)
