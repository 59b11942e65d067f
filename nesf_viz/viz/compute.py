"""The compute half of the pictures: query fields, reshape recordings, interpolate latents.

Figures (:mod:`nesf_viz.viz.figures`) never run a model; these functions do, and return small
frozen dataclasses of numpy arrays (`FieldSliceData`, `TrajectoryData`, ...) whose field names
are the parameters of the figure function they feed, so ``field_slice(fields, z).figure()`` (or
``.figure(title=...)``) draws one; the figure functions themselves stay plain functions of
arrays. Every function is pure: fields are queried in eval mode under ``torch.no_grad`` and a
module gets its previous mode back.

Shapes: B crystals, N atoms, P particles, T steps, S species, D latent size, U x V pixels of
a slice. Lengths in Angstrom in the project frame ("a along x, b in the xy plane").

Planes: ``"xy"`` has u = x, v = y and its offset is a z coordinate; ``"xz"``: u = x, v = z,
offset along y; ``"yz"``: u = y, v = z, offset along x.
"""

from __future__ import annotations

import inspect
import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from dataclasses import fields as dataclass_fields
from typing import Any, Callable, ClassVar, Iterator, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from ..data import BoundingBox, Crystal, CrystalBatch, SpeciesVocab, crystal_from_structure
from ..decode import DecodeConfig, decode
from ..errors import ShapeError
from ..fields import StructureFields
from ..geometry import UNIT_CUBE_CORNERS, lattice_matrix_np
from . import figures as F

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- typed results


@dataclass(frozen=True, eq=False)
class ViewData:
    """What a compute function returns: named arrays whose names are parameters of the figure
    function `FIGURE` (the typed hand-off between compute and figures)."""

    FIGURE: ClassVar[Callable[..., go.Figure] | None] = None

    def to_dict(self) -> dict[str, Any]:
        """The fields by name (the arrays themselves, not copies)."""
        return {f.name: getattr(self, f.name) for f in dataclass_fields(self)}

    def figure(self, figure_function: Callable[..., go.Figure] | None = None, **overrides: Any) -> go.Figure:
        """Draw with `FIGURE` (or another figure function taking some of these fields);
        `overrides` (title=..., any parameter) win over the fields."""
        fn = figure_function or type(self).FIGURE
        if fn is None:
            raise TypeError(f"{type(self).__name__} has no figure of its own; pass a figure function")
        params = inspect.signature(fn).parameters
        return fn(**{**{k: v for k, v in self.to_dict().items() if k in params}, **overrides})


@dataclass(frozen=True, eq=False)
class SliceGridData(ViewData):
    """The pixel grid of a plane: grid_u (U,), grid_v (V,), points (U, V, 3) Å."""

    grid_u: np.ndarray
    grid_v: np.ndarray
    points: np.ndarray
    axis_labels: tuple[str, str]
    plane: str
    offset_angstrom: float


@dataclass(frozen=True, eq=False)
class FieldSliceData(SliceGridData):
    """f_p on a plane: vectors (U, V, 3), vectors_uv (U, V, 2) in-plane, magnitude (U, V) |f_p| Å;
    atoms_uv (M, 2) and atom_labels (M,) of the atoms near the plane."""

    FIGURE: ClassVar = F.field_slice_figure
    vectors: np.ndarray
    vectors_uv: np.ndarray
    magnitude: np.ndarray
    atoms_uv: np.ndarray
    atom_labels: list[str]


@dataclass(frozen=True, eq=False)
class SpeciesSliceData(SliceGridData):
    """f_s on a plane: labels (U, V) argmax class, confidence (U, V) in [0, 1], class_names (S,);
    atoms_uv (M, 2) and atom_labels (M,) of the atoms near the plane."""

    FIGURE: ClassVar = F.species_slice_figure
    labels: np.ndarray
    confidence: np.ndarray
    class_names: list[str]
    atoms_uv: np.ndarray
    atom_labels: list[str]


@dataclass(frozen=True, eq=False)
class TrajectoryData(ViewData):
    """Particles over recorded steps: positions (T, P, 3) Å, scores (T, P) `residuals` Å,
    kept (P,), true atoms (N, 3) with atom_labels (N,) or None, step_labels (T,)."""

    FIGURE: ClassVar = F.particle_animation
    positions: np.ndarray
    scores: np.ndarray
    kept: np.ndarray
    atoms: np.ndarray | None
    atom_labels: list[str] | None
    step_labels: list[str]
    score_threshold: float


@dataclass(frozen=True, eq=False)
class ClusterData(ViewData):
    """NMS clusters of one crystal: positions (P, 3) at the drawn step, cluster_id (P,) (-1: none),
    centres (C, 3), counts (C,), kept (P,), is_atom (C,), nms_radius Å, true atoms (N, 3) or
    None; clusters: the recorder's `ClusterView`."""

    FIGURE: ClassVar = F.cluster_figure
    positions: np.ndarray
    cluster_id: np.ndarray
    centres: np.ndarray
    counts: np.ndarray
    kept: np.ndarray
    nms_radius: float
    atoms: np.ndarray | None
    is_atom: np.ndarray
    clusters: Any


