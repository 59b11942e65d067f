"""Crystals: one structure, and an original beside its decode with each decoded atom linked to its match.

Pure: numpy arrays (or pymatgen Structures) in, a ``plotly.graph_objects.Figure`` out (see
`nesf_viz.viz.figures`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...geometry import IMAGE_OFFSETS, UNIT_CUBE_CORNERS, min_image_frac
from ..scene import element_color, image_sites, structure_traces
from ._common import _check, _formula, _lattice_text, _layout, _ranges, _scene, _spacegroup, _symbols, _trace_points

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure


def crystal_figure(structure: Structure, title: str | None = None, *, bonds: bool = True
                   ) -> go.Figure:
    """One crystal as crystal-toolkit draws it: atoms with images on faces, cell, bonds."""
    traces = structure_traces(structure, bonds=bonds)
    fig = go.Figure(traces)
    if title is None:
        title = (f"{_formula(structure)} · {_spacegroup(structure)} · {len(structure)} atoms"
                 f"<br><span style='font-size:12px'>{_lattice_text(structure.lattice.abc, structure.lattice.angles)}"
                 "</span>")
    return _layout(fig, title, scene=_scene(_ranges(_trace_points(traces))), height=620,
                   width=820)


ATOM_SCALE = 0.6
"""compare_figure's atoms relative to crystal-toolkit's radii (full size hid 0.06 Å errors and their links)."""


def _periodic_match(frac_a: np.ndarray, frac_b: np.ndarray, lattice: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest b (with its image) for every a under periodic boundaries.

    frac_a (Na, 3), frac_b (Nb, 3), lattice (3, 3) rows. Returns index (Na,), distance in Å
    (Na,), and the fractional position of the matched image of b (Na, 3). Checks the 27
    neighbouring images, so it is exact for any cell that is not extremely skewed.
    """
    shifts = IMAGE_OFFSETS
    d = min_image_frac(frac_a[:, None, :] - frac_b[None, :, :])  # (Na, Nb, 3)
    cand = d[:, :, None, :] + shifts[None, None]                 # (Na, Nb, 27, 3)
    dist = np.linalg.norm(cand @ lattice, axis=-1)               # (Na, Nb, 27)
    flat = dist.reshape(len(frac_a), -1).argmin(1)
    jb, js = np.divmod(flat, len(shifts))
    rows = np.arange(len(frac_a))
    best = dist[rows, jb, js]
    image = frac_a - cand[rows, jb, js]
    return jb, best, image


