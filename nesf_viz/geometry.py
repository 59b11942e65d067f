"""Cell geometry, torch and numpy twins: lattice matrices, minimum image, wrapping,
neighbouring images, unit-cube corners. The one home for what the decoder, NMS, the exact
fields (torch, batched, Cartesian) and the data layer, metrics, symmetry and figures (numpy,
single cells, mostly fractional) share; tests/test_geometry.py checks the twins agree.

Row-vector convention: Cartesian = fractional @ lattice, lattice rows a, b, c, frame 'a along
x, b in the xy plane'. Shapes: (B, 3) lengths/angles, (B, 3, 3) lattices, (..., 3) vectors.
Angles: radians in the torch functions, degrees in `lattice_matrix_np` (the pymatgen boundary).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np
import torch

from .errors import CrystalInputError

# ----------------------------------------------------------------------------- numpy twins


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


#: (27, 3) int64 offsets of a cell and its 26 neighbouring images, -1..1 per axis, x slowest:
#: the order of `image_shifts` (row k of both is the same image).
IMAGE_OFFSETS: np.ndarray = _frozen(np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=np.int64))

#: (8, 3) float64 corners of the unit cube, 0..1 per axis, x slowest; `@ lattice` gives the
#: Cartesian corners of a cell.
UNIT_CUBE_CORNERS: np.ndarray = _frozen(np.array(list(itertools.product((0, 1), repeat=3)), dtype=np.float64))


def lattice_matrix_np(lengths: Sequence[float], angles_deg: Sequence[float]) -> np.ndarray:
    """(3, 3) float64 row-vector lattice matrix of one cell, frame 'a along x, b in the xy plane'.

    lengths (3,) in Angstrom, angles_deg (3,) alpha, beta, gamma in degrees; the formula of
    `lattice_matrices`. Raises CrystalInputError for angles that give no volume."""
    a, b, c = (float(x) for x in lengths)
    al, be, ga = (math.radians(float(x)) for x in angles_deg)
    ca, cb, cg, sg = math.cos(al), math.cos(be), math.cos(ga), math.sin(ga)
    cy = (ca - cb * cg) / sg
    cz2 = 1.0 - cb * cb - cy * cy
    if not cz2 > 0:
        raise CrystalInputError(
            f"lattice angles {tuple(angles_deg)} deg do not describe a cell with volume"
        )
    return np.array(
        [[a, 0.0, 0.0], [b * cg, b * sg, 0.0], [c * cb, c * cy, c * math.sqrt(cz2)]],
        dtype=np.float64,
    )


def min_image_frac(d: np.ndarray) -> np.ndarray:
    """Fractional displacements (..., 3) reduced to the nearest image, d - round(d), each
    coordinate in [-0.5, 0.5] (ties to even, like `min_image`). A new array."""
    return d - np.round(d)


def wrap_frac(f: np.ndarray) -> np.ndarray:
    """Fractional coordinates (..., 3) wrapped into [0, 1), as `wrap` does (floor can leave
    exactly 1.0 for a tiny negative input; that becomes 0.0). A new array."""
    f = f - np.floor(f)
    return np.where(f >= 1, f - 1, f)


def image_positions(positions: np.ndarray, lattice: np.ndarray) -> np.ndarray:
    """(N, 27, 3) Cartesian positions (N, 3) plus the `IMAGE_OFFSETS` shifts of the (3, 3)
    row lattice; [:, 13] is the atom itself."""
    return positions[:, None, :] + (IMAGE_OFFSETS @ lattice)[None]


# ----------------------------------------------------------------------------- torch


def lattice_matrices(lengths: torch.Tensor, angles_rad: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) row-vector lattice matrices, frame 'a along x, b in the xy plane'.

    Same formula as `lattice_matrix_np` (which takes degrees). Angles that describe no cell
    (predicted ones can) give a NaN c_z entry; `lattice_and_inverse` makes such a cell all NaN."""
    a, b, c = lengths.unbind(-1)
    ca, cb, cg = torch.cos(angles_rad).unbind(-1)
    sg = torch.sin(angles_rad[..., 2])
    cy = (ca - cb * cg) / sg
    cz2 = 1 - cb * cb - cy * cy
    cz = torch.where(cz2 > 0, torch.sqrt(cz2.clamp(min=0)), torch.full_like(cz2, float("nan")))
    zero = torch.zeros_like(a)
    rows = [
        torch.stack([a, zero, zero], -1),
        torch.stack([b * cg, b * sg, zero], -1),
        torch.stack([c * cb, c * cy, c * cz], -1),
    ]
    return torch.stack(rows, -2)


def image_shifts(lengths: torch.Tensor, angles_rad: torch.Tensor) -> torch.Tensor:
    """(B, 27, 3) Cartesian shifts of the 27 neighbouring images (-1..1 per axis, image-major,
    x slowest: `IMAGE_OFFSETS @ lattice`), in the dtype of the lattice."""
    lat = lattice_matrices(lengths, angles_rad)
    shifts = torch.from_numpy(IMAGE_OFFSETS.copy()).to(lat.device, lat.dtype)
    return torch.einsum("kj,bjd->bkd", shifts, lat)


def lattice_and_inverse(lengths: torch.Tensor, angles_rad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, 3) lattices and their inverses in the dtype of `lengths`; rows of an impossible
    (predicted) cell are NaN, so its particles drop out instead of raising."""
    lat = lattice_matrices(lengths.double(), angles_rad.double())
    finite = torch.isfinite(lat).all(-1).all(-1)
    eye = torch.eye(3, dtype=lat.dtype, device=lat.device)
    inv, info = torch.linalg.inv_ex(torch.where(finite[:, None, None], lat, eye))
    bad = ~finite | (info != 0)
    nan = torch.full_like(lat, float("nan"))
    lat = torch.where(bad[:, None, None], nan, lat)
    inv = torch.where(bad[:, None, None], nan, inv)
    return lat.to(lengths.dtype), inv.to(lengths.dtype)


def vecmat(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """v (..., 3) @ m (..., 3, 3) with explicit elementwise products.

    Elementwise on purpose: the result is bitwise the same however the inputs are batched,
    so the batched and the plain NMS take the same distance decisions."""
    return v[..., 0:1] * m[..., 0, :] + v[..., 1:2] * m[..., 1, :] + v[..., 2:3] * m[..., 2, :]


def min_image(d: torch.Tensor, lat: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """Minimum-image displacement by rounding fractional coordinates (exact for cells that are
    not strongly skewed)."""
    f = vecmat(d, inv)
    return vecmat(f - torch.round(f), lat)


def wrap(p: torch.Tensor, lat: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """Positions wrapped into the cell: fractional coordinates in [0, 1)."""
    f = vecmat(p, inv)
    f = f - torch.floor(f)
    f = torch.where(f >= 1, f - 1, f)  # floor can leave exactly 1.0 after rounding
    return vecmat(f, lat)


def sqnorm(d: torch.Tensor) -> torch.Tensor:
    """Squared norm over the last axis, summed x + y + z in that order (batch-invariant)."""
    return d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1] + d[..., 2] * d[..., 2]
