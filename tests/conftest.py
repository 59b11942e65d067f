"""Shared fixtures: small crystals made in code (no files, no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nesf_viz.datasets import data_root

SHARED_DATA = data_root()


def shared_data(relpath: str) -> Path:
    """Path under ../shared/data, or skip the test with a reason when it is absent."""
    p = SHARED_DATA / relpath
    if not p.exists():
        pytest.skip(f"{p} not present (real datasets live in ../shared/data beside the checkout)")
    return p


@pytest.fixture(scope="module")
def playwright_sync():
    """Playwright's sync API for the browser tests, or a skip saying what is missing."""
    from .browser.lab import CHROMIUM

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


@pytest.fixture
def nacl():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture
def triclinic():
    from pymatgen.core import Lattice, Structure

    lat = Lattice.from_parameters(4.1, 5.3, 6.2, 78.0, 95.0, 104.0)
    frac = [[0.1, 0.2, 0.3], [0.6, 0.1, 0.7], [0.3, 0.8, 0.2], [0.85, 0.55, 0.9]]
    return Structure(lat, ["Si", "O", "O", "Mg"], frac)


@pytest.fixture(scope="session")
def synthetic_small():
    from nesf_viz.data import load_crystals

    return {s: load_crystals("synthetic:120", s) for s in ("train", "val", "test")}


def random_crystals(rng: np.random.Generator, n: int, max_atoms: int = 9):
    """Random triclinic crystals (float64 records) with well-separated atoms."""
    from nesf_viz.data import Crystal, lattice_matrix

    out = []
    for i in range(n):
        lengths = tuple(rng.uniform(3.0, 7.0, 3).tolist())
        angles = tuple(rng.uniform(70, 110, 3).tolist())
        k = int(rng.integers(1, max_atoms + 1))
        frac = rng.random((k, 3))
        pos = frac @ lattice_matrix(lengths, angles)
        z = rng.choice([1, 6, 8, 14, 26, 79], size=k)
        out.append(Crystal(pos, z.astype(np.int64), lengths, angles, id=f"r{i}"))
    return out


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
