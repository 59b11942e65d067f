"""Training views of a crystal that are the same crystal (named options of `TrainConfig`).

The autoencoder reconstructs the view it is given, so another view of a training crystal is
another training example of the same physics: more views per crystal against the gap between
training and held-out crystals.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .data import BoundingBox, Crystal, CrystalBatch
from .geometry import lattice_and_inverse, lattice_matrix_np, vecmat, wrap

__all__ = ["shift_origin", "cell_box"]


def shift_origin(crystals: CrystalBatch, generator: torch.Generator | None) -> CrystalBatch:
    """Each crystal with its origin moved by a uniform random fractional vector and its atoms
    wrapped back into the cell: the same periodic crystal, other atoms on the cell faces."""
    dt, dev = crystals.positions.dtype, crystals.device
    lat, inv = lattice_and_inverse(crystals.lengths.double(), crystals.angles.double())
    shift = torch.rand(crystals.num_crystals, 3, generator=generator, dtype=torch.float64).to(dev)
    per_atom = crystals.batch
    moved = crystals.positions.double() + vecmat(shift[per_atom], lat[per_atom])
    wrapped = wrap(moved, lat[per_atom], inv[per_atom])
    return dataclasses.replace(crystals, positions=wrapped.to(dt))


def cell_box(crystals: list[Crystal] | tuple[Crystal, ...]) -> BoundingBox:
    """The box over every atom and every cell corner: where atoms of any view made by
    `shift_origin` can lie (a training box built from the atoms alone can be smaller than the
    cells, e.g. perovskites with their atoms on the faces)."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    pts = [c.positions_angstrom for c in crystals]
    pts += [corners @ lattice_matrix_np(c.lengths_angstrom, c.angles_deg) for c in crystals]
    allp = np.concatenate(pts)
    return BoundingBox(tuple(allp.min(0).tolist()), tuple(allp.max(0).tolist()))
