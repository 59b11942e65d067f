"""The latent space: a PCA map of latents, and interpolation between two crystals.

Pure: numpy arrays (or pymatgen Structures) in, a ``plotly.graph_objects.Figure`` out (see
`nesf_viz.viz.figures`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...errors import ShapeError
from ...geometry import UNIT_CUBE_CORNERS
from ..scene import structure_traces
from ._common import PALETTE, _check, _formula, _lattice_text, _layout, _ranges, _scene

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure


def _pca(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Centred PCA by SVD: scores (B, k) and explained-variance ratio (k,).

    Signs are fixed (largest |loading| positive) so the picture is reproducible.
    """
    xc = x - x.mean(0, keepdims=True)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    sign = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])
    sign[sign == 0] = 1
    u, vt = u * sign, vt * sign[:, None]
    total = float((s**2).sum())
    ratio = (s**2) / total if total > 0 else np.zeros_like(s)
    scores = u * s
    if scores.shape[1] < k:  # fewer components than asked (B or D < k): pad with zeros
        scores = np.pad(scores, ((0, 0), (0, k - scores.shape[1])))
        ratio = np.pad(ratio, (0, k - len(ratio)))
    return scores[:, :k], ratio[:k]


def latent_pca_figure(latents: np.ndarray, labels: Sequence[Any], names: Sequence[str] | None
                      = None, title: str | None = None, hover: Sequence[str] | None = None,
                      label_order: Sequence[str] | None = None) -> go.Figure:
    """Latents (B, D) projected on their first two principal components, coloured by label.

    labels (B,) (prototype, crystal system, ...), names (B,) shown on hover, or hover (B,) texts
    (HTML) instead; label_order: the legend's order (default: first appearance). Axis titles
    give the explained variance;
    ``fig.layout.meta["explained_variance_ratio"]`` holds it.
    """
    z = _check(latents, (None, None), "latents (B, D)")
    B = len(z)
    if len(labels) != B:
        raise ShapeError(f"labels has {len(labels)} entries for B={B} latents")
    if names is not None and len(names) != B:
        raise ShapeError(f"names has {len(names)} entries for B={B} latents")
    xy, ratio = _pca(z) if B else (np.zeros((0, 2)), np.zeros(2))
    lab = np.array([str(x) for x in labels], dtype=object)
    nm = np.array([str(n) for n in names] if names is not None else [f"#{i}" for i in range(B)],
                  dtype=object)
    if hover is not None:
        if len(hover) != B:
            raise ShapeError(f"hover has {len(hover)} entries for B={B} latents")
        nm = np.array([str(h) for h in hover], dtype=object)
    keys = list(dict.fromkeys([*(label_order or []), *lab]))
    fig = go.Figure()
    for i, key in enumerate(k for k in keys if (lab == k).any()):
        sel = lab == key
        fig.add_trace(go.Scatter(
            x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=str(key), text=nm[sel],
            marker=dict(size=9, color=PALETTE[i % len(PALETTE)], opacity=0.85,
                        line=dict(color="white", width=0.8)),
            hovertemplate="%{text}<br>" + str(key) + "<extra></extra>",
        ))
    if title is None:
        title = f"Latent space: PCA of {B} latents (D={z.shape[1]})"
    _layout(fig, title, height=560, width=760, meta={"explained_variance_ratio":
                                                    [float(r) for r in ratio]})
    fig.update_xaxes(title_text=f"PC1 ({100 * ratio[0]:.1f}% of variance)", zeroline=True,
                     zerolinecolor="#cccccc")
    fig.update_yaxes(title_text=f"PC2 ({100 * ratio[1]:.1f}% of variance)", zeroline=True,
                     zerolinecolor="#cccccc")
    return fig


