"""Shared look and helpers of the figures: template, palette, camera, font, 3-D scenes and ranges, input checks, labels.

Pure: numpy arrays (or pymatgen Structures) in, a ``plotly.graph_objects.Figure`` out (see
`nesf_viz.viz.figures`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from ...errors import ShapeError
from ..scene import element_color

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure


log = logging.getLogger(__name__)


TEMPLATE = "plotly_white"
#: Qualitative palette for clusters / labels (Plotly's D3 then Dark24; 34 colours).
PALETTE: tuple[str, ...] = tuple(qualitative.D3) + tuple(qualitative.Dark24)
REJECTED_COLOR = "#bdbdbd"
#: Default 3-D camera: a little above, looking at the cell from the +x+y+z octant.
CAMERA = dict(eye=dict(x=1.9, y=1.55, z=1.05), up=dict(x=0, y=0, z=1))  # far enough that tick labels are not cropped
FONT = dict(family="Helvetica, Arial, sans-serif", size=13)


def _check(arr: Any, shape: tuple, name: str, dtype: Any = float) -> np.ndarray:
    """Array of ``shape`` (None = any size, ints must match); ShapeError names what is wrong."""
    a = np.asarray(arr, dtype=dtype)
    ok = a.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, a.shape))
    if not ok:
        want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
        raise ShapeError(f"{name} must have shape {want}, got {a.shape}")
    return a


def _axis3d(label: str, rng: Sequence[float] | None = None) -> dict:
    ax = dict(title=dict(text=label), showbackground=True, backgroundcolor="#fafafa",
              gridcolor="#e3e3e3", zerolinecolor="#c8c8c8", showspikes=False)
    if rng is not None:
        ax.update(range=list(rng), autorange=False)
    return ax


def _scene(ranges: np.ndarray | None = None) -> dict:
    """3-D scene layout: axes in Å, equal scales, default camera.

    With ``ranges`` (3, 2) the axes are fixed (frames and sliders do not rescale them) and
    the aspect ratio follows the ranges, which is ``aspectmode="data"`` made fixed.
    """
    labels = ("x (Å)", "y (Å)", "z (Å)")
    if ranges is None:
        return dict(**{f"{c}axis": _axis3d(lab) for c, lab in zip("xyz", labels)},
                    aspectmode="data", camera=CAMERA)
    span = np.maximum(ranges[:, 1] - ranges[:, 0], 1e-9)
    ratio = span / span.max()
    return dict(**{f"{c}axis": _axis3d(lab, r) for c, lab, r in zip("xyz", labels, ranges)},
                aspectmode="manual", aspectratio=dict(x=ratio[0], y=ratio[1], z=ratio[2]),
                camera=CAMERA)


def _ranges(*points: np.ndarray | None, pad: float = 0.06, pad_angstrom: float = 0.6
            ) -> np.ndarray:
    """(3, 2) [min, max] over all finite points (each (..., 3)).

    Padded by ``pad`` of the largest span plus ``pad_angstrom``, so that atom markers on the
    cell faces are not cut by the scene's back walls.
    """
    pts = [np.asarray(p, float).reshape(-1, 3) for p in points if p is not None and np.size(p)]
    allp = np.concatenate(pts) if pts else np.zeros((1, 3))
    allp = allp[np.isfinite(allp).all(1)]
    if len(allp) == 0:
        allp = np.zeros((1, 3))
    lo, hi = allp.min(0), allp.max(0)
    span = np.maximum(hi - lo, 1e-3)
    margin = pad * span.max() + pad_angstrom
    return np.stack([lo - margin, hi + margin], 1)


def _trace_points(traces: Sequence[Any]) -> np.ndarray:
    """All finite (x, y, z) points of 3-D traces (None separators dropped): (K, 3)."""
    pts = []
    for tr in traces:
        x, y, z = (getattr(tr, c, None) for c in "xyz")
        if x is None or y is None or z is None:
            continue
        a = np.array([[np.nan if v is None else v for v in col] for col in (x, y, z)],
                     float).T
        pts.append(a[np.isfinite(a).all(1)])
    return np.concatenate(pts) if pts else np.zeros((0, 3))


def _layout(fig: go.Figure, title: str | None, **kw: Any) -> go.Figure:
    legend = dict(x=1.0, xanchor="left", y=1.0, yanchor="top", bgcolor="rgba(255,255,255,0.85)",
                  bordercolor="#dddddd", borderwidth=1, itemsizing="constant")
    if "scene" in kw:
        # a 3-D scene keeps its aspect, so a legend at the side left it half the width with the
        # legend floating in the empty half: the legend goes in the scene's top-left corner
        legend.update(x=0.0, xanchor="left", y=1.0, yanchor="top")
    fig.update_layout(
        template=TEMPLATE, font=FONT,
        title=dict(text=title or "", x=0.02, xanchor="left", font=dict(size=17)),
        margin=dict(l=10, r=10, t=70 if title else 30, b=10),
        legend=legend,
        **kw,
    )
    return fig


def _formula(structure: Structure) -> str:
    try:
        return structure.composition.reduced_formula
    except Exception:  # noqa: BLE001 - empty structures
        return "(empty)"


def _spacegroup(structure: Structure) -> str:
    from ...data import quiet_spglib

    try:
        with quiet_spglib():
            return structure.get_space_group_info(symprec=0.1)[0]
    except Exception:  # noqa: BLE001 - spglib may refuse odd decoded cells
        return "?"


def _lattice_text(lengths: Sequence[float], angles: Sequence[float]) -> str:
    a, b, c = lengths
    al, be, ga = angles
    return (f"a={a:.2f} b={b:.2f} c={c:.2f} Å, "
            f"α={al:.1f}° β={be:.1f}° γ={ga:.1f}°")


def _symbols(structure: Structure) -> list[str]:
    return [s.specie.symbol if s.is_ordered else s.species_string for s in structure]


def _label_color(label: Any, i: int) -> str:
    """Element colour if the label is an element symbol, else the palette colour i."""
    col = element_color(str(label), default="")
    return col or PALETTE[i % len(PALETTE)]
