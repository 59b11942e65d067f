"""nesf_viz.viz.notebook: figures carry an offline HTML fallback once `notebook_mode()` is called,
and every widget leaves a static snapshot of its figures behind."""

from __future__ import annotations

import re
import subprocess
import sys

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from nesf_viz.viz import notebook
from nesf_viz.viz.notebook import WIDGET_VIEW_MIMETYPE, figure_html, notebook_mode, snapshot_bundle

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget", reason="go.FigureWidget needs anywidget (plotly >= 6)")

from .test_widgets import recorded  # noqa: E402,F401  (fixture)

PLOTLYJS_MARK = "plotly.js v"  # the licence header of the bundle: one per copy


@pytest.fixture
def displayed(monkeypatch):
    """What `IPython.display.display` would send, as (obj, kwargs); handles record updates."""
    import IPython.display

    sent: list = []

    class Handle:
        def __init__(self):
            self.updates = []

        def update(self, obj, **kw):
            self.updates.append((obj, kw))

    def fake_display(*objs, **kw):
        sent.extend((o, kw) for o in objs)
        return Handle() if kw.get("display_id") else None

    monkeypatch.setattr(IPython.display, "display", fake_display)
    return sent


@pytest.fixture
def restore_renderer():
    before = pio.renderers.default
    yield
    pio.renderers.default = before


def test_importing_nesf_viz_leaves_plotly_renderers_alone():
    code = ("import plotly.io as pio; before = pio.renderers.default; import nesf_viz, nesf_viz.viz, "
            "nesf_viz.viz.widgets, nesf_viz.viz.notebook; assert pio.renderers.default == before, "
            "pio.renderers.default; assert 'nesf_viz_html' not in pio.renderers; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_notebook_mode_gives_every_figure_an_offline_html_fallback_and_plotlyjs_once(displayed, restore_renderer):
    notebook_mode()
    assert pio.renderers.default == f"plotly_mimetype+{notebook.RENDERER}"
    (obj, kw), = displayed  # plotly.js, once, as this cell's output
    assert kw == {"raw": True} and obj["text/html"].count(PLOTLYJS_MARK) == 1
    assert len(obj["text/html"]) > 3_000_000 and "http" not in obj["text/html"][:300]
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], name="line"), layout=dict(height=300))
    bundle = fig._repr_mimebundle_()
    assert set(bundle) >= {"application/vnd.plotly.v1+json", "text/html"}  # live front ends keep the mimetype
    html = bundle["text/html"]
    assert PLOTLYJS_MARK not in html and "<script src" not in html and "cdn" not in html.lower()
    assert "Plotly.newPlot" in html and 'style="height:300px; width:100%;"' in html
    notebook_mode(False)
    assert pio.renderers.default == "plotly_mimetype"


def test_figure_html_keeps_frames_and_says_what_to_do_without_plotlyjs():
    fig = go.Figure(go.Scatter(x=[0], y=[0]), frames=[go.Frame(data=[go.Scatter(x=[1], y=[1])], name="f1")])
    html = figure_html(fig, div_id="abc")
    assert '<div id="abc"' in html and "Plotly.addFrames" in html and '"f1"' in html
    assert "notebook_mode()" in html  # the message a page without plotly.js shows
    # a string that closes the script tag cannot break out of it
    evil = go.Figure(go.Scatter(x=[0], y=[0], name="</script><b>x</b>"))
    assert "</script><b>" not in figure_html(evil)


def _snapshot_figure_count(bundle: dict) -> int:
    return len(re.findall(r'class="plotly-graph-div nesf-figure"', bundle["text/html"]))


def test_every_widget_displays_itself_then_a_static_snapshot_of_its_figures(recorded, displayed):  # noqa: F811
    from nesf_viz.viz import widgets

    rec, res, crystals, vocab, fields = recorded
    ex = widgets.DecodeExplorer(rec, originals=crystals, result=res)
    ex._ipython_display_()
    (view, vkw), (snap, skw) = displayed
    assert view[WIDGET_VIEW_MIMETYPE]["model_id"] == ex.widget.model_id and vkw == {"raw": True}
    assert view["text/plain"].startswith("DecodeExplorer (interactive: its controls need a running kernel")
    assert skw == {"raw": True, "display_id": True}
    # a live widget manager hides a view with an empty model id; nbconvert renders the HTML
    assert snap[WIDGET_VIEW_MIMETYPE]["model_id"] == "" and _snapshot_figure_count(snap) == 1
    assert f'"text":"{rec.ids[0]} · move {int(rec.steps[-1])} of' in snap["text/html"]  # its title, as shown
    assert ex.status.value in snap["text/html"] and "Static snapshot of the DecodeExplorer" in snap["text/html"]
    # the state it shows is the current one: after a change, refresh_snapshot sends the new figure
    ex.crystal.value = 1
    ex.refresh_snapshot()
    (new, ukw), = ex._snapshot_handle.updates
    assert ukw == {"raw": True} and rec.ids[1] in new["text/html"]

    z = fields.latents()
    fe = widgets.FieldExplorer(fields, z, crystals, vocab)
    assert _snapshot_figure_count(fe.snapshot_bundle()) == 1
    assert fe._species_figure is None  # a second FigureWidget (5 MB of plotly's bundle) only when shown
    fe.kind.value = "species field"
    assert "Species field" in fe.snapshot_bundle()["text/html"]


def test_the_training_panel_snapshot_follows_training(synthetic_small, tmp_path, displayed):
    from nesf_viz.data import SpeciesVocab
    from nesf_viz.train_config import TrainConfig
    from nesf_viz.viz.widgets import TrainingPanel

    panel = TrainingPanel(refresh_seconds=0.0)
    panel._ipython_display_()
    handle = panel._snapshot_handle
    vocab = SpeciesVocab.from_crystals(synthetic_small["train"])
    panel.run(synthetic_small["train"][:8], synthetic_small["val"][:2], tmp_path / "run",
              TrainConfig.quick(epochs=2, batch_size=4, device="cpu"), vocab=vocab)
    assert len(handle.updates) == 3  # after each of the 2 epochs and at the end
    last = handle.updates[-1][0]["text/html"]
    assert "best checkpoint" in last and "epoch 2" in last and _snapshot_figure_count(handle.updates[-1][0]) == 1


def test_snapshot_bundle_of_several_figures():
    figs = [go.Figure(go.Bar(x=[1], y=[2])), go.Figure(go.Scatter(x=[1], y=[2]))]
    b = snapshot_bundle(figs, caption="<b>status</b>", name="LatentInterpolator")
    assert _snapshot_figure_count(b) == 2 and "<b>status</b>" in b["text/html"]
    assert b["text/plain"] == "<static snapshot of the LatentInterpolator: 2 figure(s)>"


def test_notebook_mode_shows_the_librarys_warnings_as_one_plain_line(displayed, restore_renderer, capsys):
    import warnings

    from nesf_viz.errors import LatticeClampedWarning

    before = warnings.showwarning
    notebook_mode()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = warnings.showwarning  # catch_warnings restores it on exit
            warnings.warn("2 predicted lattice(s) clamped", LatticeClampedWarning, stacklevel=1)
            with pytest.warns(UserWarning, match="something else"):  # others go where they went before
                warnings.warn("something else", UserWarning, stacklevel=1)
        out = capsys.readouterr()
        assert out.out == "note: 2 predicted lattice(s) clamped\n"  # no path, no source line, not stderr
        assert "LatticeClampedWarning" not in out.err
    finally:
        notebook_mode(False)
    assert warnings.showwarning is before
