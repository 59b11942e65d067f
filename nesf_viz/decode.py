"""Decoding: fields -> crystals, the paper's five steps, batched over crystals and particles.

    1. lattice from ``fields.lattice(z)``;
    2. particles on a grid over the training box grown by a margin;
    3. ``p <- p + f_p(p, z)``, ``num_moves`` times;
    4. score = squared norm of the LAST field evaluation (the vector the last move applied, so
       it describes the position before that move, as the reference code does); drop particles
       with score > threshold^2; greedy non-max suppression in order of (score, particle index);
       a group with >= ``nms_min_particles`` members is an atom at the softmax(-score) weighted
       mean of the group;
    5. species = majority vote of argmax f_s over a small grid around each atom (ties: smallest
       class index, like ``torch.mode``).

Shapes: B crystals, P particles per crystal, M = all particles of a batch (ragged, with a
crystal index ``index`` (M,) sorted by crystal), K kept particles, C clusters, A atoms,
S species, D latent. Positions are Angstrom in the project frame (see ``nesf_viz.data``).

`decode` is the one entry point; `nms` is the batched NMS and `nms_reference` the plain
single-crystal loop it is tested against.
"""

from __future__ import annotations

import csv
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .data import BoundingBox, Crystal, CrystalBatch, SpeciesVocab
from .errors import CrystalInputError, LatticeClampedWarning, ShapeError
from .fields import StructureFields
from .geometry import lattice_and_inverse, sqnorm, vecmat, wrap
from .nms import NMSOutput, nms, nms_reference  # noqa: F401  (public through decode too)

log = logging.getLogger(__name__)

__all__ = [
    "DECODERS",
    "DecodeConfig",
    "DecodeResult",
    "NMSOutput",
    "decode",
    "box_particles",
    "species_offsets",
    "nms",
    "nms_reference",
]


# ----------------------------------------------------------------------------- config


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
    keeps a chunk's activations in cache: the position field runs at ~130 GFLOP/s on this
    2-core CPU at 8192 vs ~98 at 65536 (measured); raise it on a GPU."""
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

        Not the paper's protocol: say so when quoting numbers made with it."""
        base = dict(particles_in_cell=True, early_stop_tolerance_angstrom=1e-3, num_moves=32)
        base.update(overrides)
        return cls(**base)

    @classmethod
    def coarse(cls, **overrides) -> "DecodeConfig":
        """Named fastest recipe: `fast()` on a 1.0 A grid (1/8 of the particles) with an atom
        needing 2 particles, the same smallest basin as 10 particles at 0.5 A (about 1.3-2 A^3).

        On the shipped LCS6A model: 4.7x `fast()` (117 vs 24.9 crystals/s on the test split) at
        atom-count, position and species errors within about half a point of it (README, decode
        speed). Not the paper's protocol: say so when quoting it."""
        base = dict(grid_step_angstrom=1.0, nms_min_particles=2)
        base.update(overrides)
        return cls.fast(**base)

    @classmethod
    def preset(cls, name: str, **overrides) -> "DecodeConfig":
        """The decoder called `name` in the CLI, the protocol and `reconstruct`: one of DECODERS."""
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


def particles_per_crystal(box: BoundingBox, config: "DecodeConfig") -> int:
    """Grid particles one crystal starts with (the count `box_particles` would make, without
    making them); an upper bound with `particles_in_cell`."""
    lo = torch.tensor(box.min_angstrom, dtype=torch.float32) - config.box_margin_angstrom
    hi = torch.tensor(box.max_angstrom, dtype=torch.float32) + config.box_margin_angstrom
    n = 1
    for i in range(3):
        n *= max(0, math.ceil((float(hi[i]) - float(lo[i])) / config.grid_step_angstrom))
    return n


def check_particle_budget(n_crystals: int, box: BoundingBox, config: "DecodeConfig") -> int:
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


