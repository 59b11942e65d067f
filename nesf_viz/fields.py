"""The field protocol, shared by learned and exact ground-truth fields.

A `StructureFields` object turns crystals into latents ``z`` (B, D) and answers pure
functions of (z, points):

    position_field(z, points, index) -> (Q, 3)  vector from each point to its nearest atom
    species_field(z, points, index)  -> (Q, S)  species scores (logits, or one-hot for exact)
    lattice(z)                       -> lengths (B, 3) Angstrom, angles (B, 3) radians
    species_class(z, points, index)  -> (Q,)    the class species_field peaks at (its argmax)

points: (Q, 3) Angstrom in the project frame; index: (Q,) long, row of z each point belongs to.
`abilities` (`FieldAbilities`) says which exact shortcuts the decoder may take.
The decoder and the training targets run the same code on both kinds of fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from .data import CrystalBatch
from .geometry import image_shifts, lattice_matrices  # noqa: F401  (lattice_matrices: public here too)

# Bounds the (queries x atoms) distance matrix of one chunk (~64 MB of float32).
_CHUNK_PAIRS = 1 << 24


@dataclass(frozen=True)
class FieldAbilities:
    """What a fields object promises beyond the protocol's functions; the decoder takes shortcuts
    that never change a result only where these say so. The defaults promise nothing (a
    network's fields)."""

    pointwise: bool = False
    """Each point's answer is independent of the other points of a call (bitwise), so the
    decoder may stop particles at fixed points without changing any result, and merges
    bitwise-equal particles (equal futures) into one row that NMS counts. A network's batched
    matmuls do not promise this."""
    bounds_own_memory: bool = False
    """`position_field` chunks its own work, so the decoder need not split its calls into
    `DecodeConfig.chunk_particles` pieces (that bound is for a network's activations); used
    together with `pointwise`."""


@runtime_checkable
class StructureFields(Protocol):
    """Latents, lattice and the two fields of crystals (module docstring for the shapes).

    A class that subclasses this protocol inherits the defaults below: `abilities` promising
    nothing and `species_class` as the argmax of `species_field`."""

    num_species: int
    """S, the number of species classes (columns of `species_field`)."""

    abilities: FieldAbilities = FieldAbilities()
    """Shortcuts the decoder may take (`FieldAbilities`; default: none)."""

    def latents(self, crystals: CrystalBatch) -> torch.Tensor: ...

    def lattice(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def position_field(
        self, z: torch.Tensor, points: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor: ...

    def species_field(
        self, z: torch.Tensor, points: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor: ...

    def species_class(self, z: torch.Tensor, points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(Q,) long: the class `species_field` peaks at (its argmax; the first on ties), which the
        decoder's species vote counts. Fields that know it directly skip the (Q, S) scores."""
        return self.species_field(z, points, index).argmax(-1)


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
    Ties go to the lowest (image, atom) slot. Chunked so memory stays bounded.

    On the CPU, points that arrive in runs of one crystal (the decoder's and the sampler's
    order) are compared with that crystal's atoms only; otherwise (many short runs, or CUDA)
    every point is compared with a padded copy of all crystals' atoms. Both give bitwise the
    same answer (same arithmetic, same tie rule; tests/test_fields.py).
    """
    if points.ndim != 2 or points.shape[-1] != 3 or index.shape != points.shape[:1]:
        from .errors import ShapeError

        raise ShapeError(f"points must be (Q, 3) with index (Q,); got {tuple(points.shape)}, {tuple(index.shape)}")
    counts = crystals.counts()
    starts = torch.cumsum(counts, 0) - counts
    img = None  # (B, 27, 3) image shifts when periodic
    if periodic:
        img = image_shifts(crystals.lengths, crystals.angles).to(crystals.positions.dtype)
    if points.device.type == "cpu" and points.shape[0]:
        change = torch.ones(points.shape[0], dtype=torch.bool)
        change[1:] = index[1:] != index[:-1]
        bounds = torch.nonzero(change).flatten()
        if bounds.numel() <= 4 * crystals.num_crystals + 16:
            return _nearest_by_runs(crystals, points, index, bounds.tolist(), counts, starts, img)
    return _nearest_padded(crystals, points, index, counts, starts, img)


def _nearest_by_runs(crystals, points, index, bounds, counts, starts, img):
    out_atom = torch.empty(points.shape[0], dtype=torch.long)
    out_vec = torch.empty_like(points)
    pos = crystals.positions
    for s0, s1 in zip(bounds, bounds[1:] + [points.shape[0]]):
        b = int(index[s0])
        n = int(counts[b])
        cand = pos[int(starts[b]) : int(starts[b]) + n]
        if img is not None:
            cand = (cand[None] + img[b][:, None]).reshape(-1, 3)  # image-major
        step = max(1, _CHUNK_PAIRS // max(cand.shape[0], 1))
        for c0 in range(s0, s1, step):
            c1 = min(c0 + step, s1)
            p = points[c0:c1]
            dx = cand[None, :, 0] - p[:, 0:1]
            dy = cand[None, :, 1] - p[:, 1:2]
            dz = cand[None, :, 2] - p[:, 2:3]
            slot = (dx * dx + dy * dy + dz * dz).argmin(1)  # the sum order of .sum(-1) over 3
            out_vec[c0:c1] = cand[slot] - p
            out_atom[c0:c1] = starts[b] + slot % n
    return out_atom, out_vec


def _nearest_padded(crystals, points, index, counts, starts, img):
    padded, mask = crystals.padded_positions()  # (B, A, 3), (B, A)
    if img is not None:
        padded = (padded[:, None, :, :] + img[:, :, None, :]).reshape(padded.shape[0], -1, 3)
        mask = mask[:, None, :].expand(-1, 27, -1).reshape(mask.shape[0], -1)
    n_slots = padded.shape[1]
    n_atoms_max = mask.shape[1] // (27 if img is not None else 1)
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


class ExactFields(StructureFields):
    """Ground-truth fields of known crystals, with the learned fields' signature.

    The latent of crystal i is simply its row i of `crystals` (a (B, 1) float tensor), so
    `position_field(z, points, index)` stays a pure function of (z, points).
    """

    abilities = FieldAbilities(pointwise=True, bounds_own_memory=True)
    """Pointwise (nearest-atom search per point, bitwise independent of the other points) and
    `position_field` chunks itself (`_CHUNK_PAIRS`)."""

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
        spec = self.species_class(z, points, index)
        return torch.nn.functional.one_hot(spec, self.num_species).to(points.dtype)

    def species_class(self, z, points, index):
        """(Q,) the class `species_field` peaks at (its argmax), without the (Q, S) scores."""
        atom, _ = nearest_atoms(self.crystals, points, self._rows(z, index), self.periodic)
        return self.crystals.species[atom]


def ground_truth_targets(
    crystals: CrystalBatch, points: torch.Tensor, index: torch.Tensor, periodic: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets: (vector to nearest atom (Q, 3), its species class (Q,))."""
    atom, vec = nearest_atoms(crystals, points, index, periodic)
    return vec, crystals.species[atom]
