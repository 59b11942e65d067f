"""The decoder's particles: their flow over the moves, the NMS clusters, the species vote around an atom.

Pure: numpy arrays (or pymatgen Structures) in, a ``plotly.graph_objects.Figure`` out (see
`nesf_viz.viz.figures`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from ...errors import ShapeError
from ..scene import sphere_surfaces
from ._common import PALETTE, REJECTED_COLOR, _check, _label_color, _layout, _ranges, _scene


def _threshold_colorscale() -> list:
    """Blue (small |f_p|, will be kept) -> light grey at the threshold -> red (far)."""
    return [[0.0, "#08306b"], [0.25, "#2171b5"], [0.5, "#e0e0e0"], [0.75, "#ef8a62"],
            [1.0, "#b2182b"]]


def particle_animation(
    positions: np.ndarray,
    scores: np.ndarray,
    atoms: np.ndarray | None = None,
    atom_labels: Sequence[str] | None = None,
    kept: np.ndarray | None = None,
    step_labels: Sequence[str] | None = None,
    score_threshold: float = 0.9,
    title: str | None = None,
) -> go.Figure:
    """Particles moving along the position field, one frame per recorded step.

    positions (T, P, 3) Å, scores (T, P) residual |f_p| Å, atoms (N, 3) true atoms with
    ``atom_labels`` (N,) (element symbols get element colours), kept (P,) bool: in the final
    frame kept particles keep their colour and rejected ones turn small and grey.
    Particles are coloured by |f_p| on a fixed range [0, 2 * score_threshold] (the threshold
    is the colour scale's grey midpoint). Axes are fixed over all frames; play/pause buttons
    and a step slider drive the frames.
    """
    pos = _check(positions, (None, None, 3), "positions (T, P, 3)")
    T, P = pos.shape[:2]
    sc = _check(scores, (T, P), "scores (T, P)")
    if T == 0:
        raise ShapeError("positions must hold at least one recorded step (T >= 1)")
    at = None if atoms is None else _check(atoms, (None, 3), "atoms (N, 3)")
    if at is not None and atom_labels is not None and len(atom_labels) != len(at):
        raise ShapeError(f"atom_labels has {len(atom_labels)} entries for {len(at)} atoms")
    kp = None if kept is None else _check(kept, (P,), "kept (P,)", dtype=bool)
    if step_labels is not None and len(step_labels) != T:
        raise ShapeError(f"step_labels has {len(step_labels)} entries for T={T} steps")
    labels = [str(s) for s in step_labels] if step_labels is not None else [str(t) for t in
                                                                            range(T)]
    thr = float(score_threshold)
    cmax = 2.0 * thr if thr > 0 else float(np.nanmax(sc)) or 1.0
    size = float(np.clip(9.0 - 1.2 * np.log10(max(P, 1)), 2.5, 7.0))
    rng = _ranges(pos, at)

    def frame_data(t: int) -> list[go.Scatter3d]:
        final = kp is not None and t == T - 1
        return _particle_frame(pos[t], sc[t], kp if final else None, size, thr, cmax, kp is not None)

    traces = frame_data(0)
    if at is not None:
        traces.append(_true_atoms_trace(at, atom_labels))
    fig = go.Figure(traces)
    fig.frames = [go.Frame(data=frame_data(t), traces=[0, 1], name=str(t)) for t in range(T)]
    if title is None:
        n_kept = f" · {int(kp.sum())}/{P} kept" if kp is not None else ""
        title = f"Decoding: {P} particles over {T} recorded steps{n_kept}"
    _layout(fig, title, scene=_scene(rng), height=640, **_player(labels))
    fig.update_layout(margin=dict(b=90), legend=dict(x=0.0, xanchor="left", y=1.0))
    return fig


def _particle_frame(pos: np.ndarray, sc: np.ndarray, kept: np.ndarray | None, size: float, thr: float,
                    cmax: float, show_rejected: bool) -> list[go.Scatter3d]:
    """One step's particles (P, 3) coloured by |f_p| (P,); with `kept` (the final frame) the
    rejected ones small and grey in a second trace (always present, so frames line up)."""
    P = pos.shape[0]
    sel = np.ones(P, bool) if kept is None else kept
    p, s = pos[sel], sc[sel]
    pid = np.nonzero(sel)[0]
    main = go.Scatter3d(
        x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers",
        name="kept particles" if kept is not None else "particles",
        customdata=np.column_stack([pid, s]),
        hovertemplate="particle %{customdata[0]}<br>|f_p| = %{customdata[1]:.3f} Å"
                      "<extra></extra>",
        marker=dict(size=size, color=s, cmin=0.0, cmax=cmax,
                    colorscale=_threshold_colorscale(), opacity=0.85,
                    colorbar=dict(title=dict(text="|f_p| (Å)", side="top"), len=0.7, x=1.0,
                                  xanchor="left", y=0.45, thickness=16,
                                  tickvals=[0, thr / 2, thr, 1.5 * thr, cmax],
                                  ticktext=[f"{v:.2g}" for v in (0, thr / 2)]
                                  + [f"{thr:.2g} threshold"]
                                  + [f"{v:.2g}" for v in (1.5 * thr,)]
                                  + [f"≥{cmax:.2g}"])),
        showlegend=True,
    )
    q = pos[~sel]
    grey = go.Scatter3d(
        x=q[:, 0], y=q[:, 1], z=q[:, 2], mode="markers", name="rejected particles",
        marker=dict(size=max(size * 0.6, 1.5), color=REJECTED_COLOR, opacity=0.5),
        hoverinfo="skip", showlegend=bool(show_rejected),
    )
    return [main, grey]


def _true_atoms_trace(at: np.ndarray, atom_labels: Sequence[str] | None) -> go.Scatter3d:
    """The true atoms (N, 3) as large translucent grey markers ringed in black, labelled with their
    element: grey, because element colours beside the particles' |f_p| colour scale read as field
    values."""
    names = list(atom_labels) if atom_labels is not None else [f"atom {i}" for i in range(len(at))]
    return go.Scatter3d(
        x=at[:, 0], y=at[:, 1], z=at[:, 2], mode="markers+text", name="true atoms",
        text=names, textposition="top center", textfont=dict(size=13, color="#111111"),
        marker=dict(size=22, color=TRUE_ATOM_COLOR, symbol="circle", opacity=0.35,
                    line=dict(color="#111111", width=1)),
        hovertemplate="%{text}<br>(%{x:.2f}, %{y:.2f}, %{z:.2f}) Å<extra>true atom</extra>",
    )


TRUE_ATOM_COLOR = "#8c8c8c"
"""The true atoms in the particle animation: no element colour next to a colour scale of |f_p|."""


def _player(labels: Sequence[str]) -> dict:
    """Play/pause buttons and a step slider over frames named "0", "1", ... (layout keywords)."""
    play = dict(label="▶ Play", method="animate",
                args=[None, dict(frame=dict(duration=350, redraw=True), fromcurrent=True,
                                 transition=dict(duration=0), mode="immediate")])
    pause = dict(label="❚❚ Pause", method="animate",
                 args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate",
                                    transition=dict(duration=0))])
    slider = dict(
        active=0, x=0.2, len=0.78, y=0.0, yanchor="top", pad=dict(t=10, b=10),
        currentvalue=dict(prefix="step ", visible=True, xanchor="left", font=dict(size=13)),
        steps=[dict(label=label, method="animate",
                    args=[[str(t)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                         transition=dict(duration=0))]) for t, label in enumerate(labels)],
    )
    return dict(updatemenus=[dict(type="buttons", direction="left", x=0.0, y=-0.01, xanchor="left",
                                  yanchor="top", pad=dict(t=30, r=10), showactive=False,
                                  buttons=[play, pause])],
                sliders=[slider])


def cluster_figure(
    positions: np.ndarray,
    cluster_id: np.ndarray,
    centres: np.ndarray,
    counts: np.ndarray,
    kept: np.ndarray,
    nms_radius: float,
    atoms: np.ndarray | None = None,
    title: str | None = None,
) -> go.Figure:
    """Greedy-NMS clustering: particles by cluster, centres, NMS spheres, rejected in grey.

    positions (P, 3) Å; cluster_id (P,) int index into centres, -1 for none; centres (C, 3);
    counts (C,) particles per cluster; kept (P,) bool (False = rejected by the residual
    test, drawn small and grey like cluster -1); nms_radius Å drawn as a translucent sphere
    around each centre; atoms (N, 3) true atoms as open black markers.
    """
    pos = _check(positions, (None, 3), "positions (P, 3)")
    P = len(pos)
    cid = _check(cluster_id, (P,), "cluster_id (P,)", dtype=np.int64)
    cen = _check(centres, (None, 3), "centres (C, 3)")
    C = len(cen)
    cnt = _check(counts, (C,), "counts (C,)", dtype=np.int64)
    kp = _check(kept, (P,), "kept (P,)", dtype=bool)
    at = None if atoms is None else _check(atoms, (None, 3), "atoms (N, 3)")
    if np.any(cid >= C):
        raise ShapeError(f"cluster_id holds ids up to {int(cid.max())} but only {C} centres")

    colors = np.array([PALETTE[i % len(PALETTE)] for i in range(C)], dtype=object)
    good = kp & (cid >= 0)
    traces: list = []
    if C:
        traces.append(sphere_surfaces(cen, float(nms_radius), list(colors), opacity=0.12,
                                      name=f"NMS radius {nms_radius:g} Å", showlegend=True))
    rej = pos[~good]
    traces.append(go.Scatter3d(
        x=rej[:, 0], y=rej[:, 1], z=rej[:, 2], mode="markers", name="rejected particles",
        marker=dict(size=2, color=REJECTED_COLOR, opacity=0.45), hoverinfo="skip",
    ))
    g = pos[good]
    traces.append(go.Scatter3d(
        x=g[:, 0], y=g[:, 1], z=g[:, 2], mode="markers", name="clustered particles",
        marker=dict(size=4, color=list(colors[cid[good]]) if C else [], opacity=0.9),
        customdata=cid[good],
        hovertemplate="cluster %{customdata}<br>(%{x:.2f}, %{y:.2f}, %{z:.2f}) Å"
                      "<extra></extra>",
    ))
    if at is not None and len(at):
        traces.append(go.Scatter3d(
            x=at[:, 0], y=at[:, 1], z=at[:, 2], mode="markers", name="true atoms",
            marker=dict(size=14, symbol="circle-open", color="#111111", line=dict(width=3)),
            hovertemplate="true atom<br>(%{x:.2f}, %{y:.2f}, %{z:.2f}) Å<extra></extra>",
        ))
    traces.append(go.Scatter3d(
        x=cen[:, 0], y=cen[:, 1], z=cen[:, 2], mode="markers", name="cluster centres",
        marker=dict(size=9, symbol="diamond", color=list(colors),
                    line=dict(color="#111111", width=2)),
        customdata=np.column_stack([np.arange(C), cnt]) if C else None,
        hovertemplate="centre of cluster %{customdata[0]}<br>%{customdata[1]} particles"
                      "<br>(%{x:.2f}, %{y:.2f}, %{z:.2f}) Å<extra></extra>",
    ))
    fig = go.Figure(traces)
    if title is None:
        title = (f"Clustering: {C} centres from {int(good.sum())} kept particles "
                 f"({P - int(good.sum())} rejected), NMS radius {nms_radius:g} Å")
    r = float(nms_radius)
    rng = _ranges(pos, at, cen + r if C else None, cen - r if C else None)
    return _layout(fig, title, scene=_scene(rng), height=600)


def species_vote_figure(
    points: np.ndarray,
    point_labels: Sequence[str],
    atoms: np.ndarray,
    winners: Sequence[str],
    shares: np.ndarray,
    truth: Sequence[str] | None = None,
    title: str | None = None,
    **_: Any,
) -> go.Figure:
    """The species vote (decoder step 5): every voting point coloured by the element it votes
    for, each atom labelled with its winner and the winner's share; an atom whose winner is not
    the true element (when `truth` is given) is ringed in red.

    points (A*G, 3) Å; point_labels (A*G,); atoms (A, 3); winners (A,); shares (A,) in [0, 1];
    truth (A,) or None. Extra keys of `nesf_viz.viz.compute.species_votes` are accepted.
    """
    pts = _check(points, (None, 3), "points (P, 3)")
    at = _check(atoms, (None, 3), "atoms (A, 3)")
    if len(point_labels) != len(pts) or len(winners) != len(at) or len(shares) != len(at):
        raise ShapeError("species_vote_figure: point_labels must match points, winners and shares atoms")
    labels = np.asarray(point_labels, dtype=object)
    traces: list = []
    for i, el in enumerate(dict.fromkeys(point_labels)):
        m = labels == el
        traces.append(go.Scatter3d(
            x=pts[m, 0], y=pts[m, 1], z=pts[m, 2], mode="markers", name=f"votes for {el}",
            legendgroup=el, marker=dict(size=3, color=_label_color(el, i), opacity=0.6),
            hovertemplate=f"votes for {el}<extra></extra>",
        ))
    wrong = np.array([t is not None and t != w for t, w in zip(truth or [None] * len(at), winners)], bool)
    contested = np.asarray(shares, float) < 1.0 - 1e-9
    # labels only where there is something to read (a contested or wrong vote): one per atom overlapped
    text = [f"{w} {100 * s:.0f}%" if c or x else "" for w, s, c, x in zip(winners, shares, contested, wrong)]
    hover = [f"winner {w} ({100 * s:.0f} % of the votes)" + (f"<br>true: {t}" if t else "")
             for w, s, t in zip(winners, shares, truth or [None] * len(at))]
    traces.append(go.Scatter3d(
        x=at[:, 0], y=at[:, 1], z=at[:, 2], mode="markers+text", name="decoded atoms (winner, share)",
        text=text, textposition="top center", textfont=dict(size=12, color="#111111"),
        marker=dict(size=5, color=[_label_color(w, i) for i, w in enumerate(winners)],
                    line=dict(color="#111111", width=2)),
        hovertext=hover, hoverinfo="text",
    ))
    if wrong.any():
        traces.append(go.Scatter3d(
            x=at[wrong, 0], y=at[wrong, 1], z=at[wrong, 2], mode="markers", name="winner is not the true element",
            marker=dict(size=18, symbol="circle-open", color="#d62728", line=dict(width=4)), hoverinfo="skip",
        ))
    if title is None:
        right = "" if truth is None else f" · {int((~wrong).sum())}/{len(at)} atoms voted the true element"
        votes = (f"{int(contested.sum())} contested (labelled with the winner's share)" if contested.any()
                 else "every vote unanimous (100 %): no contested atom in this crystal")
        title = (f"Species vote: {len(at)} atoms, {len(pts) // max(len(at), 1)} voting points each{right}"
                 f"<br><span style='font-size:13px'>{votes}; hover an atom for its winner</span>")
    fig = go.Figure(traces)
    return _layout(fig, title, scene=_scene(_ranges(pts, at)), height=600)
