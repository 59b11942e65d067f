"""Figures and widgets that still show outside a live kernel: an HTML export, nbviewer, a notebook
opened without a widget manager.

In a kernel Plotly sends a figure as its own mimetype only: JupyterLab draws it, but
``jupyter nbconvert --to html`` drops it ("not able to be represented"), and an ipywidgets view
needs a widget manager, which an exported page loads from a CDN (offline: nothing). Two pieces,
neither active on import:

``notebook_mode()``
    Called once at the top of a notebook. From then on every figure the kernel displays also
    carries a ``text/html`` fallback (`figure_html`: a div and a ``Plotly.newPlot`` call, no
    plotly.js, nothing fetched), and the calling cell's output carries plotly.js, once, inline.
    JupyterLab, VS Code and other live front ends keep drawing the Plotly mimetype (they rank it
    above HTML); an exported page uses the HTML, and its figures draw offline.

``SnapshotDisplay``
    A mixin for widget classes. Displaying one shows its ipywidgets view (a live front end draws
    it; a page without widgets reads one line saying the controls need a kernel) followed by a
    second output, its static snapshot (`snapshot_bundle`): the figures of
    ``snapshot_figures()`` as HTML, under a widget view whose model id is empty. A live front
    end's widget manager hides such a view, as it hides the view of a closed widget, so the
    snapshot is not seen twice there; nbconvert (nbviewer), which renders a widget view only when
    the notebook stores its model, and front ends without a widget manager show the HTML. To
    reuse it: subclass, set ``self.widget`` (the ipywidgets container) and define
    ``snapshot_figures()`` (and ``snapshot_caption()`` for a status line). The snapshot is the
    state when displayed; ``refresh_snapshot()`` redraws it while the displaying cell runs (the
    training panel does after every epoch). A later slider move in a live front end does not
    reach the saved snapshot: front ends apply display updates only from the cell that made them.

The snapshot's figures need plotly.js on the page, which `notebook_mode` puts there; a figure whose
page lacks it says so instead of drawing.
"""

from __future__ import annotations

import uuid
from typing import Any, Sequence

import plotly.graph_objects as go

__all__ = ["notebook_mode", "figure_html", "plotlyjs_html", "snapshot_bundle", "SnapshotDisplay",
           "RENDERER", "WIDGET_VIEW_MIMETYPE"]

RENDERER = "nesf_viz_html"
"""The Plotly renderer `notebook_mode` registers: the ``text/html`` fallback of every figure."""
WIDGET_VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"
_DEFAULT_HEIGHT_PX = 525  # Plotly's own default for a figure without a layout height
_NO_PLOTLY = ("This figure needs plotly.js, which this page lacks: call nesf_viz.viz.notebook_mode() at the "
              "top of the notebook and run it again.")


def figure_html(fig: go.Figure | dict, div_id: str | None = None) -> str:
    """A figure as an HTML fragment: a div and the script that draws it (frames included) with the
    page's plotly.js (``window.Plotly``). Nothing is fetched; no plotly.js inside (see
    `plotlyjs_html`); without plotly.js on the page the div says what to do."""
    import plotly.io as pio

    js = pio.to_json(fig, validate=False)  # plotly escapes <, > and / for a <script>
    layout = fig.get("layout", {}) if isinstance(fig, dict) else fig.layout.to_plotly_json()
    height = layout.get("height") or _DEFAULT_HEIGHT_PX
    width = f"{layout['width']}px" if layout.get("width") else "100%"
    div = div_id or f"nesf-{uuid.uuid4().hex}"
    return (f'<div id="{div}" class="plotly-graph-div nesf-figure" style="height:{height}px; width:{width};">'
            "</div>\n<script type=\"text/javascript\">(function () {\n"
            f'  var gd = document.getElementById("{div}");\n'
            "  if (!gd) return;\n"
            f'  if (!window.Plotly) {{ gd.style.height = "auto"; gd.textContent = "{_NO_PLOTLY}"; return; }}\n'
            f"  var fig = {js};\n"
            "  Plotly.newPlot(gd, fig.data || [], fig.layout || {}, {responsive: true}).then(function () {\n"
            "    if (fig.frames && fig.frames.length) return Plotly.addFrames(gd, fig.frames);\n"
            "  });\n"
            "})();</script>")


def plotlyjs_html() -> str:
    """plotly.js (the version plotly.py ships), inline in a script: once per page."""
    from plotly.offline import get_plotlyjs

    return ("<script type=\"text/javascript\">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
            f"<script type=\"text/javascript\">{get_plotlyjs()}</script>")


def _renderer():
    from plotly.io._base_renderers import MimetypeRenderer

    class HtmlFallbackRenderer(MimetypeRenderer):
        """A figure's ``text/html`` fallback (`figure_html`), beside the Plotly mimetype."""

        def to_mimebundle(self, fig_dict):
            return {"text/html": figure_html(fig_dict)}

    return HtmlFallbackRenderer()


