"""The dataset explorer: a whole dataset through a trained NeSF on one map, every crystal a click away.

    ex = nesf_viz.explore("lcs6_test", checkpoint="lcs6")    # or a CSV, a CIF folder, Structures
    ex                                                       # in a notebook: the widget

`explore` surveys the data once (`nesf_viz.survey.survey`: encode, decode, verdicts, space groups;
cached on disk) and returns a `DatasetExplorer`:

- the map: every crystal as a point (WebGL), placed by its latent projected to 2-D (PCA; t-SNE
  through scikit-learn when it is installed) or by any two numeric quantities, coloured by any
  quantity (`Survey.quantities`: decoded right / wrong, StructureMatcher, errors, sizes, space group,
  crystal system, the data's own properties, or whether it contains an element);
- a click on a point, on a row of the worst decodes, or a search by id / formula shows that crystal:
  its verdict (atom count, composition, StructureMatcher, errors), its nearest crystals in latent
  space (rings on the map; a click on one goes there), and the panel's visible tab: original vs
  decoded (no model run), the field slices or the species vote (the model evaluates the fields on
  the slice / the voting points, only when that tab is shown), the particles (a button: one decode
  with a recorder) or the interpolation between a picked pair A and B (a button: the decodes along
  the line);
- a box or lasso selection fills a table of the selected crystals, which a button writes out as
  CSV plus CIFs (`Survey.export`, through `nesf_viz.outputs`).

Compute and drawing stay apart as everywhere in `nesf_viz.viz`: `map_view` returns a `MapData`
whose `.figure()` is the pure `survey_map_figure`; the widget only wires controls to them. Its
``last_update_s`` says how long the last redraw took (Python side; benchmarks/widget_latency.py).
"""

from __future__ import annotations

import html
import json
import logging
import time
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np
import plotly.graph_objects as go

from ..errors import NeSFError
from ..outputs import write_inside
from ..survey import Quantity, Survey, survey
from . import compute
from . import figures as F
from .compute import ViewData
from .figures.survey import MAP_TRACES
from .notebook import SnapshotDisplay

log = logging.getLogger(__name__)

__all__ = ["DatasetExplorer", "MapData", "explore", "map_view", "map_axes", "latent_projection", "ELEMENT_COLOUR"]

PROJECTIONS = {"latent PC1": ("pca", 0), "latent PC2": ("pca", 1), "latent PC3": ("pca", 2),
               "latent t-SNE 1": ("tsne", 0), "latent t-SNE 2": ("tsne", 1)}
"""Map axes from the latents: name -> (projection, component)."""
ELEMENT_COLOUR = "contains element ..."
"""The colour choice that colours by one element's presence (picked in the element box)."""
_TABS = ("original vs decoded", "fields", "species vote", "particles", "interpolation A → B")


# ----------------------------------------------------------------------------- compute


def _tsne_available() -> bool:
    try:
        import sklearn.manifold  # noqa: F401
    except ImportError:
        return False
    return True


def latent_projection(s: Survey, kind: str = "pca") -> tuple[np.ndarray, list[str]]:
    """The latents (B, D) projected: "pca" -> (B, 3) principal-component scores (labels say the
    share of variance); "tsne" -> (B, 2) scikit-learn t-SNE (seed 0; about a minute for 5,000
    crystals on a 2-core CPU, cached beside the survey's cache file). Memoised per survey."""
    memo = s.memo
    if kind in memo:
        return memo[kind]
    z = np.asarray(s.latents, dtype=np.float64)
    if kind == "pca":
        from .figures.latent import _pca

        xy, ratio = _pca(z, 3) if len(z) else (np.zeros((0, 3)), np.zeros(3))
        out = (xy, [f"latent PC{k + 1} ({100 * r:.1f}% of variance)" for k, r in enumerate(ratio)])
    elif kind == "tsne":
        out = (_tsne(s, z), ["latent t-SNE 1", "latent t-SNE 2"])
    else:
        raise ValueError(f"unknown projection {kind!r}; choose 'pca' or 'tsne'")
    memo[kind] = out
    return out


