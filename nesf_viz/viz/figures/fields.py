"""The fields on a plane (position-field arrows, species classes) and the training query points.

Pure: numpy arrays (or pymatgen Structures) in, a ``plotly.graph_objects.Figure`` out (see
`nesf_viz.viz.figures`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...errors import ShapeError
from ..scene import element_color
from ._common import PALETTE, _check, _label_color, _layout, _ranges, _scene


def _arrow_segments(u: np.ndarray, v: np.ndarray, du: np.ndarray, dv: np.ndarray,
                    head: float = 0.3, angle_deg: float = 25.0) -> tuple[list, list]:
    """Shaft + two head barbs per arrow, as one polyline with None separators."""
    xs: list = []
    ys: list = []
    ca, sa = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    for x0, y0, dx, dy in zip(u, v, du, dv):
        L = float(np.hypot(dx, dy))
        if not np.isfinite(L) or L < 1e-12:
            continue
        x1, y1 = x0 + dx, y0 + dy
        h = head * L
        bx, by = -dx / L * h, -dy / L * h
        l1 = (x1 + ca * bx - sa * by, y1 + sa * bx + ca * by)
        l2 = (x1 + ca * bx + sa * by, y1 - sa * bx + ca * by)
        xs += [x0, x1, None, l1[0], x1, l2[0], None]
        ys += [y0, y1, None, l1[1], y1, l2[1], None]
    return xs, ys


def field_slice_figure(
    grid_u: np.ndarray,
    grid_v: np.ndarray,
    vectors_uv: np.ndarray,
    magnitude: np.ndarray,
    axis_labels: tuple[str, str] = ("x (Å)", "y (Å)"),
    atoms_uv: np.ndarray | None = None,
    title: str | None = None,
    *,
    atom_labels: Sequence[str] | None = None,
    max_arrows: int = 24,
) -> go.Figure:
    """A 2-D slice of the position field: |f_p| heat map with in-plane direction arrows.

    grid_u (U,), grid_v (V,) pixel centres in Å; vectors_uv (U, V, 2) in-plane components of
    f_p; magnitude (U, V) full |f_p| in Å; atoms_uv (M, 2) atoms in the plane (``atom_labels``
    names them). Arrows are drawn on a sub-grid of at most ``max_arrows`` per side; an arrow's
    length is a fixed fraction of the arrow spacing times |in-plane f| / |f|, so arrows point
    to the nearest atom and shrink where the field leaves the plane.
    """
    gu = _check(grid_u, (None,), "grid_u (U,)")
    gv = _check(grid_v, (None,), "grid_v (V,)")
    U, V = len(gu), len(gv)
    vec = _check(vectors_uv, (U, V, 2), "vectors_uv (U, V, 2)")
    mag = _check(magnitude, (U, V), "magnitude (U, V)")
    au = None if atoms_uv is None else _check(atoms_uv, (None, 2), "atoms_uv (M, 2)")

    fig = go.Figure(go.Heatmap(
        x=gu, y=gv, z=mag.T, colorscale="Viridis", zmin=0.0,
        colorbar=dict(title=dict(text="|f_p| (Å)"), thickness=16),
        hovertemplate=f"{axis_labels[0]} %{{x:.2f}}<br>{axis_labels[1]} %{{y:.2f}}"
                      "<br>|f_p| %{z:.3f} Å<extra></extra>",
        name="|f_p|",
    ))
    arrows = _direction_arrows(gu, gv, vec, mag, max_arrows)
    if arrows is not None:
        fig.add_trace(arrows)
    if au is not None and len(au):
        names = list(atom_labels) if atom_labels is not None else ["atom"] * len(au)
        fig.add_trace(go.Scatter(
            x=au[:, 0], y=au[:, 1], mode="markers+text" if atom_labels is not None else
            "markers", text=names, textposition=_label_positions(au, gu, gv),
            textfont=dict(color="white", size=13, shadow="0 0 3px #000"),  # readable off the heatmap too
            marker=dict(size=13, color=[_label_color(n, 0) if element_color(n, "") else
                                        "#ffffff" for n in names],
                        line=dict(color="#111111", width=2), symbol="circle"),
            name="atoms in plane", hovertemplate="%{text}<br>(%{x:.2f}, %{y:.2f})<extra></extra>",
            cliponaxis=False, showlegend=False,
        ))
    if title is None:
        title = ("Position field slice"
                 "<br><span style='font-size:12px'>colour: |f_p|; arrows: in-plane direction to the nearest atom, "
                 "shorter where f_p leaves the plane</span>")
    _layout(fig, title, height=620, width=660, showlegend=False)
    fig.update_xaxes(title_text=axis_labels[0], range=[gu.min(), gu.max()], constrain="domain",
                     showgrid=False, zeroline=False, ticks="outside")
    fig.update_yaxes(title_text=axis_labels[1], range=[gv.min(), gv.max()], scaleanchor="x",
                     scaleratio=1, constrain="domain", showgrid=False, zeroline=False,
                     ticks="outside")
    return fig


def _direction_arrows(gu: np.ndarray, gv: np.ndarray, vec: np.ndarray, mag: np.ndarray,
                      max_arrows: int) -> go.Scatter | None:
    """In-plane direction arrows on a sub-grid of at most `max_arrows` per side: length a fixed
    fraction of the arrow spacing times |in-plane f| / |f| (None when the sub-grid is empty)."""
    U, V = len(gu), len(gv)
    su = max(1, int(np.ceil(U / max_arrows)))
    sv = max(1, int(np.ceil(V / max_arrows)))
    iu = np.arange(su // 2, U, su)
    iv = np.arange(sv // 2, V, sv)
    if len(iu) and len(iv):
        spacing = min(
            abs(gu[iu[1]] - gu[iu[0]]) if len(iu) > 1 else np.inf,
            abs(gv[iv[1]] - gv[iv[0]]) if len(iv) > 1 else np.inf,
        )
        if not np.isfinite(spacing):
            spacing = max(np.ptp(gu), np.ptp(gv), 1.0) / 4
        UU, VV = np.meshgrid(iu, iv, indexing="ij")
        d = vec[UU, VV]                                              # (u, v, 2)
        n_in = np.linalg.norm(d, axis=-1)
        frac = np.clip(np.divide(n_in, mag[UU, VV], out=np.zeros_like(n_in),
                                 where=mag[UU, VV] > 1e-12), 0.0, 1.0)
        unit = np.divide(d, n_in[..., None], out=np.zeros_like(d), where=n_in[..., None] > 0)
        arrow = unit * (0.8 * spacing * frac)[..., None]
        xs, ys = _arrow_segments(gu[UU].ravel() - arrow[..., 0].ravel() / 2,
                                 gv[VV].ravel() - arrow[..., 1].ravel() / 2,
                                 arrow[..., 0].ravel(), arrow[..., 1].ravel())
        return go.Scatter(x=xs, y=ys, mode="lines", name="in-plane direction",
                          line=dict(color="white", width=1.4), hoverinfo="skip",
                          opacity=0.9, showlegend=False)
    return None


def species_slice_figure(
    grid_u: np.ndarray,
    grid_v: np.ndarray,
    labels: np.ndarray,
    confidence: np.ndarray,
    class_names: Sequence[str],
    atoms_uv: np.ndarray | None = None,
    title: str | None = None,
    *,
    axis_labels: tuple[str, str] = ("x (Å)", "y (Å)"),
    atom_labels: Sequence[str] | None = None,
) -> go.Figure:
    """A 2-D slice of the species field: argmax species (left) and its confidence (right).

    grid_u (U,), grid_v (V,) Å; labels (U, V) int class index in [0, S) (others are blank);
    confidence (U, V) in [0, 1]; class_names (S,) (element symbols get element colours).
    The left panel is a categorical map whose colour bar names the classes; the right panel
    shows the confidence. atoms_uv (M, 2) are marked on both.
    """
    gu = _check(grid_u, (None,), "grid_u (U,)")
    gv = _check(grid_v, (None,), "grid_v (V,)")
    U, V = len(gu), len(gv)
    lab = _check(labels, (U, V), "labels (U, V)", dtype=float)
    conf = _check(confidence, (U, V), "confidence (U, V)")
    names = [str(n) for n in class_names]
    S = len(names)
    if S == 0:
        raise ShapeError("class_names must name at least one species (S >= 1)")
    au = None if atoms_uv is None else _check(atoms_uv, (None, 2), "atoms_uv (M, 2)")
    lab = np.where((lab >= 0) & (lab < S), lab, np.nan)

    scale = _class_colorscale(names)
    hover_names = np.array(names, dtype=object)[np.nan_to_num(lab, nan=0).astype(int)]
    hover_names = np.where(np.isnan(lab), "-", hover_names)

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.16,
                        subplot_titles=("argmax species", "confidence (max probability)"))
    fig.add_trace(go.Heatmap(
        x=gu, y=gv, z=lab.T, zmin=-0.5, zmax=S - 0.5, colorscale=scale,
        customdata=np.stack([hover_names.T, conf.T], -1),
        hovertemplate=f"{axis_labels[0]} %{{x:.2f}}<br>{axis_labels[1]} %{{y:.2f}}"
                      "<br>%{customdata[0]} (p=%{customdata[1]:.2f})<extra></extra>",
        colorbar=dict(title=dict(text="species"), tickvals=list(range(S)), ticktext=names,
                      x=0.42, xanchor="left", thickness=16, len=0.9),
        name="species",
    ), row=1, col=1)
    fig.add_trace(go.Heatmap(
        x=gu, y=gv, z=conf.T, zmin=0.0, zmax=1.0, colorscale="Blues",
        colorbar=dict(title=dict(text="confidence"), x=1.0, xanchor="left", thickness=16,
                      len=0.9),
        hovertemplate=f"{axis_labels[0]} %{{x:.2f}}<br>{axis_labels[1]} %{{y:.2f}}"
                      "<br>confidence %{z:.2f}<extra></extra>",
        name="confidence",
    ), row=1, col=2)
    if au is not None and len(au):
        for col in (1, 2):
            fig.add_trace(_atom_rings(au, atom_labels, gu, gv), row=1, col=col)
    if title is None:
        title = "Species field slice"
    _layout(fig, title, height=500)  # as wide as the notebook: a fixed 1050 px cut the right-hand colour bar
    fig.update_annotations(yshift=16)               # subplot titles clear of atom labels
    fig.update_layout(margin=dict(t=110))
    for col, ax in ((1, ""), (2, "2")):
        fig.update_xaxes(title_text=axis_labels[0], range=[gu.min(), gu.max()],
                         constrain="domain", showgrid=False, zeroline=False, ticks="outside",
                         row=1, col=col)
        fig.update_yaxes(title_text=axis_labels[1], range=[gv.min(), gv.max()],
                         scaleanchor=f"x{ax}", scaleratio=1, constrain="domain",
                         showgrid=False, zeroline=False, ticks="outside", row=1, col=col)
    fig.update_layout(showlegend=False)
    return fig


def _class_colorscale(names: Sequence[str]) -> list:
    """A categorical colour scale over S classes (element colours, a palette colour for repeats)."""
    S = len(names)
    colors: list[str] = []
    for i, n in enumerate(names):
        c = _label_color(n, i)
        colors.append(c if c not in colors else PALETTE[i % len(PALETTE)])
    scale = []
    for i, c in enumerate(colors):
        scale += [[i / S, c], [(i + 1) / S, c]]
    return scale


def _label_positions(au: np.ndarray, gu: np.ndarray, gv: np.ndarray) -> list[str]:
    """Where each atom's label goes: above it, or below it on the top edge, and towards the inside
    on the left and right edges (a centred label on an edge atom was cut in half)."""
    du, dv = 0.08 * (gu.max() - gu.min()), 0.08 * (gv.max() - gv.min())
    out = []
    for u, v in au:
        vert = "bottom" if v > gv.max() - dv else "top"
        horiz = "right" if u < gu.min() + du else "left" if u > gu.max() - du else "center"
        out.append(f"{vert} {horiz}")
    return out


def _atom_rings(au: np.ndarray, atom_labels: Sequence[str] | None, gu: np.ndarray | None = None,
                gv: np.ndarray | None = None) -> go.Scatter:
    """Atoms in the plane (M, 2) as open rings, labelled when `atom_labels` is given."""
    an = list(atom_labels) if atom_labels is not None else [""] * len(au)
    where = _label_positions(au, gu, gv) if gu is not None and gv is not None else "top center"
    return go.Scatter(
        x=au[:, 0], y=au[:, 1], mode="markers+text" if atom_labels is not None else
        "markers", text=an, textposition=where, textfont=dict(size=12),
        marker=dict(size=11, color="rgba(0,0,0,0)", line=dict(color="#111111",
                                                                width=2)),
        name="atoms in plane", showlegend=False, cliponaxis=False,
        hovertemplate="atom %{text}<br>(%{x:.2f}, %{y:.2f})<extra></extra>",
    )


def query_points_figure(global_points: np.ndarray, local_points: np.ndarray, species_points: np.ndarray,
                        atoms: np.ndarray | None = None, atom_labels: Sequence[str] | None = None,
                        title: str | None = None) -> go.Figure:
    """Where one training step asks the fields for their values: global points over the box,
    local points around every atom (position field) and species points close to the atoms
    (species field), with the atoms themselves. Each kind is a legend entry (click to hide)."""
    kinds = [("global points (position field, whole box)", global_points, "#9e9e9e", 2.0, 0.35),
             ("local points (position field near atoms)", local_points, "#1f77b4", 2.5, 0.55),
             ("species points (species field)", species_points, "#ff7f0e", 1.8, 0.35)]
    traces: list = []
    counts = []
    for name, pts, color, size, alpha in kinds:
        p = _check(pts, (None, 3), name)
        counts.append(len(p))
        traces.append(go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers", name=f"{name}: {len(p)}",
                                   marker=dict(size=size, color=color, opacity=alpha), hoverinfo="skip"))
    at = None if atoms is None else _check(atoms, (None, 3), "atoms (N, 3)")
    if at is not None and len(at):
        labels = list(atom_labels) if atom_labels is not None else [""] * len(at)
        traces.append(go.Scatter3d(
            x=at[:, 0], y=at[:, 1], z=at[:, 2], mode="markers", name="atoms",
            marker=dict(size=9, color=[_label_color(lab, i) for i, lab in enumerate(labels)],
                        line=dict(color="#111111", width=2)),
            text=labels, hovertemplate="%{text}<br>(%{x:.2f}, %{y:.2f}, %{z:.2f}) Å<extra></extra>"))
    title = title or (f"One training step's queries: {counts[0]} global, {counts[1]} local, "
                      f"{counts[2]} species points")
    allp = [np.asarray(x, float) for x in (global_points, local_points, species_points) if len(x)]
    return _layout(go.Figure(traces), title, scene=_scene(_ranges(*allp, at)), height=600)


def field_slice_pair_figure(left: dict, right: dict, titles: Sequence[str] = ("left", "right"),
                            title: str | None = None) -> go.Figure:
    """Two position-field slices side by side on one colour scale, e.g. the same plane with the
    paper's fields and with the periodic option. left/right: `field_slice_figure`'s arguments
    (grid_u, grid_v, vectors_uv, magnitude, axis_labels, atoms_uv, atom_labels); one colour bar,
    on the right, for both."""
    from plotly.subplots import make_subplots

    keep = ("grid_u", "grid_v", "vectors_uv", "magnitude", "axis_labels", "atoms_uv", "atom_labels")
    halves = [field_slice_figure(**{k: v for k, v in d.items() if k in keep}) for d in (left, right)]
    zmax = max(float(np.nanmax(h.data[0].z)) for h in halves)
    fig = make_subplots(rows=1, cols=2, subplot_titles=list(titles), horizontal_spacing=0.12)
    for col, half in enumerate(halves, start=1):
        for tr in half.data:
            if tr.type == "heatmap":
                tr.update(zmax=zmax, showscale=col == 2,
                          colorbar=dict(title=dict(text="|f_p| (Å)"), thickness=16, len=0.9))
            fig.add_trace(tr, row=1, col=col)
        d = left if col == 1 else right
        au = np.asarray(d.get("atoms_uv") if d.get("atoms_uv") is not None else np.zeros((0, 2))).reshape(-1, 2)
        # the axes reach the atoms on the slice's edges (a face's corners), which Plotly drops outside
        u = np.concatenate([np.asarray(d["grid_u"]), au[:, 0]])
        v = np.concatenate([np.asarray(d["grid_v"]), au[:, 1]])
        labels = d.get("axis_labels", ("x (Å)", "y (Å)"))
        fig.update_xaxes(title_text=labels[0], range=[u.min() - 0.1, u.max() + 0.1], constrain="domain",
                         showgrid=False, zeroline=False, ticks="outside", row=1, col=col)
        fig.update_yaxes(title_text=labels[1], range=[v.min() - 0.1, v.max() + 0.1], scaleanchor="x" if col == 1
                         else "x2", scaleratio=1, constrain="domain", showgrid=False, zeroline=False,
                         ticks="outside", row=1, col=col)
    _layout(fig, title, height=540, showlegend=False)
    fig.update_annotations(yshift=16)
    fig.update_layout(margin=dict(t=150))  # the title above the two-line panel titles
    return fig
