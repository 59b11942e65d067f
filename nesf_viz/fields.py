"""The field protocol, shared by learned and exact ground-truth fields.

A `StructureFields` object turns crystals into latents ``z`` (B, D) and answers pure
functions of (z, points):

    position_field(z, points, index) -> (Q, 3)  vector from each point to its nearest atom
    species_field(z, points, index)  -> (Q, S)  species scores (logits, or one-hot for exact)
    lattice(z)                       -> lengths (B, 3) Angstrom, angles (B, 3) radians

points: (Q, 3) Angstrom in the project frame; index: (Q,) long, row of z each point belongs to.
The decoder and the training targets run the same code on both kinds of fields.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from .data import CrystalBatch

# Bounds the (queries x atoms) distance matrix of one chunk (~64 MB of float32).
_CHUNK_PAIRS = 1 << 24


@runtime_checkable
class StructureFields(Protocol):
    num_species: int

    def latents(self, crystals: CrystalBatch) -> torch.Tensor: ...

    def lattice(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def position_field(
        self, z: torch.Tensor, points: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor: ...

    def species_field(
        self, z: torch.Tensor, points: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor: ...


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


def nearest_atoms(
    crystals: CrystalBatch,
    points: torch.Tensor,
    index: torch.Tensor,
    periodic: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each point, its nearest atom in crystal ``index`` and the vector to it.

    Returns (atom (Q,) long index into crystals.positions, vector (Q, 3)).
    periodic=False is the paper's convention (atoms of the cell only, no images);
    periodic=True uses the nearest of the 27 neighbouring images (minimum image).
    Ties go to the lowest atom index. Chunked so memory stays bounded.
    """
    if points.ndim != 2 or points.shape[-1] != 3 or index.shape != points.shape[:1]:
        from .errors import ShapeError

        raise ShapeError(f"points must be (Q, 3) with index (Q,); got {tuple(points.shape)}, {tuple(index.shape)}")
    padded, mask = crystals.padded_positions()  # (B, A, 3), (B, A)
    counts = crystals.counts()
    starts = torch.cumsum(counts, 0) - counts
    if periodic:
        lat = lattice_matrices(crystals.lengths, crystals.angles).to(padded.dtype)  # (B,3,3)
        shifts = torch.stack(
            torch.meshgrid(*([torch.arange(-1, 2, device=points.device)] * 3), indexing="ij"), -1
        ).reshape(27, 3).to(padded.dtype)
        img = torch.einsum("kj,bjd->bkd", shifts, lat)  # (B, 27, 3)
        padded = (padded[:, None, :, :] + img[:, :, None, :]).reshape(padded.shape[0], -1, 3)
        mask = mask[:, None, :].expand(-1, 27, -1).reshape(mask.shape[0], -1)
    n_slots = padded.shape[1]
    n_atoms_max = mask.shape[1] // (27 if periodic else 1)
    out_atom = torch.empty(points.shape[0], dtype=torch.long, device=points.device)
    out_vec = torch.empty_like(points)
    chunk = max(1, _CHUNK_PAIRS // max(n_slots, 1))
    inf = torch.tensor(float("inf"), dtype=points.dtype, device=points.device)
    for s in range(0, points.shape[0], chunk):
        p = points[s : s + chunk]
        b = index[s : s + chunk]
        cand = padded[b]  # (q, slots, 3)
        d2 = ((cand - p[:, None, :]) ** 2).sum(-1)
        d2 = torch.where(mask[b], d2, inf)
        slot = d2.argmin(1)
        out_vec[s : s + chunk] = cand.gather(1, slot[:, None, None].expand(-1, 1, 3))[:, 0] - p
        out_atom[s : s + chunk] = starts[b] + slot % n_atoms_max
    return out_atom, out_vec


class ExactFields:
    """Ground-truth fields of known crystals, with the learned fields' signature.

    The latent of crystal i is simply its row i of `crystals` (a (B, 1) float tensor), so
    `position_field(z, points, index)` stays a pure function of (z, points).
    """

    def __init__(self, crystals: CrystalBatch, num_species: int, periodic: bool = False):
        self.crystals = crystals
        self.num_species = int(num_species)
        self.periodic = bool(periodic)

    def latents(self, crystals: CrystalBatch | None = None) -> torch.Tensor:
        if crystals is not None and crystals is not self.crystals:
            raise ValueError("ExactFields knows only the crystals it was built with")
        n = self.crystals.num_crystals
        return torch.arange(n, device=self.crystals.device, dtype=self.crystals.positions.dtype)[:, None]

    def _rows(self, z: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return z[:, 0].round().long()[index]

    def lattice(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = z[:, 0].round().long()
        return self.crystals.lengths[rows], self.crystals.angles[rows]

    def position_field(self, z, points, index):
        return nearest_atoms(self.crystals, points, self._rows(z, index), self.periodic)[1]

    def species_field(self, z, points, index):
        atom, _ = nearest_atoms(self.crystals, points, self._rows(z, index), self.periodic)
        spec = self.crystals.species[atom]
        return torch.nn.functional.one_hot(spec, self.num_species).to(points.dtype)


def ground_truth_targets(
    crystals: CrystalBatch, points: torch.Tensor, index: torch.Tensor, periodic: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets: (vector to nearest atom (Q, 3), its species class (Q,))."""
    atom, vec = nearest_atoms(crystals, points, index, periodic)
    return vec, crystals.species[atom]
