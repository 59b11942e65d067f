"""The decoder's steps one by one (`nesf_viz.particles`); the whole decoder is tests/test_decode.py."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from nesf_viz.data import BoundingBox
from nesf_viz.fields import StructureFields
from nesf_viz.geometry import lattice_and_inverse
from nesf_viz.particles import (
    DecodeConfig,
    Particles,
    box_particles,
    init_particles,
    merge_identical,
    move_particles,
    particles_per_crystal,
    predict_lattice,
    score_particles,
    species_offsets,
    vote_species,
)


class _Towards(StructureFields):
    """f(p) = c * (a - p) towards one atom a in every crystal; species: class 1 where x < a_x."""

    num_species = 2

    def __init__(self, atom, c=0.5):
        self.atom, self.c = torch.tensor(atom, dtype=torch.float64), c
        self.calls = []

    def latents(self, crystals):
        return torch.zeros(crystals.num_crystals, 1)

    def lattice(self, z):
        return torch.full((z.shape[0], 3), 4.0, dtype=z.dtype), torch.full((z.shape[0], 3), math.pi / 2, dtype=z.dtype)

    def position_field(self, z, points, index):
        self.calls.append(points.shape[0])
        return self.c * (self.atom - points)

    def species_field(self, z, points, index):
        return torch.nn.functional.one_hot((points[:, 0] < self.atom[0] - 1e-9).long(), 2).double()


def test_merge_identical_matches_a_plain_grouping():
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(0, 300))
        base = rng.normal(size=(7, 3)).astype(np.float32)
        pos = base[rng.integers(0, 7, n)]
        pos[rng.random(n) < 0.1] = -0.0
        pos[rng.random(n) < 0.1] = 0.0  # -0.0 and 0.0 differ in bits: never merged
        pos[rng.random(n) < 0.05] = np.nan
        idx = np.sort(rng.integers(0, 3, n))
        flag = rng.random(n) < 0.5
        tensors = (torch.tensor(idx), torch.tensor(pos), torch.tensor(flag))
        for hashed in (None, 0, 1):  # hashed=0: every row collides; still exact, merges less
            first, mult = merge_identical(*tensors, hashed=hashed)
            assert int(mult.sum()) == n and torch.all(first[1:] > first[:-1])
            keys = [(int(i), pos[r].tobytes(), bool(f)) for r, (i, f) in enumerate(zip(idx, flag))]
            lowest = {}
            for r, k in enumerate(keys):
                lowest.setdefault(k, r)
            if hashed is None:  # a full hash merges every set of equal rows
                assert first.tolist() == sorted(lowest.values())
                assert mult.tolist() == [keys.count(keys[r]) for r in first.tolist()]
            else:  # rows only ever merge into an equal, lower row
                assert set(first.tolist()) >= set(lowest.values())



def test_particle_grid_matches_reference_count():
    # LCS6A training box (as read by nesf_viz); the reference decodes 7,280 particles there.
    box = BoundingBox((-0.007665661939112458, -0.005529275319112208, 0.0),
                      (11.649674387139884, 8.495752722514835, 5.9674329321420005))
    g = box_particles(box, 0.5, 0.5)
    assert g.shape == (7280, 3)
    assert torch.allclose(g[0], torch.tensor([-0.507665662, -0.505529275, -0.5], dtype=torch.float64))
    off = species_offsets(0.1, 6)
    assert off.shape == (216, 3)
    np.testing.assert_allclose(off[:6, 2].numpy(), [-0.3, -0.2, -0.1, 0.0, 0.1, 0.2], atol=1e-12)



def test_config_is_frozen_and_validated():
    cfg = DecodeConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.num_moves = 3  # type: ignore[misc]
    with pytest.raises(ValueError):
        DecodeConfig(num_moves=0)
    assert dataclasses.replace(cfg, periodic=True).periodic
    assert DecodeConfig.fast().early_stop_tolerance_angstrom is not None



def test_particle_count_without_the_grid_matches_the_grid_on_random_boxes():
    rng = np.random.default_rng(5)
    for _ in range(100):
        lo = rng.uniform(-3, 3, 3)
        box = BoundingBox(tuple(lo), tuple(lo + rng.uniform(0.01, 12, 3)))
        cfg = DecodeConfig(grid_step_angstrom=float(rng.choice([0.25, 0.3, 0.5, 0.7])),
                           box_margin_angstrom=float(rng.choice([0.0, 0.3, 0.5])))
        grid = box_particles(box, cfg.grid_step_angstrom, cfg.box_margin_angstrom)
        assert particles_per_crystal(box, cfg) == len(grid)


def test_a_subclass_of_the_protocol_votes_with_the_argmax_of_its_species_field():
    f = _Towards([0.5, 0.5, 0.5])
    centres = torch.tensor([[0.5, 0.5, 0.5], [2.0, 0.5, 0.5]], dtype=torch.float64)
    votes, species = vote_species(f, torch.zeros(1, 1), centres, torch.zeros(2, dtype=torch.long), DecodeConfig(), 2)
    # 6 x 6 x 6 offsets -0.3..0.2: 3 of 6 x-values fall left of the first atom (a tie: class 0)
    assert votes.tolist() == [[108, 108], [216, 0]] and species.tolist() == [0, 0]
    empty_votes, empty_species = vote_species(f, torch.zeros(1, 1), centres[:0], torch.zeros(0, dtype=torch.long),
                                              DecodeConfig(), 5)
    assert empty_votes.shape == (0, 5) and empty_species.shape == (0,)


def test_moves_follow_the_closed_form_and_the_last_vector_is_the_score():
    box = BoundingBox((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    cfg = DecodeConfig(num_moves=3)
    f = _Towards([0.5, 0.5, 0.5], c=0.5)
    p0 = init_particles(2, box, cfg, None, torch.device("cpu"), torch.float64)
    start = p0.pos.clone()
    p = move_particles(f, torch.zeros(2, 1), p0, cfg, None)
    # p_k - a = (1 - c)^k (p_0 - a); the last vector moved p_2 to p_3: c (a - p_2)
    torch.testing.assert_close(p.pos - f.atom, 0.5**3 * (start - f.atom))
    torch.testing.assert_close(p.last, 0.5 * 0.5**2 * (f.atom - start))
    score, kept = score_particles(p, dataclasses.replace(cfg, score_threshold_angstrom=0.1))
    torch.testing.assert_close(score, (p.last**2).sum(1))
    assert torch.equal(kept, score <= 0.01)
    assert f.calls == [p.pos.shape[0]] * 3  # every particle, every move, one call (under chunk_particles)


def test_early_stop_stops_converged_particles_and_ends_the_loop():
    box = BoundingBox((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    f = _Towards([0.5, 0.5, 0.5], c=1.0)  # every particle lands in one move; the second is zero
    cfg = DecodeConfig(num_moves=10, early_stop_tolerance_angstrom=1e-6)
    p = move_particles(f, torch.zeros(1, 1), init_particles(1, box, cfg, None, torch.device("cpu"),
                                                            torch.float64), cfg, None)
    # 64 grid particles move once; the one that sat on the atom (a zero move) stopped at once, the
    # other 63 stop at their zero second move, and the loop ends
    assert f.calls == [64, 63]
    assert torch.all(p.pos == f.atom) and torch.all(p.last == 0)


def test_particles_in_cell_keep_only_the_grid_inside_each_predicted_cell():
    box = BoundingBox((0.0, 0.0, 0.0), (6.0, 6.0, 6.0))
    lengths = torch.tensor([[3.0, 3.0, 3.0], [5.0, 4.0, 3.5]], dtype=torch.float64)
    angles = torch.tensor([[90.0, 90.0, 90.0], [80.0, 95.0, 105.0]], dtype=torch.float64).deg2rad()
    lat_inv = lattice_and_inverse(lengths, angles)
    for periodic in (True, False):
        cfg = DecodeConfig(particles_in_cell=True, periodic=periodic)
        p = init_particles(2, box, cfg, lat_inv, torch.device("cpu"), torch.float64)
        whole = box_particles(box, cfg.grid_step_angstrom, cfg.box_margin_angstrom)
        assert torch.all(p.index[1:] >= p.index[:-1])  # sorted by crystal
        for b in range(2):
            frac = p.pos[p.index == b] @ lat_inv[1][b]
            if periodic:
                assert torch.all((frac >= 0) & (frac < 1))
            else:
                assert torch.all((frac > -0.5) & (frac < 1.5))
            assert 0 < int((p.index == b).sum()) < len(whole)
        assert torch.equal(p.last, torch.zeros_like(p.pos)) and p.multiplicity is None


def test_predicted_lattice_gives_matrices_only_when_an_option_needs_them():
    box = BoundingBox((0.0, 0.0, 0.0), (4.0, 4.0, 4.0))
    f = _Towards([0, 0, 0])
    z = torch.zeros(2, 1, dtype=torch.float64)
    lengths, angles, lat_inv = predict_lattice(f, z, box, ["a", "b"], DecodeConfig(), torch.float64)
    assert lat_inv is None and lengths.shape == angles.shape == (2, 3)
    _, _, lat_inv = predict_lattice(f, z, box, ["a", "b"], DecodeConfig(periodic=True), torch.float64)
    torch.testing.assert_close(lat_inv[0][0], 4.0 * torch.eye(3, dtype=torch.float64))


def test_particles_record_is_what_merging_counts():
    p = Particles(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long), torch.zeros(3, 3))
    first, mult = merge_identical(p.index, p.pos)
    assert first.tolist() == [0] and mult.tolist() == [3]
