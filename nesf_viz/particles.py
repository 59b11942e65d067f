"""The decoder's steps, each a function named as the paper names it, and their settings.

    1. `predict_lattice`: the cell of every crystal from ``fields.lattice(z)``;
    2. `init_particles`: particles on a grid over the training box grown by a margin;
    3. `move_particles`: ``p <- p + f_p(p, z)``, ``num_moves`` times;
    4. `score_particles`: score = squared norm of the LAST field vector (the vector the last
       move applied, so it describes the position before that move, as the reference code
       does), particles with score > threshold^2 dropped; `cluster_particles`: greedy
       non-max suppression in order of (score, particle index) (`nesf_viz.nms`), a group with
       >= ``nms_min_particles`` members is an atom at the softmax(-score) weighted mean of it;
    5. `vote_species`: species = majority vote of argmax f_s over a small grid around each atom
       (ties: smallest class index, like ``torch.mode``).

`DecodeConfig` holds every setting of these steps (`DECODERS` names its presets);
`nesf_viz.decode.decode` runs them in order, timed, with hook events between them.

Shapes: B crystals, P particles per crystal, M = all particles of a batch (ragged, with a
crystal index ``index`` (M,) sorted by crystal), K kept particles, C clusters, A atoms,
S species, D latent. Positions are Angstrom in the project frame (see ``nesf_viz.data``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from dataclasses import fields as dc_fields
from typing import Sequence

import numpy as np
import torch

from .data import BoundingBox
from .errors import LatticeClampedWarning
from .fields import StructureFields
from .geometry import lattice_and_inverse, sqnorm, vecmat, wrap
from .nms import NMSOutput, nms

__all__ = [
    "ANGLE_RANGE_DEG",
    "DECODERS",
    "DecodeConfig",
    "Particles",
    "box_particles",
    "check_particle_budget",
    "cluster_particles",
    "init_particles",
    "length_range_angstrom",
    "merge_identical",
    "move_particles",
    "particles_per_crystal",
    "predict_lattice",
    "score_particles",
    "species_offsets",
    "vote_species",
]

# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DecodeConfig:
    """Decoding settings. Defaults are the authors' reference code; options beyond the paper
    are off by default. Change with ``dataclasses.replace``."""

    grid_step_angstrom: float = 0.5
    """Spacing of the particle grid."""
    box_margin_angstrom: float = 0.5
    """The box is grown by this on each side; particles on arange(min - m, max + m, step)
    per axis with the reference's float32 box (7,280 particles for the LCS6A training box)."""
    num_moves: int = 64
    """Moves p <- p + f_p(p, z) (the reference iterates 64 times; the paper does not say)."""
    score_threshold_angstrom: float = 0.9
    """Particles whose last field vector is longer than this are dropped before NMS."""
    nms_radius_angstrom: float = 0.5
    """NMS gathers every remaining particle with squared distance < radius^2 of the seed."""
    nms_min_particles: int = 10
    """An NMS group becomes an atom only with at least this many particles (reference code)."""
    species_grid_step_angstrom: float = 0.1
    """Spacing of the species voting grid around each atom."""
    species_grid_points_per_axis: int = 6
    """Points per axis of the voting grid; offsets step * (k - n//2), i.e. -0.3..0.2 A as the
    reference's arange(-0.3, 0.3, 0.1)."""
    chunk_particles: int = 8192
    """Most query points per field evaluation: bounds memory (activations of one chunk). 8192
    keeps a chunk's activations in a CPU's cache, where the position field runs faster than with
    larger chunks; raise it on a GPU."""
    move_fraction: float = 1.0
    """Teaching option (not in the paper): each move applies this fraction of the field vector,
    p <- p + move_fraction * f_p(p), so particles visibly flow over several moves (exact fields
    land in one full move). The score stays the last field vector itself. 1.0 = the paper."""
    max_particles: int = 8_000_000
    """Memory budget: the most particles one decode call holds (about 100 bytes each in the
    moves and NMS, so ~0.8 GB). `decode_crystals` sizes its batches to fit; a single crystal
    whose box needs more is a `DecodeMemoryError` saying how many it would need."""
    nms_collapse_tolerance_angstrom: float | None = 1e-4
    """Speed only, never changes results: before NMS, particles in the same cube of this size
    are merged into weighted groups; a group that could straddle a seed's NMS sphere sends
    its crystal back to the particle-level NMS (see `nms`). None = no merging."""
    periodic: bool = False
    """Option (not in the paper): wrap particles into the predicted cell after every move and
    use minimum-image distances in NMS; atoms are wrapped into the cell."""
    particles_in_cell: bool = False
    """Option (not in the paper): keep only the grid particles inside the predicted cell
    (grown by box_margin_angstrom along each face normal unless periodic) instead of the box."""
    early_stop_tolerance_angstrom: float | None = None
    """Option (not in the paper): a particle whose move was shorter than this stops moving (its
    score is that last move); the loop ends when every particle has stopped. 0.0 stops only
    particles whose move was exactly zero (fixed points): the same result as None, faster
    wherever particles converge exactly (exact fields). None = off."""

    def __post_init__(self) -> None:
        positive = ("grid_step_angstrom", "nms_radius_angstrom", "species_grid_step_angstrom")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"DecodeConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.num_moves < 1:
            raise ValueError("DecodeConfig.num_moves must be >= 1 (the score is the last move)")
        if self.box_margin_angstrom < 0 or self.score_threshold_angstrom < 0:
            raise ValueError("DecodeConfig margins and thresholds must be >= 0")
        if self.nms_min_particles < 1 or self.species_grid_points_per_axis < 1:
            raise ValueError("DecodeConfig.nms_min_particles and species points must be >= 1")
        if self.early_stop_tolerance_angstrom is not None and not self.early_stop_tolerance_angstrom >= 0:
            raise ValueError("DecodeConfig.early_stop_tolerance_angstrom must be >= 0 or None")
        if not 0 < self.move_fraction <= 1:
            raise ValueError(f"DecodeConfig.move_fraction must be in (0, 1], got {self.move_fraction}")
        if self.chunk_particles < 1 or self.max_particles < 1:
            raise ValueError("DecodeConfig.chunk_particles and max_particles must be >= 1")

    @classmethod
    def fast(cls, **overrides) -> "DecodeConfig":
        """Named fast recipe: particles only in the cell, early stop at 1e-3 A, 32 moves at most.

        Not the paper's procedure: say so when quoting numbers made with it."""
        base = dict(particles_in_cell=True, early_stop_tolerance_angstrom=1e-3, num_moves=32)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def coarse(cls, **overrides) -> "DecodeConfig":
        """Named fastest recipe: `fast()` on a 1.0 A grid (1/8 of the particles) with an atom
        needing 2 particles, the same smallest basin as 10 particles at 0.5 A (about 1.3-2 A^3).

        Fewer particles make it several times faster than `fast()`; on the shipped LCS6A model its
        atom-count, position and species errors stay close to `fast()`'s (docs: decode speed, the
        measured numbers). Not the paper's procedure: say so when quoting it."""
        base = dict(grid_step_angstrom=1.0, nms_min_particles=2)
        base.update(overrides)
        return cls.fast(**base)

    @classmethod
    def preset(cls, name: str, **overrides) -> "DecodeConfig":
        """The decoder called `name` in the CLI, the experiment and `reconstruct`: one of DECODERS."""
        if name not in DECODERS:
            raise ValueError(f"unknown decoder {name!r}; choose one of {', '.join(DECODERS)}")
        return cls(**overrides) if name == "paper" else getattr(cls, name)(**overrides)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dc_fields(self)}