def interpolation_figure(
    structures: Sequence[Structure],
    steps: Sequence[float],
    atom_counts: Sequence[int],
    lengths: np.ndarray,
    angles_deg: np.ndarray,
    *,
    bonds: bool = False,
    title: str | None = None,
) -> go.Figure:
    """Decoded structures along a latent interpolation, one slider step per structure.

    structures (T,), steps (T,) interpolation parameter, atom_counts (T,), lengths (T, 3) Å,
    angles_deg (T, 3). The slider switches trace visibility (works in static HTML without
    frames); the axes are fixed over all steps so the view does not jump.
    """
    T = len(structures)
    if T == 0:
        raise ShapeError("interpolation_figure needs at least one structure (T >= 1)")
    if len(steps) != T or len(atom_counts) != T:
        raise ShapeError(f"steps ({len(steps)}) and atom_counts ({len(atom_counts)}) must have "
                         f"one entry per structure (T={T})")
    ln = _check(lengths, (T, 3), "lengths (T, 3)")
    an = _check(angles_deg, (T, 3), "angles_deg (T, 3)")
    fig = go.Figure()
    owner: list[int] = []
    corners = []
    for t, s in enumerate(structures):
        trs = structure_traces(s, bonds=bonds, legendgroup=f"step{t} ")
        for tr in trs:
            tr.visible = t == 0
            fig.add_trace(tr)
            owner.append(t)
        corners.append(s.lattice.get_cartesian_coords(UNIT_CUBE_CORNERS))
    owner_a = np.asarray(owner)
    titles = [
        (title or "Latent interpolation")
        + f" · step {steps[t]:.3g}: {_formula(structures[t])}, {int(atom_counts[t])} atoms"
        + f"<br><span style='font-size:12px'>{_lattice_text(ln[t], an[t])}</span>"
        for t in range(T)
    ]
    slider = dict(
        active=0, x=0.05, len=0.9, y=0.0, yanchor="top", pad=dict(t=10, b=10),
        currentvalue=dict(prefix="step ", visible=True, xanchor="left"),
        steps=[dict(label=f"{steps[t]:.3g}", method="update",
                    args=[{"visible": list(owner_a == t)},
                          {"title.text": titles[t]}]) for t in range(T)],
    )
    _layout(fig, titles[0], scene=_scene(_ranges(*corners)), sliders=[slider], height=640)
    fig.update_layout(margin=dict(b=80))
    return fig


def interpolation_path_figure(steps: Sequence[float], atom_counts: Sequence[int],
                              lengths: np.ndarray, angles_deg: np.ndarray,
                              title: str | None = None, structures: Sequence | None = None) -> go.Figure:
    """Atom count and lattice parameters along an interpolation path (three stacked panels).

    steps (T,) the t of each decode (0: the first crystal, 1: the second), atom_counts (T,),
    lengths (T, 3) Å, angles_deg (T, 3); structures (T,) the decoded pymatgen Structures, whose
    reduced formulas label the atom counts (where the composition changes along the path).
    """
    st = _check(steps, (None,), "steps (T,)")
    T = len(st)
    cnt = _check(atom_counts, (T,), "atom_counts (T,)")
    ln = _check(lengths, (T, 3), "lengths (T, 3)")
    an = _check(angles_deg, (T, 3), "angles_deg (T, 3)")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
                        subplot_titles=("atoms in the cell", "cell lengths", "cell angles"))
    formulas = None if structures is None else [_formula(s) if len(s) else "(no atoms)" for s in structures]
    # a formula where it changes (and at both ends): every point labelled overlapped at 9 steps
    text = None if formulas is None else [
        f if i in (0, T - 1) or f != formulas[i - 1] else "" for i, f in enumerate(formulas)]
    fig.add_trace(go.Scatter(x=st, y=cnt, mode="lines+markers" + ("+text" if text else ""), name="atoms",
                             text=text, textposition="top center", textfont=dict(size=12),
                             customdata=formulas, line=dict(color="#333333", shape="hv"), legendgroup="n",
                             hovertemplate="t = %{x:.2f}<br>%{y} atoms"
                                           + ("<br>%{customdata}" if formulas else "") + "<extra></extra>",
                             showlegend=False, cliponaxis=False), row=1, col=1)
    cols = ("#1f77b4", "#ff7f0e", "#2ca02c")
    for i, (n1, n2) in enumerate((("a", "α"), ("b", "β"), ("c", "γ"))):
        fig.add_trace(go.Scatter(x=st, y=ln[:, i], mode="lines+markers", name=n1,
                                 line=dict(color=cols[i]), legendgroup="len"), row=2, col=1)
        fig.add_trace(go.Scatter(x=st, y=an[:, i], mode="lines+markers", name=n2,
                                 line=dict(color=cols[i], dash="dot"),
                                 marker=dict(symbol="square"), legendgroup="ang"), row=3, col=1)
    _layout(fig, title or "Interpolation path: atoms (and the decoded formula where it changes) and lattice",
            height=680, width=760)
    fig.update_yaxes(title_text="atoms", row=1, col=1, range=[max(0, float(cnt.min()) - 1.5), float(cnt.max()) + 2])
    fig.update_yaxes(title_text="length (Å)", row=2, col=1)
    fig.update_yaxes(title_text="angle (°)", row=3, col=1)
    fig.update_xaxes(title_text="t along the path (0: the first crystal, 1: the second)", row=3, col=1)
    fig.update_layout(legend=dict(tracegroupgap=120))
    return fig