# ----------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class DecodeResult:
    """Decoded crystals (numpy, float64 positions in the project frame).

    positions_angstrom[i]: (A_i, 3); species[i]: (A_i,) class indices; atomic_numbers[i]:
    (A_i,); particles_per_atom[i]: (A_i,) NMS group sizes; lengths_angstrom (B, 3);
    angles_deg (B, 3); n_particles (B,) particles moved; timing_s: seconds per stage.
    """

    ids: tuple[str, ...]
    positions_angstrom: tuple[np.ndarray, ...]
    species: tuple[np.ndarray, ...]
    atomic_numbers: tuple[np.ndarray, ...]
    particles_per_atom: tuple[np.ndarray, ...]
    lengths_angstrom: np.ndarray
    angles_deg: np.ndarray
    n_particles: np.ndarray
    timing_s: dict[str, float]
    config: DecodeConfig = field(default_factory=DecodeConfig)
    interrupted: bool = False
    """True when a batch-by-batch decode was interrupted and this holds the batches done so far."""

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def concat(cls, results: Sequence["DecodeResult"]) -> "DecodeResult":
        """One result from several batches (timings summed; the first batch's config)."""
        if not results:
            raise ValueError("concat needs at least one DecodeResult")
        timing: dict[str, float] = {}
        for r in results:
            for k, v in r.timing_s.items():
                timing[k] = timing.get(k, 0.0) + v
        cat = lambda name: tuple(x for r in results for x in getattr(r, name))  # noqa: E731
        return cls(
            ids=cat("ids"),
            positions_angstrom=cat("positions_angstrom"),
            species=cat("species"),
            atomic_numbers=cat("atomic_numbers"),
            particles_per_atom=cat("particles_per_atom"),
            lengths_angstrom=np.concatenate([r.lengths_angstrom for r in results]),
            angles_deg=np.concatenate([r.angles_deg for r in results]),
            n_particles=np.concatenate([r.n_particles for r in results]),
            timing_s=timing,
            config=results[0].config,
        )

    @property
    def num_atoms(self) -> np.ndarray:
        """(B,) detected atoms per crystal."""
        return np.array([len(p) for p in self.positions_angstrom], dtype=np.int64)

    @property
    def n_no_atoms(self) -> int:
        """Crystals where no atom survived (their result is empty, not an error)."""
        return int((self.num_atoms == 0).sum())

    @property
    def structures_per_second(self) -> float:
        t = self.timing_s.get("total", 0.0)
        return len(self) / t if t > 0 else float("inf")

    def to_crystals(self) -> list[Crystal]:
        return [
            Crystal(
                self.positions_angstrom[i].copy(),
                self.atomic_numbers[i].copy(),
                tuple(float(x) for x in self.lengths_angstrom[i]),
                tuple(float(x) for x in self.angles_deg[i]),
                id=self.ids[i],
            )
            for i in range(len(self))
        ]

    def to_structures(self, strict: bool = True) -> list:
        """pymatgen Structures, lattice from `nesf_viz.data.lattice_matrix` (frame 'a along x,
        b in the xy plane'). strict=False gives None for a crystal whose predicted lattice has
        no volume instead of raising."""
        out = []
        for c in self.to_crystals():
            try:
                out.append(c.to_structure())
            except (CrystalInputError, np.linalg.LinAlgError, ValueError) as exc:
                if strict:
                    raise CrystalInputError(f"decoded crystal {c.id!r}: {exc}") from exc
                out.append(None)
        return out

    def to_csv(self, path: str | Path, append: bool = False) -> Path:
        """Write `material_id,cif` (pymatgen CifWriter). A crystal whose predicted lattice is
        impossible gets an empty cif and a warning. `append`: add rows to an existing file
        (its header is kept; a missing file is started)."""
        from pymatgen.io.cif import CifWriter

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        bad = []
        header = not (append and path.is_file())
        with path.open("a" if append else "w", newline="") as fh:
            w = csv.writer(fh)
            if header:
                w.writerow(["material_id", "cif"])
            for cid, s in zip(self.ids, self.to_structures(strict=False)):
                if s is None:
                    bad.append(cid)
                    w.writerow([cid, ""])
                else:
                    w.writerow([cid, str(CifWriter(s))])
        if bad:
            warnings.warn(f"{len(bad)} decoded crystal(s) have an impossible lattice and an empty "
                          f"cif in {path}: {bad[:5]}", stacklevel=2)
        return path