def _tsne(s: Survey, z: np.ndarray) -> np.ndarray:
    cache = s.cache_path.with_name(s.cache_path.stem + ".tsne.npy") if s.cache_path is not None else None
    if cache is not None and cache.is_file():
        try:
            xy = np.load(cache, allow_pickle=False)
            if xy.shape == (len(z), 2):
                return xy
        except (OSError, ValueError):
            pass
    if len(z) < 5:
        raise ValueError(f"t-SNE needs at least 5 crystals, got {len(z)}")
    try:
        from sklearn.manifold import TSNE
    except ImportError as exc:
        raise ImportError("t-SNE needs scikit-learn (pip install scikit-learn); PCA needs nothing") from exc
    xy = TSNE(n_components=2, init="pca", random_state=0, perplexity=float(min(30, (len(z) - 1) // 3))
              ).fit_transform(z)
    if cache is not None:
        import io

        buf = io.BytesIO()
        np.save(buf, xy)
        try:
            write_inside(cache.parent, cache.name, buf.getvalue())
        except NeSFError as exc:
            log.warning("t-SNE not cached: %s", exc)
    return xy


def map_axes(s: Survey) -> list[str]:
    """What the map's axes can show: latent projections, then every numeric quantity."""
    proj = [p for p, (kind, _) in PROJECTIONS.items() if kind == "pca" or (len(s) >= 5 and _tsne_available())]
    return proj + [name for name, q in s.quantities.items() if not q.categorical]


def colour_choices(s: Survey) -> list[str]:
    """What the map can be coloured by: every quantity, and an element's presence."""
    return [*s.quantities, ELEMENT_COLOUR]


def _axis(s: Survey, name: str) -> tuple[np.ndarray, str]:
    if name in PROJECTIONS:
        kind, k = PROJECTIONS[name]
        xy, labels = latent_projection(s, kind)
        return xy[:, k], labels[k]
    q = s.quantities.get(name)
    if q is None or q.categorical:
        raise ValueError(f"{name!r} is not a map axis; choose one of {map_axes(s)}")
    return q.values.astype(float), name


def _colour(s: Survey, name: str, element: str | None) -> Quantity:
    if name == ELEMENT_COLOUR:
        return s.element_quantity(element or s.elements[0])
    if name not in s.quantities:
        raise ValueError(f"unknown colour {name!r}; choose one of {colour_choices(s)}")
    return s.quantities[name]


@dataclass(frozen=True, eq=False)
class MapData(ViewData):
    """The map's arrays: x, y (B,), values (B,) (codes into `categories`, or numbers), names (B,)
    ids, hover (B,), value_text (B,), axis and colour labels, the crystal in view, its
    neighbours and the picked pair; draws `survey_map_figure`."""

    FIGURE: ClassVar = F.survey_map_figure
    x: np.ndarray
    y: np.ndarray
    values: np.ndarray
    names: list[str]
    categories: tuple[str, ...] | None
    hover: list[str]
    value_text: list[str]
    x_label: str
    y_label: str
    colour_label: str
    current: int | None
    neighbours: list[int]
    pair: tuple[int | None, int | None]
    title: str


def map_view(s: Survey, x: str = "latent PC1", y: str = "latent PC2", colour: str = "decoded right / wrong", *,
             element: str | None = None, current: int | None = None, neighbours: Sequence[int] = (),
             pair: Sequence[int | None] = (None, None)) -> MapData:
    """The map of a survey: axes `x`, `y` (`map_axes`), colour (`colour_choices`; `element` for
    ``ELEMENT_COLOUR``), the crystal in view, its neighbours and the picked pair."""
    xs, x_label = _axis(s, x)
    ys, y_label = _axis(s, y)
    q = _colour(s, colour, element)
    hover = _hover(s)
    return MapData(x=xs, y=ys, values=q.values, names=s.ids, categories=q.categories, hover=hover,
                   value_text=[q.text(i) for i in range(len(s))], x_label=x_label, y_label=y_label,
                   colour_label=q.name, current=current, neighbours=list(neighbours), pair=tuple(pair),
                   title=f"{len(s)} crystals · {s.checkpoint_label} · colour: {q.name}"
                         "<br><span style='font-size:12px'>click a point: that crystal below · box / lasso: "
                         "a table of the selection</span>")


def _hover(s: Survey) -> list[str]:
    memo = s.memo
    if "hover" not in memo:
        memo["hover"] = [f"{html.escape(cid)} · {v.true_formula} → {v.decoded_formula} · "
                         f"{'right' if v.right else 'WRONG'} ({v.decoded_atoms}/{v.true_atoms} atoms)"
                         for cid, v in zip(s.ids, s.verdicts)]
    return memo["hover"]


# ----------------------------------------------------------------------------- text


def verdict_html(s: Survey, i: int) -> str:
    """Crystal i's verdict as a monospace block: `format_verdicts` and its summary line."""
    from ..metrics import format_verdicts

    v = s.verdicts[i]
    head = (f"<b>{html.escape(s.ids[i])}</b> · {v.true_formula} → {v.decoded_formula} · "
            + ("<span style='color:#2ca02c'><b>decoded right</b></span>" if v.right
               else "<span style='color:#d62728'><b>decoded WRONG</b></span>")
            + f" · space group {int(s.spacegroups[i]) or '?'}")
    return (f"<div>{head}</div><pre style='font-size:12px;line-height:1.25;margin:2px 0'>"
            f"{html.escape(format_verdicts([v]))}</pre>")


def _row_label(s: Survey, i: int, extra: str = "") -> str:
    v = s.verdicts[i]
    verdict = "right" if v.right else "WRONG"
    return (f"{s.ids[i][:18]:<18} {v.true_formula[:12]:<12} → {v.decoded_formula[:12]:<12} "
            f"{v.decoded_atoms:>2}/{v.true_atoms:<2} {v.position_error_A:6.3f} Å {verdict:<5}{extra}")


def selection_html(s: Survey, indices: Sequence[int], max_rows: int = 40) -> str:
    """A table of the selected crystals (the first `max_rows`), with a count line."""
    if not len(indices):
        return "<i>nothing selected: drag a box or a lasso on the map (the tools at its top right)</i>"
    n = len(indices)
    right = int(s.right[list(indices)].sum())
    cols = ("id", "formula", "decoded_formula", "decoded_atoms", "true_atoms", "right", "structure_matcher",
            "position_error_A", "species_error_pct", "spacegroup")
    head = "".join(f"<th style='padding:0 6px'>{c}</th>" for c in cols)
    body = []
    for i in list(indices)[:max_rows]:
        r = s.row(int(i))
        colour = "" if r["right"] else " style='color:#d62728'"
        cells = "".join(f"<td style='padding:0 6px;white-space:nowrap'>{html.escape(str(r[c]))}</td>" for c in cols)
        body.append(f"<tr{colour}>{cells}</tr>")
    more = f"<div>... and {n - max_rows} more (all in the export)</div>" if n > max_rows else ""
    return (f"<div><b>{n} selected</b>: {right} decoded right, {n - right} wrong</div>"
            f"<div style='max-height:260px;overflow:auto'><table style='font-size:12px;border-collapse:collapse'>"
            f"<tr>{head}</tr>{''.join(body)}</table></div>{more}")


# ----------------------------------------------------------------------------- the widget


def _ipw():
    import ipywidgets

    return ipywidgets


def _show_in(fw: go.FigureWidget, fig: go.Figure, layout_paths: Sequence[str]) -> None:
    """`fig` in the FigureWidget `fw` (in place where the traces allow, see `widgets._sync`), with the
    named top-level layout properties that `fig` has; those it lacks are removed from `fw` (a crystal
    drawn alone after a side-by-side comparison leaves no empty second scene behind)."""
    from .widgets import _sync

    have = fig.layout.to_plotly_json()
    _sync(fw, fig, [p for p in layout_paths if p in have])
    stale = [p for p in layout_paths if p not in have and p in fw.layout.to_plotly_json()]
    if stale:
        fw.plotly_relayout({p: None for p in stale})


def _show(output: Any, *figs: go.Figure) -> None:
    """Put figures in an ipywidgets Output as Plotly's own mimetype (what JupyterLab's plotly
    extension draws; animations included, which a FigureWidget cannot hold), in or out of a kernel."""
    output.outputs = tuple(
        {"output_type": "display_data", "metadata": {},
         "data": {"application/vnd.plotly.v1+json": json.loads(fig.to_json()),
                  "text/plain": f"<plotly figure: {fig.layout.title.text or ''}>"}}
        for fig in figs)


_STYLE = """<style>
.nesf-mono select, .nesf-mono option { font-family: monospace; font-size: 12px; }
</style>"""


class DatasetExplorer(SnapshotDisplay):
    """The explorer of a `Survey` (see the module docstring); `explore` makes one.

    Attributes: ``widget`` (the ipywidgets container), ``map`` (the map's FigureWidget),
    ``current`` (the crystal in view), ``selected`` (the selected crystals), ``pair`` (A, B),
    ``last_update_s`` (seconds of the last redraw, Python side). Methods drive it as the controls
    do: `select`, `select_points`, `find`, `set_pair`, `interpolate`, `animate`, `export`.
    """

    def __init__(self, s: Survey, *, neighbours: int = 8, list_rows: int = 100, interpolation_steps: int = 7,
                 field_step_angstrom: float = 0.12, height: int = 560, width: int = 960):
        _ipw()  # ipywidgets missing: its clear error before anything is built
        if not len(s):
            raise ValueError("the survey holds no crystal")
        self.survey = s
        self.k = int(neighbours)
        self.list_rows = int(list_rows)
        self.interpolation_steps = int(interpolation_steps)
        self.field_step_angstrom = float(field_step_angstrom)
        self.current: int | None = None
        self.selected: list[int] = []
        self.pair: list[int | None] = [None, None]
        self.last_update_s = 0.0
        self._neighbours: list[int] = []
        self._drawn: dict[int, int | None] = {k: None for k in range(len(_TABS))}
        self._quiet = False
        self._z = None
        self._fields = None

        self._build_map(s, height, width)
        self._build_list(s)
        self._build_crystal_panel()
        self._build_tabs(width)
        self._build_selection(s)
        self._wire_controls()
        self._show_worst()
        self._update_pair_controls()

        self.widget = self._layout()

    def _build_map(self, s: Survey, height: int, width: int) -> None:
        """The header, the axis and colour controls, the map."""
        w = _ipw()
        where = (f"read from the cache in {s.seconds:.1f} s ({s.cache_path})" if s.from_cache else
                 f"computed in {s.compute_seconds:.0f} s" + (f", cached in {s.cache_path}" if s.cache_path else ""))
        self.header = w.HTML(f"{_STYLE}<div><b>{html.escape(s.summary())}</b></div>"
                             f"<div style='color:#666;font-size:12px'>{html.escape(where)}</div>")
        axes = map_axes(s)
        self.x_axis = w.Dropdown(options=axes, value=axes[0], description="x", layout=w.Layout(width="300px"))
        self.y_axis = w.Dropdown(options=axes, value=axes[1], description="y", layout=w.Layout(width="300px"))
        self.colour = w.Dropdown(options=colour_choices(s), value="decoded right / wrong", description="colour",
                                 layout=w.Layout(width="330px"))
        self.element = w.Dropdown(options=s.elements, value=s.elements[0], description="element",
                                  layout=w.Layout(width="170px", display="none"))
        self.map = go.FigureWidget(map_view(s, self.x_axis.value, self.y_axis.value, self.colour.value).figure(
            height=height))
        self.map.layout.width = width  # a widget inside boxes is not told its container's width
        self._wire_map()

    def _build_list(self, s: Survey) -> None:
        """The find box and the list of the worst decodes."""
        w = _ipw()
        self.find_box = w.Text(placeholder="id or formula, then Enter", description="find",
                               continuous_update=False, layout=w.Layout(width="330px"))
        numeric = [n for n, q in s.quantities.items() if not q.categorical]
        self.sort = w.Dropdown(options=numeric, value="position error (Å)", description="worst by",
                               layout=w.Layout(width="330px"))
        self.listing = w.Select(options=[], rows=16, layout=w.Layout(width="560px"))
        self.listing.add_class("nesf-mono")
        self.list_title = w.HTML()

    def _build_crystal_panel(self) -> None:
        """The verdict of the crystal in view, its nearest neighbours, the pair buttons."""
        w = _ipw()
        self.verdict = w.HTML("<i>click a point on the map, a row of the list, or find a crystal by id / formula</i>")
        self.verdict.add_class("nesf-verdict")
        self.neighbour_list = w.Select(options=[], rows=5, description="nearest", layout=w.Layout(width="660px"))
        self.neighbour_list.add_class("nesf-mono")
        self.pick_a = w.Button(description="set as A", layout=w.Layout(width="100px"))
        self.pick_b = w.Button(description="set as B", layout=w.Layout(width="100px"))
        self.pair_label = w.HTML("pair: A = -, B = -")

    def _build_tabs(self, width: int) -> None:
        """The tabs about the crystal in view (compare, fields, species vote, particles, interpolation)."""
        w = _ipw()
        self.compare = go.FigureWidget(layout=dict(width=width))
        self.vote = go.FigureWidget(layout=dict(width=width))
        self.fields_box = w.VBox([w.HTML("<i>the position / species field of the crystal in view (computed when "
                                         "this tab is shown)</i>")])
        self.animate_button = w.Button(description="decode it with particles", layout=w.Layout(width="240px"),
                                       tooltip="one decode with a recorder: the model runs (a few seconds)")
        self.animation = w.Output()
        self.interpolate_button = w.Button(description="interpolate A → B", layout=w.Layout(width="240px"),
                                           tooltip="decodes the latents along the line: the model runs")
        self.interpolation = w.Output()
        self.tabs = w.Tab(children=[
            w.VBox([self.compare]), self.fields_box, w.VBox([self.vote]),
            w.VBox([w.HTML("Release particles on the decoder's grid and watch them move to the atoms "
                           "(the crystal in view is decoded again with a recorder; a few seconds)."),
                    self.animate_button, self.animation]),
            w.VBox([w.HTML(f"Decodes {self.interpolation_steps} latents on the straight line from A to B "
                           "(pick them with the buttons above)."), self.interpolate_button, self.interpolation]),
        ])
        for k, title in enumerate(_TABS):
            self.tabs.set_title(k, title)

    def _build_selection(self, s: Survey) -> None:
        """The selection table and its export controls."""
        w = _ipw()
        self.selection_table = w.HTML(selection_html(s, []))
        self.selection_table.add_class("nesf-selection")
        self.folder = w.Text(value="nesf_selection", description="folder", layout=w.Layout(width="420px"))
        self.overwrite = w.Checkbox(value=False, description="overwrite an earlier export", indent=False)
        self.export_button = w.Button(description="export selection (CSV + CIFs)", disabled=True,
                                      layout=w.Layout(width="260px"))
        self.export_status = w.HTML()

    def _wire_controls(self) -> None:
        """Each control calls the method that code can call too."""
        self.x_axis.observe(lambda ch: self._timed(self._redraw_map), "value")
        self.y_axis.observe(lambda ch: self._timed(self._redraw_map), "value")
        self.colour.observe(lambda ch: self._timed(self._on_colour), "value")
        self.element.observe(lambda ch: self._timed(self._redraw_map), "value")
        self.find_box.observe(lambda ch: self.find(ch["new"]), "value")
        self.sort.observe(lambda ch: self._show_worst(), "value")
        self.listing.observe(self._on_list, "value")
        self.neighbour_list.observe(self._on_list, "value")
        self.pick_a.on_click(lambda b: self.set_pair(a=self.current))
        self.pick_b.on_click(lambda b: self.set_pair(b=self.current))
        self.tabs.observe(lambda ch: self._timed(self._draw_tab), "selected_index")
        self.animate_button.on_click(lambda b: self.animate())
        self.interpolate_button.on_click(lambda b: self.interpolate())
        self.export_button.on_click(lambda b: self.export())

    def _layout(self) -> Any:
        w = _ipw()
        return w.VBox([
            self.header,
            w.HBox([self.x_axis, self.y_axis, self.colour, self.element]),
            self.map,
            self.list_title,
            w.HBox([w.VBox([self.find_box, self.sort]), self.listing]),
            w.HTML("<hr style='margin:4px 0'>"),
            self.verdict,
            w.HBox([self.neighbour_list, w.VBox([self.pick_a, self.pick_b, self.pair_label])]),
            self.tabs,
            w.HTML("<hr style='margin:4px 0'><b>Selection</b>"),
            self.selection_table,
            w.HBox([self.folder, self.overwrite, self.export_button]),
            self.export_status,
        ])

    # ---- display
    def _sync_figures(self) -> None:
        for fw in self._figure_widgets():
            fw._repr_mimebundle_()  # plotly's own step: the figure's current state becomes the view's first state
            fw.send_state(["_widget_data", "_widget_layout"])  # sent even when unchanged (see _figure_widgets)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        self._sync_figures()
        return self.widget._repr_mimebundle_(**kwargs)

    def _ipython_display_(self) -> None:
        """The widget, then a static snapshot of the map and the crystal in view (for a notebook
        read without a kernel: exported HTML, a viewer that cannot run widgets)."""
        self._sync_figures()
        super()._ipython_display_()

    def snapshot_figures(self) -> list[go.Figure]:
        return [go.Figure(self.map), go.Figure(self.compare)]

    def snapshot_caption(self) -> str:
        return html.escape(self.survey.summary())

    def _figure_widgets(self) -> list[go.FigureWidget]:
        """Every FigureWidget of the explorer. Inside a container their state made before display
        reaches the browser only as update messages; plotly refreshes a figure's full state when the
        figure itself is displayed, so the explorer does that for each when it is displayed."""
        out = [self.map, self.compare, self.vote]
        if self._fields is not None:
            out += [self._fields.figure, self._fields.species_figure]
        return out

    def snapshot_png(self) -> bytes:
        """The map as it is now (axes, colour, crystal in view, pair) as PNG bytes."""
        return self._map_data().figure(F.survey_map_png)

    def _timed(self, fn) -> None:
        t0 = time.perf_counter()
        fn()
        self.last_update_s = time.perf_counter() - t0

    # ---- the map
    def _map_data(self) -> MapData:
        return map_view(self.survey, self.x_axis.value, self.y_axis.value, self.colour.value,
                        element=self.element.value, current=self.current, neighbours=self._neighbours,
                        pair=tuple(self.pair))

    def _wire_map(self) -> None:
        points = self.map.data[0]
        points.on_click(self._on_click)
        points.on_selection(self._on_selection)
        points.on_deselect(lambda trace, pts: self._select([]))

    def _on_click(self, trace: Any, points: Any, state: Any) -> None:
        if points.point_inds:
            self.select(int(points.point_inds[0]))

    def _on_selection(self, trace: Any, points: Any, selector: Any) -> None:
        self._select(points.point_inds)  # the browser has dimmed the rest already

    def _on_colour(self) -> None:
        self.element.layout.display = None if self.colour.value == ELEMENT_COLOUR else "none"
        self._redraw_map()

    def _redraw_map(self) -> None:
        """New axes or colours: every point's position / colour (the overlays follow)."""
        fig = self._map_data().figure(height=self.map.layout.height)
        old = self.map.data
        with self.map.batch_update():
            for tr_old, tr_new in zip(old[: len(MAP_TRACES)], fig.data[: len(MAP_TRACES)]):
                js = tr_new.to_plotly_json()
                js.pop("type", None)
                tr_old.update(js, overwrite=True)
            self.map.layout.title = fig.layout.title
            self.map.layout.xaxis.title = fig.layout.xaxis.title
            self.map.layout.yaxis.title = fig.layout.yaxis.title
        # legend entries and colour bar: replaced (their number changes with the colouring)
        self.map.data = self.map.data[: len(MAP_TRACES)]
        if len(fig.data) > len(MAP_TRACES):
            self.map.add_traces(list(fig.data[len(MAP_TRACES):]))
        if self.selected:
            self.map.data[0].selectedpoints = self.selected

    def _move_overlays(self) -> None:
        xs, ys = self.map.data[0].x, self.map.data[0].y
        with self.map.batch_update():
            for k, idx in ((1, self._neighbours), (2, [self.current] if self.current is not None else [])):
                tr = self.map.data[k]
                tr.x, tr.y = [xs[i] for i in idx], [ys[i] for i in idx]
            picked = [(i, lab) for i, lab in zip(self.pair, "AB") if i is not None]
            tr = self.map.data[3]
            tr.x, tr.y = [xs[i] for i, _ in picked], [ys[i] for i, _ in picked]
            tr.text = [lab for _, lab in picked]

    # ---- one crystal
    def select(self, index: int) -> None:
        """Show crystal `index`: verdict, neighbours, the map's ring and the visible tab."""
        t0 = time.perf_counter()
        s = self.survey
        index = int(index)
        if not 0 <= index < len(s):
            raise IndexError(f"crystal {index} out of range for {len(s)} crystals")
        self.current = index
        self.verdict.value = verdict_html(s, index)
        idx, dist = s.nearest(index, self.k)
        self._neighbours = idx.tolist()
        self._quiet = True
        try:
            self.neighbour_list.options = [(_row_label(s, int(j), f"  d = {d:.3g}"), int(j)) for j, d in zip(idx, dist)]
            self.neighbour_list.value = None
        finally:
            self._quiet = False
        self._move_overlays()
        self._draw_tab()
        self._update_pair_controls()
        self.last_update_s = time.perf_counter() - t0

    def _on_list(self, change: Any) -> None:
        if not self._quiet and change["new"] is not None:
            self.select(int(change["new"]))

    def _draw_tab(self) -> None:
        """Draw the visible tab for the crystal in view (once per crystal)."""
        k = self.tabs.selected_index
        i = self.current
        if i is None or k is None or self._drawn.get(k) == i:
            return
        if k == 0:
            self._draw_compare(i)
        elif k == 1:
            self._draw_fields(i)
        elif k == 2:
            self._draw_vote(i)
        elif k == 3:
            self.animation.outputs = ()  # another crystal's particles: gone until the button is pressed
        self._drawn[k] = i

    def _latents(self):
        if self._z is None:
            self._z = self.survey.latents_tensor()
        return self._z

    def _draw_compare(self, i: int) -> None:
        s = self.survey
        original = s.crystals[i].to_structure()
        dec = s.decoded_crystals[i]
        if dec.num_atoms and dec.has_physical_cell():
            fig = F.compare_figure(original, dec.to_structure(), bonds=False)
        else:
            why = "no atom decoded" if not dec.num_atoms else "the predicted cell is impossible"
            fig = F.crystal_figure(original, title=f"{s.formulas[i]}: original ({why}: nothing to compare)",
                                   bonds=False)
        _show_in(self.compare, fig, ("title", "scene", "scene2", "annotations", "template", "margin", "legend",
                                     "height", "font"))

    def _draw_fields(self, i: int) -> None:
        from .widgets import FieldExplorer

        if self._fields is None:
            s = self.survey
            self._fields = FieldExplorer(s.checkpoint.model, self._latents(), list(s.crystals), s.checkpoint.vocab,
                                         step_angstrom=self.field_step_angstrom, crystal=i)
            self._fields.crystal.layout.display = "none"  # the explorer's crystal is the one in view
            self.fields_box.children = [self._fields.widget]
        elif self._fields.crystal.value != i:
            self._fields.crystal.value = i

    def _draw_vote(self, i: int) -> None:
        s = self.survey
        if not s.decoded.num_atoms[i]:
            fig = go.Figure()
            fig.update_layout(title=f"{s.ids[i]}: no atom decoded, no vote", height=200)
        else:
            fig = compute.species_votes(s.checkpoint.model, self._latents(), s.decoded, i, vocab=s.checkpoint.vocab,
                                        originals=s.crystals).figure()
        _show_in(self.vote, fig, ("title", "scene", "template", "margin", "legend", "height", "font"))

    # ---- on request: the model runs
    def animate(self) -> None:
        """Decode the crystal in view again with a recorder and show its particles moving."""
        from ..data import CrystalBatch
        from ..decode import decode
        from ..hooks import TrajectoryRecorder

        if self.current is None:
            return
        s, i = self.survey, self.current
        ck = s.checkpoint
        self.animate_button.disabled = True
        self.animate_button.description = "decoding..."
        try:
            rec = TrajectoryRecorder(every=2, max_particles=1500)
            dev = next(ck.model.parameters()).device
            batch = CrystalBatch.from_crystals([s.crystals[i]], ck.vocab, device=dev)
            res = decode(ck.model, batch, box=ck.box, vocab=ck.vocab, config=s.decoded.config, hooks=[rec])
            fig = compute.trajectory_view(rec, 0, [s.crystals[i]]).figure(
                title=f"{s.ids[i]}: particles on their way ({int(res.num_atoms[0])} atoms decoded here, "
                      f"{int(s.decoded.num_atoms[i])} in the survey; {s.verdicts[i].true_atoms} true)")
            _show(self.animation, fig)
            self._drawn[3] = i
        finally:
            self.animate_button.disabled = False
            self.animate_button.description = "decode it with particles"

    def set_pair(self, a: int | None = -1, b: int | None = -1) -> None:
        """Pick crystals A and/or B for the interpolation (-1: keep)."""
        if a != -1:
            self.pair[0] = None if a is None else int(a)
        if b != -1:
            self.pair[1] = None if b is None else int(b)
        self._update_pair_controls()
        self._move_overlays()

    def _update_pair_controls(self) -> None:
        s = self.survey
        label = lambda i: "-" if i is None else f"{html.escape(s.ids[i])} ({s.formulas[i]})"  # noqa: E731
        self.pair_label.value = f"pair: A = {label(self.pair[0])}, B = {label(self.pair[1])}"
        self.interpolate_button.disabled = None in self.pair or self.pair[0] == self.pair[1]
        self.pick_a.disabled = self.pick_b.disabled = self.current is None

    def interpolate(self):
        """Decode the latents on the line from A to B and show them (and the path's atom count and
        lattice). Returns the `InterpolationData`."""
        a, b = self.pair
        if a is None or b is None:
            raise ValueError("pick A and B first (set_pair or the buttons)")
        s = self.survey
        ck = s.checkpoint
        self.interpolate_button.disabled = True
        try:
            data = compute.decode_interpolation(ck.model, [s.crystals[a], s.crystals[b]], self.interpolation_steps,
                                                box=ck.box, vocab=ck.vocab, config=s.decoded.config)
            _show(self.interpolation, data.figure(title=f"{s.ids[a]} ({s.formulas[a]}) → {s.ids[b]} ({s.formulas[b]})"),
                  data.figure(F.interpolation_path_figure))
        finally:
            self._update_pair_controls()
        return data

    # ---- lists
    def _show_worst(self) -> None:
        s = self.survey
        rows = s.worst(self.sort.value, self.list_rows)
        self.list_title.value = (f"<b>worst {len(rows)} decodes by {html.escape(self.sort.value)}</b> "
                                 "(id, formula → decoded, atoms decoded/true, position error)")
        self._set_list(rows)

    def find(self, text: str) -> list[int]:
        """List the crystals whose id or formula matches `text` (an empty text: the worst decodes);
        one match is shown at once. Returns the matches."""
        if not text.strip():
            self._show_worst()
            return []
        found = self.survey.find(text, self.list_rows)
        self.list_title.value = f"<b>{len(found)} match{'es' if len(found) != 1 else ''} for {html.escape(text)}</b>"
        self._set_list(found)
        if len(found) == 1:
            self.select(found[0])
        return found

    def _set_list(self, rows: Sequence[int]) -> None:
        self._quiet = True
        try:
            self.listing.options = [(_row_label(self.survey, int(i)), int(i)) for i in rows]
            self.listing.value = None
        finally:
            self._quiet = False

    # ---- selection
    def select_points(self, indices: Sequence[int]) -> None:
        """Make `indices` the selection (what a box / lasso on the map does): its table fills and
        the map dims the rest."""
        self._select(indices)
        self.map.data[0].selectedpoints = self.selected or None

    def _select(self, indices: Sequence[int]) -> None:
        t0 = time.perf_counter()
        self.selected = sorted({int(i) for i in indices})
        self.selection_table.value = selection_html(self.survey, self.selected)
        self.export_button.disabled = not self.selected
        self.export_status.value = ""
        self.last_update_s = time.perf_counter() - t0

    def export(self, folder: str | None = None, overwrite: bool | None = None):
        """Write the selection (`Survey.export`) to `folder` (default: the folder box). Returns the
        path of selection.csv, or None when it failed (the reason is shown under the button)."""
        folder = folder if folder is not None else self.folder.value
        overwrite = self.overwrite.value if overwrite is None else overwrite
        try:
            path = self.survey.export(self.selected, folder, overwrite=overwrite)
        except (NeSFError, IndexError) as exc:
            self.export_status.value = f"<span style='color:#d62728'>not written: {html.escape(str(exc))}</span>"
            return None
        where = html.escape(str(path.parent.resolve()))
        self.export_status.value = (f"wrote {len(self.selected)} crystals to {where}: selection.csv, decoded/ and "
                                    "original/ (CIFs, each with summary.csv)")
        return path


def explore(data: Any, checkpoint: Any = "synthetic", *, show: int | str | None = "worst",
            **options: Any) -> DatasetExplorer:
    """Survey `data` with a trained NeSF (once; cached) and return its `DatasetExplorer`.

    data: a CSV path, a CIF folder or file, a dataset name (``lcs6_test``), ``synthetic[:N]``, or a
    list of Crystals / pymatgen Structures. checkpoint: a shipped model's name ("synthetic",
    "lcs6", ...), a checkpoint file or run folder, or a loaded Checkpoint. options: those of
    `nesf_viz.survey.survey` (decoder="coarse", split, limit, skip_bad, match, cache, cache_dir,
    device, progress). show: the crystal in view at first: "worst" (the largest position error), an
    index, or None.
    """
    s = survey(data, checkpoint, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ex = DatasetExplorer(s)
    if show is not None:
        ex.select(s.worst()[0] if show == "worst" else int(show))
    return ex