DECODERS = ("paper", "fast", "coarse")
"""Named decoders: 'paper' = DecodeConfig() (the reference's settings), 'fast', 'coarse'."""


def box_particles(box: BoundingBox, step_angstrom: float, margin_angstrom: float) -> torch.Tensor:
    """(P, 3) float64 grid, arange(min - margin, max + margin, step) per axis, x slowest.

    Reproduces the reference: its box is float32 (min/max of float32 positions) and the margin
    is subtracted in float32 before torch.arange, which decides the particle count."""
    lo = torch.tensor(box.min_angstrom, dtype=torch.float32) - margin_angstrom
    hi = torch.tensor(box.max_angstrom, dtype=torch.float32) + margin_angstrom
    axes = [
        torch.arange(float(lo[i]), float(hi[i]), step_angstrom, dtype=torch.float64)
        for i in range(3)
    ]
    g = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([x.reshape(-1) for x in g], 1)


def particles_per_crystal(box: BoundingBox, config: DecodeConfig) -> int:
    """Grid particles one crystal starts with (the count `box_particles` would make, without
    making them); an upper bound with `particles_in_cell`."""
    lo = torch.tensor(box.min_angstrom, dtype=torch.float32) - config.box_margin_angstrom
    hi = torch.tensor(box.max_angstrom, dtype=torch.float32) + config.box_margin_angstrom
    n = 1
    for i in range(3):
        n *= max(0, math.ceil((float(hi[i]) - float(lo[i])) / config.grid_step_angstrom))
    return n


