"""The dataset explorer (nesf_viz.viz.explorer) and its map figure (nesf_viz.viz.figures.survey):
the map's arrays and colours, and the widget's wiring driven as the browser drives it (a click and a
selection dispatched on the map's trace), on a small survey of the embedded data."""

from __future__ import annotations

import csv
import importlib

import numpy as np
import pytest
from plotly.callbacks import Points

from nesf_viz.data import load_crystals
from nesf_viz.errors import ShapeError
from nesf_viz.viz import explorer as E
from nesf_viz.viz.figures import survey_map_figure, survey_map_png
from nesf_viz.viz.figures.survey import MAP_TRACES, point_colours

S = importlib.import_module("nesf_viz.survey")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    crystals = load_crystals("synthetic:120", "test")
    return S.survey(crystals, "synthetic", cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture
def ex(made):
    return E.DatasetExplorer(made)


def _points(indices, trace_index=0):
    return Points(point_inds=list(indices), xs=[0.0] * len(indices), ys=[0.0] * len(indices),
                  trace_name=MAP_TRACES[0], trace_index=trace_index)


class FieldCalls:
    """Counts what the model evaluates (wrapping the instance's field methods)."""

    def __init__(self, model, monkeypatch):
        self.calls = {"latents": 0, "position_field": 0, "species_field": 0, "lattice": 0}
        for name in self.calls:
            fn = getattr(model, name)

            def counting(*a, _fn=fn, _name=name, **k):
                self.calls[_name] += 1
                return _fn(*a, **k)

            monkeypatch.setattr(model, name, counting)


# ----------------------------------------------------------------------------- the map


def test_map_view_places_every_crystal_and_colours_it(made):
    d = E.map_view(made)
    B = len(made)
    assert d.x.shape == d.y.shape == (B,) and len(d.names) == len(d.hover) == B
    from nesf_viz.viz.figures.latent import _pca

    pcs, ratio = _pca(made.latents.astype(float), 2)
    np.testing.assert_allclose(d.x, pcs[:, 0])
    np.testing.assert_allclose(d.y, pcs[:, 1])
    assert d.x_label.startswith("latent PC1 (") and "% of variance" in d.x_label
    assert d.categories == ("right", "WRONG")
    by_size = E.map_view(made, "atoms (true)", "cell volume (Å³)", "position error (Å)")
    assert by_size.x.tolist() == [c.num_atoms for c in made.crystals] and by_size.categories is None
    np.testing.assert_allclose(by_size.values, [v.position_error_A for v in made.verdicts])
    el = E.map_view(made, colour=E.ELEMENT_COLOUR, element="Na")
    assert el.colour_label == "contains Na"
    with pytest.raises(ValueError, match="not a map axis"):
        E.map_view(made, "crystal system")
    with pytest.raises(ValueError, match="unknown colour"):
        E.map_view(made, colour="nonsense")
    assert "crystal system" not in E.map_axes(made) and "position error (Å)" in E.map_axes(made)


def test_the_map_figure_holds_every_point_in_order_with_its_index():
    x, y = np.arange(6.0), np.arange(6.0) ** 2
    names = [f"c{i}" for i in range(6)]
    fig = survey_map_figure(x, y, np.array([0, 1, 0, 1, 1, 0]), names, categories=("right", "WRONG"),
                            current=2, neighbours=[1, 3], pair=(4, None), colour_label="verdict")
    pts = fig.data[0]
    assert pts.type == "scattergl" and pts.customdata.tolist() == list(range(6))
    assert list(pts.marker.color) == ["#2ca02c", "#d62728", "#2ca02c", "#d62728", "#d62728", "#2ca02c"]
    assert [t.name for t in fig.data[:4]] == list(MAP_TRACES)
    assert list(fig.data[1].x) == [1.0, 3.0] and list(fig.data[2].y) == [4.0] and list(fig.data[3].text) == ["A"]
    assert [t.name for t in fig.data[4:]] == ["right (3)", "WRONG (3)"]  # the legend counts
    with pytest.raises(ShapeError):
        survey_map_figure(x, y[:3], np.zeros(6), names)


def test_numeric_colours_run_from_the_minimum_to_the_98th_percentile_and_nan_is_grey():
    v = np.array([0.0, 0.5, 1.0, np.nan] + [0.5] * 60 + [100.0])
    colours, legend, rng = point_colours(v)
    from plotly.colors import sequential

    assert colours[0] == sequential.Viridis[0].lower() and colours[-1] == sequential.Viridis[-1].lower()
    assert colours[3] == "#bdbdbd" and legend == [("no value", "#bdbdbd", 1)]
    assert rng[0] == 0.0 and rng[1] < 100.0  # an outlier does not wash out the scale
    fig = survey_map_figure(np.arange(len(v)), np.zeros(len(v)), v, [str(i) for i in range(len(v))],
                            colour_label="position error (Å)")
    bar = [t for t in fig.data if t.marker.showscale]
    assert len(bar) == 1 and bar[0].marker.cmin == 0.0


def test_the_png_snapshot_is_a_png(made):
    d = E.map_view(made)
    png = d.figure(survey_map_png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_pca_and_tsne_projections(made):
    xy, labels = E.latent_projection(made, "pca")
    assert xy.shape == (len(made), 3) and len(labels) == 3
    pytest.importorskip("sklearn.manifold", reason="t-SNE needs scikit-learn")
    ts, _ = E.latent_projection(made, "tsne")
    assert ts.shape == (len(made), 2) and np.isfinite(ts).all()
    cached = made.cache_path.with_name(made.cache_path.stem + ".tsne.npy")
    assert cached.is_file()
    np.testing.assert_array_equal(np.load(cached), ts)


# ----------------------------------------------------------------------------- the widget


def test_a_click_on_a_point_shows_that_crystal_without_running_the_model(ex, made, monkeypatch):
    counts = FieldCalls(made.checkpoint.model, monkeypatch)
    i = 5
    ex.map.data[0]._dispatch_on_click(_points([i]), None)  # what the browser's click sends
    assert ex.current == i
    assert made.ids[i] in ex.verdict.value and "composition" in ex.verdict.value  # how right, not only the good part
    assert ("decoded right" if made.verdicts[i].right else "decoded WRONG") in ex.verdict.value
    title = ex.compare.layout.title.text
    assert made.formulas[i] in title and "original vs decoded" in title and len(ex.compare.data) > 2
    xs = ex.map.data[0].x
    assert list(ex.map.data[2].x) == [xs[i]]  # the ring on the map
    near, _ = made.nearest(i, ex.k)
    assert [v for _, v in ex.neighbour_list.options] == near.tolist()
    assert list(ex.map.data[1].x) == [xs[j] for j in near]
    assert counts.calls == {"latents": 0, "position_field": 0, "species_field": 0, "lattice": 0}
    assert ex.last_update_s > 0  # timed (benchmarks/widget_latency.py reports it)
    ex.map.data[0]._dispatch_on_click(_points([]), None)  # a click on another trace: nothing changes
    assert ex.current == i


def test_the_other_tabs_evaluate_the_fields_only_when_shown(ex, made, monkeypatch):
    ex.select(2)
    counts = FieldCalls(made.checkpoint.model, monkeypatch)
    ex.tabs.selected_index = 2  # species vote: the species field at the voting points
    assert counts.calls["species_field"] > 0 and counts.calls["position_field"] == 0
    assert "vote" in ex.vote.layout.title.text.lower() and len(ex.vote.data)
    ex.tabs.selected_index = 1  # fields: the position field on a slice
    assert counts.calls["position_field"] > 0
    fe = ex._fields
    assert fe.crystal.value == 2 and made.ids[2] in fe.current_figure.layout.title.text
    before = dict(counts.calls)
    ex.tabs.selected_index = 2  # already drawn for this crystal: nothing evaluated again
    assert counts.calls == before
    ex.select(4)  # a new crystal redraws the visible tab only
    assert counts.calls["species_field"] > before["species_field"] and counts.calls["position_field"] == \
        before["position_field"]
    ex.tabs.selected_index = 1
    assert fe.crystal.value == 4


def test_a_crystal_decoded_to_nothing_is_drawn_alone_and_says_why(made):
    import dataclasses

    d = made.decoded
    empty = dataclasses.replace(
        d, positions_angstrom=(np.zeros((0, 3)), *d.positions_angstrom[1:]), species=(np.zeros(0, int), *d.species[1:]),
        atomic_numbers=(np.zeros(0, int), *d.atomic_numbers[1:]),
        particles_per_atom=(np.zeros(0, int), *d.particles_per_atom[1:]))
    ex = E.DatasetExplorer(dataclasses.replace(made, decoded=empty, memo={}))
    ex.select(1)
    assert "scene2" in ex.compare.layout.to_plotly_json()  # a side-by-side comparison
    ex.select(0)
    assert "no atom decoded" in ex.compare.layout.title.text and len(ex.compare.data)
    assert "scene2" not in ex.compare.layout.to_plotly_json()  # no empty second scene left behind
    ex.tabs.selected_index = 2
    assert "no atom decoded" in ex.vote.layout.title.text and not len(ex.vote.data)
    ex.select(1)
    assert len(ex.vote.data) and "no atom" in ex.compare.layout.title.text  # only the visible tab redraws
    ex.tabs.selected_index = 0
    assert "scene2" in ex.compare.layout.to_plotly_json() and "original vs decoded" in ex.compare.layout.title.text


def test_list_rows_neighbours_and_search_go_to_their_crystal(ex, made):
    worst = made.worst(ex.sort.value, ex.list_rows)
    assert [v for _, v in ex.listing.options] == worst
    ex.listing.value = worst[1]
    assert ex.current == worst[1]
    j = ex.neighbour_list.options[0][1]
    ex.neighbour_list.value = j
    assert ex.current == j
    found = ex.find(made.ids[7])
    assert found[0] == 7 and ex.current == 7  # one match: shown at once
    ex.find("")
    assert [v for _, v in ex.listing.options] == worst


def test_a_selection_fills_the_table_and_exports(ex, made, tmp_path):
    chosen = [1, 4, 6]
    ex.map.data[0]._dispatch_on_selection(_points(chosen), None)
    assert ex.selected == chosen
    table = ex.selection_table.value
    assert "3 selected" in table and all(made.ids[i] in table for i in chosen)
    assert made.ids[0] not in table and not ex.export_button.disabled
    ex.folder.value = str(tmp_path / "out")
    ex.export_button.click()
    rows = list(csv.DictReader((tmp_path / "out" / "selection.csv").open()))
    assert [r["id"] for r in rows] == [made.ids[i] for i in chosen]
    assert "wrote 3 crystals" in ex.export_status.value
    ex.export_button.click()  # again: refused, said under the button, nothing raised
    assert "not written" in ex.export_status.value and "overwrite" in ex.export_status.value
    ex.map.data[0]._dispatch_on_deselect(_points([]))
    assert ex.selected == [] and ex.export_button.disabled and "nothing selected" in ex.selection_table.value


def test_colour_and_axes_controls_redraw_the_map_and_keep_the_click_wiring(ex, made):
    points = ex.map.data[0]
    ex.colour.value = "position error (Å)"
    assert any(t.marker.showscale for t in ex.map.data[len(MAP_TRACES):])
    assert ex.map.data[0] is points
    ex.colour.value = E.ELEMENT_COLOUR
    assert ex.element.layout.display is None  # the element box appears
    symbol = made.elements[-1]
    ex.element.value = symbol
    legend = [t.name for t in ex.map.data[len(MAP_TRACES):]]
    from pymatgen.core import Element

    n_with = sum(bool((c.atomic_numbers == Element(symbol).Z).any()) for c in made.crystals)
    assert 0 < n_with < len(made) and f"with {symbol} ({n_with})" in legend
    ex.x_axis.value = "atoms (true)"
    assert list(ex.map.data[0].x) == [c.num_atoms for c in made.crystals]
    assert ex.map.layout.xaxis.title.text == "atoms (true)"
    ex.map.data[0]._dispatch_on_click(_points([3]), None)
    assert ex.current == 3 and list(ex.map.data[2].x) == [made.crystals[3].num_atoms]


def test_the_pair_interpolates_and_the_particles_animate(ex, made):
    assert ex.interpolate_button.disabled
    ex.select(0)
    ex.pick_a.click()
    ex.select(1)
    ex.pick_b.click()
    assert ex.pair == [0, 1] and not ex.interpolate_button.disabled
    assert list(ex.map.data[3].text) == ["A", "B"]
    data = ex.interpolate()
    assert len(data.steps) == ex.interpolation_steps and data.atom_counts[0] == made.decoded.num_atoms[0]
    shown = [o["data"]["application/vnd.plotly.v1+json"] for o in ex.interpolation.outputs]
    assert len(shown) == 2 and "Interpolation path" in shown[1]["layout"]["title"]["text"]  # crystals, then path
    ex.tabs.selected_index = 3
    ex.animate()
    (anim,) = [o["data"]["application/vnd.plotly.v1+json"] for o in ex.animation.outputs]
    assert len(anim["frames"]) > 2 and made.ids[1] in anim["layout"]["title"]["text"]
    ex.select(2)  # another crystal: its particles are not shown until asked for
    assert ex.animation.outputs == ()


def test_the_explorer_displays_as_a_widget_then_a_static_snapshot_of_its_map(ex, made, monkeypatch):
    from IPython import display as ipd

    ex.select(2)
    shown = []
    monkeypatch.setattr(ipd, "display", lambda obj, **kw: shown.append(obj))
    ex._ipython_display_()
    view, snapshot = shown
    assert view["application/vnd.jupyter.widget-view+json"]["model_id"] == ex.widget.model_id
    html = snapshot["text/html"]
    assert html.count('class="plotly-graph-div nesf-figure"') == 2  # the map and the crystal in view
    assert "decoded right" in html  # the survey's summary line above them
    assert made.ids[2] in html
    png = ex.snapshot_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_explore_in_one_call(made, monkeypatch):
    import nesf_viz as nv

    monkeypatch.setattr(E, "survey", lambda data, checkpoint, **kw: made)
    ex = nv.explore("ignored", checkpoint="synthetic")
    assert isinstance(ex, E.DatasetExplorer) and ex.current == made.worst()[0]
    assert nv.explore is E.explore and "explore" in nv.__all__