@dataclass(frozen=True, eq=False)
class InterpolationData(ViewData):
    """Decodes along a latent line: steps (T,) t values, atom_counts (T,), lengths (T, 3) Å,
    angles_deg (T, 3), structures (T,) pymatgen Structures, latents (T, D), result (the
    DecodeResult). Draws `interpolation_figure`; `.figure(interpolation_path_figure)` the path."""

    FIGURE: ClassVar = F.interpolation_figure
    steps: np.ndarray
    atom_counts: np.ndarray
    lengths: np.ndarray
    angles_deg: np.ndarray
    structures: list
    latents: np.ndarray
    result: Any

    def endpoint_verdicts(self, crystals_a_b: Sequence[Crystal]) -> list:
        """How right the two ends are: `nesf_viz.metrics.crystal_verdicts` of the crystals the
        line was drawn between against the decodes at t = 0 and t = 1 (atoms, composition,
        StructureMatcher, errors)."""
        from ..metrics import crystal_verdicts

        a, b = (_as_crystal(c) for c in crystals_a_b)
        decoded = self.result.to_crystals()
        ends = [replace(decoded[0], id=a.id), replace(decoded[-1], id=b.id)]
        return crystal_verdicts([a, b], ends)


@dataclass(frozen=True, eq=False)
class LatentTableData(ViewData):
    """Latents (B, D) of many crystals with labels (B,), names (B,) (crystal ids), hover (B,)
    texts (id, formula, atoms, and space group where known) and label_order (the legend's)."""

    FIGURE: ClassVar = F.latent_pca_figure
    latents: np.ndarray
    labels: list[str]
    names: list[str]
    hover: list[str] | None = None
    label_order: list[str] | None = None
    descriptions: list | None = None
    """`nesf_viz.symmetry.describe` of each crystal when the labels needed it (then `relabel` works)."""

    def relabel(self, labels: str) -> LatentTableData:
        """The same latents and hover texts under other labels of `DESCRIBED_LABELS` (no model
        run, no symmetry search again)."""
        if self.descriptions is None:
            raise ValueError("relabel needs a table made with one of DESCRIBED_LABELS (it keeps the descriptions)")
        lab, order = _described_labels(self.descriptions, labels)
        return replace(self, labels=lab, label_order=order)


@dataclass(frozen=True, eq=False)
class SpeciesVotesData(ViewData):
    """The species vote of one crystal: points (A*G, 3), point_labels (A*G,), atoms (A, 3),
    winners (A,), shares (A,), truth (A,) or None, class_names (S,)."""

    FIGURE: ClassVar = F.species_vote_figure
    points: np.ndarray
    point_labels: list[str]
    atoms: np.ndarray
    winners: list[str]
    shares: np.ndarray
    truth: list[str] | None
    class_names: list[str]


@dataclass(frozen=True, eq=False)
class PeriodicFaceData(ViewData):
    """One plane through a cell face, with the paper's fields (left: the cell's atoms only) and the
    periodic option (right: periodic images count); each a FieldSliceData's fields as a dict."""

    FIGURE: ClassVar = F.field_slice_pair_figure
    left: dict
    right: dict
    titles: tuple[str, str]
    title: str | None = None


@dataclass(frozen=True, eq=False)
class SiteErrorData(ViewData):
    """True and decoded atoms of one crystal: true_positions (N, 3), true_symbols (N,),
    decoded_positions (M, 3), decoded_symbols (M,), lattice (3, 3) of the true cell, title."""

    FIGURE: ClassVar = F.site_error_figure
    true_positions: np.ndarray
    true_symbols: list[str]
    decoded_positions: np.ndarray
    decoded_symbols: list[str]
    lattice: np.ndarray
    title: str | None = None


@dataclass(frozen=True, eq=False)
class QueryPointsData(ViewData):
    """One training step's query points of one crystal: global_points (G, 3), local_points
    (L, 3), species_points (S, 3), atoms (N, 3), atom_labels (N,)."""

    FIGURE: ClassVar = F.query_points_figure
    global_points: np.ndarray
    local_points: np.ndarray
    species_points: np.ndarray
    atoms: np.ndarray
    atom_labels: list[str]


__all__ = [
    "PLANES",
    "field_slice",
    "species_slice",
    "slice_grid",
    "trajectory_view",
    "residuals",
    "cluster_view",
    "move_segments",
    "trajectory_ranges",
    "interpolate_latents",
    "decode_interpolation",
    "latent_table",
    "element_symbols",
]

#: plane -> (u axis, v axis, normal axis), axes as 0 = x, 1 = y, 2 = z.
PLANES: dict[str, tuple[int, int, int]] = {"xy": (0, 1, 2), "xz": (0, 2, 1), "yz": (1, 2, 0)}
_AXIS = "xyz"
_CHUNK = 1 << 16


# ----------------------------------------------------------------------------- helpers


@contextmanager
def _inference(fields: StructureFields) -> Iterator[None]:
    """Eval mode (BatchNorm running statistics) and no_grad; restores a module's mode."""
    module = fields if isinstance(fields, torch.nn.Module) else None
    was_training = module.training if module is not None else False
    try:
        if module is not None:
            module.eval()
        with torch.no_grad():
            yield
    finally:
        if module is not None:
            module.train(was_training)


def element_symbols(atomic_numbers: Sequence[int]) -> list[str]:
    """Element symbols of atomic numbers (pymatgen's table)."""
    from pymatgen.core import Element

    return [Element.from_Z(int(z)).symbol for z in atomic_numbers]


def _as_crystal(obj: Any) -> Crystal:
    """A `Crystal` from a Crystal or a pymatgen Structure (cell kept as given)."""
    if isinstance(obj, Crystal):
        return obj
    if hasattr(obj, "lattice") and hasattr(obj, "frac_coords"):
        return crystal_from_structure(obj, conventional=False)
    raise TypeError("expected a nesf_viz Crystal or a pymatgen Structure, "
                    f"got {type(obj).__name__}")


