"""crystal-toolkit ``Scene`` -> Plotly traces, and Plotly traces for a pymatgen ``Structure``.

crystal-toolkit describes a crystal as a renderer-independent scene graph (spheres, cylinders,
lines, convex hulls, ... nested in ``Scene`` objects, each with an ``origin`` offset) but ships no
Plotly converter; this module is that converter. It never imports crystal_toolkit at module top:
``import crystal_toolkit`` patches pymatgen's notebook display, so it is imported lazily inside
:func:`structure_traces`, the only function that needs ``Structure.get_scene``.

Shape glossary: N atoms, M drawn atoms (N plus periodic images on cell faces).
Units: Å throughout; scene coordinates are cartesian, in the structure's own frame.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import plotly.graph_objects as go

from ..geometry import UNIT_CUBE_CORNERS, min_image_frac, wrap_frac

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

log = logging.getLogger(__name__)

__all__ = [
    "element_color",
    "scene_to_traces",
    "structure_traces",
    "image_sites",
    "cell_edge_segments",
    "sphere_surfaces",
]

#: Colour of cell edges and of primitives that carry no colour.
CELL_COLOR = "#4d4d4d"
DEFAULT_COLOR = "#9e9e9e"
#: Outline drawn around atom markers so that light elements (H is white) stay visible.
ATOM_OUTLINE = "#505050"

# A few Jmol colours, used only if pymatgen's colour table cannot be read.
_FALLBACK_JMOL = {
    "H": (255, 255, 255), "He": (217, 255, 255), "Li": (204, 128, 255), "C": (144, 144, 144),
    "N": (48, 80, 248), "O": (255, 13, 13), "F": (144, 224, 80), "Na": (171, 92, 242),
    "Mg": (138, 255, 0), "Al": (191, 166, 166), "Si": (240, 200, 160), "P": (255, 128, 0),
    "S": (255, 255, 48), "Cl": (31, 240, 31), "K": (143, 64, 212), "Ca": (61, 255, 0),
    "Ti": (191, 194, 199), "Fe": (224, 102, 51), "Cu": (200, 128, 51), "Zn": (125, 128, 176),
    "Ga": (194, 143, 143), "As": (189, 128, 227), "Sr": (0, 255, 0), "Ba": (0, 201, 0),
}


@lru_cache(maxsize=1)
def _jmol_table() -> dict[str, tuple[int, int, int]]:
    """Jmol colours as crystal-toolkit uses them (pymatgen's ElementColorSchemes.yaml)."""
    try:
        text = resources.files("pymatgen.core").joinpath("ElementColorSchemes.yaml").read_text()
    except Exception:  # noqa: BLE001 - any packaging problem: use the small table
        return dict(_FALLBACK_JMOL)
    table: dict[str, tuple[int, int, int]] = {}
    section = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            section = line.strip().rstrip(":")
            continue
        m = re.match(r"\s+([A-Z][a-z]{0,2}):\s*\[\s*(\d+),\s*(\d+),\s*(\d+)\s*\]", line)
        if section == "Jmol" and m:
            table[m.group(1)] = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
    return table or dict(_FALLBACK_JMOL)


def element_color(symbol: str, default: str = DEFAULT_COLOR) -> str:
    """Jmol colour of an element as '#rrggbb' (the colours crystal-toolkit draws atoms in).

    Oxidation states and labels are stripped ('Fe2+' -> 'Fe'); unknown names get ``default``.
    """
    m = re.match(r"[A-Z][a-z]?", str(symbol).strip())
    rgb = _jmol_table().get(m.group(0)) if m else None
    if rgb is None:
        return default
    return "#{:02x}{:02x}{:02x}".format(*rgb)


# --------------------------------------------------------------------------------------------
# Scene -> traces
# --------------------------------------------------------------------------------------------


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """Attribute of a Scene/primitive, or key of its ``to_json()`` dict form."""
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _is_scene(obj: Any) -> bool:
    return _get(obj, "type") is None and _get(obj, "contents") is not None


def _segments_xyz(pairs: Iterable[Sequence[Sequence[float]]]) -> tuple[list, list, list]:
    """Line segments [(p, q), ...] -> x, y, z lists with None separators (one trace)."""
    xs: list = []
    ys: list = []
    zs: list = []
    for p, q in pairs:
        xs += [float(p[0]), float(q[0]), None]
        ys += [float(p[1]), float(q[1]), None]
        zs += [float(p[2]), float(q[2]), None]
    return xs, ys, zs


def _sphere_mesh(n_theta: int = 10, n_phi: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Unit sphere as (V, 3) vertices and (F, 3) triangle indices."""
    theta = np.linspace(0.0, np.pi, n_theta + 1)
    phi = np.linspace(0.0, 2 * np.pi, n_phi, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    verts = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    faces = []
    for i in range(n_theta):
        for j in range(n_phi):
            a = i * n_phi + j
            b = i * n_phi + (j + 1) % n_phi
            c = a + n_phi
            d = b + n_phi
            faces += [(a, c, b), (b, c, d)]
    return verts, np.asarray(faces, dtype=np.int64)


def sphere_surfaces(
    centres: np.ndarray, radius: float, colors: Sequence[str] | str, *, opacity: float = 0.15,
    name: str = "sphere", resolution: int = 10, **kwargs: Any,
) -> go.Mesh3d:
    """One Mesh3d with a sphere of ``radius`` Å around each centre (C, 3), coloured per centre."""
    centres = np.asarray(centres, dtype=float).reshape(-1, 3)
    unit, faces = _sphere_mesh(resolution, 2 * resolution)
    if isinstance(colors, str):
        colors = [colors] * len(centres)
    verts = (centres[:, None, :] + radius * unit[None]).reshape(-1, 3)
    tri = (faces[None] + (np.arange(len(centres)) * len(unit))[:, None, None]).reshape(-1, 3)
    facecolor = np.repeat(np.asarray(list(colors), dtype=object), len(faces))
    return go.Mesh3d(
        x=verts[:, 0], y=verts[:, 1], z=verts[:, 2], i=tri[:, 0], j=tri[:, 1], k=tri[:, 2],
        facecolor=facecolor, opacity=opacity, name=name, flatshading=False,
        hoverinfo="skip", **kwargs,
    )


def _convex_mesh(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Explicit convex-hull triangulation, or None when qhull cannot build one (flat, < 4)."""
    if len(points) < 4:
        return None
    try:
        from scipy.spatial import ConvexHull

        hull = ConvexHull(points)
    except Exception:  # noqa: BLE001 - QhullError (coplanar) or no scipy: let Plotly try
        return None
    return points, np.asarray(hull.simplices, dtype=np.int64)


class _Collector:
    """Gathers primitives per (kind, style) so each group becomes one trace."""

    def __init__(self) -> None:
        self.groups: dict[tuple, dict[str, list]] = {}

    def add(self, key: tuple, **items: Any) -> None:
        group = self.groups.setdefault(key, {})
        for name, value in items.items():
            group.setdefault(name, []).append(value)


def _hidden(visible: Any) -> bool:
    return visible is False


def _walk(node: Any, offset: np.ndarray, path: tuple[str, ...], hidden: bool,
          out: _Collector) -> None:
    for child in _get(node, "contents", []) or []:
        if _is_scene(child):
            origin = _get(child, "origin")
            child_offset = offset + (np.asarray(origin, float) if origin is not None else 0.0)
            name = str(_get(child, "name", "") or "")
            _walk(child, child_offset, (*path, name), hidden or _hidden(_get(child, "visible")),
                  out)
            continue
        kind = _get(child, "type")
        hide = hidden or _hidden(_get(child, "visible"))
        top = path[0] if path else ""
        color = _get(child, "color")
        if kind in ("spheres", "cubes", "ellipsoids"):
            pos = np.asarray(_get(child, "positions", []), float).reshape(-1, 3) + offset
            if kind == "spheres":
                size = _get(child, "radius")
                size = 1.0 if size is None else float(size)
            elif kind == "cubes":
                w = _get(child, "width")
                size = 0.5 * (1.0 if w is None else float(w))
            else:
                size = 0.5 * float(np.mean(_get(child, "scale", [1.0])))
            tip = _get(child, "tooltip")
            tip = "" if tip is None else str(tip).replace("\n", "<br>")
            key = ("markers", kind, color, size, hide, top)
            for p in pos:
                out.add(key, pos=p, text=tip)
        elif kind in ("cylinders", "lines", "arrows"):
            if kind == "lines":
                flat = np.asarray(_get(child, "positions", []), float).reshape(-1, 3)
                pairs = flat[: len(flat) // 2 * 2].reshape(-1, 2, 3)
                width = _get(child, "linewidth")
                width = None if width is None else float(width)
            else:
                pairs = np.asarray(_get(child, "positionPairs", []), float).reshape(-1, 2, 3)
                width = _get(child, "radius")
                width = None if width is None else float(width)
            pairs = pairs + offset
            key = ("lines", kind, color, width, hide, top)
            for pq in pairs:
                out.add(key, pair=pq)
            if kind == "arrows":
                head = _get(child, "headLength")
                key_h = ("cones", color, 1.0 if head is None else float(head), hide, top)
                for pq in pairs:
                    out.add(key_h, pair=pq)
        elif kind in ("convex", "surface"):
            pos = np.asarray(_get(child, "positions", []), float).reshape(-1, 3) + offset
            op = _get(child, "opacity")
            key = ("mesh", kind, color, op, hide, top)
            out.add(key, points=pos)
        elif kind == "labels":
            p = _get(child, "position")
            if p is not None:
                p = np.asarray(p, float).reshape(-1, 3)[0] + offset
                out.add(("labels", hide, top), pos=p, text=str(_get(child, "label", "")))
        elif kind is not None:
            log.debug("scene_to_traces: skipping unsupported primitive type %r", kind)


def _name_from_tooltips(texts: Sequence[str], fallback: str) -> str:
    heads = {t.split("<br>")[0].split(" ")[0] for t in texts if t}
    return heads.pop() if len(heads) == 1 else fallback


def scene_to_traces(
    scene: Any,
    *,
    sphere_scale: float | None = None,
    line_scale: float = 40.0,
    name_prefix: str = "",
    include_root_origin: bool = False,
) -> list[go.BaseTraceType]:
    """Convert a crystal-toolkit ``Scene`` (or its ``to_json()`` dict) into Plotly traces.

    Spheres/cubes/ellipsoids -> Scatter3d markers (one trace per colour and radius; marker size
    in pixels is ``2 * radius * sphere_scale``, the scale chosen from the scene extent when
    None); cylinders, lines and arrow shafts -> one line trace per colour with None separators
    (cylinder radius ``r`` Å -> line width ``r * line_scale`` px); arrow heads -> Cone;
    convex hulls -> Mesh3d (explicit qhull triangulation, else Plotly's ``alphahull=0``) with
    low opacity; surfaces -> Mesh3d of consecutive vertex triples; labels -> text.

    Origins follow crystal-toolkit's three.js renderer: every nested Scene translates its
    contents by its ``origin`` and translations compound down the tree; the root's own origin
    is ignored unless ``include_root_origin``. Hidden scenes or primitives (``visible=False``)
    become ``visible="legendonly"`` traces. Each trace's ``meta`` holds
    ``{"kind": ..., "scene": <top-level child scene name>}``.
    """
    out = _Collector()
    root_offset = np.zeros(3)
    if include_root_origin and _get(scene, "origin") is not None:
        root_offset = np.asarray(_get(scene, "origin"), float)
    if _is_scene(scene):
        _walk(scene, root_offset, (), _hidden(_get(scene, "visible")), out)
    else:  # a bare primitive or a list of them
        items = scene if isinstance(scene, (list, tuple)) else [scene]
        _walk({"contents": list(items)}, root_offset, (), False, out)

    if sphere_scale is None:
        pts = [np.asarray(v["pos"]) for k, v in out.groups.items() if k[0] in ("markers",)]
        pts += [np.asarray(v["pair"]).reshape(-1, 3) for k, v in out.groups.items()
                if k[0] == "lines"]
        extent = float(np.ptp(np.concatenate(pts), axis=0).max()) if pts else 1.0
        sphere_scale = _auto_sphere_scale(extent)

    style = _TraceStyle(sphere_scale, line_scale, name_prefix)
    traces: list[go.BaseTraceType] = []
    for key, g in out.groups.items():
        traces += _GROUP_TRACES[key[0]](key, g, "legendonly" if key[-2] else True, key[-1], style)
    return traces


@dataclass(frozen=True)
class _TraceStyle:
    sphere_scale: float
    line_scale: float
    name_prefix: str


def _marker_traces(key: tuple, g: dict, visible: Any, top: str, style: _TraceStyle) -> list:
    """Spheres, cubes, ellipsoids of one colour and radius: one Scatter3d of markers."""
    _, kind, color, size, _, _ = key
    pos = np.asarray(g["pos"], float)
    texts = g["text"]
    fallback = {"spheres": "atoms", "cubes": "cubes", "ellipsoids": "ellipsoids"}[kind]
    name = _name_from_tooltips(texts, top or fallback)
    return [go.Scatter3d(
        x=pos[:, 0], y=pos[:, 1], z=pos[:, 2], mode="markers",
        name=style.name_prefix + name, text=texts if any(texts) else None,
        hoverinfo="text" if any(texts) else "x+y+z+name",
        marker=dict(
            size=float(np.clip(2 * size * style.sphere_scale, 2, 60)),
            color=color or DEFAULT_COLOR,
            symbol="square" if kind == "cubes" else "circle",
            line=dict(color=ATOM_OUTLINE, width=1), opacity=1.0,
        ),
        visible=visible, meta={"kind": kind, "scene": top},
    )]


def _line_traces(key: tuple, g: dict, visible: Any, top: str, style: _TraceStyle) -> list:
    """Lines, cylinders and arrow shafts of one colour and width: one line trace, None-separated."""
    _, kind, color, width, _, _ = key
    xs, ys, zs = _segments_xyz(g["pair"])
    if kind == "lines":
        px = 2.0 * (width or 1.0)
        default = CELL_COLOR
    else:
        px = (0.1 if width is None else width) * style.line_scale
        default = DEFAULT_COLOR
    label = {"lines": "lines", "cylinders": "bonds", "arrows": "arrows"}[kind]
    return [go.Scatter3d(
        x=xs, y=ys, z=zs, mode="lines", name=style.name_prefix + (top or label),
        line=dict(color=color or default, width=float(np.clip(px, 1, 30))),
        hoverinfo="skip", visible=visible, meta={"kind": kind, "scene": top},
    )]


def _cone_traces(key: tuple, g: dict, visible: Any, top: str, style: _TraceStyle) -> list:
    """Arrow heads of one colour and size: one Cone trace at the arrow tips."""
    _, color, head, _, _ = key
    pairs = np.asarray(g["pair"], float)
    d = pairs[:, 1] - pairs[:, 0]
    n = np.linalg.norm(d, axis=1, keepdims=True)
    u = np.divide(d, n, out=np.zeros_like(d), where=n > 0) * head
    tip = pairs[:, 1]
    c = color or DEFAULT_COLOR
    return [go.Cone(
        x=tip[:, 0], y=tip[:, 1], z=tip[:, 2], u=u[:, 0], v=u[:, 1], w=u[:, 2],
        anchor="tip", sizemode="absolute", sizeref=1.0, showscale=False,
        colorscale=[[0, c], [1, c]], name=style.name_prefix + (top or "arrows"),
        hoverinfo="skip", visible=visible, meta={"kind": "arrow_heads", "scene": top},
    )]


def _mesh_traces(key: tuple, g: dict, visible: Any, top: str, style: _TraceStyle) -> list:
    """Convex hulls and surfaces of one colour and opacity: one Mesh3d of every triangulated
    one, and a Plotly `alphahull=0` Mesh3d for each hull qhull could not triangulate."""
    _, kind, color, opacity, _, _ = key
    xs, tris, alphahull = [], [], False
    n0 = 0
    for pts in g["points"]:
        if kind == "surface":
            m = len(pts) // 3 * 3
            mesh = (pts[:m], np.arange(m).reshape(-1, 3)) if m else None
        else:
            mesh = _convex_mesh(pts)
        if mesh is None:
            alphahull = True
            continue
        xs.append(mesh[0])
        tris.append(mesh[1] + n0)
        n0 += len(mesh[0])
    op = 0.2 if opacity is None else float(opacity)
    common = dict(color=color or DEFAULT_COLOR, opacity=op, flatshading=True,
                  hoverinfo="skip", visible=visible, name=style.name_prefix + (top or kind),
                  meta={"kind": kind, "scene": top})
    traces = []
    if xs:
        v = np.concatenate(xs)
        t = np.concatenate(tris)
        traces.append(go.Mesh3d(x=v[:, 0], y=v[:, 1], z=v[:, 2],
                                i=t[:, 0], j=t[:, 1], k=t[:, 2], **common))
    if alphahull:  # hulls qhull could not triangulate: one Mesh3d each, Plotly's hull
        for pts in g["points"]:
            if kind == "convex" and _convex_mesh(pts) is None and len(pts) >= 4:
                traces.append(go.Mesh3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2],
                                        alphahull=0, **common))
    return traces


def _label_traces(key: tuple, g: dict, visible: Any, top: str, style: _TraceStyle) -> list:
    """Text labels: one Scatter3d of text."""
    pos = np.asarray(g["pos"], float)
    return [go.Scatter3d(
        x=pos[:, 0], y=pos[:, 1], z=pos[:, 2], mode="text", text=g["text"],
        name=style.name_prefix + (top or "labels"), hoverinfo="skip", visible=visible,
        meta={"kind": "labels", "scene": top},
    )]


_GROUP_TRACES = {"markers": _marker_traces, "lines": _line_traces, "cones": _cone_traces,
                 "mesh": _mesh_traces, "labels": _label_traces}
"""Trace builder per collected group kind (the first element of a group's key)."""


def _auto_sphere_scale(extent_angstrom: float) -> float:
    """Pixels per Å of radius so atoms look right in a ~500 px panel whatever the cell size."""
    return float(np.clip(160.0 / max(extent_angstrom, 1e-6), 4.0, 30.0))


# --------------------------------------------------------------------------------------------
# Structure -> traces
# --------------------------------------------------------------------------------------------


def cell_edge_segments(lattice_matrix: np.ndarray) -> np.ndarray:
    """The 12 edges of the cell spanned by the rows of ``lattice_matrix`` (3, 3): (12, 2, 3)."""
    m = np.asarray(lattice_matrix, float).reshape(3, 3)
    corners = UNIT_CUBE_CORNERS
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8)
             if np.abs(corners[a] - corners[b]).sum() == 1]
    return np.array([[corners[a] @ m, corners[b] @ m] for a, b in edges])