# ----------------------------------------------------------------------------- decode


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


def decode(
    fields: StructureFields,
    crystals: CrystalBatch | None = None,
    *,
    latents: torch.Tensor | None = None,
    box: BoundingBox,
    vocab: SpeciesVocab,
    config: DecodeConfig = DecodeConfig(),
    hooks: Sequence = (),
    progress: bool = False,
    ids: Sequence[str] | None = None,
) -> DecodeResult:
    """Decode crystals from any `StructureFields` (a NeSF model or `ExactFields`).

    Give `crystals` (latents = fields.latents(crystals)) or `latents` (B, D). An nn.Module runs
    in eval mode under no_grad and gets its previous mode back. Everything runs on the device
    of the latents; hooks see copies and cannot change the result. `ids` names the crystals
    (default: the batch's ids, or "0", "1", ... for latents). `progress` shows a tqdm bar over
    the moves.
    """
    if (crystals is None) == (latents is None):
        raise ValueError("decode: give exactly one of crystals or latents")
    module = fields if isinstance(fields, nn.Module) else None
    was_training = module.training if module is not None else False
    try:
        if module is not None:
            module.eval()
        with torch.no_grad():
            return _decode(fields, crystals, latents, box, vocab, config, tuple(hooks), progress, ids)
    finally:
        if module is not None:
            module.train(was_training)


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
                      "depth for these crystals", LatticeClampedWarning, stacklevel=4)
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


