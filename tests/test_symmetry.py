"""Symmetrisation and space-group recovery on cubic prototypes with known space groups."""

from __future__ import annotations

import numpy as np
import pytest

from nesf_viz.data import Crystal
from nesf_viz.symmetry import describe, spacegroup_number, spacegroup_recovery_pct, symmetrize
from nesf_viz.synthetic import generate_synthetic

SG = {"cscl": 221, "rocksalt": 225, "zincblende": 216, "heusler": 225, "halfheusler": 216,
      "perovskite": 221, "fluorite": 225, "l12": 221}


def _noisy(c: Crystal, rng, sigma: float) -> Crystal:
    return Crystal(c.positions_angstrom + rng.normal(scale=sigma, size=c.positions_angstrom.shape),
                   c.atomic_numbers.copy(), c.lengths_angstrom, c.angles_deg, id=c.id)


@pytest.fixture(scope="module")
def crystals():
    return generate_synthetic(16, seed=3)


def test_true_space_groups_are_found(crystals):
    for c in crystals:
        assert spacegroup_number(c) == SG[c.properties["prototype"]]


def test_symmetrize_is_identity_on_symmetric_crystals(crystals):
    for c in crystals[:6]:
        s = symmetrize(c, 0.1)
        np.testing.assert_allclose(s.positions_angstrom, c.positions_angstrom, atol=1e-9)
        np.testing.assert_allclose(s.lengths_angstrom, c.lengths_angstrom, atol=1e-9)
        np.testing.assert_array_equal(s.atomic_numbers, c.atomic_numbers)


def test_symmetrize_restores_the_group_and_moves_atoms_back(crystals):
    rng = np.random.default_rng(0)
    before, after = [], []
    for c in crystals:
        noisy = _noisy(c, rng, 0.02)
        assert spacegroup_number(noisy, 0.01) != spacegroup_number(c)  # noise breaks strict symmetry
        s = symmetrize(noisy, 0.2)
        # same cell and frame: the decoded atoms stay comparable with the truth atom by atom
        assert spacegroup_number(s, 1e-3) == SG[c.properties["prototype"]]
        before.append(np.linalg.norm(noisy.positions_angstrom - c.positions_angstrom, axis=1).mean())
        after.append(np.linalg.norm(s.positions_angstrom - c.positions_angstrom, axis=1).mean())
    assert np.mean(after) < 0.7 * np.mean(before)


def test_recovery_rate_and_degenerate_inputs(crystals):
    rng = np.random.default_rng(1)
    noisy = [_noisy(c, rng, 0.02) for c in crystals]
    assert spacegroup_recovery_pct(crystals, crystals) == 100.0
    assert spacegroup_recovery_pct(crystals, noisy, 0.01) == 0.0
    assert spacegroup_recovery_pct(crystals, [symmetrize(c, 0.2) for c in noisy]) == 100.0
    empty = Crystal(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), (4.0, 4.0, 4.0), (90.0, 90.0, 90.0))
    assert spacegroup_number(empty) is None and symmetrize(empty) is empty
    with pytest.raises(ValueError):
        spacegroup_recovery_pct(crystals, crystals[:-1])


def test_empty_or_wrong_decodes_never_recover_a_p1_crystal():
    # a decode that collapsed to nothing (or to other elements) once "recovered" every P1 crystal
    p1 = Crystal(np.array([[0.1, 0.2, 0.3], [1.7, 2.9, 0.4], [3.1, 0.8, 2.2]]), np.array([8, 14, 26]),
                 (4.1, 4.7, 5.3), (81.0, 97.0, 104.0))
    assert spacegroup_number(p1) == 1
    empty = Crystal(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), p1.lengths_angstrom, p1.angles_deg)
    wrong = Crystal(p1.positions_angstrom, np.array([8, 8, 26]), p1.lengths_angstrom, p1.angles_deg)
    flat = Crystal(p1.positions_angstrom, p1.atomic_numbers, (0.02, 0.1, 0.18), (4.0, 4.0, 4.0))
    extra = Crystal(np.vstack([p1.positions_angstrom, [[2.5, 2.5, 2.5], [0.5, 3.5, 4.0], [3.9, 2.0, 0.9]]]),
                    np.array([8, 14, 26] * 2), p1.lengths_angstrom, p1.angles_deg)  # same reduced formula
    assert spacegroup_number(extra) == 1 and spacegroup_recovery_pct([p1], [p1]) == 100.0
    for pred in (empty, wrong, flat, extra):
        assert spacegroup_recovery_pct([p1], [pred]) == 0.0


def test_describe_names_formula_space_group_crystal_system_and_atoms(crystals):
    rocksalt = next(c for c in crystals if c.properties["prototype"] == "rocksalt")
    d = describe(rocksalt)
    assert (d.spacegroup, d.spacegroup_number, d.crystal_system, d.num_atoms) == ("Fm-3m", 225, "cubic", 8)
    assert d.formula == rocksalt.properties["formula"] and d.text() == f"{d.formula} · Fm-3m (cubic) · 8 atoms"
    empty = Crystal(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), (4.0, 4.0, 4.0), (90.0, 90.0, 90.0))
    assert describe(empty).text() == "(no atoms) · ? (unknown) · 0 atoms"