def image_sites(frac_coords: np.ndarray, tol: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Sites to draw: each atom wrapped into [0, 1) plus its images on the cell faces.

    frac_coords: (N, 3). Returns (M,) site index and (M, 3) fractional coordinates, where an
    atom with a coordinate within ``tol`` of 0 is also drawn at 1 (on edges and corners, every
    combination), as crystal-toolkit draws image atoms.
    """
    f = wrap_frac(np.asarray(frac_coords, float).reshape(-1, 3))
    f[np.isclose(f, 1.0, atol=tol)] = 0.0
    idx, out = [], []
    for n, fc in enumerate(f):
        axes = [d for d in range(3) if abs(fc[d]) < tol]
        for mask in range(2 ** len(axes)):
            shift = np.zeros(3)
            for b, d in enumerate(axes):
                if mask >> b & 1:
                    shift[d] = 1.0
            idx.append(n)
            out.append(fc + shift)
    return np.asarray(idx, dtype=np.int64), np.asarray(out, float).reshape(-1, 3)


def _nearest_site(frac_points: np.ndarray, frac_sites: np.ndarray) -> np.ndarray:
    """Index of the site (N, 3) equal modulo lattice translations to each point (M, 3)."""
    if len(frac_sites) == 0:
        return np.zeros(len(frac_points), dtype=np.int64)
    d = min_image_frac(frac_points[:, None, :] - frac_sites[None, :, :])
    return np.argmin((d**2).sum(-1), axis=1)


def _atom_hover(symbol: str, frac: np.ndarray, cart: np.ndarray, index: int, extra: str) -> str:
    text = (
        f"<b>{symbol}</b> (site {index})<br>"
        f"frac ({frac[0]:.3f}, {frac[1]:.3f}, {frac[2]:.3f})<br>"
        f"cart ({cart[0]:.2f}, {cart[1]:.2f}, {cart[2]:.2f}) Å"
    )
    return text + (f"<br>{extra}" if extra else "")


def _atom_traces(
    symbols: Sequence[str], site_index: np.ndarray, frac: np.ndarray, cart: np.ndarray,
    colors: Sequence[str], size_px: float, name_prefix: str, legendgroup: str | None,
    showlegend: bool, site_info: Sequence[str] | None,
) -> list[go.Scatter3d]:
    """One Scatter3d per element, hover = element + fractional (and cartesian) coordinates."""
    traces = []
    for el in dict.fromkeys(symbols[i] for i in site_index):
        sel = np.array([symbols[i] == el for i in site_index], bool)
        pts = cart[sel]
        hover = [
            _atom_hover(el, f, c, int(i), site_info[int(i)] if site_info is not None else "")
            for f, c, i in zip(frac[sel], pts, site_index[sel])
        ]
        col = [c for c, s in zip(colors, sel) if s]
        traces.append(go.Scatter3d(
            x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers", name=name_prefix + el,
            text=hover, hoverinfo="text",
            marker=dict(size=size_px, color=col[0] if len(set(col)) == 1 else col, opacity=1.0,
                        line=dict(color=ATOM_OUTLINE, width=1)),
            legendgroup=(legendgroup or "") + el, showlegend=showlegend,
            customdata=site_index[sel],
            meta={"kind": "atoms", "scene": "atoms", "element": el},
        ))
    return traces


def _fallback_traces(structure: Structure, name_prefix: str, legendgroup: str | None,
                     showlegend: bool, site_info: Sequence[str] | None) -> list:
    """Atoms (Jmol colours, images on faces) and cell edges without crystal-toolkit."""
    lattice = np.asarray(structure.lattice.matrix, float)
    symbols = [site.specie.symbol if site.is_ordered else site.species_string
               for site in structure]
    idx, frac = image_sites(np.asarray(structure.frac_coords, float).reshape(-1, 3))
    cart = frac @ lattice
    extent = float(np.ptp(np.concatenate([cart, cell_edge_segments(lattice).reshape(-1, 3)]),
                          axis=0).max())
    size = float(np.clip(2 * 0.5 * _auto_sphere_scale(extent), 3, 40))
    colors = [element_color(symbols[i]) for i in idx]
    traces: list = [_cell_trace(lattice, name_prefix, legendgroup, showlegend)]
    traces += _atom_traces(symbols, idx, frac, cart, colors, size, name_prefix, legendgroup,
                           showlegend, site_info)
    return traces


def _cell_trace(lattice: np.ndarray, name_prefix: str, legendgroup: str | None,
                showlegend: bool) -> go.Scatter3d:
    xs, ys, zs = _segments_xyz(cell_edge_segments(lattice))
    return go.Scatter3d(
        x=xs, y=ys, z=zs, mode="lines", name=name_prefix + "cell",
        line=dict(color=CELL_COLOR, width=2), hoverinfo="skip",
        legendgroup=(legendgroup or "") + "cell", showlegend=showlegend,
        meta={"kind": "lines", "scene": "unit_cell"},
    )


def physical_cell(structure: Structure) -> bool:
    """`nesf_viz.crystal.is_physical_cell` for a pymatgen Structure."""
    from ..crystal import is_physical_cell

    return is_physical_cell(np.asarray(structure.lattice.matrix, float), len(structure))


def _ctk_scene(structure: Structure, bonds: bool, draw_image_atoms: bool,
               polyhedra: bool = True) -> Any:
    """crystal-toolkit's scene for ``structure`` (origin at the cell corner, absolute coords)."""
    import crystal_toolkit  # noqa: F401  (lazy: patches pymatgen's notebook display)

    if bonds:
        from pymatgen.analysis.graphs import StructureGraph
        from pymatgen.analysis.local_env import CrystalNN

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # CrystalNN warns about missing oxidation states
            graph = StructureGraph.from_local_env_strategy(structure, CrystalNN())
            return graph.get_scene(
                origin=[0.0, 0.0, 0.0], draw_image_atoms=draw_image_atoms,
                bonded_sites_outside_unit_cell=False, hide_incomplete_edges=True,
                site_get_scene_kwargs={"draw_polyhedra": polyhedra},
            )
    return structure.get_scene(origin=[0.0, 0.0, 0.0], draw_image_atoms=draw_image_atoms)


def structure_traces(
    structure: Structure,
    name_prefix: str = "",
    *,
    bonds: bool = True,
    draw_image_atoms: bool = True,
    showlegend: bool = True,
    legendgroup: str | None = None,
    site_info: Sequence[str] | None = None,
    polyhedra: bool = True,
) -> list[go.BaseTraceType]:
    """Plotly traces for a pymatgen Structure, drawn as crystal-toolkit draws it.

    Atoms with periodic images on the cell faces, cell edges, and (``bonds=True``) CrystalNN
    bonds and (``polyhedra=True``) coordination polyhedra, from ``StructureGraph.get_scene``
    converted by :func:`scene_to_traces`. Atom traces are regrouped one per element (legend
    = element) with hover text computed from the structure: element, site index, fractional
    coordinates (images on faces read 1.000) and cartesian coordinates; ``site_info`` (N,)
    appends a line per site. If crystal-toolkit cannot build a scene, falls back to plain
    traces (Jmol colours, images on faces, cell edges) with a logged warning, never failing.
    """
    if site_info is not None and len(site_info) != len(structure):
        raise ValueError(f"site_info has {len(site_info)} entries for {len(structure)} sites")
    if len(structure) == 0:
        return [_cell_trace(np.asarray(structure.lattice.matrix, float), name_prefix,
                            legendgroup, showlegend)]
    if not physical_cell(structure):
        # a barely trained model can decode a 0.02 A cell: CrystalNN's neighbour search over
        # its periodic images then took minutes and >13 GiB; plain traces are enough to show it
        log.info("degenerate cell (%s); drawing plain traces", structure.lattice.abc)
        return _fallback_traces(structure, name_prefix, legendgroup, showlegend, site_info)
    try:
        try:
            scene = _ctk_scene(structure, bonds, draw_image_atoms, polyhedra)
        except Exception as exc:  # noqa: BLE001 - bonding can fail on odd decoded structures
            if not bonds:
                raise
            log.info("bonds skipped (%s: %s)", type(exc).__name__, exc)
            scene = _ctk_scene(structure, False, draw_image_atoms)
        raw = scene_to_traces(scene, name_prefix=name_prefix)
    except Exception as exc:  # noqa: BLE001 - any failure: plain traces, never a crash
        log.warning("crystal-toolkit scene failed (%s: %s); drawing plain traces",
                    type(exc).__name__, exc)
        return _fallback_traces(structure, name_prefix, legendgroup, showlegend, site_info)

    lattice = np.asarray(structure.lattice.matrix, float)
    inv = np.linalg.inv(lattice)
    site_frac = np.asarray(structure.frac_coords, float).reshape(-1, 3)
    symbols = [site.specie.symbol if site.is_ordered else site.species_string
               for site in structure]
    traces: list[go.BaseTraceType] = []
    atom_pos, atom_col, atom_size = [], [], []
    for tr in raw:
        meta = tr.meta or {}
        if meta.get("scene") == "atoms" and meta.get("kind") == "spheres":
            pts = np.column_stack([tr.x, tr.y, tr.z]).astype(float)
            atom_pos.append(pts)
            atom_col += [tr.marker.color] * len(pts)
            atom_size.append(tr.marker.size)
            continue
        role = {"bonds": "bonds", "unit_cell": "cell", "polyhedra": "polyhedra"}.get(
            meta.get("scene", ""), meta.get("scene", "") or meta.get("kind", ""))
        tr.update(name=name_prefix + role, legendgroup=(legendgroup or "") + role,
                  showlegend=showlegend and role in ("bonds", "cell", "polyhedra"))
        if role == "cell":
            tr.update(line=dict(color=CELL_COLOR, width=2))
        traces.append(tr)
    # one legend entry per role: polyhedra may come as several meshes
    seen: set[str] = set()
    for tr in traces:
        if tr.showlegend and tr.name in seen:
            tr.showlegend = False
        seen.add(tr.name)
    if atom_pos:
        cart = np.concatenate(atom_pos)
        frac = cart @ inv
        idx = _nearest_site(frac, site_frac)
        traces += _atom_traces(symbols, idx, frac, cart, atom_col, float(max(atom_size)),
                               name_prefix, legendgroup, showlegend, site_info)
    return traces
