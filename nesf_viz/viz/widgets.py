"""ipywidgets explorers: controls wired to compute-then-draw, one ``go.FigureWidget`` each.

Every explorer computes with :mod:`nesf_viz.viz.compute`, draws with the pure figure functions
of :mod:`nesf_viz.viz.figures`, and copies the new figure's traces into its FigureWidget in
place (one batched message), so the camera and zoom the user chose survive a slider move.
Each exposes ``.widget`` (the ipywidgets container), ``.figure`` (the FigureWidget) and
``.last_update_s`` (Python-side seconds of the last redraw), and displays itself in a
notebook followed by a static snapshot of its figures (`nesf_viz.viz.notebook.SnapshotDisplay`):
what an HTML export, nbviewer or a front end without a widget manager shows.

    DecodeExplorer(recorder, originals, result)   trajectory, live re-clustering (no model)
    FieldExplorer(fields, z, crystals, vocab)      position / species field slices
    LatentInterpolator(model, crystals, box, vocab, steps)
    TrainingPanel().run(train_set, val_set, out, config)     live curves, ETA, Stop
"""

from __future__ import annotations

import html
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import plotly.graph_objects as go

from ..decode import DecodeConfig
from ..fields import StructureFields
from ..geometry import UNIT_CUBE_CORNERS
from . import compute
from .figures import (
    crystal_figure,
    interpolation_path_figure,
    training_curves_figure,
    update_training_curves,
)
from .notebook import SnapshotDisplay

log = logging.getLogger(__name__)

__all__ = [
    "DecodeExplorer",
    "FieldExplorer",
    "LatentInterpolator",
    "TrainingPanel",
]


def _ipw():
    """ipywidgets, imported when a widget is made (keeps `import nesf_viz.viz.widgets` light)."""
    import ipywidgets

    return ipywidgets


def _signature(data: Sequence) -> list[tuple[str, frozenset]]:
    """Trace types and the properties they set: equal signatures can be updated in place
    (every property the old trace set is overwritten by the new one)."""
    out = []
    for t in data:
        props = getattr(t, "_props", None)  # plotly's own dict: no deep copy
        keys = props.keys() if isinstance(props, dict) else t.to_plotly_json().keys()
        out.append((t.type, frozenset(k for k in keys if k != "uid")))
    return out


def _sync(fw: go.FigureWidget, fig: go.Figure, layout_paths: Sequence[str] = ("title",)) -> None:
    """Make `fw` show `fig`'s traces (in place when the trace list has the same shape) and
    copy the named layout properties; the rest of fw's layout (camera, ranges) stays."""
    new = list(fig.data)
    if _signature(fw.data) != _signature(new):
        fw.data = ()
        if new:
            fw.add_traces(new)
        with fw.batch_update():
            for path in layout_paths:
                fw.layout[path] = fig.layout[path]
        return
    with fw.batch_update():
        for old, nt in zip(fw.data, new):
            js = nt.to_plotly_json()
            js.pop("type", None)
            old.update(js, overwrite=True)
        for path in layout_paths:
            fw.layout[path] = fig.layout[path]


def _fix_scene(fig: go.Figure | go.FigureWidget, ranges: np.ndarray, scene: str = "scene") -> None:
    """Fixed axis ranges (3, 2) and the matching aspect ratio for a 3-D scene."""
    span = np.maximum(ranges[:, 1] - ranges[:, 0], 1e-9)
    ratio = span / span.max()
    fig.layout[scene].update(
        xaxis=dict(range=list(ranges[0]), autorange=False),
        yaxis=dict(range=list(ranges[1]), autorange=False),
        zaxis=dict(range=list(ranges[2]), autorange=False),
        aspectmode="manual", aspectratio=dict(x=ratio[0], y=ratio[1], z=ratio[2]),
    )


