"""Embedded synthetic dataset: prototypes, symmetry, geometry, determinism and splits."""

from __future__ import annotations

import re
import time
from collections import Counter

import numpy as np
import pytest

from nesf_viz.data import Crystal, load_crystals
from nesf_viz.errors import DatasetError
from nesf_viz.synthetic import (
    PROTOTYPES,
    base_lattice_constant,
    generate_synthetic,
    synthetic_elements,
    synthetic_split,
)

# Written out here (not read from PROTOTYPES) so a wrong table in the module fails the tests.
EXPECTED_ATOMS = {
    "cscl": 2, "rocksalt": 8, "zincblende": 8, "heusler": 16,
    "halfheusler": 12, "perovskite": 5, "fluorite": 12, "l12": 4,
}
EXPECTED_SPACEGROUP = {
    "cscl": 221, "rocksalt": 225, "zincblende": 216, "heusler": 225,
    "halfheusler": 216, "perovskite": 221, "fluorite": 225, "l12": 221,
}
ANIONS = {8, 9, 16, 17, 34, 35, 53}  # O F S Cl Se Br I


@pytest.fixture(scope="module")
def dataset() -> list[Crystal]:
    return generate_synthetic(2400, seed=0)


def _by_proto(crystals, per_proto: int) -> dict[str, list[Crystal]]:
    out: dict[str, list[Crystal]] = {}
    for c in crystals:
        bucket = out.setdefault(c.properties["prototype"], [])
        if len(bucket) < per_proto:
            bucket.append(c)
    return out


def _min_periodic_distance(c: Crystal) -> float:
    """Shortest distance between two atoms of a crystal, periodic images included."""
    lat = c.lattice
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    images = shifts @ lat  # (27, 3)
    pos = c.positions_angstrom
    d = pos[None, :, None, :] - pos[:, None, None, :] + images[None, None]
    dist = np.linalg.norm(d, axis=-1)
    dist[dist < 1e-9] = np.inf  # an atom with itself
    return float(dist.min())


def _same(a: list[Crystal], b: list[Crystal]) -> bool:
    return len(a) == len(b) and all(
        x.id == y.id
        and x.properties == y.properties
        and x.lengths_angstrom == y.lengths_angstrom
        and np.array_equal(x.atomic_numbers, y.atomic_numbers)
        and np.array_equal(x.positions_angstrom, y.positions_angstrom)
        for x, y in zip(a, b)
    )


def test_prototype_table_matches_crystallography():
    assert {p.name: p.num_atoms for p in PROTOTYPES} == EXPECTED_ATOMS
    assert {p.name: p.spacegroup for p in PROTOTYPES} == EXPECTED_SPACEGROUP
    for p in PROTOTYPES:
        frac = p.frac_coords
        assert ((frac >= 0) & (frac < 1)).all(), p.name
        # no two sites coincide (mod lattice translations)
        keys = {tuple(np.round(f, 6)) for f in frac}
        assert len(keys) == len(frac), p.name


def test_deterministic_for_seed_and_different_across_seeds():
    a = generate_synthetic(200, seed=3)
    b = generate_synthetic(200, seed=3)
    c = generate_synthetic(200, seed=4)
    assert _same(a, b)
    assert not _same(a, c)
    la = np.array([x.lengths_angstrom[0] for x in a])
    lc = np.array([x.lengths_angstrom[0] for x in c])
    assert not np.allclose(la, lc)


def test_every_prototype_present_balanced_with_right_atom_counts(dataset):
    assert len(dataset) == 2400
    counts = Counter(c.properties["prototype"] for c in dataset)
    assert set(counts) == set(EXPECTED_ATOMS)
    assert max(counts.values()) - min(counts.values()) <= 1
    for c in dataset:
        proto = c.properties["prototype"]
        assert c.num_atoms == EXPECTED_ATOMS[proto], c.id
        assert c.positions_angstrom.shape == (c.num_atoms, 3)
        assert c.positions_angstrom.dtype == np.float64
        assert c.atomic_numbers.dtype == np.int64


