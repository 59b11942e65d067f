"""Training query points: global grid, local grids around atoms, species grid (vectorized).

Every set is ragged with a crystal index: points (Q, 3) Angstrom, index (Q,) long.
Defaults are the reference code's; the paper's sigmas are in `SamplingConfig.paper()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import BoundingBox, CrystalBatch


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


def global_queries(
    crystals: CrystalBatch, grid: torch.Tensor, sigma: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same (G, 3) grid for every crystal, each point jittered independently."""
    b, g = crystals.num_crystals, grid.shape[0]
    dt, dev = crystals.positions.dtype, crystals.device
    pts = grid.to(dev, dt).expand(b, g, 3).reshape(-1, 3)
    if sigma > 0:
        pts = pts + sigma * torch.randn(pts.shape, generator=generator, dtype=dt, device="cpu").to(dev)
    index = torch.arange(b, device=dev).repeat_interleave(g)
    return pts, index


def local_queries(
    crystals: CrystalBatch, offsets: torch.Tensor, sigma: float, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A (K, 3) offset cube around every atom, jittered; index = the atom's crystal."""
    dt, dev = crystals.positions.dtype, crystals.device
    pts = (crystals.positions[:, None, :] + offsets.to(dev, dt)[None]).reshape(-1, 3)
    if sigma > 0:
        pts = pts + sigma * torch.randn(pts.shape, generator=generator, dtype=dt, device="cpu").to(dev)
    index = crystals.batch.repeat_interleave(offsets.shape[0])
    return pts, index


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
        gp, gi = global_queries(crystals, self.global_grid, c.global_sigma_angstrom, generator)
        lp, li = local_queries(crystals, self.local_offsets, c.local_sigma_angstrom, generator)
        sp, si = local_queries(crystals, self.species_offsets, c.species_sigma_angstrom, generator)
        return TrainingQueries(torch.cat([gp, lp]), torch.cat([gi, li]), sp, si)

    def queries_per_crystal(self, num_atoms: float) -> tuple[float, float]:
        """(position queries, species queries) for a crystal of `num_atoms` atoms."""
        return (
            self.global_grid.shape[0] + self.local_offsets.shape[0] * num_atoms,
            self.species_offsets.shape[0] * num_atoms,
        )