def check_particle_budget(n_crystals: int, box: BoundingBox, config: DecodeConfig) -> int:
    """Particles per crystal; a `DecodeMemoryError` before any work when one crystal alone
    exceeds `config.max_particles` (n_crystals only adds to the message)."""
    from .errors import DecodeMemoryError

    per = particles_per_crystal(box, config)
    if per * n_crystals > config.max_particles:
        need = per * n_crystals
        raise DecodeMemoryError(
            f"decoding {n_crystals} crystal(s) in a "
            f"{np.round(np.subtract(box.max_angstrom, box.min_angstrom), 1).tolist()} A "
            f"box needs {need:,} particles (~{need * 100 / 2**30:.1f} GiB), over the budget of "
            f"{config.max_particles:,} (DecodeConfig.max_particles): decode fewer crystals at once, use a coarser "
            "grid_step_angstrom or particles_in_cell=True, or raise max_particles if the memory is there")
    return per


def species_offsets(step_angstrom: float, points_per_axis: int) -> torch.Tensor:
    """(n^3, 3) float64 offsets step * (k - n//2), k < n, x slowest (reference layout)."""
    o = step_angstrom * (torch.arange(points_per_axis, dtype=torch.float64) - points_per_axis // 2)
    g = torch.meshgrid(o, o, o, indexing="ij")
    return torch.stack([x.reshape(-1) for x in g], 1)


# ----------------------------------------------------------------------------- the steps


@dataclass
class Particles:
    """The decoder's particles, M rows sorted by crystal (fewer than the grid once merged)."""

    pos: torch.Tensor
    """(M, 3) positions, Angstrom in the project frame."""
    index: torch.Tensor
    """(M,) long, the crystal of each particle."""
    last: torch.Tensor
    """(M, 3) the field vector of each particle's last move (its score's source)."""
    multiplicity: torch.Tensor | None = None
    """(M,) long: how many bitwise-equal particles a row stands for (None: one each)."""


def predict_lattice(fields: StructureFields, z: torch.Tensor, box: BoundingBox, ids: list[str],
                    cfg: DecodeConfig, dtype: torch.dtype):
    """Step 1: lengths (B, 3) and angles (B, 3, radians) of every crystal's cell, clamped into
    the physical range (a warning names the crystals), and the cell matrices with their
    inverses (both (B, 3, 3)) where an option needs them (periodic, particles_in_cell), else None."""
    lengths, angles = fields.lattice(z)
    lengths, angles = _clamp_lattice(lengths.to(dtype), angles.to(dtype), box, ids)
    lat_inv = lattice_and_inverse(lengths, angles) if (cfg.periodic or cfg.particles_in_cell) else None
    return lengths, angles, lat_inv


def init_particles(num_crystals: int, box: BoundingBox, cfg: DecodeConfig, lat_inv, device: torch.device,
                   dtype: torch.dtype) -> Particles:
    """Step 2: every crystal starts from the same grid over the training box (`box_particles`);
    with `particles_in_cell` only the grid points inside its predicted cell. A
    `DecodeMemoryError` first when the batch exceeds `max_particles`."""
    check_particle_budget(num_crystals, box, cfg)
    grid = box_particles(box, cfg.grid_step_angstrom, cfg.box_margin_angstrom).to(device, dtype)
    g = grid.shape[0]
    pos = grid.expand(num_crystals, g, 3).reshape(-1, 3).clone()
    index = torch.arange(num_crystals, device=device).repeat_interleave(g)
    if cfg.particles_in_cell:
        inside = _inside_cells(pos, index, lat_inv, cfg)
        pos, index = pos[inside], index[inside]
    return Particles(pos, index, torch.zeros_like(pos))


def _inside_cells(pos: torch.Tensor, index: torch.Tensor, lat_inv, cfg: DecodeConfig) -> torch.Tensor:
    """(M,) bool: the particle lies in its crystal's cell (grown by the box margin along each
    face normal unless periodic)."""
    f = vecmat(pos, lat_inv[1][index])
    if cfg.periodic:
        lo, hi = torch.zeros_like(f), torch.ones_like(f)
        return ((f >= lo) & (f < hi)).all(1)
    # heights of the cell along each face normal: V / |a_j x a_k| = 1 / |row i of inv^T|
    heights = 1.0 / torch.linalg.norm(lat_inv[1].transpose(1, 2), dim=2)  # (B, 3)
    delta = (cfg.box_margin_angstrom / heights)[index]
    return ((f >= -delta) & (f <= 1 + delta)).all(1)


@dataclass(frozen=True)
class _MovePlan:
    """Exact shortcuts of the move loop for these fields and observers."""

    early_stop: float | None
    """Stop a particle whose move was shorter than this (None: every particle, every move)."""
    merge: bool
    """Merge bitwise-equal particles after the first move."""
    chunk: int
    """Most points per field call."""

    @classmethod
    def of(cls, fields: StructureFields, cfg: DecodeConfig, hooks: Sequence, num_particles: int) -> "_MovePlan":
        pointwise = fields.abilities.pointwise
        early = cfg.early_stop_tolerance_angstrom
        if early is None and not hooks and pointwise:
            # fields whose answer for a point never depends on the other points of the call (exact
            # fields) stop particles at fixed points: bitwise the paper's loop (periodic: the same
            # atoms; re-wrapping a particle at rest jiggles it by rounding there, which can reorder
            # them). Observers still see all num_moves steps.
            early = 0.0
        # Pointwise fields give bitwise-equal particles bitwise-equal futures: after the first
        # move (millions of grid particles on a few thousand landing points with exact fields)
        # such particles move on as one row with a multiplicity that NMS counts. Exact; no
        # observer sees it (it needs every particle).
        merge = early is not None and not hooks and pointwise
        chunk = cfg.chunk_particles
        if early is not None and pointwise and fields.abilities.bounds_own_memory:
            chunk = max(num_particles, 1)  # chunks bound a network's activations; these fields chunk themselves
        return cls(early, merge, chunk)


def move_particles(fields: StructureFields, z: torch.Tensor, particles: Particles, cfg: DecodeConfig, lat_inv,
                   hooks: Sequence = (), progress: bool = False) -> Particles:
    """Step 3: ``p <- p + move_fraction * f_p(p, z)``, `num_moves` times (wrapped into the cell
    when periodic); each particle's last field vector is kept for its score. With an early-stop
    tolerance a particle stops once its move is shorter, and the loop ends when all have
    stopped. Emits ``on_move`` after every move. Returns the moved particles."""
    p = particles
    plan = _MovePlan.of(fields, cfg, hooks, p.pos.shape[0])
    active = torch.ones(p.pos.shape[0], dtype=torch.bool, device=p.pos.device) if plan.early_stop is not None else None
    steps = range(1, cfg.num_moves + 1)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="decode: moves", leave=False)
    for step in steps:
        sel = None if active is None else torch.nonzero(active).squeeze(1)
        if sel is not None and sel.numel() == 0:
            break
        v = _move_once(fields, z, p, sel, cfg, lat_inv, plan.chunk)
        if active is not None:
            # A zero move is a fixed point (f(p) = 0 forever after): stopping it never changes
            # the result, so tolerance 0.0 is an exact speed-up of the default.
            stop = (v == 0).all(1) | (torch.linalg.norm(v, dim=1) < plan.early_stop)
            active[sel[stop]] = False
        if hooks:
            vec = p.last
            if active is not None:
                vec = torch.zeros_like(p.pos)
                vec[sel] = v
            _emit(hooks, "on_move", step, p.pos, vec, torch.linalg.norm(vec, dim=1))
        if plan.merge and step == 1 and cfg.num_moves > 1:
            active = _merge_equal(p, active)
    return p