class _Displayable(SnapshotDisplay):
    widget: Any
    figure: go.FigureWidget
    last_update_s: float = 0.0

    def snapshot_figures(self) -> list[go.FigureWidget]:
        return [self.figure]

    def _timed(self, fn: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        fn()
        self.last_update_s = time.perf_counter() - t0


# ============================================================================ DecodeExplorer

_VECTORS = "field vector (next move)"


class DecodeExplorer(_Displayable):
    """Watch decoding: particles along their trajectories, re-clustered live without the model.

    recorder: a `TrajectoryRecorder` passed to ``decode(..., hooks=[recorder])``.
    originals: the true crystals (Crystals or pymatgen Structures, in the decoder's order),
    drawn as open circles; result: the DecodeResult (ids and atom counts in the dropdown).

    Controls: crystal, recorded move (with a play button), score threshold, NMS radius and
    minimum particles per atom (each re-runs ``recorder.recluster`` only: the score filter and
    NMS on the recorded final positions), field-vector and true-atom toggles. Particles are
    drawn where they are at the chosen move and coloured by the cluster they end in, so move 0
    shows each atom's basin of attraction on the initial grid.
    """

    def __init__(self, recorder: Any, originals: Any = None, result: Any = None, *,
                 crystal: int = 0, max_arrows: int = 600, height: int = 640):
        w = _ipw()
        if not getattr(recorder, "ids", None):
            raise ValueError("the recorder is empty: decode with hooks=[recorder] first")
        self.recorder = recorder
        self.originals = originals
        self.result = result
        self.max_arrows = max_arrows
        cfg = recorder.config
        n = len(recorder.ids)
        if originals is not None and len(originals) != n:
            raise ValueError(f"{len(originals)} originals for {n} recorded crystals")
        options = []
        for i, cid in enumerate(recorder.ids):
            extra = f" ({int(result.num_atoms[i])} atoms decoded)" if result is not None else ""
            options.append((f"{i}: {cid}{extra}", i))
        steps = [int(s) for s in recorder.steps]
        self.crystal = w.Dropdown(options=options, value=crystal, description="crystal",
                                  layout=w.Layout(width="360px"))
        self.step = w.SelectionSlider(options=[(str(s), i) for i, s in enumerate(steps)],
                                      value=len(steps) - 1, description="move",
                                      continuous_update=True, layout=w.Layout(width="420px"))
        self.play = w.Play(min=0, max=len(steps) - 1, value=len(steps) - 1, interval=150,
                           description="play the moves")
        w.jslink((self.play, "value"), (self.step, "index"))
        style = {"description_width": "initial"}
        self.threshold = w.FloatSlider(value=float(cfg.score_threshold_angstrom), min=0.05,
                                       max=2.0, step=0.05, description="score threshold (Å)",
                                       style=style, continuous_update=True, readout_format=".2f")
        self.radius = w.FloatSlider(value=float(cfg.nms_radius_angstrom), min=0.1, max=3.0,
                                    step=0.05, description="NMS radius (Å)", style=style,
                                    continuous_update=True, readout_format=".2f")
        self.min_particles = w.IntSlider(value=int(cfg.nms_min_particles), min=1,
                                         max=max(200, int(cfg.nms_min_particles)),
                                         description="min particles / atom", style=style,
                                         continuous_update=True)
        self.show_vectors = w.Checkbox(value=False, description="field vectors (next move)",
                                       indent=False)
        self.show_atoms = w.Checkbox(value=originals is not None, description="true atoms",
                                     indent=False, disabled=originals is None)
        self.status = w.HTML()
        self.clusters = None
        self._ranges = None
        self._good = None
        self.figure = go.FigureWidget()
        self.figure.layout.update(height=height, uirevision="keep")
        self._recluster()
        self._new_crystal_view()
        self.crystal.observe(lambda ch: self._timed(self._on_crystal), "value")
        self.step.observe(lambda ch: self._timed(self._on_step), "value")
        for s in (self.threshold, self.radius, self.min_particles):
            s.observe(lambda ch: self._timed(self._on_cluster_settings), "value")
        for b in (self.show_vectors, self.show_atoms):
            b.observe(lambda ch: self._timed(self._redraw), "value")
        self.widget = w.VBox([
            w.HBox([self.crystal, self.play, self.step]),
            w.HBox([self.threshold, self.radius, self.min_particles]),
            w.HBox([self.show_vectors, self.show_atoms]),
            self.status,
            self.figure,
        ])

    # ---- state changes
    def _recluster(self) -> None:
        self.clusters = self.recorder.recluster(
            self.crystal.value, float(self.threshold.value), float(self.radius.value),
            int(self.min_particles.value))

    def _on_cluster_settings(self) -> None:
        self._recluster()
        self._redraw()
        ranges = self._scene_ranges()
        if not np.array_equal(ranges, self._ranges):  # a larger NMS radius: its spheres stay round
            self._ranges = ranges
            with self.figure.batch_update():
                _fix_scene(self.figure, self._ranges)

    def _scene_ranges(self) -> np.ndarray:
        """The fixed axes of the current crystal: every recorded particle, and an NMS sphere of the
        slider's radius around any of them (a fixed scene clipped 3 Å spheres flat)."""
        return compute.trajectory_ranges(self.recorder, self.crystal.value, self.originals,
                                         pad_angstrom=max(0.8, float(self.radius.value) + 0.2))

    def _on_crystal(self) -> None:
        self._recluster()
        self._new_crystal_view()

    def _new_crystal_view(self) -> None:
        self._ranges = self._scene_ranges()
        fig = self._figure()
        self.figure.data = ()
        self.figure.add_traces(list(fig.data))
        with self.figure.batch_update():
            self.figure.layout.title = fig.layout.title
            self.figure.layout.template = fig.layout.template
            self.figure.layout.legend = fig.layout.legend
            self.figure.layout.margin = fig.layout.margin
            self.figure.layout.font = fig.layout.font
            self.figure.layout.scene = fig.layout.scene
            _fix_scene(self.figure, self._ranges)
        self._update_status()

    def _redraw(self) -> None:
        _sync(self.figure, self._figure())
        self._update_status()

    def _on_step(self) -> None:
        """Only the particles move: new x/y/z for the particle (and vector) traces, the
        clusters and everything else stay. Falls back to a full redraw if the figure's
        traces are not the ones `cluster_figure` makes."""
        traces = {t.name: t for t in self.figure.data}
        rej, good_tr = traces.get("rejected particles"), traces.get("clustered particles")
        if rej is None or good_tr is None or self._good is None:
            self._redraw()
            return
        c, t = self.crystal.value, self.step.value
        pos = np.asarray(self.recorder.positions(c)[t], dtype=np.float64)
        vec = traces.get(_VECTORS)
        with self.figure.batch_update():
            for tr, sel in ((rej, ~self._good), (good_tr, self._good)):
                p = pos[sel]
                tr.x, tr.y, tr.z = p[:, 0], p[:, 1], p[:, 2]
            if vec is not None:
                xs, ys, zs = self._segments(c, t)
                vec.x, vec.y, vec.z = xs, ys, zs
            self.figure.layout.title.text = self._title(self._n_atoms, self._n_clusters,
                                                        self._n_kept, len(pos))

    # ---- compute + draw
    def _title(self, n_atoms: int, n_clusters: int, n_kept: int, n_particles: int) -> str:
        c, t = self.crystal.value, self.step.value
        dropped = n_clusters - n_atoms
        groups = f" ({dropped} small {'group' if dropped == 1 else 'groups'} dropped)" if dropped else ""
        return (f"{self.recorder.ids[c]} · move {int(self.recorder.steps[t])} of "
                f"{int(self.recorder.steps[-1])} · {n_atoms} {'atom' if n_atoms == 1 else 'atoms'}{groups} "
                f"from {n_kept}/{n_particles} kept particles"
                "<br><span style='font-size:12px'>particles coloured by the cluster they end in; grey: rejected "
                "by the score threshold; diamonds: cluster centres</span>")

    def _segments(self, c: int, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = compute.move_segments(self.recorder, c, t, self.max_arrows)
        return tuple(np.column_stack([a[:, k], b[:, k], np.full(len(a), np.nan)]).ravel()
                     for k in range(3))

    def _figure(self) -> go.Figure:
        c, t = self.crystal.value, self.step.value
        data = compute.cluster_view(
            self.recorder, c, t, self.originals if self.show_atoms.value else None,
            clusters=self.clusters, score_threshold_angstrom=float(self.threshold.value),
            nms_radius_angstrom=float(self.radius.value))
        # what a step change needs to move the particles without redrawing the rest
        self._good = data.kept & (data.cluster_id >= 0)
        self._n_atoms, self._n_clusters = int(data.is_atom.sum()), len(data.centres)
        self._n_kept = int(data.kept.sum())
        title = self._title(self._n_atoms, self._n_clusters, self._n_kept, len(data.kept))
        fig = data.figure(title=title)
        if self.show_vectors.value:
            xs, ys, zs = self._segments(c, t)
            fig.add_trace(go.Scatter3d(
                x=xs, y=ys, z=zs, mode="lines", name=_VECTORS,
                line=dict(color="#444444", width=2), hoverinfo="skip", connectgaps=False))
        return fig

    def snapshot_caption(self) -> str:
        return self.status.value

    def _update_status(self) -> None:
        cv = self.clusters
        n_atoms = int(np.asarray(cv.is_atom).sum())
        small = int(len(cv.counts) - n_atoms)
        decoded = ""
        if self.result is not None:
            decoded = f"; the decoder found {int(self.result.num_atoms[self.crystal.value])}"
        self.status.value = (
            f"<b>{n_atoms} atoms</b> from re-clustering the {len(cv.cluster_id)} recorded "
            f"particles ({small} clusters below {self.min_particles.value} particles "
            f"dropped){decoded}.{self._hint()}")

    def _hint(self) -> str:
        """Where the NMS sliders start to change this result: converged particles sit on their
        atoms, so small changes do nothing (the decoder is robust), and the user should know."""
        cv = self.clusters
        atoms = np.asarray(cv.is_atom)
        counts = np.asarray(cv.counts)[atoms]
        centres = np.asarray(cv.centres, dtype=float)[atoms]
        if len(counts) == 0:
            return ""
        parts = [f"min particles above {int(counts.min())} drops the smallest atom"]
        final = np.sqrt(np.asarray(self.recorder.scores(self.crystal.value), dtype=np.float64))
        final = final[np.isfinite(final)]
        if len(final):  # the score threshold only bites above the particles' last moves
            top = float(final.max())
            tiny = f"{max(top, 1e-3):.0e}"
            parts.append(f"a score threshold below {top:.2f} Å rejects particles" if top >= 0.05 else
                         f"no score threshold changes it (every particle's last move is below {tiny} Å: exact "
                         "fields land each particle on its atom)")
        if len(centres) > 1:
            d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
            d[np.diag_indices_from(d)] = np.inf
            parts.insert(0, f"an NMS radius above about {float(d.min()):.2f} Å merges the two closest atoms")
        return ("<br><i>At this move the result changes where " + "; ".join(parts) +
                " (earlier moves, with particles still on their way, react sooner).</i>")


# ============================================================================ FieldExplorer


class FieldExplorer(_Displayable):
    """Slices of the position field (|f_p| and in-plane arrows) or the species field.

    fields: a NeSF model or `ExactFields`; z: latents (B, D) (``fields.latents(batch)``);
    crystals: the true crystals behind z (a CrystalBatch, or Crystals / Structures): the slice
    spans the true cell and marks its atoms near the plane; vocab: the species vocabulary.
    Controls: crystal, plane (xy / xz / yz), offset along the plane's normal, which field.
    Every change evaluates the field on the slice (the model runs) and redraws.
    """

    def __init__(self, fields: StructureFields, z: Any, crystals: Any, vocab: Any, *,
                 step_angstrom: float = 0.1, crystal: int = 0, plane: str = "xy"):
        w = _ipw()
        self.fields, self.z, self.vocab = fields, z, vocab
        self.step_angstrom = float(step_angstrom)
        if hasattr(crystals, "to_crystals") and hasattr(crystals, "batch"):
            crystals = crystals.to_crystals(vocab)
        self.crystals = [compute._as_crystal(c) for c in crystals]
        n = int(z.shape[0])
        if len(self.crystals) != n:
            raise ValueError(f"{len(self.crystals)} crystals for {n} latents")
        self.crystal = w.Dropdown(options=[(f"{i}: {c.id or i}", i) for i, c in
                                           enumerate(self.crystals)], value=crystal,
                                  description="crystal")
        self.plane = w.ToggleButtons(options=["xy", "xz", "yz"], value=plane,
                                     description="plane",
                                     style={"button_width": "48px", "description_width": "initial"})
        self.offset = w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05,
                                    description="offset along the normal (Å)",
                                    continuous_update=True, readout_format=".2f",
                                    style={"description_width": "initial"},
                                    layout=w.Layout(width="480px"))
        self.kind = w.ToggleButtons(options=["position field", "species field"],
                                    value="position field", description="show",
                                    style={"button_width": "120px", "description_width": "initial"})
        self.figure = go.FigureWidget()
        self.figure.layout.uirevision = "keep"
        self._species_figure: go.FigureWidget | None = None  # made when first shown (each FigureWidget
        # sends plotly's 5 MB widget bundle to the page, and an export keeps a copy per widget)
        self._shown_kind = None
        self._set_offset_range()
        self._redraw(full=True)
        self.crystal.observe(lambda ch: self._timed(self._on_geometry), "value")
        self.plane.observe(lambda ch: self._timed(self._on_geometry), "value")
        self.offset.observe(lambda ch: self._timed(self._redraw), "value")
        self.kind.observe(lambda ch: self._timed(lambda: self._redraw(full=True)), "value")
        self.box = w.Box([self.figure])
        self.widget = w.VBox([w.HBox([self.crystal, self.plane]),
                              w.HBox([self.offset, self.kind]), self.box])

    def _set_offset_range(self) -> None:
        _, _, inorm = compute.PLANES[self.plane.value]
        corners = UNIT_CUBE_CORNERS @ self.crystals[self.crystal.value].lattice  # the true cell
        lo, hi = float(corners[:, inorm].min()), float(corners[:, inorm].max())
        with self.offset.hold_trait_notifications():
            self.offset.min, self.offset.max = -1e9, 1e9  # avoid min > max in between
            self.offset.min, self.offset.max = round(lo, 2), round(hi, 2)
            self.offset.value = min(max(self.offset.value, self.offset.min), self.offset.max)

    def _on_geometry(self) -> None:
        self._set_offset_range()
        self._redraw(full=True)

    def _figure(self) -> go.Figure:
        c = self.crystal.value
        args = (self.fields, self.z, c, self.plane.value, float(self.offset.value), None,
                self.step_angstrom)
        kw = dict(atoms=self.crystals[c], vocab=self.vocab)
        where = f"{self.crystals[c].id or c}: {self.plane.value} plane at " \
                f"{'xyz'[compute.PLANES[self.plane.value][2]]} = {self.offset.value:.2f} Å"
        if self.kind.value == "position field":
            return compute.field_slice(*args, **kw).figure(
                title=f"Position field · {where}<br><span style='font-size:12px'>colour: |f_p|; arrows: "
                              "in-plane direction to the nearest atom</span>")
        return compute.species_slice(*args, **kw).figure(title=f"Species field · {where}")

    def _redraw(self, full: bool = False) -> None:
        fig = self._figure()
        fw = self.figure if self.kind.value == "position field" else self.species_figure
        if full or self._shown_kind != self.kind.value:
            fw.data = ()
            fw.add_traces(list(fig.data))
            with fw.batch_update():
                fw.layout = fig.layout
                fw.layout.uirevision = "keep"
            if hasattr(self, "box"):
                self.box.children = [fw]
            self._shown_kind = self.kind.value
        else:
            _sync(fw, fig, ("title", "xaxis.range", "yaxis.range"))

    @property
    def species_figure(self) -> go.FigureWidget:
        """The FigureWidget of the species field (made the first time it is asked for)."""
        if self._species_figure is None:
            self._species_figure = go.FigureWidget()
            self._species_figure.layout.uirevision = "keep"
        return self._species_figure

    @property
    def current_figure(self) -> go.FigureWidget:
        """The FigureWidget on show (position or species field)."""
        return self.figure if self.kind.value == "position field" else self.species_figure

    def snapshot_figures(self) -> list[go.FigureWidget]:
        return [self.current_figure]


# ============================================================================ LatentInterpolator


class LatentInterpolator(_Displayable):
    """Decoded crystals along the straight line between two latents, one slider step each.

    All `steps` latents are decoded once, in one batch, when the widget is made (the model
    runs then, not on slider moves); the slider only switches precomputed figures. Below the
    crystal, atom count and lattice along the path with a marker at the current step.
    crystals: two Crystals / Structures (or a CrystalBatch of two); box, vocab: the model's.
    """

    def __init__(self, model: StructureFields, crystals: Any, box: Any, vocab: Any, steps: int = 9, *,
                 config: DecodeConfig = DecodeConfig(), bonds: bool = False,
                 progress: bool = False):
        w = _ipw()
        self.data = compute.decode_interpolation(model, crystals, steps, box=box, vocab=vocab,
                                                 config=config, progress=progress)
        d = self.data
        self.figures = []
        for t, s in enumerate(d.structures):
            title = (f"t = {d.steps[t]:.2f}: {s.composition.reduced_formula if len(s) else '-'}"
                     f", {int(d.atom_counts[t])} atoms")
            self.figures.append(crystal_figure(s, title=title, bonds=bonds))
        lows = np.min([_scene_ranges(f)[:, 0] for f in self.figures], 0)
        highs = np.max([_scene_ranges(f)[:, 1] for f in self.figures], 0)
        self._ranges = np.stack([lows, highs], 1)
        self.step = w.SelectionSlider(options=[(f"{t:.2f}", i) for i, t in enumerate(d.steps)],
                                      value=0, description="t", continuous_update=True,
                                      layout=w.Layout(width="520px"))
        self.play = w.Play(min=0, max=steps - 1, value=0, interval=400)
        w.jslink((self.play, "value"), (self.step, "index"))
        first = self.figures[0]
        self.figure = go.FigureWidget(first)
        self.figure.layout.uirevision = "keep"
        self.figure.layout.width = None
        _fix_scene(self.figure, self._ranges)
        path = d.figure(interpolation_path_figure)
        path.add_shape(type="line", x0=0.0, x1=0.0, xref="x", yref="paper", y0=0, y1=1,
                       line=dict(color="#d62728", width=2, dash="dot"))
        path.layout.height = 520
        path.layout.width = None
        self.path_figure = go.FigureWidget(path)
        self.step.observe(lambda ch: self._timed(self._redraw), "value")
        self.widget = w.VBox([w.HBox([self.play, self.step]), self.figure, self.path_figure])

    def snapshot_figures(self) -> list[go.FigureWidget]:
        return [self.figure, self.path_figure]

    def _redraw(self) -> None:
        t = self.step.value
        _sync(self.figure, self.figures[t])
        x = float(self.data.steps[t])
        with self.path_figure.batch_update():
            self.path_figure.layout.shapes[0].update(x0=x, x1=x)


def _scene_ranges(fig: go.Figure) -> np.ndarray:
    """(3, 2) axis ranges of a figure's 3-D scene (from its traces when not set)."""
    sc = fig.layout.scene
    rng = [getattr(sc, f"{a}axis").range for a in "xyz"]
    if all(r is not None for r in rng):
        return np.array(rng, dtype=float)
    pts = []
    for tr in fig.data:
        if all(getattr(tr, a, None) is not None for a in "xyz"):
            a = np.array([[np.nan if v is None else v for v in getattr(tr, c)] for c in "xyz"],
                         float).T
            pts.append(a[np.isfinite(a).all(1)])
    allp = np.concatenate(pts) if pts else np.zeros((1, 3))
    return np.stack([allp.min(0) - 0.5, allp.max(0) + 0.5], 1)


# ============================================================================ training


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


_INTERRUPT_ESM = """
function render({ model, el }) {
  const b = document.createElement("button");
  b.className = "jupyter-button widget-button mod-danger";
  const sync = () => { b.textContent = model.get("label"); b.disabled = model.get("disabled"); };
  sync();
  model.on("change:label", sync);
  model.on("change:disabled", sync);
  b.addEventListener("click", async () => {
    // the kernel is busy training, so a widget message would wait for the cell to end: interrupt
    // the kernel the way Kernel > Interrupt does (Jupyter server REST API, this page's session)
    b.disabled = true;
    b.textContent = "Stopping...";
    const cfgEl = document.getElementById("jupyter-config-data");
    const cfg = cfgEl ? JSON.parse(cfgEl.textContent) : {};
    const base = (cfg.baseUrl || "/").replace(/\\/?$/, "/");
    const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1];
    const headers = {};
    if (xsrf) headers["X-XSRFToken"] = decodeURIComponent(xsrf);
    if (cfg.token) headers["Authorization"] = "token " + cfg.token;
    try {
      const r = await fetch(base + "api/kernels/" + model.get("kernel_id") + "/interrupt",
                            { method: "POST", headers, credentials: "same-origin" });
      if (!r.ok) throw new Error("HTTP " + r.status);
    } catch (e) {
      b.textContent = "Stop failed: use Kernel > Interrupt";
      b.title = String(e);
    }
  });
  el.appendChild(b);
}
export default { render };
"""


def _kernel_id() -> str:
    """The Jupyter server's id of this kernel ('' outside a server-started kernel)."""
    try:
        from ipykernel import get_connection_file

        stem = Path(get_connection_file()).stem
    except Exception:  # not in a kernel: no connection file
        return ""
    return stem[len("kernel-"):] if stem.startswith("kernel-") else ""


def _stop_button():
    """A Stop button that interrupts this kernel from the browser (anywidget): the training loop
    turns the KeyboardInterrupt into a clean stop. A widget message cannot do it: the kernel
    handles comm messages only between cells, and training runs inside one."""
    import anywidget
    import traitlets

    class InterruptButton(anywidget.AnyWidget):
        _esm = _INTERRUPT_ESM
        kernel_id = traitlets.Unicode("").tag(sync=True)
        label = traitlets.Unicode("Stop").tag(sync=True)
        disabled = traitlets.Bool(True).tag(sync=True)

    return InterruptButton(kernel_id=_kernel_id())


class TrainingPanel(SnapshotDisplay):
    """Train with live loss curves, an honest ETA and a Stop button.

        panel = TrainingPanel(); display(panel)
        run = panel.run(train_set, val_set, out_dir, config)   # nesf_viz.train's arguments

    The figure redraws every `refresh_seconds` with the loss of every step, and after every
    epoch with the epoch means and validation. Stop interrupts the kernel from the browser (as
    Kernel > Interrupt does; a widget message would wait until the cell ends), and training
    turns that into a clean stop: the unfinished epoch is dropped and the returned model is the
    one in last.pt, which the status line names. Observers only: the run is the same as `train`
    without the panel. Its static snapshot (curves and status line) is redrawn after every epoch
    and when training ends.
    """

    def __init__(self, title: str | None = None, refresh_seconds: float = 2.0):
        ipw = _ipw()
        self.title = title or "Training (live)"
        self.refresh_seconds = float(refresh_seconds)
        self.figure = go.FigureWidget(training_curves_figure({}, title=self.title, steps={}))
        self.figure.layout.width = None
        self.stop_button = _stop_button()
        self.status = ipw.HTML("not started")
        self.widget = ipw.VBox([ipw.HBox([self.stop_button, self.status]), self.figure])
        self._stop = threading.Event()
        self._steps: dict[str, list[float]] = {"epoch": [], "loss": []}
        self._history: dict[str, list[float]] = {}
        self._last_draw = 0.0
        self._epochs_total: int | None = None
        self._sized = False
        self._budget_s: float | None = None

    def snapshot_figures(self) -> list[go.FigureWidget]:
        return [self.figure]

    def snapshot_caption(self) -> str:
        return self.status.value

    def run(self, *args: Any, **kwargs: Any):
        """`nesf_viz.train(*args, **kwargs)` with this panel watching; returns its TrainResult
        (and raises what it raises, after saying so in the status line)."""
        from ..train import train
        from ..train_config import TrainConfig

        config = kwargs.get("config", args[3] if len(args) > 3 else TrainConfig())
        self._epochs_total = int(config.epochs)
        self._sized = False
        self._budget_s = None if config.max_minutes is None else 60.0 * config.max_minutes
        self._stop.clear()
        self._steps = {"epoch": [], "loss": []}
        self._history = {}
        kwargs = dict(kwargs, callbacks=[*kwargs.get("callbacks", ()), self._on_epoch],
                      step_callbacks=[*kwargs.get("step_callbacks", ()), self._on_step],
                      stop=self._stop, progress=False)
        self.stop_button.disabled = not self.stop_button.kernel_id
        self.stop_button.label = "Stop" if self.stop_button.kernel_id else "Stop: use Kernel > Interrupt"
        self.status.value = "starting..."
        try:
            result = train(*args, **kwargs)
        except BaseException as exc:
            self._finish(None, exc)
            raise
        self._finish(result, None)
        return result

    def stop(self) -> None:
        """Ask training to end after the step in flight, from code (a callback, another thread);
        the button interrupts the kernel instead. Either way last.pt keeps the last whole epoch."""
        self._stop.set()
        self.stop_button.disabled = True
        self.stop_button.label = "Stopping..."

    # observers, called by the training loop
    def _on_step(self, report: Any) -> None:
        self._steps["epoch"].append(report.epoch)
        self._steps["loss"].append(report.parts.get("loss", float("nan")))
        self._status(report.epoch, report.elapsed_seconds)
        if time.monotonic() - self._last_draw >= self.refresh_seconds:
            self._draw()

    def _on_epoch(self, report: Any) -> None:
        if getattr(report, "epochs_total", None):  # fit_to_budget sizes the run after its first epoch
            self._sized = self._sized or report.epochs_total != self._epochs_total
            self._epochs_total = int(report.epochs_total)
        self._status(report.epoch, report.elapsed_seconds)  # the sized epochs show at once
        self._history = report.history
        self._draw()
        best = min(report.history.get("val_loss", [float("nan")]) or [float("nan")])
        self.figure.layout.title.text = (f"{self.title} · epoch {report.epoch} · val loss "
                                         f"{report.val.get('loss', float('nan')):.4g} (best {best:.4g})")
        self.refresh_snapshot()

    def _draw(self) -> None:
        self._last_draw = time.monotonic()
        update_training_curves(self.figure, self._history, steps=self._steps)

    def _status(self, epochs_done: float, elapsed_s: float) -> None:
        left = []
        if self._epochs_total and epochs_done > 0:
            left.append(elapsed_s / epochs_done * (self._epochs_total - epochs_done))
        if self._budget_s is not None:
            left.append(self._budget_s - elapsed_s)
        eta = f" · about {_clock(max(0.0, min(left)))} left" if left else ""
        of = f" of {self._epochs_total}" if self._epochs_total else ""
        sized = " (as many as the budget holds)" if self._sized else ""
        budget = f" (budget {_clock(self._budget_s)})" if self._budget_s is not None else ""
        self.status.value = (f"<b>Training</b>: epoch {epochs_done:.1f}{of}{sized} · {_clock(elapsed_s)} elapsed"
                             f"{budget}{eta}")

    def _finish(self, run: Any, exc: BaseException | None) -> None:
        stopped = self._stop.is_set() or (run is not None and "by the user" in run.stopped_because)
        self.stop_button.disabled = True
        self.stop_button.label = "Stopped" if stopped else "Done"
        if self._history or self._steps["epoch"]:
            self._draw()
        if exc is not None:
            if isinstance(exc, KeyboardInterrupt):
                self.status.value = "<b>Interrupted</b> before training began"
            else:
                self.status.value = f"<b>Failed</b>: {html.escape(str(exc) or type(exc).__name__)}"
        else:
            head = "Stopped" if stopped else "Done"
            best = f"; best checkpoint: {run.best_checkpoint}" if run.best_checkpoint is not None else ""
            self.status.value = f"<b>{head}</b>: {html.escape(run.stopped_because + best)}"
        self.refresh_snapshot()
