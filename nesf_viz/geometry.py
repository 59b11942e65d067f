"""Cell geometry on torch tensors: lattice matrices, fractional <-> Cartesian, minimum image,
wrapping, neighbouring-image shifts. One home for what the decoder, NMS and the exact fields
share; the numpy twin for single cells is `nesf_viz.data.lattice_matrix`.

Row-vector convention: Cartesian = fractional @ lattice, lattice rows a, b, c, frame 'a along
x, b in the xy plane'. Shapes: (B, 3) lengths/angles, (B, 3, 3) lattices, (..., 3) vectors.
"""

from __future__ import annotations

import torch


def lattice_matrices(lengths: torch.Tensor, angles_rad: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) row-vector lattice matrices, frame 'a along x, b in the xy plane'.

    Same formula as ``nesf_viz.data.lattice_matrix``; NaN rows for impossible (predicted) angles."""
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
    x slowest), in the dtype of the lattice."""
    lat = lattice_matrices(lengths, angles_rad)
    shifts = torch.stack(
        torch.meshgrid(*([torch.arange(-1, 2, device=lat.device)] * 3), indexing="ij"), -1
    ).reshape(27, 3).to(lat.dtype)
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
