"""One crystal record, the unit every layer passes around (`Crystal`), and the check that a cell
could hold real atoms (`is_physical_cell`).

The lowest data module: numpy and `nesf_viz.geometry` only, so that every crystal source
(`nesf_viz.data`'s readers, the embedded `nesf_viz.synthetic` prototypes) builds on it without
importing the others. Frame and units as in `nesf_viz.data`: Cartesian Angstrom in the frame
"a along x, b in the xy plane", angles in degrees at this boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .geometry import lattice_matrix_np as lattice_matrix

__all__ = ["Crystal", "is_physical_cell", "MIN_CELL_LENGTH_ANGSTROM", "MIN_VOLUME_PER_SITE_ANGSTROM3",
           "MIN_CELL_FLATNESS"]

MIN_CELL_LENGTH_ANGSTROM = 1.0
MIN_VOLUME_PER_SITE_ANGSTROM3 = 1.0
MIN_CELL_FLATNESS = 1e-2


def is_physical_cell(lattice: np.ndarray, n_sites: int) -> bool:
    """Whether a (3, 3) cell could hold `n_sites` real atoms: finite, every length >= 1 A, volume
    >= 1 A^3 per site (real crystals have ~5 or more) and >= 1 % of a*b*c (not flat).

    Decoded cells of barely trained models can fail this (0.02 A, 4 degree cells); pymatgen's
    neighbour searches and StructureMatcher then run for minutes and exhaust memory, so
    callers skip them."""
    lat = np.asarray(lattice, dtype=float)
    if lat.shape != (3, 3) or not np.all(np.isfinite(lat)):
        return False
    lengths = np.linalg.norm(lat, axis=1)
    volume = abs(float(np.linalg.det(lat)))
    return bool(lengths.min() >= MIN_CELL_LENGTH_ANGSTROM
                and volume >= MIN_VOLUME_PER_SITE_ANGSTROM3 * max(n_sites, 1)
                and volume >= MIN_CELL_FLATNESS * float(np.prod(lengths)))


@dataclass(frozen=True)
class Crystal:
    """One ordered crystal in the project frame (float64, numpy).

    positions_angstrom: (N, 3) cartesian, frame as in the module docstring.
    atomic_numbers: (N,) int.
    """

    positions_angstrom: np.ndarray
    atomic_numbers: np.ndarray
    lengths_angstrom: tuple[float, float, float]
    angles_deg: tuple[float, float, float]
    id: str = ""
    properties: dict = field(default_factory=dict, compare=False)

    @property
    def num_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    @property
    def lattice(self) -> np.ndarray:
        return lattice_matrix(self.lengths_angstrom, self.angles_deg)

    def has_physical_cell(self) -> bool:
        """`is_physical_cell` of this crystal's cell (False for angles that describe no cell)."""
        try:
            return is_physical_cell(self.lattice, self.num_atoms)
        except ValueError:
            return False

    @property
    def frac_coords(self) -> np.ndarray:
        return self.positions_angstrom @ np.linalg.inv(self.lattice)

    def to_structure(self):
        """pymatgen Structure with the same lattice parameters and fractional coordinates."""
        from pymatgen.core import Lattice, Structure

        lat = Lattice(self.lattice)
        return Structure(
            lat,
            [int(z) for z in self.atomic_numbers],
            self.frac_coords,
            coords_are_cartesian=False,
            properties={"material_id": self.id} if self.id else None,
        )