def _cell_of(atoms: Any) -> np.ndarray | None:
    """The (3, 3) lattice of a Crystal / Structure given as `atoms`, else None."""
    if isinstance(atoms, Crystal) or (hasattr(atoms, "lattice") and hasattr(atoms, "frac_coords")):
        return _as_crystal(atoms).lattice
    return None


def _row(z: torch.Tensor, crystal_index: int) -> torch.Tensor:
    """(1, D) latent row of one crystal; z may be (B, D) or (D,)."""
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2:
        raise ShapeError(f"latents must be (B, D) or (D,); got {tuple(z.shape)}")
    if not 0 <= crystal_index < z.shape[0]:
        raise IndexError(f"crystal_index {crystal_index} out of range for {z.shape[0]} latents")
    return z[crystal_index : crystal_index + 1]


def _cell_corners(fields: StructureFields, z_row: torch.Tensor) -> np.ndarray:
    """(8, 3) corners of the (predicted) cell of one latent row."""
    corners = UNIT_CUBE_CORNERS
    with _inference(fields):
        lengths, angles = fields.lattice(z_row)
    ln = lengths[0].double().cpu().numpy()
    an = np.degrees(angles[0].double().cpu().numpy())
    try:
        return corners @ lattice_matrix_np(ln, an)
    except Exception:  # noqa: BLE001 - a learned lattice head can predict an impossible cell
        log.warning("predicted lattice %s A / %s deg has no volume; slicing a 5 A cube "
                    "(pass extent=... or the true crystal as atoms=...)", ln.round(2), an.round(1))
        return corners * 5.0


def _axis(n0: float, n1: float, step: float) -> np.ndarray:
    """n0, n0 + step, ... up to n1 (inclusive within a float tolerance)."""
    if not step > 0:
        raise ValueError(f"step_angstrom must be > 0, got {step}")
    n = int(np.floor((n1 - n0) / step + 1e-6)) + 1
    return n0 + step * np.arange(max(n, 1), dtype=np.float64)


def slice_grid(
    fields: StructureFields,
    z: torch.Tensor,
    crystal_index: int = 0,
    plane: str = "xy",
    offset_angstrom: float = 0.0,
    extent: tuple[tuple[float, float], tuple[float, float]] | None = None,
    step_angstrom: float = 0.1,
    cell: np.ndarray | None = None,
) -> SliceGridData:
    """The pixel grid of a slice: grid_u (U,), grid_v (V,), points (U, V, 3) and axis labels.

    extent ((u_min, u_max), (v_min, v_max)) in Angstrom; None spans `cell` ((3, 3) row
    lattice, e.g. the true crystal's) projected on the plane, or without it the cell the
    fields predict for the crystal.
    """
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {sorted(PLANES)}, got {plane!r}")
    iu, iv, inorm = PLANES[plane]
    if extent is None:
        c = (UNIT_CUBE_CORNERS @ np.asarray(cell, float) if cell is not None
             else _cell_corners(fields, _row(z, crystal_index)))
        extent = ((c[:, iu].min(), c[:, iu].max()), (c[:, iv].min(), c[:, iv].max()))
    (u0, u1), (v0, v1) = extent
    gu, gv = _axis(float(u0), float(u1), step_angstrom), _axis(float(v0), float(v1), step_angstrom)
    pts = np.zeros((len(gu), len(gv), 3))
    pts[..., iu] = gu[:, None]
    pts[..., iv] = gv[None, :]
    pts[..., inorm] = float(offset_angstrom)
    return SliceGridData(grid_u=gu, grid_v=gv, points=pts, axis_labels=(f"{_AXIS[iu]} (Å)", f"{_AXIS[iv]} (Å)"),
                         plane=plane, offset_angstrom=float(offset_angstrom))


def _evaluate(fn, z_row: torch.Tensor, points: np.ndarray, fields: StructureFields) -> np.ndarray:
    """fn(z_row, points, index 0) over (..., 3) points, chunked; numpy float64 (..., K)."""
    flat = torch.as_tensor(points.reshape(-1, 3), dtype=z_row.dtype if z_row.is_floating_point()
                           else torch.float32, device=z_row.device)
    index = torch.zeros(flat.shape[0], dtype=torch.long, device=z_row.device)
    with _inference(fields):
        out = torch.cat([fn(z_row, flat[s : s + _CHUNK], index[s : s + _CHUNK])
                         for s in range(0, flat.shape[0], _CHUNK)])
    return out.double().cpu().numpy().reshape(*points.shape[:-1], -1)


def _atoms_near(
    fields: StructureFields,
    crystal_index: int,
    atoms: Any,
    atom_labels: Sequence[str] | None,
    vocab: SpeciesVocab | None,
    plane: str,
    offset: float,
    tol: float,
) -> tuple[np.ndarray, list[str]]:
    """Atoms within `tol` of the plane, as (M, 2) in-plane coordinates and labels."""
    iu, iv, inorm = PLANES[plane]
    if atoms is None and isinstance(getattr(fields, "crystals", None), CrystalBatch):
        cb: CrystalBatch = fields.crystals
        m = (cb.batch == crystal_index).cpu().numpy()
        pos = cb.positions.detach().double().cpu().numpy()[m]
        spec = cb.species.cpu().numpy()[m]
        labels = (element_symbols(vocab.decode(spec)) if vocab is not None
                  else [f"class {int(s)}" for s in spec])
    elif atoms is None:
        return np.zeros((0, 2)), []
    elif isinstance(atoms, np.ndarray) or (isinstance(atoms, (list, tuple)) and atoms
                                           and np.ndim(atoms[0]) == 1):
        pos = np.asarray(atoms, dtype=np.float64).reshape(-1, 3)
        labels = list(atom_labels) if atom_labels is not None else ["atom"] * len(pos)
    else:
        c = _as_crystal(atoms)
        pos = c.positions_angstrom
        labels = element_symbols(c.atomic_numbers)
    if atom_labels is not None:
        labels = list(atom_labels)
    if len(labels) != len(pos):
        raise ShapeError(f"{len(labels)} atom labels for {len(pos)} atoms")
    near = np.abs(pos[:, inorm] - offset) <= tol
    return pos[near][:, [iu, iv]], [lab for lab, k in zip(labels, near) if k]