def compare_figure(original: Structure, decoded: Structure, title: str | None = None, *,
                   bonds: bool = True, polyhedra: bool = False) -> go.Figure:
    """Original (left) and decoded (right) side by side, decoded atoms linked to their match.

    Each decoded atom is matched to its nearest original atom under periodic boundaries, in
    fractional coordinates; its error is that minimum-image distance measured with the
    original lattice (lattice errors are in the subplot titles, not in the atom errors). The
    right panel overlays the original atoms as translucent "ghost" markers, placed by their
    fractional coordinates in the decoded cell, with a thin line from each decoded atom to its
    match (WebGL draws open marker symbols with opaque corners, so ghosts replace them);
    hover on a decoded atom shows its error and match. The title gives the mean of these
    errors as the "periodic site error", a name of its own: it is not the paper's position error.
    """
    lat_o = np.asarray(original.lattice.matrix, float)
    lat_d = np.asarray(decoded.lattice.matrix, float)
    fo = np.asarray(original.frac_coords, float).reshape(-1, 3)
    fd = np.asarray(decoded.frac_coords, float).reshape(-1, 3)
    sym_o, sym_d = _symbols(original), _symbols(decoded)
    match, err, img, info = _site_errors(fo, fd, lat_o, sym_o, sym_d)
    mean_err = float(err.mean()) if len(err) else float("nan")
    if title is None:
        title = _compare_title(original, match, err, sym_o, sym_d, len(fo), len(fd))
    small = "<span style='font-size:12px'>"  # a <sup> subtitle drew at about 8 px
    sub = (f"original<br>{small}{_lattice_text(original.lattice.abc, original.lattice.angles)}</span>",
           f"decoded<br>{small}{_lattice_text(decoded.lattice.abc, decoded.lattice.angles)}</span>")
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}, {"type": "scene"}]],
                        subplot_titles=sub, horizontal_spacing=0.02)
    for tr in structure_traces(original, "original ", bonds=bonds, legendgroup="original ",
                               polyhedra=polyhedra):
        fig.add_trace(tr, row=1, col=1)
    dec_traces = structure_traces(decoded, "decoded ", bonds=bonds, legendgroup="decoded ",
                                  site_info=info, polyhedra=polyhedra)
    for tr in (*fig.data, *dec_traces):  # atoms at 60 % of crystal-toolkit's size: errors and links stay visible
        if (tr.meta or {}).get("kind") == "atoms" and tr.marker.size is not None:
            tr.marker.size = np.asarray(tr.marker.size, float) * ATOM_SCALE if np.ndim(tr.marker.size) \
                else float(tr.marker.size) * ATOM_SCALE
    atom_px = max([float(np.max(t.marker.size)) for t in dec_traces
                   if (t.meta or {}).get("kind") == "atoms"] or [14.0])
    for tr in dec_traces:
        fig.add_trace(tr, row=1, col=2)
    for tr in _overlay_traces(fo, fd, lat_d, match, err, img, sym_o, atom_px):
        fig.add_trace(tr, row=1, col=2)
    rng = _ranges(original.lattice.get_cartesian_coords(UNIT_CUBE_CORNERS),
                  decoded.lattice.get_cartesian_coords(UNIT_CUBE_CORNERS))
    fig = _layout(fig, title, height=660)
    # room for the two-line title above the panels' own titles
    fig.update_layout(scene=_scene(rng), scene2=_scene(rng), meta={"mean_error": mean_err},
                      margin=dict(l=10, r=10, t=175, b=10))
    fig.update_annotations(font=dict(size=14))
    return fig


def _site_errors(fo: np.ndarray, fd: np.ndarray, lat_o: np.ndarray, sym_o: list[str], sym_d: list[str]):
    """Each decoded site's periodic match among the original sites: (match (N_d,), error (N_d,)
    Angstrom, matched image (N_d, 3) fractional, hover text per decoded site or None)."""
    if len(fd) and len(fo):
        match, err, img = _periodic_match(fd, fo, lat_o)
        info = [
            f"error {e:.3f} Å to original {sym_o[j]} (site {j})"
            + ("" if sym_o[j] == s else " <b>species differs</b>")
            for e, j, s in zip(err, match, sym_d)
        ]
    else:
        match, err, img = np.zeros(0, int), np.zeros(0), np.zeros((0, 3))
        info = None if not len(fd) else ["no original atom"] * len(fd)
    return match, err, img, info


def _compare_title(original: Structure, match: np.ndarray, err: np.ndarray, sym_o: list[str], sym_d: list[str],
                   n_original: int, n_decoded: int) -> str:
    n_wrong = sum(sym_o[j] != s for j, s in zip(match, sym_d))
    head = f"{_formula(original)}: original vs decoded"
    if not len(err):
        return f"{head} · no atoms decoded"
    # named apart from the paper's position error (Cartesian, nearest true atom), which
    # the verdicts print: this one matches in fractional coordinates under periodicity
    return (f"{head} · mean periodic site error {float(err.mean()):.3f} Å (max {err.max():.3f} Å) · "
            f"{n_decoded}/{n_original} atoms" + (f" · {n_wrong} species differ" if n_wrong else "")
            + "<br><span style='font-size:12px'>periodic site error: each decoded atom to the nearest original atom "
            "or periodic image, in the original cell;<br>the verdicts' position error goes from each original atom to "
            "the nearest decoded one, without images</span>")