def notebook_mode(enabled: bool = True) -> None:
    """Make this notebook's figures show outside a live kernel too (call once, at the top).

    Registers the `RENDERER` and sets Plotly's default renderer to ``plotly_mimetype+`` it, so
    every figure carries the Plotly mimetype (live front ends) and a ``text/html`` fallback with
    no plotly.js in it; then displays plotly.js once, inline, as this cell's output (about 5 MB in
    the saved notebook and its HTML export), which the fallbacks draw with, offline. Running it
    again displays plotly.js again (harmless). ``enabled=False`` goes back to the Mimetype alone.
    Nothing changes until it is called: importing nesf_viz leaves Plotly's renderers as they are.
    It also shows this library's own warnings (`nesf_viz.errors`: a clamped lattice, skipped
    structures, a cell too large) as one plain line, "note: ...", in the cell's output, not as a
    stderr box with a library path and source line; other warnings are shown as before.
    """
    import plotly.io as pio
    from IPython.display import display

    _library_warnings_as_notes(enabled)
    if not enabled:
        pio.renderers.default = "plotly_mimetype"
        return
    if RENDERER not in pio.renderers:
        pio.renderers[RENDERER] = _renderer()
    pio.renderers.default = f"plotly_mimetype+{RENDERER}"
    import plotly

    display({"text/html": plotlyjs_html(),
             "text/plain": f"(plotly.js {plotly.offline.get_plotlyjs_version()} for the figures' HTML fallback)"},
            raw=True)


def snapshot_bundle(figures: Sequence[go.Figure], caption: str = "", name: str = "widget") -> dict:
    """The display data of a widget's static snapshot: `figure_html` of each figure under an
    optional caption (HTML), and a widget view with an empty model id, which live widget managers
    hide (see the module docstring)."""
    note = (f'<div class="nesf-snapshot-note" style="color:#666;font-size:12px;margin:4px 0">'
            f"Static snapshot of the {name} as displayed (its controls need a running kernel).</div>")
    body = "".join(figure_html(f) for f in figures)
    extra = f'<div class="nesf-snapshot-caption">{caption}</div>' if caption else ""
    return {
        WIDGET_VIEW_MIMETYPE: {"model_id": "", "version_major": 2, "version_minor": 0},
        "text/html": f'<div class="nesf-snapshot">{note}{extra}{body}</div>',
        "text/plain": f"<static snapshot of the {name}: {len(figures)} figure(s)>",
    }


class SnapshotDisplay:
    """Mixin: display the widget, then a static snapshot of its figures (module docstring).

        class MyExplorer(SnapshotDisplay):
            def __init__(self, ...):
                self.figure = go.FigureWidget(...)
                self.widget = ipywidgets.VBox([controls, self.figure])

            def snapshot_figures(self):
                return [self.figure]

    ``MyExplorer(...)`` as a cell's last line (or ``display(explorer)``) then shows the live
    widget in JupyterLab and its figures in an exported page.
    """

    widget: Any
    _snapshot_handle: Any = None

    def snapshot_figures(self) -> Sequence[go.Figure]:
        """The figures the snapshot shows, in their current state."""
        raise NotImplementedError

    def snapshot_caption(self) -> str:
        """HTML shown above the snapshot's figures (a status line); '' for none."""
        return ""

    def snapshot_bundle(self) -> dict:
        return snapshot_bundle(self.snapshot_figures(), self.snapshot_caption(), type(self).__name__)

    def _repr_mimebundle_(self, **kwargs: Any):
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        view = self.widget._repr_mimebundle_()[WIDGET_VIEW_MIMETYPE]
        # the text a page without widgets shows instead of the view (ipywidgets' own is the container's repr)
        display({WIDGET_VIEW_MIMETYPE: view,
                 "text/plain": f"{type(self).__name__} (interactive: its controls need a running kernel; "
                               "a static snapshot follows)"}, raw=True)
        self._snapshot_handle = display(self.snapshot_bundle(), raw=True, display_id=True)

    def refresh_snapshot(self) -> None:
        """Redraw the snapshot output with the current figures (no-op before it is displayed)."""
        if self._snapshot_handle is not None:
            self._snapshot_handle.update(self.snapshot_bundle(), raw=True)


_PLAIN_SHOWWARNING = None


def _library_warnings_as_notes(enabled: bool = True) -> None:
    """Route warnings of `nesf_viz.errors` to stdout as 'note: message' (no path, no source line);
    enabled=False restores the `warnings.showwarning` found before. Idempotent."""
    import sys
    import warnings

    global _PLAIN_SHOWWARNING
    if not enabled:
        if _PLAIN_SHOWWARNING is not None:
            warnings.showwarning, _PLAIN_SHOWWARNING = _PLAIN_SHOWWARNING, None
        return
    if _PLAIN_SHOWWARNING is not None:
        return
    _PLAIN_SHOWWARNING = shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if getattr(category, "__module__", "") == "nesf_viz.errors":
            print(f"note: {message}", file=sys.stdout)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = showwarning