def _move_once(fields: StructureFields, z: torch.Tensor, p: Particles, sel: torch.Tensor | None,
               cfg: DecodeConfig, lat_inv, chunk: int) -> torch.Tensor:
    """One move of the particles `sel` (None: all), in place in `p`; returns their field vectors."""
    every = sel is None or sel.numel() == p.pos.shape[0]  # no gathers and scatters while nothing has stopped
    p_sel, i_sel = (p.pos, p.index) if every else (p.pos[sel], p.index[sel])
    v = _chunked_field(fields.position_field, z, p_sel, i_sel, chunk).to(p.pos.dtype)
    newp = p_sel + (v if cfg.move_fraction == 1.0 else cfg.move_fraction * v)
    if lat_inv is not None and cfg.periodic:
        newp = wrap(newp, lat_inv[0][i_sel], lat_inv[1][i_sel])
    if every:
        p.pos, p.last = newp, v
    else:
        p.pos[sel] = newp
        p.last[sel] = v
    return v


def _merge_equal(p: Particles, active: torch.Tensor) -> torch.Tensor:
    """Bitwise-equal particles (crystal, position, stopped or not, and a stopped one's score) as
    one row with a multiplicity, in place in `p`; returns the merged `active` mask."""
    # an active particle's `last` is overwritten by its next move: only a stopped one's (its
    # score) belongs to what must be equal
    keep, p.multiplicity = merge_identical(p.index, p.pos, active, torch.where(active[:, None], 0, p.last),
                                           hashed=2)
    p.pos, p.last, p.index = p.pos[keep], p.last[keep], p.index[keep]
    return active[keep]


