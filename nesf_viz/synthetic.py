"""Embedded default dataset: cubic prototype crystals generated in code (no files, no network).

The NeSF paper evaluates on ICSG3D-style cubic classes. This module rebuilds such a set from
eight prototypes, each a conventional (standard) cubic cell written with its Wyckoff positions:

=========== ========== ============ ===== =================================================
name        Strukt.    formula      SG    sites (conventional cell, atoms)
=========== ========== ============ ===== =================================================
cscl        B2         AB           221   A 1a, B 1b                                (2)
rocksalt    B1         AX           225   A 4a, X 4b                                (8)
zincblende  B3         AB           216   A 4a, B 4c                                (8)
heusler     L2_1       X2YZ         225   X 8c, Y 4a, Z 4b                          (16)
halfheusler C1_b       XYZ          216   X 4a, Y 4c, Z 4b                          (12)
perovskite  E2_1       ABX3         221   A 1a, B 1b, X 3c                          (5)
fluorite    C1         AX2          225   A 4a, X 8c                                (12)
l12         L1_2       A3B          221   A 3c, B 1a                                (4)
=========== ========== ============ ===== =================================================

Every role has a short list of plausible elements (several chemical families per prototype,
e.g. I-VII and II-VI rock salts, II-IV and I-V oxide perovskites plus fluoride perovskites).
Every element of a crystal is different, so each crystal has exactly the prototype's space
group.

Lattice constants come from pymatgen's tabulated radii (shipped with pymatgen, no network)
through the contact geometry of each prototype:

* ionic families (Shannon crystal radii for the role's oxidation state and coordination,
  falling back to ``ionic_radii`` and ``average_ionic_radius``):
  rock salt ``a = 2 (rA + rX)``; CsCl ``a = 2 (rA + rX) / sqrt(3)``;
  perovskite ``a = max(2 (rB + rX), sqrt(2) (rA + rX))`` (the larger of the B-X and A-X
  contacts, i.e. tolerance-factor aware); fluorite ``a = 4 (rA + rX) / sqrt(3)``;
* covalent / metallic families (``Element.atomic_radius``, Slater's empirical radii, which
  exist for every element used; ``metallic_radius`` is missing for the p-block):
  zinc blende and B2 intermetallics ``a = 4 (rA + rB) / sqrt(3)`` and ``2 (rA + rB) / sqrt(3)``;
  full Heusler ``a = 4 (rX + (rY + rZ) / 2) / sqrt(3)`` (8c touches 4a and 4b);
  half Heusler ``a = 4 (rY + (rX + rZ) / 2) / sqrt(3)`` (4c touches 4a and 4b);
  L1_2 ``a = 2 sqrt(2) r_mean`` with the composition-weighted mean radius (fcc packing).

Each family is calibrated by one scale factor so that its reference compound (NaCl, SrTiO3,
Cu2MnAl, Ni3Al, ...) gets its experimental lattice constant; the rule then fixes the
relative sizes across the family. A deterministic uniform jitter of +-2 % makes the lattice
constants continuous. Combinations whose constant would leave 2.5 .. 7.0 Angstrom, or put two
atoms (periodic images included) closer than 1.6 Angstrom, are never drawn.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from itertools import product
from typing import Callable, Mapping

import numpy as np

from .crystal import Crystal
from .errors import DatasetError
from .geometry import IMAGE_OFFSETS, wrap_frac

__all__ = [
    "PROTOTYPES",
    "Prototype",
    "Family",
    "SPLITS",
    "DEFAULT_N",
    "generate_synthetic",
    "synthetic_split",
    "base_lattice_constant",
    "synthetic_elements",
]

DEFAULT_N = 2400
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
A_MIN_ANGSTROM = 2.5
A_MAX_ANGSTROM = 7.0
MIN_DISTANCE_ANGSTROM = 1.6
JITTER = 0.02

_S2 = math.sqrt(2.0)
_S3 = math.sqrt(3.0)

Frac = tuple[float, float, float]
_FCC: tuple[Frac, ...] = ((0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0))


def _fcc(*basis: Frac) -> tuple[Frac, ...]:
    """Basis points plus the face-centring translations, wrapped into [0, 1)."""
    out = []
    for b in basis:
        for t in _FCC:
            out.append(tuple(float((b[i] + t[i]) % 1.0) for i in range(3)))
    return tuple(out)  # type: ignore[return-value]


@dataclass(frozen=True)
class Family:
    """A chemical family of one prototype: element pools per role and how to size them.

    oxidation: role -> oxidation state (ionic radii); None means atomic radii.
    reference: (role -> element, experimental a in Angstrom) used to calibrate the rule.
    """

    label: str
    pools: Mapping[str, tuple[str, ...]]
    oxidation: Mapping[str, int] | None
    reference: tuple[Mapping[str, str], float]


@dataclass(frozen=True)
class Prototype:
    """A cubic prototype as a conventional cell: sites per role in fractional coordinates."""

    name: str
    strukturbericht: str
    formula: str
    spacegroup: int
    sites: tuple[tuple[str, str, tuple[Frac, ...]], ...]  # (role, Wyckoff, positions)
    coordination: Mapping[str, str]  # role -> Shannon coordination (roman) for ionic radii
    rule: Callable[[Mapping[str, float]], float]  # radii by role -> lattice constant
    rule_text: str
    families: tuple[Family, ...]

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r for r, _, _ in self.sites)

    @property
    def num_atoms(self) -> int:
        return sum(len(p) for _, _, p in self.sites)

    @property
    def frac_coords(self) -> np.ndarray:
        """(num_atoms, 3) fractional coordinates, sites in role order."""
        return np.array([p for _, _, ps in self.sites for p in ps], dtype=np.float64)

    @property
    def role_index(self) -> np.ndarray:
        """(num_atoms,) index into `roles` of every atom."""
        return np.array([i for i, (_, _, ps) in enumerate(self.sites) for _ in ps], dtype=np.int64)


_ALKALI = ("Li", "Na", "K", "Rb")
_HALIDE = ("F", "Cl", "Br", "I")
_HEUSLER_X = ("Fe", "Co", "Ni", "Cu", "Ru", "Rh", "Pd")
_HEUSLER_Y = ("Ti", "V", "Cr", "Mn", "Fe", "Zr", "Hf")
_HEUSLER_Z = ("Al", "Ga", "In", "Si", "Ge", "Sn", "Sb")

PROTOTYPES: tuple[Prototype, ...] = (
    Prototype(
        "cscl", "B2", "AB", 221,
        (("A", "1a", ((0.0, 0.0, 0.0),)), ("B", "1b", ((0.5, 0.5, 0.5),))),
        {"A": "VIII", "B": "VIII"},
        lambda r: 2.0 * (r["A"] + r["B"]) / _S3,
        "a = 2 (rA + rB) / sqrt(3)",
        (
            Family("ionic halide", {"A": ("Cs", "Tl"), "B": ("Cl", "Br", "I")},
                   {"A": 1, "B": -1}, ({"A": "Cs", "B": "Cl"}, 4.123)),
            Family("intermetallic", {"A": ("Fe", "Co", "Ni", "Cu", "Ru", "Pd"),
                                     "B": ("Al", "Ga", "In", "Zn", "Ti", "Zr")},
                   None, ({"A": "Ni", "B": "Al"}, 2.887)),
        ),
    ),
    Prototype(
        "rocksalt", "B1", "AX", 225,
        (("A", "4a", _fcc((0.0, 0.0, 0.0))), ("X", "4b", _fcc((0.5, 0.5, 0.5)))),
        {"A": "VI", "X": "VI"},
        lambda r: 2.0 * (r["A"] + r["X"]),
        "a = 2 (rA + rX)",
        (
            Family("I-VII", {"A": _ALKALI + ("Ag",), "X": _HALIDE},
                   {"A": 1, "X": -1}, ({"A": "Na", "X": "Cl"}, 5.640)),
            Family("II-VI", {"A": ("Mg", "Ca", "Sr", "Ba", "Mn", "Fe", "Co", "Ni", "Cd"),
                             "X": ("O", "S", "Se")},
                   {"A": 2, "X": -2}, ({"A": "Mg", "X": "O"}, 4.212)),
        ),
    ),
    Prototype(
        "zincblende", "B3", "AB", 216,
        (("A", "4a", _fcc((0.0, 0.0, 0.0))), ("B", "4c", _fcc((0.25, 0.25, 0.25)))),
        {"A": "IV", "B": "IV"},
        lambda r: 4.0 * (r["A"] + r["B"]) / _S3,
        "a = 4 (rA + rB) / sqrt(3)",
        (
            Family("III-V", {"A": ("Al", "Ga", "In"), "B": ("P", "As", "Sb")},
                   None, ({"A": "Ga", "B": "As"}, 5.653)),
            Family("II-VI", {"A": ("Zn", "Cd"), "B": ("S", "Se", "Te")},
                   None, ({"A": "Zn", "B": "S"}, 5.409)),
            Family("I-VII", {"A": ("Cu",), "B": ("Cl", "Br", "I")},
                   None, ({"A": "Cu", "B": "Cl"}, 5.416)),
        ),
    ),
    Prototype(
        "heusler", "L2_1", "X2YZ", 225,
        (
            ("X", "8c", _fcc((0.25, 0.25, 0.25), (0.75, 0.75, 0.75))),
            ("Y", "4a", _fcc((0.0, 0.0, 0.0))),
            ("Z", "4b", _fcc((0.5, 0.5, 0.5))),
        ),
        {},
        lambda r: 4.0 * (r["X"] + 0.5 * (r["Y"] + r["Z"])) / _S3,
        "a = 4 (rX + (rY + rZ) / 2) / sqrt(3)",
        (
            Family("full Heusler", {"X": _HEUSLER_X, "Y": _HEUSLER_Y, "Z": _HEUSLER_Z},
                   None, ({"X": "Cu", "Y": "Mn", "Z": "Al"}, 5.949)),
        ),
    ),
    Prototype(
        "halfheusler", "C1_b", "XYZ", 216,
        (
            ("X", "4a", _fcc((0.0, 0.0, 0.0))),
            ("Y", "4c", _fcc((0.25, 0.25, 0.25))),
            ("Z", "4b", _fcc((0.5, 0.5, 0.5))),
        ),
        {},
        lambda r: 4.0 * (r["Y"] + 0.5 * (r["X"] + r["Z"])) / _S3,
        "a = 4 (rY + (rX + rZ) / 2) / sqrt(3)",
        (
            Family("half Heusler", {"X": ("Sc", "Ti", "Zr", "Hf", "V", "Nb"),
                                    "Y": ("Fe", "Co", "Ni", "Rh", "Pd", "Pt"),
                                    "Z": ("Sn", "Sb", "Bi", "Ge")},
                   None, ({"X": "Ti", "Y": "Ni", "Z": "Sn"}, 5.930)),
        ),
    ),
    Prototype(
        "perovskite", "E2_1", "ABX3", 221,
        (
            ("A", "1a", ((0.0, 0.0, 0.0),)),
            ("B", "1b", ((0.5, 0.5, 0.5),)),
            ("X", "3c", ((0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0))),
        ),
        {"A": "XII", "B": "VI", "X": "VI"},
        lambda r: max(2.0 * (r["B"] + r["X"]), _S2 * (r["A"] + r["X"])),
        "a = max(2 (rB + rX), sqrt(2) (rA + rX))",
        (
            Family("II-IV oxide", {"A": ("Ca", "Sr", "Ba", "Pb"), "B": ("Ti", "Zr", "Hf", "Mn"),
                                   "X": ("O",)},
                   {"A": 2, "B": 4, "X": -2}, ({"A": "Sr", "B": "Ti", "X": "O"}, 3.905)),
            Family("III-III oxide", {"A": ("La", "Nd"), "B": ("Al", "Cr", "Mn", "Fe", "Co", "Ga"),
                                     "X": ("O",)},
                   {"A": 3, "B": 3, "X": -2}, ({"A": "La", "B": "Al", "X": "O"}, 3.790)),
            Family("I-V oxide", {"A": ("Na", "K", "Rb"), "B": ("Nb", "Ta"), "X": ("O",)},
                   {"A": 1, "B": 5, "X": -2}, ({"A": "K", "B": "Ta", "X": "O"}, 3.989)),
            Family("I-II fluoride", {"A": ("K", "Rb", "Cs"),
                                     "B": ("Mg", "Mn", "Fe", "Co", "Ni", "Zn"), "X": ("F",)},
                   {"A": 1, "B": 2, "X": -1}, ({"A": "K", "B": "Mg", "X": "F"}, 3.989)),
        ),
    ),
    Prototype(
        "fluorite", "C1", "AX2", 225,
        (("A", "4a", _fcc((0.0, 0.0, 0.0))),
         ("X", "8c", _fcc((0.25, 0.25, 0.25), (0.75, 0.75, 0.75)))),
        {"A": "VIII", "X": "IV"},
        lambda r: 4.0 * (r["A"] + r["X"]) / _S3,
        "a = 4 (rA + rX) / sqrt(3)",
        (
            Family("II fluoride", {"A": ("Ca", "Sr", "Ba", "Cd", "Pb"), "X": ("F",)},
                   {"A": 2, "X": -1}, ({"A": "Ca", "X": "F"}, 5.463)),
            Family("IV oxide", {"A": ("Zr", "Hf", "Ce"), "X": ("O",)},
                   {"A": 4, "X": -2}, ({"A": "Ce", "X": "O"}, 5.411)),
        ),
    ),
    Prototype(
        "l12", "L1_2", "A3B", 221,
        (("A", "3c", ((0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0))),
         ("B", "1a", ((0.0, 0.0, 0.0),))),
        {},
        lambda r: 2.0 * _S2 * (3.0 * r["A"] + r["B"]) / 4.0,
        "a = 2 sqrt(2) (3 rA + rB) / 4",
        (
            Family("late-TM3 B", {"A": ("Ni", "Cu", "Pd", "Pt", "Co"),
                                  "B": ("Al", "Ga", "Si", "Ge", "Sn", "Au", "Ti", "Mn", "Fe")},
                   None, ({"A": "Ni", "B": "Al"}, 3.572)),
            Family("Al3M", {"A": ("Al",), "B": ("Sc", "Zr", "Hf", "Y")},
                   None, ({"A": "Al", "B": "Sc"}, 4.103)),
        ),
    ),
)

_BY_NAME = {p.name: p for p in PROTOTYPES}


# ----------------------------------------------------------------------------- radii


@lru_cache(maxsize=None)
def _atomic_radius(symbol: str) -> float:
    from pymatgen.core import Element

    r = Element(symbol).atomic_radius
    if r is None:
        raise DatasetError(f"pymatgen has no atomic radius for {symbol}")
    return float(r)


@lru_cache(maxsize=None)
def _ionic_radius(symbol: str, oxidation: int, coordination: str) -> float:
    """Shannon crystal radius; falls back to ionic_radii[ox], then average_ionic_radius."""
    from pymatgen.core import Element, Species

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp = Species(symbol, oxidation)
        for spin in ("", "High Spin"):
            try:
                return float(sp.get_shannon_radius(coordination, spin=spin, radius_type="crystal"))
            except (KeyError, ValueError, TypeError):
                continue
        el = Element(symbol)
        r = el.ionic_radii.get(oxidation)
        if r is None:
            r = el.average_ionic_radius
    if not r:
        raise DatasetError(f"pymatgen has no ionic radius for {symbol}{oxidation:+d}")
    return float(r)


def _role_radii(proto: Prototype, family: Family, elements: Mapping[str, str]) -> dict[str, float]:
    if family.oxidation is None:
        return {role: _atomic_radius(elements[role]) for role in proto.roles}
    return {
        role: _ionic_radius(elements[role], family.oxidation[role], proto.coordination[role])
        for role in proto.roles
    }


def _family_scale(proto: Prototype, family: Family) -> float:
    ref, a_exp = family.reference
    return a_exp / proto.rule(_role_radii(proto, family, ref))


def _find_family(proto: Prototype, elements: Mapping[str, str]) -> Family:
    for fam in proto.families:
        if all(elements[r] in fam.pools[r] for r in proto.roles):
            return fam
    raise DatasetError(
        f"{dict(elements)} is not in any {proto.name} family "
        f"({', '.join(f.label for f in proto.families)})"
    )


def _get_prototype(name: str) -> Prototype:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise DatasetError(
            f"unknown prototype {name!r}; valid prototypes: {', '.join(_BY_NAME)}"
        ) from None


def base_lattice_constant(prototype: str, elements: Mapping[str, str]) -> float:
    """Calibrated radius-rule lattice constant (Angstrom, no jitter, no clipping).

    elements: role -> element symbol, e.g. ``{"A": "Na", "X": "Cl"}`` for "rocksalt".
    """
    proto = _get_prototype(prototype)
    missing = set(proto.roles) - set(elements)
    if missing:
        raise DatasetError(f"{prototype} needs roles {proto.roles}; missing {sorted(missing)}")
    fam = _find_family(proto, elements)
    return _family_scale(proto, fam) * proto.rule(_role_radii(proto, fam, elements))


def _min_distance_unit(frac: np.ndarray) -> float:
    """Shortest interatomic distance (periodic images included) of a unit cubic cell."""
    shifts = IMAGE_OFFSETS
    d = frac[None, :, None, :] - frac[:, None, None, :] + shifts[None, None, :, :]
    dist = np.linalg.norm(d, axis=-1)
    dist[dist < 1e-9] = np.inf
    return float(dist.min())


@dataclass(frozen=True)
class _Catalogue:
    """Every allowed element combination of one prototype."""

    proto: Prototype
    frac: np.ndarray  # (N, 3)
    numbers: np.ndarray  # (C, N) atomic numbers per combination
    a0: np.ndarray  # (C,) calibrated lattice constant
    formulas: tuple[str, ...]


@lru_cache(maxsize=None)
def _catalogue(name: str) -> _Catalogue:
    from pymatgen.core import Composition, Element

    proto = _BY_NAME[name]
    frac = proto.frac_coords
    role_idx = proto.role_index
    counts = np.bincount(role_idx)
    lo = max(A_MIN_ANGSTROM, MIN_DISTANCE_ANGSTROM / _min_distance_unit(frac)) / (1.0 - JITTER)
    hi = A_MAX_ANGSTROM / (1.0 + JITTER)
    numbers, a0, formulas, seen = [], [], [], set()
    for fam in proto.families:
        scale = _family_scale(proto, fam)
        for combo in product(*(fam.pools[r] for r in proto.roles)):
            if len(set(combo)) != len(combo) or combo in seen:
                continue
            elements = dict(zip(proto.roles, combo))
            a = scale * proto.rule(_role_radii(proto, fam, elements))
            if not lo <= a <= hi:
                continue
            seen.add(combo)
            zs = np.array([Element(s).Z for s in combo], dtype=np.int64)
            numbers.append(zs[role_idx])
            a0.append(a)
            formulas.append(
                Composition({s: int(n) for s, n in zip(combo, counts)}).reduced_formula
            )
    return _Catalogue(proto, frac, np.stack(numbers), np.array(a0), tuple(formulas))


def synthetic_elements() -> list[str]:
    """Sorted symbols of every element the generator can draw (after range filtering)."""
    from pymatgen.core import Element

    zs = set()
    for p in PROTOTYPES:
        zs.update(int(z) for z in np.unique(_catalogue(p.name).numbers))
    return [Element.from_Z(z).symbol for z in sorted(zs)]


# ----------------------------------------------------------------------------- generation


def generate_synthetic(n: int = DEFAULT_N, seed: int = 0) -> list[Crystal]:
    """`n` cubic prototype crystals, deterministic for `seed`, balanced across prototypes.

    Prototypes take turns (counts differ by at most one) in a seeded random order; within a
    prototype every allowed element combination is equally likely; the lattice constant is the
    calibrated radius rule times a uniform jitter in [-2 %, +2 %]. Ids are
    ``syn-<prototype>-<index:05d>``; properties hold "prototype" and the reduced "formula".
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise DatasetError(f"n must be a non-negative integer number of crystals, got {n!r}")
    n = int(n)
    rng = np.random.default_rng(seed)
    cats = [_catalogue(p.name) for p in PROTOTYPES]
    which = rng.permutation(np.arange(n) % len(cats))
    u_combo = rng.random(n)
    jitter = rng.uniform(-JITTER, JITTER, n)
    angles = (90.0, 90.0, 90.0)
    out: list[Crystal] = []
    for i in range(n):
        cat = cats[which[i]]
        k = min(int(u_combo[i] * len(cat.a0)), len(cat.a0) - 1)
        a = float(np.clip(cat.a0[k] * (1.0 + jitter[i]), A_MIN_ANGSTROM, A_MAX_ANGSTROM))
        frac = wrap_frac(cat.frac)
        out.append(
            Crystal(
                positions_angstrom=frac * a,
                atomic_numbers=cat.numbers[k].copy(),
                lengths_angstrom=(a, a, a),
                angles_deg=angles,
                id=f"syn-{cat.proto.name}-{i:05d}",
                properties={"prototype": cat.proto.name, "formula": cat.formulas[k]},
            )
        )
    return out


def _split_sizes(n: int) -> tuple[int, int, int]:
    n_val = max(1, round(n * SPLIT_FRACTIONS[1]))
    n_test = max(1, round(n * SPLIT_FRACTIONS[2]))
    return n - n_val - n_test, n_val, n_test


def synthetic_split(split: str, n_total: int | None = None, seed: int = 0) -> list[Crystal]:
    """The fixed 80/10/10 train/val/test part of ``generate_synthetic(n_total or 2400, seed)``.

    The partition is a seeded shuffle of the whole set, so the three splits are disjoint and
    together give back every crystal. val and test get at least one crystal each.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    n = DEFAULT_N if n_total is None else n_total
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < len(SPLITS):
        raise DatasetError(
            f"n_total must be an integer >= {len(SPLITS)} so every split gets a crystal, got {n!r}"
        )
    crystals = generate_synthetic(int(n), seed)
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(crystals))
    n_train, n_val, _ = _split_sizes(len(crystals))
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val),
              "test": (n_train + n_val, len(crystals))}
    lo, hi = bounds[split]
    return [crystals[j] for j in order[lo:hi]]