# ----------------------------------------------------------------------------- slices


def field_slice(
    fields: StructureFields,
    z: torch.Tensor,
    crystal_index: int = 0,
    plane: str = "xy",
    offset_angstrom: float = 0.0,
    extent: tuple[tuple[float, float], tuple[float, float]] | None = None,
    step_angstrom: float = 0.1,
    *,
    atoms: Any = None,
    atom_labels: Sequence[str] | None = None,
    vocab: SpeciesVocab | None = None,
    atom_tolerance_angstrom: float = 0.5,
) -> FieldSliceData:
    """The position field f_p on a plane of one crystal (learned or exact fields).

    z: latents (B, D) (``fields.latents(batch)``) and the row ``crystal_index``; plane "xy",
    "xz" or "yz" at ``offset_angstrom`` along the normal axis; extent and step as in
    :func:`slice_grid`. atoms: a Crystal / pymatgen Structure / (N, 3) array whose atoms
    within ``atom_tolerance_angstrom`` of the plane are returned (default for `ExactFields`:
    its own atoms, labelled with `vocab`'s element symbols when given); a Crystal or
    Structure also sets the default extent (its cell) instead of the predicted cell.

    Returns grid_u (U,), grid_v (V,), vectors_uv (U, V, 2) in-plane components of f_p,
    magnitude (U, V) full |f_p| (Angstrom), vectors (U, V, 3), points (U, V, 3), atoms_uv
    (M, 2), atom_labels (M,), axis_labels, plane, offset_angstrom.
    """
    z_row = _row(z, crystal_index)
    grid = slice_grid(fields, z, crystal_index, plane, offset_angstrom, extent, step_angstrom,
                      _cell_of(atoms))
    vec = _evaluate(fields.position_field, z_row, grid.points, fields)  # (U, V, 3)
    iu, iv, _ = PLANES[plane]
    atoms_uv, near_labels = _atoms_near(fields, crystal_index, atoms, atom_labels, vocab, plane,
                                        float(offset_angstrom), atom_tolerance_angstrom)
    return FieldSliceData(**grid.to_dict(), vectors=vec, vectors_uv=vec[..., [iu, iv]],
                          magnitude=np.linalg.norm(vec, axis=-1), atoms_uv=atoms_uv, atom_labels=near_labels)


def species_slice(
    fields: StructureFields,
    z: torch.Tensor,
    crystal_index: int = 0,
    plane: str = "xy",
    offset_angstrom: float = 0.0,
    extent: tuple[tuple[float, float], tuple[float, float]] | None = None,
    step_angstrom: float = 0.1,
    *,
    vocab: SpeciesVocab | None = None,
    atoms: Any = None,
    atom_labels: Sequence[str] | None = None,
    atom_tolerance_angstrom: float = 0.5,
) -> SpeciesSliceData:
    """The species field f_s on a plane: argmax class and its softmax probability.

    Exact fields (one-hot) have confidence 1 everywhere. Returns grid_u, grid_v, labels
    (U, V) int class index, confidence (U, V) in [0, 1], class_names (S,) (element symbols
    with a `vocab`, else "class k"), atoms_uv, atom_labels, axis_labels, points, plane,
    offset_angstrom.
    """
    from ..fields import ExactFields

    z_row = _row(z, crystal_index)
    grid = slice_grid(fields, z, crystal_index, plane, offset_angstrom, extent, step_angstrom,
                      _cell_of(atoms))
    scores = _evaluate(fields.species_field, z_row, grid.points, fields)  # (U, V, S)
    if isinstance(fields, ExactFields):
        confidence = np.ones(scores.shape[:-1])
    else:
        p = np.exp(scores - scores.max(-1, keepdims=True))
        confidence = p.max(-1) / p.sum(-1)
    n = scores.shape[-1]
    atoms_uv, near_labels = _atoms_near(fields, crystal_index, atoms, atom_labels, vocab, plane,
                                        float(offset_angstrom), atom_tolerance_angstrom)
    return SpeciesSliceData(
        **grid.to_dict(), labels=scores.argmax(-1).astype(np.int64), confidence=confidence,
        class_names=(element_symbols(vocab.atomic_numbers[:n]) if vocab is not None
                     else [f"class {k}" for k in range(n)]),
        atoms_uv=atoms_uv, atom_labels=near_labels)


# ----------------------------------------------------------------------------- recordings


def _atoms_of(originals: Any, crystal: int) -> tuple[np.ndarray | None, list[str] | None]:
    if originals is None:
        return None, None
    c = _as_crystal(originals[crystal])
    return c.positions_angstrom, element_symbols(c.atomic_numbers)