def score_particles(particles: Particles, cfg: DecodeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 4a: score (M,) = squared norm of the last field vector (the reference's
    sqrd_last_distance) and kept (M,) bool: score <= threshold^2 and a finite position."""
    score = sqnorm(particles.last)
    kept = (score <= cfg.score_threshold_angstrom**2) & torch.isfinite(particles.pos).all(1)
    return score, kept


def cluster_particles(particles: Particles, score: torch.Tensor, kept: torch.Tensor, num_crystals: int,
                      cfg: DecodeConfig, lat_inv) -> NMSOutput:
    """Step 4b: greedy NMS of the kept particles (`nesf_viz.nms.nms`; minimum image when
    periodic); clusters of at least `nms_min_particles` are the atoms (`is_atom`)."""
    kidx = torch.nonzero(kept).squeeze(1)
    return nms(
        particles.pos[kidx], score[kidx], particles.index[kidx], num_crystals, cfg.nms_radius_angstrom,
        cfg.nms_min_particles,
        lattice=lat_inv[0] if (lat_inv is not None and cfg.periodic) else None,
        collapse_tolerance=cfg.nms_collapse_tolerance_angstrom,
        multiplicity=None if particles.multiplicity is None else particles.multiplicity[kidx],
    )


def vote_species(fields: StructureFields, z: torch.Tensor, centres: torch.Tensor, atom_batch: torch.Tensor,
                 cfg: DecodeConfig, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 5: votes (A, S) of `fields.species_class` over the `species_offsets` grid around
    each atom, and species (A,) their majority (the first maximum: the smallest class among the
    most frequent, as ``torch.mode``). `num_classes`: S of an empty result."""
    na, dev = centres.shape[0], centres.device
    if not na:
        return (torch.zeros(0, num_classes, dtype=torch.long, device=dev),
                torch.zeros(0, dtype=torch.long, device=dev))
    offs = species_offsets(cfg.species_grid_step_angstrom, cfg.species_grid_points_per_axis).to(dev, centres.dtype)
    q = (centres[:, None, :] + offs[None]).reshape(-1, 3)
    qi = atom_batch.repeat_interleave(offs.shape[0])
    per_chunk = max(1, cfg.chunk_particles // offs.shape[0]) * offs.shape[0]
    votes_pt = torch.cat([
        fields.species_class(z, q[s : s + per_chunk], qi[s : s + per_chunk]) for s in range(0, q.shape[0], per_chunk)
    ]).reshape(na, offs.shape[0])
    votes = torch.zeros(na, int(fields.num_species), dtype=torch.long, device=dev)
    votes.scatter_add_(1, votes_pt, torch.ones_like(votes_pt))
    return votes, votes.argmax(1)


# ----------------------------------------------------------------------------- helpers


ANGLE_RANGE_DEG = (10.0, 170.0)
"""Lattice angles a decoded cell may have; a prediction outside is clamped (with a warning)."""


def length_range_angstrom(box: BoundingBox) -> tuple[float, float]:
    """Lattice lengths a decoded cell may have: 0.5 A up to twice the training box's longest side
    plus 2 A (atoms of a longer cell could not lie in the box the model was trained on)."""
    span = max(hi - lo for lo, hi in zip(box.min_angstrom, box.max_angstrom))
    return 0.5, 2.0 * span + 2.0


def _clamp_lattice(lengths: torch.Tensor, angles_rad: torch.Tensor, box: BoundingBox, ids: list[str]):
    """Clamp (B, 3) lengths and angles into the physical range; warn naming the crystals.
    An untrained or out-of-distribution model predicts 1000 A lengths and 7000 degree angles,
    which would otherwise decode into an empty cell silently."""
    lo_l, hi_l = length_range_angstrom(box)
    lo_a, hi_a = (math.radians(a) for a in ANGLE_RANGE_DEG)
    finite = torch.isfinite(lengths) & torch.isfinite(angles_rad)
    new_l = torch.nan_to_num(lengths, nan=lo_l).clamp(lo_l, hi_l)
    new_a = torch.nan_to_num(angles_rad, nan=math.pi / 2).clamp(lo_a, hi_a)
    changed = (~finite | (new_l != lengths) | (new_a != angles_rad)).any(1)
    if changed.any():
        rows = changed.nonzero().flatten().tolist()
        names = ", ".join(ids[i] for i in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        warnings.warn(f"{len(rows)} predicted lattice(s) outside {lo_l:g}-{hi_l:g} A / {ANGLE_RANGE_DEG[0]:g}-"
                      f"{ANGLE_RANGE_DEG[1]:g} deg clamped into that range ({names}); the model is out of its "
                      "depth for these crystals", LatticeClampedWarning, stacklevel=5)
    return new_l, new_a


def _bits(t: torch.Tensor) -> torch.Tensor:
    """A (n, k) integer view of a (n, ...) tensor holding its exact bit patterns."""
    t = t.reshape(t.shape[0], -1).contiguous()
    if t.is_floating_point():
        return t.view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])
    return t if t.dtype != torch.bool else t.to(torch.uint8)


def merge_identical(*tensors: torch.Tensor, hashed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows that are bitwise equal in every tensor (all (n, ...)) as one row each.

    Returns `first` (U,) the lowest row of each set of equal rows, ascending (so an order by
    crystal survives), and `multiplicity` (U,) how many rows it stands for. One sort of a
    32-bit hash of the first `hashed` tensors (default all); rows that share a hash but differ
    anywhere (a collision) stay apart, so the result is exact."""
    bits = [_bits(t) for t in tensors]
    n = bits[0].shape[0]
    dev = bits[0].device
    if n == 0:
        e = torch.zeros(0, dtype=torch.long, device=dev)
        return e, e
    h = torch.zeros(n, dtype=torch.int32, device=dev)
    for b in bits[:hashed]:
        for c in b.unbind(1):  # int32 arithmetic wraps; a weak hash only costs speed
            h = h * 1_000_003 + (c if c.dtype == torch.int32 else c.to(torch.int32))
    hs, perm = torch.sort(h, stable=True)  # stable: the first of a run is its lowest row
    new = torch.ones(n, dtype=torch.bool, device=dev)
    new[1:] = hs[1:] != hs[:-1]
    run_start = torch.cummax(torch.where(new, torch.arange(n, device=dev), 0), 0).values
    head = torch.empty_like(perm)
    head[perm] = perm[run_start]  # lowest row with the same hash, per row
    # compare in row order: heads are few, so these gathers stay in cache
    same = torch.ones(n, dtype=torch.bool, device=dev)
    for b in bits:
        same &= (b == b[head]).all(1)
    group = torch.where(same, head, torch.arange(n, device=dev))  # a collision keeps its own row
    per_row = torch.bincount(group, minlength=n)
    first = torch.nonzero(per_row).squeeze(1)
    return first, per_row[first]


def _emit(hooks: Sequence, name: str, *args) -> None:
    """Call `name` on every hook, each with its own copies of the tensors, so that no hook can
    change the decoder's state or what the next hook sees."""
    for h in hooks:
        getattr(h, name)(*[a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args])


def _chunked_field(fn, z, points, index, chunk: int) -> torch.Tensor:
    if points.shape[0] <= chunk:
        return fn(z, points, index)
    return torch.cat([fn(z, points[s : s + chunk], index[s : s + chunk])
                      for s in range(0, points.shape[0], chunk)])