def _overlay_traces(fo: np.ndarray, fd: np.ndarray, lat_d: np.ndarray, match: np.ndarray, err: np.ndarray,
                    img: np.ndarray, sym_o: list[str], atom_px: float) -> list:
    """The right panel's overlay: original atoms (translucent, by their fractional coordinates
    in the decoded cell) and a link from each decoded atom to its match."""
    traces = []
    # overlay: original atoms in the decoded cell (hollow), links decoded -> matched original
    idx_o, f_over = image_sites(fo) if len(fo) else (np.zeros(0, int), np.zeros((0, 3)))
    f_over = np.concatenate([f_over, img]) if len(img) else f_over
    idx_o = np.concatenate([idx_o, match]) if len(img) else idx_o
    f_over, keep = np.unique(np.round(f_over, 6), axis=0, return_index=True)
    idx_o = idx_o[keep]
    if len(f_over):
        c_over = f_over @ lat_d
        traces.append(go.Scatter3d(
            x=c_over[:, 0], y=c_over[:, 1], z=c_over[:, 2], mode="markers",
            name="original positions",
            marker=dict(symbol="circle", size=atom_px * 1.1, opacity=0.3,
                        color=[element_color(sym_o[i]) for i in idx_o]),
            text=[f"original {sym_o[i]} (site {i})<br>frac ({f[0]:.3f}, {f[1]:.3f}, {f[2]:.3f})"
                  for i, f in zip(idx_o, f_over)],
            hoverinfo="text", legendgroup="overlay", meta={"kind": "overlay"},
        ))
    if len(err):
        a = fd @ lat_d        # where the decoded atom is drawn (sites are drawn as stored)
        b = img @ lat_d       # the matched original image next to it, in the decoded cell
        xs, ys, zs, txt = [], [], [], []
        for p, q, e in zip(a, b, err):
            xs += [p[0], q[0], None]
            ys += [p[1], q[1], None]
            zs += [p[2], q[2], None]
            txt += [f"error {e:.3f} Å"] * 2 + [None]
        traces.append(go.Scatter3d(
            x=xs, y=ys, z=zs, mode="lines", name="match (error)",
            line=dict(color="#d62728", width=6), text=txt, hoverinfo="text",
            legendgroup="overlay", meta={"kind": "links"},
        ))
    return traces