def _decode(fields, crystals, z, box, vocab, cfg: DecodeConfig, hooks, progress, ids) -> DecodeResult:
    t_start = time.perf_counter()
    timing: dict[str, float] = {}

    def lap(name: str, t0: float) -> float:
        if z is not None and z.device.type == "cuda":  # kernels are asynchronous
            torch.cuda.synchronize(z.device)
        t1 = time.perf_counter()
        timing[name] = timing.get(name, 0.0) + (t1 - t0)
        return t1

    t = t_start
    if z is None:
        z = fields.latents(crystals)
        ids = list(crystals.ids) if ids is None else list(ids)
    if z.ndim != 2:
        raise ShapeError(f"latents must be (B, D); got {tuple(z.shape)}")
    nb, dev = z.shape[0], z.device
    ids = [str(i) for i in range(nb)] if ids is None else [str(i) for i in ids]
    if len(ids) != nb:
        raise ShapeError(f"{len(ids)} ids for {nb} latents")
    dt = z.dtype if z.is_floating_point() else torch.float32

    # 1. lattice
    lengths, angles = fields.lattice(z)
    lengths, angles = _clamp_lattice(lengths.to(dt), angles.to(dt), box, ids)
    lat_inv = lattice_and_inverse(lengths, angles) if (cfg.periodic or cfg.particles_in_cell) else None
    _emit(hooks, "on_start", list(ids), cfg, lengths.cpu(), angles.cpu())
    t = lap("lattice", t)

    # 2. particles
    check_particle_budget(nb, box, cfg)
    grid = box_particles(box, cfg.grid_step_angstrom, cfg.box_margin_angstrom).to(dev, dt)
    g = grid.shape[0]
    pos = grid.expand(nb, g, 3).reshape(-1, 3).clone()
    index = torch.arange(nb, device=dev).repeat_interleave(g)
    if cfg.particles_in_cell:
        f = vecmat(pos, lat_inv[1][index])
        if cfg.periodic:
            lo, hi = torch.zeros_like(f), torch.ones_like(f)
            inside = ((f >= lo) & (f < hi)).all(1)
        else:
            # heights of the cell along each face normal: V / |a_j x a_k| = 1 / |row i of inv^T|
            heights = 1.0 / torch.linalg.norm(lat_inv[1].transpose(1, 2), dim=2)  # (B, 3)
            delta = (cfg.box_margin_angstrom / heights)[index]
            inside = ((f >= -delta) & (f <= 1 + delta)).all(1)
        pos, index = pos[inside], index[inside]
    n_particles = torch.bincount(index, minlength=nb)
    _emit(hooks, "on_particles_init", pos, index)
    t = lap("init", t)

    # 3. moves
    m = pos.shape[0]
    last = torch.zeros_like(pos)
    early = cfg.early_stop_tolerance_angstrom
    if early is None and not hooks and getattr(fields, "pointwise", False):
        # fields whose answer for a point never depends on the other points of the call (exact
        # fields) stop particles at fixed points: bitwise the paper's loop (periodic: the same
        # atoms; re-wrapping a particle at rest jiggles it by rounding there, which can reorder
        # them). Observers still see all num_moves steps.
        early = 0.0
    active = torch.ones(m, dtype=torch.bool, device=dev) if early is not None else None
    # Pointwise fields give bitwise-equal particles bitwise-equal futures: after the first
    # move (millions of grid particles on a few thousand landing points with exact fields)
    # such particles move on as one row with a multiplicity that NMS counts. Exact; no
    # observer sees it (it needs every particle).
    merge = active is not None and not hooks and getattr(fields, "pointwise", False)
    multiplicity = None
    chunk = cfg.chunk_particles
    if getattr(fields, "pointwise", False) and getattr(fields, "bounds_own_memory", False):
        chunk = max(m, 1)  # chunks bound a network's activations; these fields chunk themselves
    steps = range(1, cfg.num_moves + 1)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="decode: moves", leave=False)
    for step in steps:
        if active is None:
            for s in range(0, m, cfg.chunk_particles):
                p = pos[s : s + cfg.chunk_particles]
                v = fields.position_field(z, p, index[s : s + cfg.chunk_particles]).to(dt)
                p += v if cfg.move_fraction == 1.0 else cfg.move_fraction * v
                last[s : s + cfg.chunk_particles] = v
            if lat_inv is not None and cfg.periodic:
                pos = wrap(pos, lat_inv[0][index], lat_inv[1][index])
            if hooks:
                _emit(hooks, "on_move", step, pos, last, torch.linalg.norm(last, dim=1))
        else:
            sel = torch.nonzero(active).squeeze(1)
            if sel.numel() == 0:
                break
            every = sel.numel() == m  # no gathers and scatters while nothing has stopped
            p_sel, i_sel = (pos, index) if every else (pos[sel], index[sel])
            v = _chunked_field(fields.position_field, z, p_sel, i_sel, chunk).to(dt)
            newp = p_sel + (v if cfg.move_fraction == 1.0 else cfg.move_fraction * v)
            if lat_inv is not None and cfg.periodic:
                newp = wrap(newp, lat_inv[0][i_sel], lat_inv[1][i_sel])
            if every:
                pos, last = newp, v
            else:
                pos[sel] = newp
                last[sel] = v
            norm = torch.linalg.norm(v, dim=1)
            # A zero move is a fixed point (f(p) = 0 forever after): stopping it never changes
            # the result, so tolerance 0.0 is an exact speed-up of the default.
            stop = (v == 0).all(1) | (norm < early)
            active[sel[stop]] = False
            if hooks:
                vec = torch.zeros_like(pos)
                vec[sel] = v
                _emit(hooks, "on_move", step, pos, vec, torch.linalg.norm(vec, dim=1))
            if merge and step == 1 and cfg.num_moves > 1:
                # an active particle's `last` is overwritten by its next move: only a stopped
                # one's (its score) belongs to what must be equal
                keep, multiplicity = merge_identical(index, pos, active, torch.where(active[:, None], 0, last),
                                                     hashed=2)
                pos, last, index, active = pos[keep], last[keep], index[keep], active[keep]
                m = pos.shape[0]
    t = lap("move", t)

    # 4a. score: squared norm of the last field vector (the reference's sqrd_last_distance)
    score = sqnorm(last)
    kept = (score <= cfg.score_threshold_angstrom**2) & torch.isfinite(pos).all(1)
    _emit(hooks, "on_score", score, kept)
    t = lap("score", t)

    # 4b. NMS
    kidx = torch.nonzero(kept).squeeze(1)
    res = nms(
        pos[kidx], score[kidx], index[kidx], nb, cfg.nms_radius_angstrom, cfg.nms_min_particles,
        lattice=lat_inv[0] if (lat_inv is not None and cfg.periodic) else None,
        collapse_tolerance=cfg.nms_collapse_tolerance_angstrom,
        multiplicity=None if multiplicity is None else multiplicity[kidx],
    )
    _emit(hooks, "on_cluster", res.cluster, res.centres, res.counts, res.cluster_batch, res.is_atom)
    centres = res.centres[res.is_atom]
    atom_batch = res.cluster_batch[res.is_atom]
    atom_counts = res.counts[res.is_atom]
    t = lap("nms", t)

    # 5. species: majority vote of argmax f_s on a small grid around each atom
    na = centres.shape[0]
    offs = species_offsets(cfg.species_grid_step_angstrom, cfg.species_grid_points_per_axis).to(dev, dt)
    if na:
        q = (centres[:, None, :] + offs[None]).reshape(-1, 3)
        qi = atom_batch.repeat_interleave(offs.shape[0])
        per_chunk = max(1, cfg.chunk_particles // offs.shape[0]) * offs.shape[0]
        # fields that know their argmax (exact fields) skip building (Q, S) one-hot scores
        classes = getattr(fields, "species_class", None) or (lambda *a: fields.species_field(*a).argmax(-1))
        votes_pt = torch.cat([
            classes(z, q[s : s + per_chunk], qi[s : s + per_chunk]) for s in range(0, q.shape[0], per_chunk)
        ]).reshape(na, offs.shape[0])
        num_species = int(getattr(fields, "num_species", len(vocab)))
        votes = torch.zeros(na, num_species, dtype=torch.long, device=dev)
        votes.scatter_add_(1, votes_pt, torch.ones_like(votes_pt))
        species = votes.argmax(1)  # first maximum = smallest class among the most frequent
    else:
        votes = torch.zeros(0, len(vocab), dtype=torch.long, device=dev)
        species = torch.zeros(0, dtype=torch.long, device=dev)
    _emit(hooks, "on_species", votes, species, atom_batch)
    t = lap("species", t)

    # result (numpy, per crystal)
    per = torch.bincount(atom_batch, minlength=nb).cpu().tolist()
    cpos = centres.detach().double().cpu().numpy()
    cspec = species.cpu().numpy()
    ccnt = atom_counts.cpu().numpy()
    splits = np.cumsum([0] + per)
    if cspec.size and int(cspec.max()) >= len(vocab):
        raise ShapeError(f"species field has class {int(cspec.max())} but the vocabulary only "
                         f"{len(vocab)}; decode with the model's own vocabulary")
    atomic = vocab.decode(cspec)
    result = DecodeResult(
        ids=tuple(ids),
        positions_angstrom=tuple(cpos[splits[i] : splits[i + 1]] for i in range(nb)),
        species=tuple(cspec[splits[i] : splits[i + 1]] for i in range(nb)),
        atomic_numbers=tuple(atomic[splits[i] : splits[i + 1]] for i in range(nb)),
        particles_per_atom=tuple(ccnt[splits[i] : splits[i + 1]] for i in range(nb)),
        lengths_angstrom=lengths.detach().double().cpu().numpy(),
        angles_deg=np.degrees(angles.detach().double().cpu().numpy()),
        n_particles=n_particles.cpu().numpy(),
        timing_s=timing,
        config=cfg,
    )
    timing["total"] = time.perf_counter() - t_start
    _emit(hooks, "on_end", result)
    return result

