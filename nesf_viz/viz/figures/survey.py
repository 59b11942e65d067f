"""The map of a dataset: one point per crystal (WebGL, thousands of points), coloured by a
per-crystal quantity, with the crystal in view, its latent neighbours and a picked pair marked;
and the same map as a PNG for readers without a live kernel.

Pure: numpy arrays in, a ``plotly.graph_objects.Figure`` (or PNG bytes) out (see
`nesf_viz.viz.figures`). Shapes: B crystals.
"""

from __future__ import annotations

import io
import re
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sequential

from ...errors import ShapeError
from ._common import PALETTE, REJECTED_COLOR, _check, _layout

__all__ = ["survey_map_figure", "survey_map_png", "point_colours", "MAP_TRACES"]

#: Names of the map's first traces, in order: every crystal, then the overlays the explorer moves.
MAP_TRACES = ("crystals", "nearest in latent space", "crystal in view", "pair A / B")
_NO_VALUE = "#bdbdbd"
_SEMANTIC = {"right": "#2ca02c", "WRONG": "#d62728", "matched": "#2ca02c", "not matched": "#d62728",
             "not computed": REJECTED_COLOR, "?": REJECTED_COLOR}
_SCALE = sequential.Viridis


def _hex_rgb(colours: Sequence[str]) -> np.ndarray:
    return np.array([[int(c[i: i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=float)


def _category_colour(name: str, k: int) -> str:
    if name in _SEMANTIC:
        return _SEMANTIC[name]
    if name.startswith("without "):
        return "#c7c7c7"
    if name.startswith("with "):
        return "#d62728"
    return PALETTE[k % len(PALETTE)]


def point_colours(values: np.ndarray, categories: Sequence[str] | None = None
                  ) -> tuple[list[str], list[tuple[str, str, int]], tuple[float, float] | None]:
    """A colour per point: categorical codes (B,) into `categories`, or numbers (B,) on Viridis
    from their minimum to their 98th percentile (higher values get the top colour; NaN grey).
    Returns colours (B,) '#rrggbb', legend entries (label, colour, count) and the numeric range
    (cmin, cmax) or None."""
    v = np.asarray(values)
    if categories is not None:
        table = [_category_colour(c, k) for k, c in enumerate(categories)]
        codes = v.astype(np.int64)
        counts = np.bincount(codes, minlength=len(categories)) if len(codes) else np.zeros(len(categories), int)
        legend = [(c, table[k], int(counts[k])) for k, c in enumerate(categories) if counts[k]]
        return [table[k] for k in codes], legend, None
    v = v.astype(float)
    finite = np.isfinite(v)
    if not finite.any():
        return [_NO_VALUE] * len(v), [("no value", _NO_VALUE, len(v))] if len(v) else [], None
    lo, hi = float(v[finite].min()), float(np.percentile(v[finite], 98))
    if hi <= lo:
        hi = float(v[finite].max()) if v[finite].max() > lo else lo + 1.0
    t = np.clip((np.where(finite, v, lo) - lo) / (hi - lo), 0.0, 1.0)
    rgb = _hex_rgb(_SCALE)
    stops = np.linspace(0.0, 1.0, len(rgb))
    mixed = np.stack([np.interp(t, stops, rgb[:, k]) for k in range(3)], 1).round().astype(int)
    colours = [f"#{r:02x}{g:02x}{b:02x}" if ok else _NO_VALUE for (r, g, b), ok in zip(mixed, finite)]
    legend = [("no value", _NO_VALUE, int((~finite).sum()))] if (~finite).any() else []
    return colours, legend, (lo, hi)


def survey_map_figure(
    x: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    names: Sequence[str],
    *,
    categories: Sequence[str] | None = None,
    hover: Sequence[str] | None = None,
    value_text: Sequence[str] | None = None,
    x_label: str = "",
    y_label: str = "",
    colour_label: str = "",
    current: int | None = None,
    neighbours: Sequence[int] = (),
    pair: Sequence[int | None] = (None, None),
    title: str | None = None,
    height: int = 560,
) -> go.Figure:
    """Every crystal as a point at (x, y) (B,), coloured by `values` (B,) (`point_colours`).

    names (B,) ids; hover (B,) extra hover lines per point (default: the name); value_text (B,)
    the colour value as text. current: the crystal in view (ringed); neighbours: its nearest
    crystals in latent space (small rings); pair: crystals picked as A and B (labelled). Trace 0
    holds every point in the input order (``customdata`` = index), so a click or selection on it
    gives crystal indices; traces 1-3 are the overlays (`MAP_TRACES`); the rest are legend
    entries. Non-finite x or y are not drawn (their points are NaN).
    """
    xs = _check(x, (None,), "x (B,)")
    B = len(xs)
    ys = _check(y, (B,), "y (B,)")
    if len(values) != B or len(names) != B:
        raise ShapeError(f"values ({len(values)}) and names ({len(names)}) need one entry per point (B={B})")
    colours, legend, rng = point_colours(np.asarray(values), categories)
    hover = list(hover) if hover is not None else [str(n) for n in names]
    value_text = list(value_text) if value_text is not None else [""] * B
    size = 7 if B <= 1000 else (5 if B <= 5000 else 4)
    fig = go.Figure()
    fig.add_trace(go.Scattergl(
        x=xs, y=ys, mode="markers", name=MAP_TRACES[0], customdata=np.arange(B), hovertext=hover,
        text=value_text, showlegend=False,
        marker=dict(color=colours, size=size, opacity=0.85, line=dict(width=0)),
        hovertemplate="%{hovertext}<br>" + (colour_label or "value") + ": %{text}<extra></extra>",
        selected=dict(marker=dict(opacity=1.0)), unselected=dict(marker=dict(opacity=0.15)),
    ))
    fig.add_trace(go.Scattergl(**_overlay_points(xs, ys, names, neighbours), mode="markers", name=MAP_TRACES[1],
                               marker=dict(size=size + 7, color="rgba(0,0,0,0)", line=dict(color="#ff7f0e", width=2)),
                               hovertemplate="%{text} (near)<extra></extra>", showlegend=True))
    cur = [current] if current is not None else []
    fig.add_trace(go.Scattergl(**_overlay_points(xs, ys, names, cur), mode="markers", name=MAP_TRACES[2],
                               marker=dict(size=size + 13, color="rgba(0,0,0,0)", line=dict(color="#000000", width=3)),
                               hovertemplate="%{text} (in view)<extra></extra>", showlegend=True))
    picked = [(i, lab) for i, lab in zip(pair, "AB") if i is not None]
    pts = _overlay_points(xs, ys, names, [i for i, _ in picked])
    fig.add_trace(go.Scattergl(x=pts["x"], y=pts["y"], mode="markers+text", name=MAP_TRACES[3],
                               text=[lab for _, lab in picked], textposition="top center",
                               textfont=dict(size=15, color="#9467bd"),
                               marker=dict(size=size + 9, symbol="diamond-open", color="#9467bd", line=dict(width=2)),
                               hoverinfo="skip", showlegend=True))
    for label, colour, count in legend:
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name=f"{label} ({count})",
                                   marker=dict(color=colour, size=10), hoverinfo="skip", showlegend=True))
    if rng is not None:
        fig.add_trace(go.Scattergl(
            x=[None], y=[None], mode="markers", name=colour_label, showlegend=False, hoverinfo="skip",
            marker=dict(color=[rng[0]], cmin=rng[0], cmax=rng[1], colorscale="Viridis", showscale=True,
                        colorbar=dict(title=dict(text=_wrap(colour_label), side="right"), thickness=14, len=0.75,
                                      x=1.02, y=0.35))))
    _layout(fig, title if title is not None else f"{B} crystals · colour: {colour_label}", height=height)
    fig.update_layout(dragmode="select", hovermode="closest", uirevision="map",
                      legend=dict(x=1.02, xanchor="left", y=1.0, yanchor="top"), margin=dict(r=160))
    fig.update_xaxes(title_text=x_label, zeroline=False)
    fig.update_yaxes(title_text=y_label, zeroline=False)
    return fig


def _wrap(text: str, width: int = 16) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "<br>".join([*lines, line]) if line else "<br>".join(lines)


def _overlay_points(xs: np.ndarray, ys: np.ndarray, names: Sequence[str], indices: Sequence[int]) -> dict:
    idx = [int(i) for i in indices]
    return dict(x=xs[idx] if idx else [], y=ys[idx] if idx else [], text=[str(names[i]) for i in idx])


def survey_map_png(x: np.ndarray, y: np.ndarray, values: np.ndarray, *, categories: Sequence[str] | None = None,
                   x_label: str = "", y_label: str = "", colour_label: str = "", title: str = "",
                   current: int | None = None, pair: Sequence[int | None] = (None, None),
                   size_px: tuple[int, int] = (900, 560), **_: object) -> bytes:
    """The map as a PNG (matplotlib, no browser): the same points, colours and legend as
    `survey_map_figure`, for notebooks read without a kernel. Returns the PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    xs, ys = np.asarray(x, float), np.asarray(y, float)
    colours, legend, rng = point_colours(np.asarray(values), categories)
    dpi = 100
    fig, ax = plt.subplots(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    try:
        ax.scatter(xs, ys, c=colours, s=6 if len(xs) > 1000 else 14, linewidths=0, alpha=0.85)
        if current is not None:
            ax.scatter(xs[[current]], ys[[current]], s=160, facecolors="none", edgecolors="black", linewidths=2)
        for i, lab in zip(pair, "AB"):
            if i is not None:
                ax.annotate(lab, (xs[i], ys[i]), color="#9467bd", fontsize=13, fontweight="bold")
        for label, colour, count in legend:
            ax.scatter([], [], c=colour, s=30, label=f"{label} ({count})")
        if legend:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        if rng is not None:
            cmap = LinearSegmentedColormap.from_list("viridis_plotly", [tuple(c / 255) for c in _hex_rgb(_SCALE)])
            sm = plt.cm.ScalarMappable(norm=Normalize(*rng), cmap=cmap)
            fig.colorbar(sm, ax=ax, fraction=0.05, pad=0.02 if not legend else 0.25).set_label(colour_label)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.set_title(re.sub(r"<[^>]+>", "", title.replace("<br>", "\n")), fontsize=10, loc="left")
        ax.grid(color="#eeeeee")
        ax.set_axisbelow(True)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close(fig)
