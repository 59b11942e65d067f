"""Training query points: global grid, local grids around atoms, species grid, and (option)
points between close atoms (vectorized).

Every set is ragged with a crystal index: points (Q, 3) Angstrom, index (Q,) long.
Defaults are the reference code's; the paper's sigmas are in `SamplingConfig.paper()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import BoundingBox, CrystalBatch
from .errors import ConfigError, require_finite_fields
from .geometry import lattice_and_inverse


@dataclass(frozen=True)
class SamplingConfig:
    """Query sets for training (defaults = the authors' reference code)."""

    global_step_angstrom: float = 1.0
    """Grid step of the global grid over the bounding box grown by one step on each side."""
    global_sigma_angstrom: float = 0.5
    """Gaussian jitter of global points, fresh every step."""
    local_step_angstrom: float = 0.3
    local_extent_angstrom: float = 1.2
    """Local cube around each atom: offsets -extent/2 + step * k, k < extent/step (4 per axis)."""
    local_sigma_angstrom: float = 0.15
    """Paper: 0.5."""
    species_step_angstrom: float = 0.1
    species_extent_angstrom: float = 0.6
    """Species cube around each atom (6 per axis; the paper says 0.5 A)."""
    species_sigma_angstrom: float = 0.05
    """Paper: 0.5."""
    global_queries_per_crystal: int | None = None
    """Option: a fresh random subset of this many global grid points per crystal and step
    (None: the whole grid, as the paper). The grid's points are largely redundant step to step."""
    species_queries_per_atom: int | None = None
    """Option: a fresh random subset of this many species-cube points per atom and step
    (None: all 216, as the paper)."""
    pair_max_angstrom: float | None = None
    """Option: also query the position field between every two atoms of a crystal closer than
    this (None: off, as the paper). There the field's direction flips over a short distance, the
    local cubes (+-0.6 A) do not reach the midpoint of a 1.4 A pair, and the global grid (1 A)
    seldom lands: the LCS6A breakdown found most missed atoms at such pairs."""
    pair_queries_per_pair: int = 8
    """Points per close pair, uniform along the segment between the two atoms."""
    pair_sigma_angstrom: float = 0.1
    """Gaussian jitter of the pair points (off the segment too)."""
    cell_queries_per_crystal: int | None = None
    """Option: instead of the global grid over the whole training box, this many points uniform in
    each crystal's own cell grown by `cell_margin_angstrom` (None: the global grid, as the paper).
    The in-cell decoders (`DecodeConfig.fast`, `coarse`) release particles only there; where cells
    are small against the box (carbon_24: cells of ~100-300 A^3 in a 3,000 A^3 box) most grid
    points lie far from the crystal and dominate the loss without being used."""
    cell_margin_angstrom: float = 1.0
    """How far beyond each cell face the cell points reach (about twice the decoders' margin)."""

    def __post_init__(self) -> None:
        require_finite_fields(self)
        for name in ("global_queries_per_crystal", "species_queries_per_atom"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive integer or None (all points), got {v!r}")
        p = self.pair_max_angstrom
        if p is not None and not (isinstance(p, (int, float)) and 0 < p < float("inf")):
            raise ConfigError(f"pair_max_angstrom must be a finite distance > 0 or None (off), got {p!r}")
        c = self.cell_queries_per_crystal
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise ConfigError(f"cell_queries_per_crystal must be a positive integer or None (off), got {c!r}")
        if not self.cell_margin_angstrom >= 0:
            raise ConfigError(f"cell_margin_angstrom must be >= 0, got {self.cell_margin_angstrom!r}")
        n = self.pair_queries_per_pair
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"pair_queries_per_pair must be a positive integer, got {n!r}")
        if not 0 <= self.pair_sigma_angstrom < float("inf"):
            raise ConfigError(f"pair_sigma_angstrom must be a finite number >= 0, got {self.pair_sigma_angstrom!r}")

    @classmethod
    def paper(cls) -> "SamplingConfig":
        """The sigmas as the paper states them (0.5 A everywhere)."""
        return cls(local_sigma_angstrom=0.5, species_sigma_angstrom=0.5)


def _axis_offsets(step: float, extent: float) -> torch.Tensor:
    # Same points as the reference's arange(-extent/2, extent/2, step), without its float drift.
    n = int(round(extent / step))
    return -extent / 2 + step * torch.arange(n, dtype=torch.float64)


def cube_offsets(step: float, extent: float) -> torch.Tensor:
    """(K^3, 3) offsets of a cube grid centred (asymmetrically, as the reference) at 0."""
    o = _axis_offsets(step, extent)
    g = torch.meshgrid(o, o, o, indexing="ij")
    return torch.stack([x.flatten() for x in g], 1)


def box_grid(box: BoundingBox, step: float, margin: float) -> torch.Tensor:
    """(G, 3) grid points arange(min - margin, max + margin, step) per axis (reference semantics)."""
    axes = [
        torch.arange(lo - margin, hi + margin, step, dtype=torch.float64)
        for lo, hi in zip(box.min_angstrom, box.max_angstrom)
    ]
    g = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([x.flatten() for x in g], 1)


def _random_subset(rows: int, of: int, keep: int, generator: torch.Generator | None) -> torch.Tensor:
    """(rows, keep) indices, each row a uniform random subset of range(of) without repeats."""
    return torch.rand(rows, of, generator=generator).argsort(1)[:, :keep]


def global_queries(
    crystals: CrystalBatch, grid: torch.Tensor, sigma: float, generator: torch.Generator | None,
    per_crystal: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (G, 3) grid for every crystal (or a random subset of `per_crystal` of its points),
    each point jittered independently."""
    b, g = crystals.num_crystals, grid.shape[0]
    dt, dev = crystals.positions.dtype, crystals.device
    if per_crystal is not None and per_crystal < g:
        pts = grid.to(dt)[_random_subset(b, g, per_crystal, generator)].reshape(-1, 3).to(dev)
        g = per_crystal
    else:
        pts = grid.to(dev, dt).expand(b, g, 3).reshape(-1, 3)
    if sigma > 0:
        pts = pts + sigma * torch.randn(pts.shape, generator=generator, dtype=dt, device="cpu").to(dev)
    index = torch.arange(b, device=dev).repeat_interleave(g)
    return pts, index


def local_queries(
    crystals: CrystalBatch, offsets: torch.Tensor, sigma: float, generator: torch.Generator | None,
    per_atom: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A (K, 3) offset cube around every atom (or a random subset of `per_atom` of its points per
    atom), jittered; index = the atom's crystal."""
    dt, dev = crystals.positions.dtype, crystals.device
    n, k = crystals.positions.shape[0], offsets.shape[0]
    if per_atom is not None and per_atom < k:
        off = offsets.to(dt)[_random_subset(n, k, per_atom, generator)].to(dev)  # (N, K', 3)
        k = per_atom
    else:
        off = offsets.to(dev, dt)[None]
    pts = (crystals.positions[:, None, :] + off).reshape(-1, 3)
    if sigma > 0:
        pts = pts + sigma * torch.randn(pts.shape, generator=generator, dtype=dt, device="cpu").to(dev)
    index = crystals.batch.repeat_interleave(k)
    return pts, index


def cell_queries(
    crystals: CrystalBatch, per_crystal: int, margin_angstrom: float, generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_crystal` points uniform in each crystal's cell grown by `margin_angstrom` beyond every
    face (along the face normal, as the in-cell decoders grow it); index = the crystal."""
    dt, dev = crystals.positions.dtype, crystals.device
    lat, inv = lattice_and_inverse(crystals.lengths.double(), crystals.angles.double())  # (B, 3, 3)
    # the distance between two opposite faces is 1 / |column of the inverse|: a margin of m A is
    # m * |column| in that fractional coordinate
    margin = margin_angstrom * inv.norm(dim=1)  # (B, 3)
    u = torch.rand(crystals.num_crystals, per_crystal, 3, generator=generator, dtype=torch.float64).to(dev)
    frac = -margin[:, None, :] + u * (1 + 2 * margin[:, None, :])
    pts = torch.einsum("bqi,bij->bqj", frac, lat).reshape(-1, 3).to(dt)
    index = torch.arange(crystals.num_crystals, device=dev).repeat_interleave(per_crystal)
    return pts, index


def close_pairs(crystals: CrystalBatch, max_angstrom: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(M,) first and (M,) second atom (rows of `crystals.positions`) of every pair of atoms of
    one crystal closer than `max_angstrom`, each pair once (first < second)."""
    pos, mask = crystals.padded_positions()  # (B, Nmax, 3), (B, Nmax)
    counts = crystals.counts()
    starts = torch.cumsum(counts, 0) - counts
    d = torch.cdist(pos, pos)
    nmax = pos.shape[1]
    upper = torch.ones(nmax, nmax, dtype=torch.bool, device=pos.device).triu(1)
    close = (d < max_angstrom) & upper & mask[:, :, None] & mask[:, None, :]
    b, i, j = close.nonzero(as_tuple=True)
    return starts[b] + i, starts[b] + j


def pair_queries(
    crystals: CrystalBatch, max_angstrom: float, per_pair: int, sigma: float, generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`per_pair` points uniform on the segment between the atoms of every close pair (see
    `close_pairs`), jittered by `sigma`; index = the pair's crystal."""
    first, second = close_pairs(crystals, max_angstrom)
    dt, dev = crystals.positions.dtype, crystals.device
    m = first.shape[0]
    t = torch.rand(m, per_pair, 1, generator=generator, dtype=dt).to(dev)
    a, b = crystals.positions[first][:, None, :], crystals.positions[second][:, None, :]
    pts = (a + t * (b - a)).reshape(-1, 3)
    if sigma > 0:
        pts = pts + sigma * torch.randn(pts.shape, generator=generator, dtype=dt, device="cpu").to(dev)
    return pts, crystals.batch[first].repeat_interleave(per_pair)


@dataclass
class TrainingQueries:
    """One step's queries: position-field points and species-field points (ragged)."""

    position_points: torch.Tensor
    position_index: torch.Tensor
    species_points: torch.Tensor
    species_index: torch.Tensor


class QuerySampler:
    """Makes fresh training queries for a batch; grids are built once per box."""

    def __init__(self, box: BoundingBox, config: SamplingConfig = SamplingConfig()):
        self.config = config
        c = config
        self.global_grid = box_grid(box, c.global_step_angstrom, c.global_step_angstrom)
        self.local_offsets = cube_offsets(c.local_step_angstrom, c.local_extent_angstrom)
        self.species_offsets = cube_offsets(c.species_step_angstrom, c.species_extent_angstrom)

    def __call__(self, crystals: CrystalBatch, generator: torch.Generator | None = None) -> TrainingQueries:
        c = self.config
        if c.cell_queries_per_crystal is not None:
            gp, gi = cell_queries(crystals, c.cell_queries_per_crystal, c.cell_margin_angstrom, generator)
        else:
            gp, gi = global_queries(crystals, self.global_grid, c.global_sigma_angstrom, generator,
                                    c.global_queries_per_crystal)
        lp, li = local_queries(crystals, self.local_offsets, c.local_sigma_angstrom, generator)
        sp, si = local_queries(crystals, self.species_offsets, c.species_sigma_angstrom, generator,
                               c.species_queries_per_atom)
        if c.pair_max_angstrom is not None:
            pp, pi = pair_queries(crystals, c.pair_max_angstrom, c.pair_queries_per_pair, c.pair_sigma_angstrom,
                                  generator)
            return TrainingQueries(torch.cat([gp, lp, pp]), torch.cat([gi, li, pi]), sp, si)
        return TrainingQueries(torch.cat([gp, lp]), torch.cat([gi, li]), sp, si)

    def queries_per_crystal(self, num_atoms: float) -> tuple[float, float]:
        """(position queries, species queries) for a crystal of `num_atoms` atoms."""
        c = self.config
        g = min(self.global_grid.shape[0], c.global_queries_per_crystal or self.global_grid.shape[0])
        if c.cell_queries_per_crystal is not None:
            g = c.cell_queries_per_crystal
        s = min(self.species_offsets.shape[0], c.species_queries_per_atom or self.species_offsets.shape[0])
        return g + self.local_offsets.shape[0] * num_atoms, s * num_atoms