def residuals(recorder: Any, crystal: int) -> np.ndarray:
    """(T, P) how far each particle still goes from each recorded position, Angstrom.

    Row t is the distance to its position at the next recorded row (exactly the move |f_p(p_t)|
    when the recorder kept every move, ``every=1``; with ``every=k`` the path of k moves, so a
    particle far from its atom is not shown as converged because the last of its k moves was
    short); the last row is sqrt(score), the residual the decoder thresholds.
    """
    pos = np.asarray(recorder.positions(crystal), dtype=np.float64)  # (T, P, 3)
    out = np.empty(pos.shape[:2])
    out[:-1] = np.linalg.norm(np.diff(pos, axis=0), axis=-1)
    out[-1] = np.sqrt(np.asarray(recorder.scores(crystal), dtype=np.float64))
    return out


def trajectory_view(recorder: Any, crystal: int = 0, originals: Any = None) -> TrajectoryData:
    """Arrays for :func:`~nesf_viz.viz.figures.particle_animation` from a TrajectoryRecorder.

    originals: the true crystals (Crystals or pymatgen Structures, indexed like the
    recorder's) whose atoms are drawn; None draws none. Returns positions (T, P, 3), scores
    (T, P) residual |f_p|, kept (P,), atoms, atom_labels, step_labels, score_threshold.
    """
    atoms, labels = _atoms_of(originals, crystal)
    return TrajectoryData(
        positions=np.asarray(recorder.positions(crystal), dtype=np.float64),
        scores=residuals(recorder, crystal),
        kept=np.asarray(recorder.kept(crystal), dtype=bool),
        atoms=atoms,
        atom_labels=labels,
        step_labels=[f"move {s}" for s in recorder.steps],
        score_threshold=float(recorder.config.score_threshold_angstrom),
    )


def cluster_view(
    recorder: Any,
    crystal: int = 0,
    step: int = -1,
    originals: Any = None,
    *,
    clusters: Any = None,
    score_threshold_angstrom: float | None = None,
    nms_radius_angstrom: float | None = None,
    nms_min_particles: int | None = None,
) -> ClusterData:
    """Arrays for :func:`~nesf_viz.viz.figures.cluster_figure`, re-clustered without the model.

    Clusters come from ``recorder.recluster(crystal, threshold, radius, min_particles)``
    (None = the decoder's setting) unless a ClusterView `clusters` is given. Particles are
    drawn where they were at recorded row `step` (-1 = final) and coloured by the cluster
    they end in, so an early step shows each atom's basin of attraction.
    Returns positions, cluster_id, centres, counts, kept, nms_radius, atoms, and is_atom,
    clusters (the ClusterView) for the caller.
    """
    cfg = recorder.config
    thr = (cfg.score_threshold_angstrom if score_threshold_angstrom is None
           else score_threshold_angstrom)
    rad = cfg.nms_radius_angstrom if nms_radius_angstrom is None else nms_radius_angstrom
    if clusters is None:
        clusters = recorder.recluster(crystal, thr, rad, nms_min_particles)
    pos = np.asarray(recorder.positions(crystal)[step], dtype=np.float64)
    scores = np.asarray(recorder.scores(crystal), dtype=np.float64)
    kept = (scores <= float(thr) ** 2) & np.isfinite(recorder.positions(crystal)[-1]).all(1)
    atoms, _ = _atoms_of(originals, crystal)
    return ClusterData(
        positions=pos,
        cluster_id=np.asarray(clusters.cluster_id, dtype=np.int64),
        centres=np.asarray(clusters.centres, dtype=np.float64).reshape(-1, 3),
        counts=np.asarray(clusters.counts, dtype=np.int64),
        kept=kept,
        nms_radius=float(rad),
        atoms=atoms,
        is_atom=np.asarray(clusters.is_atom, dtype=bool),
        clusters=clusters,
    )