def test_ids_properties_and_formulas(dataset):
    from pymatgen.core import Composition, Element

    ids = [c.id for c in dataset]
    assert len(set(ids)) == len(ids)
    for c in dataset[:300]:
        assert re.fullmatch(r"syn-[a-z0-9]+-\d{5}", c.id), c.id
        assert c.id.split("-")[1] == c.properties["prototype"]
        comp = Composition(Counter(Element.from_Z(int(z)).symbol for z in c.atomic_numbers))
        assert c.properties["formula"] == comp.reduced_formula, c.id
        # each prototype uses distinct elements for its distinct sites
        n_species = len(set(c.atomic_numbers.tolist()))
        roles = {"heusler": 3, "halfheusler": 3, "perovskite": 3}.get(c.properties["prototype"], 2)
        assert n_species == roles, c.id


def test_cells_cubic_in_range_and_wrapped(dataset):
    a = np.array([c.lengths_angstrom for c in dataset])
    assert np.allclose(a, a[:, :1])
    assert all(c.angles_deg == (90.0, 90.0, 90.0) for c in dataset)
    assert a.min() >= 2.5 and a.max() <= 7.0
    # continuous (jittered) lattice constants, not a handful of values
    assert len(np.unique(np.round(a[:, 0], 6))) > 0.9 * len(dataset)
    for c in dataset[:400]:
        frac = c.positions_angstrom / c.lengths_angstrom[0]
        assert (frac >= 0).all() and (frac < 1).all(), c.id
        np.testing.assert_allclose(c.frac_coords, frac, atol=1e-12)


def test_anion_sites_hold_anions(dataset):
    groups = _by_proto(dataset, 50)
    for c in groups["rocksalt"] + groups["fluorite"] + groups["perovskite"]:
        frac = np.round(c.positions_angstrom / c.lengths_angstrom[0], 6)
        proto = c.properties["prototype"]
        if proto == "rocksalt":  # 4b: (1/2,1/2,1/2) + fcc -> coordinate sum is half-odd
            anion = np.isclose(frac.sum(1) % 1.0, 0.5)
        elif proto == "fluorite":  # 8c: quarter coordinates
            anion = np.isclose(frac[:, 0] % 0.5, 0.25)
        else:  # perovskite 3c: two coordinates are 1/2
            anion = (np.isclose(frac, 0.5).sum(1) == 2)
        assert set(c.atomic_numbers[anion].tolist()) <= ANIONS, c.id
        assert not set(c.atomic_numbers[~anion].tolist()) & ANIONS, c.id


def test_space_groups_and_conventional_cells(dataset):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    groups = _by_proto(dataset, 6)
    assert set(groups) == set(EXPECTED_SPACEGROUP)
    for proto, crystals in groups.items():
        for c in crystals:
            s = c.to_structure()
            sga = SpacegroupAnalyzer(s)
            assert sga.get_space_group_number() == EXPECTED_SPACEGROUP[proto], (c.id, c.properties)
            conv = sga.get_conventional_standard_structure()
            assert len(conv) == c.num_atoms == EXPECTED_ATOMS[proto], c.id
            assert conv.lattice.a == pytest.approx(c.lengths_angstrom[0], abs=1e-6)
            assert conv.composition.reduced_formula == c.properties["formula"]


def test_minimum_interatomic_distance(dataset):
    worst = min(_min_periodic_distance(c) for c in dataset)
    assert worst >= 1.5, worst
    # cross-check our periodic distance with pymatgen on a subset
    for crystals in _by_proto(dataset, 5).values():
        for c in crystals:
            s = c.to_structure()
            assert all(len(n) == 0 for n in s.get_all_neighbors(1.5)), c.id
            nn = min(x.nn_distance for n in s.get_all_neighbors(4.0) for x in n)
            assert nn == pytest.approx(_min_periodic_distance(c), abs=1e-6)


