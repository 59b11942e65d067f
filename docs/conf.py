"""Sphinx configuration of the nesf_viz documentation (`make docs`).

Sphinx + MyST-NB: the notebooks are executed at build time and rendered with their outputs
(Plotly figures carry an offline HTML fallback, see `nesf_viz.viz.notebook_mode`); the API
reference comes from the docstrings (autodoc); the results pages are generated from results JSON
by `python benchmarks/tables.py`. Everything builds offline.
"""

import os

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

# the notebooks run at the size a reader would run them; NESF_VIZ_SIZE=small (the suite) builds faster
nb_execution_mode = os.environ.get("NESF_VIZ_DOCS_EXECUTE", "force")
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
# Plotly's own mimetype has no static renderer here; each figure also carries text/html
suppress_warnings = ["mystnb.unknown_mime_type"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}


def _plain_docstrings(app, what, name, obj, options, lines):
    """The docstrings are plain text, not reStructuredText: |x| means a norm, not a substitution."""
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("|"):  # keep tables
            lines[i] = line.replace("|", r"\|")


def setup(app):
    app.connect("autodoc-process-docstring", _plain_docstrings)