def move_segments(recorder: Any, crystal: int, step: int, max_arrows: int | None = 600,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (K, 3) of the move each particle makes from recorded row `step`.

    The move from row t to row t + 1 is the position field at p_t (times the number of
    moves between the rows when ``every > 1``). The last row has no move: K = 0. At most
    `max_arrows` particles, a fixed random subset.
    """
    pos = recorder.positions(crystal)
    t = step % len(pos)
    if t >= len(pos) - 1:
        return np.zeros((0, 3)), np.zeros((0, 3))
    a, b = pos[t].astype(np.float64), pos[t + 1].astype(np.float64)
    ok = np.isfinite(a).all(1) & np.isfinite(b).all(1) & (np.linalg.norm(b - a, axis=1) > 1e-6)
    idx = np.nonzero(ok)[0]
    if max_arrows is not None and len(idx) > max_arrows:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_arrows, replace=False))
    return a[idx], b[idx]


def trajectory_ranges(recorder: Any, crystal: int, originals: Any = None,
                      pad_angstrom: float = 0.8) -> np.ndarray:
    """(3, 2) axis ranges covering every recorded position (and true atom) of a crystal, so
    that a view updated step by step does not rescale."""
    pos = np.asarray(recorder.positions(crystal), dtype=np.float64).reshape(-1, 3)
    atoms, _ = _atoms_of(originals, crystal)
    if atoms is not None and len(atoms):
        pos = np.concatenate([pos, atoms])
    pos = pos[np.isfinite(pos).all(1)]
    if not len(pos):
        return np.array([[-1.0, 1.0]] * 3)
    return np.stack([pos.min(0) - pad_angstrom, pos.max(0) + pad_angstrom], 1)


# ----------------------------------------------------------------------------- latents


def _batch(crystals: Any, vocab: SpeciesVocab | None, device: torch.device | None,
           dtype: torch.dtype = torch.float32) -> CrystalBatch:
    if isinstance(crystals, CrystalBatch):
        return crystals if device is None or crystals.device == device else crystals.to(device)
    if vocab is None:
        raise ValueError("a list of crystals needs the model's vocab to build a batch")
    cs = [_as_crystal(c) for c in crystals]
    return CrystalBatch.from_crystals(cs, vocab, dtype=dtype, device=device or "cpu")


def _dtype_of(fields: StructureFields) -> torch.dtype:
    if isinstance(fields, torch.nn.Module):
        p = next(fields.parameters(), None)
        return p.dtype if p is not None else torch.float32
    cb = getattr(fields, "crystals", None)
    return cb.positions.dtype if isinstance(cb, CrystalBatch) else torch.float32


def _device_of(fields: StructureFields) -> torch.device | None:
    if isinstance(fields, torch.nn.Module):
        p = next(fields.parameters(), None)
        return p.device if p is not None else None
    cb = getattr(fields, "crystals", None)
    return cb.device if isinstance(cb, CrystalBatch) else None


def interpolate_latents(fields: StructureFields, crystals_a_b: Any, steps: int = 9, *,
                        vocab: SpeciesVocab | None = None) -> torch.Tensor:
    """Latents (T, D) on the straight line from crystal a's latent (t = 0) to b's (t = 1).

    crystals_a_b: a CrystalBatch of two crystals, or two Crystals / Structures with `vocab`.
    z_t = (1 - t) z_a + t z_b for T = `steps` evenly spaced t (both ends included).
    """
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (both ends), got {steps}")
    batch = _batch(crystals_a_b, vocab, _device_of(fields), _dtype_of(fields))
    if batch.num_crystals != 2:
        raise ShapeError(f"interpolation needs exactly two crystals, got {batch.num_crystals}")
    with _inference(fields):
        z = fields.latents(batch)
    t = torch.linspace(0.0, 1.0, steps, dtype=z.dtype, device=z.device)[:, None]
    return (1 - t) * z[0:1] + t * z[1:2]


def decode_interpolation(
    fields: StructureFields,
    crystals_a_b: Any,
    steps: int = 9,
    *,
    box: BoundingBox,
    vocab: SpeciesVocab,
    config: DecodeConfig = DecodeConfig(),
    hooks: Sequence = (),
    progress: bool = False,
) -> InterpolationData:
    """Decode every latent of :func:`interpolate_latents` (one batched `decode` call).

    Returns steps (T,) t values, atom_counts (T,), lengths (T, 3), angles_deg (T, 3),
    structures (T,) pymatgen Structures (an impossible predicted cell becomes an empty 1 A
    cube, logged), latents (T, D) and result (the DecodeResult): the keys of
    `interpolation_figure` and `interpolation_path_figure`.
    """
    from pymatgen.core import Lattice, Structure

    batch = _batch(crystals_a_b, vocab, _device_of(fields), _dtype_of(fields))
    z = interpolate_latents(fields, batch, steps)
    ids = [f"{batch.ids[0]}->{batch.ids[1]} t={t:.3g}" for t in np.linspace(0, 1, steps)]
    result = decode(fields, latents=z, box=box, vocab=vocab, config=config, hooks=hooks,
                    progress=progress, ids=ids)
    structures = []
    for i, s in enumerate(result.to_structures(strict=False)):
        if s is None:
            log.warning("interpolation step %d: impossible predicted lattice; drawn empty", i)
            s = Structure(Lattice.cubic(1.0), [], [])
        structures.append(s)
    return InterpolationData(
        steps=np.linspace(0.0, 1.0, steps),
        atom_counts=result.num_atoms,
        lengths=np.asarray(result.lengths_angstrom, dtype=np.float64),
        angles_deg=np.asarray(result.angles_deg, dtype=np.float64),
        structures=structures,
        latents=z.detach().double().cpu().numpy(),
        result=result,
    )


DESCRIBED_LABELS = ("crystal system", "space group", "atoms")
"""Labels `latent_table` works out from the crystals themselves (`nesf_viz.symmetry.describe`)."""


def latent_table(
    model: StructureFields,
    crystals: Any,
    labels: str | Sequence[Any] | None = "prototype",
    *,
    vocab: SpeciesVocab | None = None,
    batch_size: int = 256,
    symprec_angstrom: float = 0.1,
) -> LatentTableData:
    """Latents of many crystals with a label each, for :func:`latent_pca_figure`.

    crystals: a CrystalBatch or Crystals (then `vocab`, the model's, is needed). labels: a
    sequence (B,); one of `DESCRIBED_LABELS` ("crystal system", "space group" found by spglib at
    `symprec_angstrom`, or "atoms": "5 atoms"), legend in their natural order; the name of a
    ``crystal.properties`` entry (synthetic crystals have "prototype" and "formula"; missing
    entries read "?"); or None (all "crystal"). Crystals also get hover texts: id, formula and
    atom count, and the space group and crystal system when the labels needed them.
    Returns latents (B, D) numpy, labels (B,), names (B,) (crystal ids), hover, label_order.
    """
    dev = _device_of(model)
    if isinstance(crystals, CrystalBatch):
        batches = [crystals.select(torch.arange(s, min(s + batch_size, crystals.num_crystals),
                                                device=crystals.device)).to(dev or crystals.device)
                   for s in range(0, crystals.num_crystals, batch_size)]
        names = list(crystals.ids)
        items: list = []
    else:
        items = [_as_crystal(c) for c in crystals]
        batches = [_batch(items[s : s + batch_size], vocab, dev, _dtype_of(model))
                   for s in range(0, len(items), batch_size)]
        names = [c.id or f"#{i}" for i, c in enumerate(items)]
    with _inference(model):
        z = torch.cat([model.latents(b) for b in batches]) if batches else torch.zeros(0, 1)
    hover = order = descriptions = None
    if isinstance(labels, str) and labels in DESCRIBED_LABELS:
        if not items:
            raise ValueError(f"labels {labels!r} need Crystals (a CrystalBatch is not described)")
        from ..symmetry import describe

        descriptions = [describe(c, symprec_angstrom) for c in items]
        hover = [f"{n}<br>{d.text()}" for n, d in zip(names, descriptions)]
        lab, order = _described_labels(descriptions, labels)
    elif isinstance(labels, str):
        if not items:
            raise ValueError("labels by property name need Crystals "
                             "(a CrystalBatch has no properties)")
        lab = [str(c.properties.get(labels, "?")) for c in items]
    elif labels is None:
        lab = ["crystal"] * len(names)
    else:
        lab = [str(x) for x in labels]
    if len(lab) != len(names):
        raise ShapeError(f"{len(lab)} labels for {len(names)} crystals")
    if hover is None and items:
        from ..metrics import crystal_formula

        hover = [f"{n}<br>{crystal_formula(c)} · {c.num_atoms} atoms" for n, c in zip(names, items)]
    return LatentTableData(latents=z.detach().double().cpu().numpy(), labels=lab, names=names, hover=hover,
                           label_order=order, descriptions=descriptions)


def _described_labels(descriptions: Sequence[Any], kind: str) -> tuple[list[str], list[str]]:
    """Labels of one of `DESCRIBED_LABELS` from `symmetry.describe` results, and the legend's
    order: crystal systems from the most symmetric, space groups by number, atom counts by size."""
    from ..symmetry import CRYSTAL_SYSTEMS

    if kind == "crystal system":
        lab = [d.crystal_system for d in descriptions]
        return lab, [c for c in (*CRYSTAL_SYSTEMS, "unknown") if c in lab]
    if kind == "space group":
        number = {d.spacegroup: d.spacegroup_number or 999 for d in descriptions}
        return [d.spacegroup for d in descriptions], sorted(number, key=number.get)
    if kind == "atoms":
        lab = [f"{d.num_atoms} atoms" for d in descriptions]
        return lab, sorted(set(lab), key=lambda t: int(t.split()[0]))
    raise ValueError(f"unknown described label {kind!r}; choose from {', '.join(DESCRIBED_LABELS)}")


# ----------------------------------------------------------------------------- species vote


def species_votes(fields: StructureFields, z: torch.Tensor, result: Any, crystal: int = 0, *,
                  vocab: SpeciesVocab | None = None, originals: Any = None) -> SpeciesVotesData:
    """The decoder's step 5 for one crystal, drawn from the fields again (pure, no recording).

    Every decoded atom votes with argmax f_s on the decoder's small grid around it. Returns
    points (A*G, 3) the voting points, point_labels (A*G,) the element each votes for,
    atoms (A, 3), winners (A,) element, shares (A,) fraction of the atom's G points voting for
    its winner, truth (A,) the element of the nearest true atom or None, class_names. The
    winners are the decoder's own (tests/test_viz_compute.py checks they agree).
    """
    from ..decode import species_offsets

    cfg = result.config
    atoms = np.asarray(result.positions_angstrom[crystal], float).reshape(-1, 3)
    offs = species_offsets(cfg.species_grid_step_angstrom, cfg.species_grid_points_per_axis).numpy()
    g = len(offs)
    points = (atoms[:, None, :] + offs[None]).reshape(-1, 3)
    n_classes = int(getattr(fields, "num_species", 0)) or (len(vocab) if vocab is not None else 0)
    names = (element_symbols(vocab.atomic_numbers) if vocab is not None
             else [f"class {k}" for k in range(n_classes)])
    if len(atoms):
        cls = _evaluate(fields.species_field, _row(z, crystal), points, fields).argmax(-1)
    else:
        cls = np.zeros(0, np.int64)
    per_atom = cls.reshape(len(atoms), g) if len(atoms) else np.zeros((0, g), np.int64)
    counts = (np.stack([np.bincount(r, minlength=len(names)) for r in per_atom]) if len(atoms)
              else np.zeros((0, len(names))))
    win = counts.argmax(1) if len(atoms) else np.zeros(0, np.int64)  # first maximum, as the decoder
    truth = None
    true_pos, true_labels = _atoms_of(originals, crystal)
    if true_pos is not None and len(atoms) and len(true_pos):
        d = np.linalg.norm(atoms[:, None] - np.asarray(true_pos)[None], axis=-1)
        truth = [true_labels[j] for j in d.argmin(1)]
    return SpeciesVotesData(
        points=points, point_labels=[names[k] for k in cls], atoms=atoms, winners=[names[k] for k in win],
        shares=(counts.max(1) / g) if len(atoms) else np.zeros(0), truth=truth, class_names=names)


# ----------------------------------------------------------------------------- training queries


def training_queries(crystal: Any, box: BoundingBox | None = None, config: Any = None,
                     seed: int = 0) -> QueryPointsData:
    """One training step's query points for one crystal, by kind, as `QuerySampler` draws them:
    global (the box grid, jittered), local (cubes around every atom: the position field near
    atoms) and species (smaller cubes: the species field). Returns global_points (G, 3),
    local_points (L, 3), species_points (S, 3), atoms (N, 3), atom_labels (N,)."""
    from ..sampling import QuerySampler, SamplingConfig, global_queries, local_queries

    c = _as_crystal(crystal)
    vocab = SpeciesVocab.from_crystals([c])
    batch = CrystalBatch.from_crystals([c], vocab)
    box = box or BoundingBox.from_crystals([c])
    cfg = config or SamplingConfig()
    s = QuerySampler(box, cfg)
    g = torch.Generator().manual_seed(seed)
    gp, _ = global_queries(batch, s.global_grid, cfg.global_sigma_angstrom, g, cfg.global_queries_per_crystal)
    lp, _ = local_queries(batch, s.local_offsets, cfg.local_sigma_angstrom, g)
    sp, _ = local_queries(batch, s.species_offsets, cfg.species_sigma_angstrom, g, cfg.species_queries_per_atom)
    return QueryPointsData(global_points=gp.double().numpy(), local_points=lp.double().numpy(),
                           species_points=sp.double().numpy(), atoms=c.positions_angstrom,
                           atom_labels=element_symbols(c.atomic_numbers))


def site_error_view(true: Any, decoded: Any, crystal: int = 0) -> SiteErrorData:
    """One decoded crystal beside the truth, for `site_error_figure` (every true atom's error as a
    vector): `true`/`decoded` one Crystal (or Structure) each, or lists (a DecodeResult for
    `decoded`) with `crystal` the index. The title names the crystal and its verdict."""
    from ..metrics import crystal_verdicts

    if not isinstance(true, Crystal) and not hasattr(true, "frac_coords"):
        true = list(true)[crystal]
        decoded = (decoded.to_crystals() if hasattr(decoded, "to_crystals") else list(decoded))[crystal]
    t, d = _as_crystal(true), _as_crystal(decoded)
    v = crystal_verdicts([t], [d])[0]
    head = (f"{t.id + ' ' if t.id else ''}{v.true_formula}: decoded {'right' if v.right else 'WRONG'}"
            + ("" if v.right or not v.matcher_reason else f" (StructureMatcher: {v.matcher_reason})"))
    dp = np.asarray(d.positions_angstrom, float).reshape(-1, 3)
    tp = np.asarray(t.positions_angstrom, float).reshape(-1, 3)
    dist = (np.linalg.norm(tp[:, None] - dp[None], axis=-1).min(1) if len(dp) else np.full(len(tp), np.inf))
    title = (f"{head}<br><span style='font-size:13px'>every true atom to its nearest decoded atom: mean "
             f"{dist.mean():.3f} Å (its position error), largest {dist.max():.3f} Å; red lines "
             f"{F.error_magnification(dist):g}× the error</span>")
    return SiteErrorData(tp, element_symbols(t.atomic_numbers), dp, element_symbols(d.atomic_numbers),
                         np.asarray(t.lattice, float), title)


def periodic_face(batch: CrystalBatch, vocab: SpeciesVocab, crystal: int = 0, plane: str = "xz",
                  offset_angstrom: float | None = None, step_angstrom: float = 0.1) -> PeriodicFaceData:
    """The position field on a cell face, as the paper defines it and with periodic images.

    The exact fields of `batch` follow the paper: only the atoms of the cell count, so on the
    face opposite the origin (default: the far face along the plane's normal, y = b for "xz"),
    where a crystal drawing shows atoms (periodic images of those at the origin face), |f_p|
    stays large. The periodic option (`ExactFields(periodic=True)`) counts the images and is
    zero there. Both slices mark the image atoms in the plane, labelled 'Na (image)'."""
    from ..fields import ExactFields
    from ..geometry import image_positions

    crystals = batch.to_crystals(vocab)
    c = crystals[crystal]
    iu, iv, inorm = PLANES[plane]
    lattice = np.asarray(c.lattice, float)
    if offset_angstrom is None:
        offset_angstrom = float(lattice[:, inorm].sum())  # the far corner's coordinate along the normal
    pos = image_positions(np.asarray(c.positions_angstrom, float), lattice)  # (N, 27, 3)
    names = element_symbols(c.atomic_numbers)
    own = np.zeros(pos.shape[:2], bool)
    own[:, 13] = True
    lo, hi = lattice.min(0) - 1e-6, lattice.sum(0) + 1e-6
    inside = ((pos >= np.minimum(lo, 0) - 1e-6) & (pos <= hi)).all(-1)
    near = inside & (np.abs(pos[..., inorm] - offset_angstrom) <= 0.05)
    atoms = pos[near]
    labels = [names[i] + ("" if own[i, k] else " (image)") for i, k in zip(*np.nonzero(near))]
    views = []
    for periodic in (False, True):
        fields = ExactFields(batch, num_species=len(vocab), periodic=periodic)
        views.append(field_slice(fields, fields.latents(), crystal, plane=plane, offset_angstrom=offset_angstrom,
                                 step_angstrom=step_angstrom, atoms=atoms, atom_labels=labels,
                                 extent=((0.0, float(lattice[:, iu].sum())), (0.0, float(lattice[:, iv].sum()))))
                     .to_dict())
    axis = "xyz"[inorm]
    least = float(np.min(views[0]["magnitude"]))
    titles = (f"the paper's fields: the cell's atoms only<br>|f_p| ≥ {least:.1f} Å all over this face",
              "the periodic option: images count<br>|f_p| = 0 on the image atoms")
    title = (f"{c.id or 'crystal'}: the face {axis} = {offset_angstrom:.2f} Å, where the crystal figure draws "
             "periodic images")
    return PeriodicFaceData(views[0], views[1], titles, title)