@pytest.mark.parametrize(
    "proto, elements, a_exp",
    [
        ("rocksalt", {"A": "K", "X": "Cl"}, 6.29),
        ("rocksalt", {"A": "Ca", "X": "O"}, 4.81),
        ("cscl", {"A": "Cs", "B": "Br"}, 4.29),
        ("cscl", {"A": "Co", "B": "Al"}, 2.86),
        ("zincblende", {"A": "Zn", "B": "Se"}, 5.67),
        ("perovskite", {"A": "Ba", "B": "Zr", "X": "O"}, 4.19),
        ("perovskite", {"A": "K", "B": "Ni", "X": "F"}, 4.01),
        ("fluorite", {"A": "Sr", "X": "F"}, 5.80),
        ("fluorite", {"A": "Zr", "X": "O"}, 5.07),
        ("heusler", {"X": "Co", "Y": "Mn", "Z": "Si"}, 5.654),
        ("halfheusler", {"X": "Zr", "Y": "Ni", "Z": "Sn"}, 6.11),
        ("l12", {"A": "Ni", "B": "Ga"}, 3.58),
    ],
)
def test_radius_rules_give_plausible_lattice_constants(proto, elements, a_exp):
    """Compounds that are not calibration references land within 5 % of experiment."""
    assert base_lattice_constant(proto, elements) == pytest.approx(a_exp, rel=0.05)


def test_base_lattice_constant_rejects_unknown_input():
    with pytest.raises(DatasetError, match="valid prototypes"):
        base_lattice_constant("wurtzite", {"A": "Zn", "B": "O"})
    with pytest.raises(DatasetError, match="missing"):
        base_lattice_constant("rocksalt", {"A": "Na"})


def test_element_set_is_moderate(dataset):
    elements = synthetic_elements()
    assert 40 <= len(elements) <= 60
    from pymatgen.core import Element

    drawn = {Element.from_Z(int(z)).symbol for c in dataset for z in c.atomic_numbers}
    assert drawn <= set(elements)
    assert len(drawn) >= 0.9 * len(elements)


def test_splits_disjoint_complete_and_sized():
    parts = {s: synthetic_split(s) for s in ("train", "val", "test")}
    assert {s: len(v) for s, v in parts.items()} == {"train": 1920, "val": 240, "test": 240}
    ids = {s: {c.id for c in v} for s, v in parts.items()}
    assert not ids["train"] & ids["val"]
    assert not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]
    assert ids["train"] | ids["val"] | ids["test"] == {c.id for c in generate_synthetic(2400, 0)}
    # shuffled, not the first 80 %: every prototype appears in the small splits
    assert {c.properties["prototype"] for c in parts["val"]} == set(EXPECTED_ATOMS)
    assert _same(parts["val"], synthetic_split("val"))


def test_split_sizes_for_other_totals_and_seeds():
    sizes = [len(synthetic_split(s, n_total=50, seed=2)) for s in ("train", "val", "test")]
    assert sizes == [40, 5, 5]
    sizes = [len(synthetic_split(s, n_total=3)) for s in ("train", "val", "test")]
    assert sizes == [1, 1, 1]
    a = {c.id for c in synthetic_split("test", n_total=100, seed=0)}
    b = {c.id for c in synthetic_split("test", n_total=100, seed=1)}
    assert a != b
    with pytest.raises(DatasetError):
        synthetic_split("train", n_total=2)


def test_load_crystals_synthetic_entry_point():
    val = load_crystals("synthetic:100", split="val", seed=0)
    assert _same(val, synthetic_split("val", n_total=100, seed=0))


def test_bad_split_name_lists_valid_splits():
    with pytest.raises(DatasetError) as info:
        synthetic_split("validation")
    msg = str(info.value)
    assert "validation" in msg
    for name in ("train", "val", "test"):
        assert name in msg


def test_bad_n_raises():
    with pytest.raises(DatasetError):
        generate_synthetic(-1)
    assert generate_synthetic(0) == []


def test_generation_is_fast():
    generate_synthetic(16, seed=0)  # tables built once per process
    t0 = time.perf_counter()
    out = generate_synthetic(2400, seed=11)
    elapsed = time.perf_counter() - t0
    assert len(out) == 2400
    assert elapsed < 10.0, f"2400 structures took {elapsed:.1f} s"