def site_error_figure(true_positions: np.ndarray, true_symbols: list[str], decoded_positions: np.ndarray,
                      decoded_symbols: list[str], lattice: np.ndarray | None = None, *, magnify: float | None = None,
                      title: str | None = None) -> go.Figure:
    """True and decoded atoms in one cell, with every true atom's error drawn as a vector.

    The paper's (actual) position error pairs each true atom with the nearest decoded atom; a red
    line from the true atom points towards that decoded atom, `magnify` times as long as the
    error (errors of a few hundredths of an Å would not show at cell scale; default: the 1-2-5
    step that draws the largest error about 1 Å long, at most 20). True atoms are large
    translucent spheres in their element's colour, decoded atoms small solid dots with a dark
    outline (a red cross where the nearest decoded atom has another element); hover on either
    gives the distance. The title gives the mean (the crystal's position error in the verdicts)
    and the largest error. Positions (N, 3) in Å in the project frame; `lattice` (3, 3) rows
    draws the true cell's edges."""
    from ..scene import _cell_trace

    tp = _check_positions(true_positions, "true_positions")
    dp = _check_positions(decoded_positions, "decoded_positions")
    traces: list = []
    if lattice is not None:
        traces.append(_cell_trace(np.asarray(lattice, float), "", None, True))
    if len(dp) and len(tp):
        d = np.linalg.norm(tp[:, None] - dp[None], axis=-1)
        j = d.argmin(1)
        dist = d[np.arange(len(tp)), j]
        wrong = [true_symbols[i] != decoded_symbols[k] for i, k in enumerate(j)]
    else:
        j, dist, wrong = np.zeros(len(tp), int), np.full(len(tp), np.inf), [True] * len(tp)
    if magnify is None:
        magnify = error_magnification(dist)
    traces.append(go.Scatter3d(
        x=tp[:, 0], y=tp[:, 1], z=tp[:, 2], mode="markers", name="true atoms",
        marker=dict(size=16, opacity=0.35, color=[element_color(s) for s in true_symbols]),
        text=[f"true {s} (site {i})<br>nearest decoded atom {e:.3f} Å away" + (" <b>(another element)</b>" if w else "")
              for i, (s, e, w) in enumerate(zip(true_symbols, dist, wrong))],
        hoverinfo="text", meta={"kind": "true"}))
    if len(dp):
        traces.append(go.Scatter3d(
            x=dp[:, 0], y=dp[:, 1], z=dp[:, 2], mode="markers", name="decoded atoms",
            marker=dict(size=6, color=[element_color(s) for s in decoded_symbols], line=dict(color="#222", width=2)),
            text=[f"decoded {s} (atom {k})" for k, s in enumerate(decoded_symbols)], hoverinfo="text",
            meta={"kind": "decoded"}))
    if len(dp) and len(tp):
        ends = tp + magnify * (dp[j] - tp)
        xs, ys, zs, txt = [], [], [], []
        for p, q, e in zip(tp, ends, dist):
            xs += [p[0], q[0], None]
            ys += [p[1], q[1], None]
            zs += [p[2], q[2], None]
            txt += [f"error {e:.3f} Å"] * 2 + [None]
        traces.append(go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", name=f"error × {magnify:g}",
                                   line=dict(color="#d62728", width=7), text=txt, hoverinfo="text",
                                   meta={"kind": "errors"}))
        bad = [i for i, w in enumerate(wrong) if w]
        if bad:
            q = dp[j[bad]]
            traces.append(go.Scatter3d(x=q[:, 0], y=q[:, 1], z=q[:, 2], mode="markers", name="another element",
                                       marker=dict(symbol="x", size=8, color="#d62728"), hoverinfo="skip",
                                       meta={"kind": "wrong"}))
    if title is None:
        if len(dp) and len(tp):
            title = (f"Every true atom to its nearest decoded atom: mean {dist.mean():.3f} Å (the position error), "
                     f"largest {dist.max():.3f} Å<br><span style='font-size:13px'>red lines {magnify:g}× the "
                     f"error, pointing to the decoded atom; {sum(wrong)} of {len(tp)} nearest atoms another "
                     "element</span>")
        else:
            title = "No atom decoded"
    corners = UNIT_CUBE_CORNERS @ np.asarray(lattice, float) if lattice is not None else None
    fig = go.Figure(traces)
    _layout(fig, title, scene=_scene(_ranges(tp, dp, corners)), height=560)
    fig.update_layout(margin=dict(l=0, r=0, t=80, b=0), meta={"mean_error": float(dist.mean()) if len(dist) else None})
    return fig


def error_magnification(errors: np.ndarray, target_angstrom: float = 1.0, most: float = 20.0) -> float:
    """The 1-2-5 step (1, 2, 5, 10, 20) that draws the largest finite error about `target_angstrom`
    long; 1 when it is that long already."""
    e = np.asarray(errors, float)
    e = e[np.isfinite(e)]
    if not len(e) or e.max() <= 0:
        return 1.0
    steps = [s for s in (1.0, 2.0, 5.0, 10.0, 20.0) if s <= most and s * e.max() <= 1.5 * target_angstrom]
    return steps[-1] if steps else 1.0


def _check_positions(positions, name: str) -> np.ndarray:
    """(N, 3) positions; an empty list is (0, 3)."""
    return _check(positions, (None, 3), name) if np.size(positions) else np.zeros((0, 3))
