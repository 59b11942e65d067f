import numpy as np
import pytest
import torch

from nesf_viz.data import BoundingBox, CrystalBatch, SpeciesVocab
from nesf_viz.errors import ConfigError
from nesf_viz.sampling import QuerySampler, SamplingConfig, box_grid, cube_offsets

from .conftest import random_crystals


def test_cube_offsets_match_reference_arange_points():
    local = cube_offsets(0.3, 1.2)
    assert local.shape == (64, 3)
    np.testing.assert_allclose(np.unique(local[:, 0]), [-0.6, -0.3, 0.0, 0.3], atol=1e-12)
    species = cube_offsets(0.1, 0.6)
    assert species.shape == (216, 3)
    np.testing.assert_allclose(np.unique(species[:, 2]), [-0.3, -0.2, -0.1, 0.0, 0.1, 0.2], atol=1e-12)


def test_global_grid_covers_box_grown_by_one_step():
    box = BoundingBox((0.0, -1.0, 0.5), (3.0, 2.5, 4.0))
    g = box_grid(box, 1.0, 1.0)
    # x: -1..3 (5 points), y: -2..3 (6), z: -0.5..4.5 (6), worked out by hand
    assert g.shape[0] == 5 * 6 * 6
    np.testing.assert_allclose(g.min(0).values, [-1.0, -2.0, -0.5])
    np.testing.assert_allclose(g.max(0).values, [3.0, 3.0, 4.5])


def test_queries_are_vectorized_equivalent_of_per_crystal_loop():
    rng = np.random.default_rng(0)
    crystals = random_crystals(rng, 5)
    vocab = SpeciesVocab.from_crystals(crystals)
    batch = CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64)
    box = BoundingBox.from_crystals(crystals)
    cfg = SamplingConfig(global_sigma_angstrom=0, local_sigma_angstrom=0, species_sigma_angstrom=0)
    s = QuerySampler(box, cfg)
    q = s(batch)
    g = s.global_grid
    for i, c in enumerate(crystals):
        pts = q.position_points[q.position_index == i].numpy()
        local = (c.positions_angstrom[:, None, :] + s.local_offsets.numpy()[None]).reshape(-1, 3)
        np.testing.assert_allclose(np.sort(pts, axis=0), np.sort(np.concatenate([g.numpy(), local]), axis=0))
        sp = q.species_points[q.species_index == i].numpy()
        ref = (c.positions_angstrom[:, None, :] + s.species_offsets.numpy()[None]).reshape(-1, 3)
        np.testing.assert_allclose(sp, ref)
    n_pos, n_spec = s.queries_per_crystal(batch.positions.shape[0] / 5)
    assert q.position_points.shape[0] == round(5 * n_pos) and q.species_points.shape[0] == round(5 * n_spec)


def test_jitter_has_the_configured_sigma_and_is_seeded():
    rng = np.random.default_rng(0)
    crystals = random_crystals(rng, 20)
    batch = CrystalBatch.from_crystals(crystals, SpeciesVocab.from_crystals(crystals), dtype=torch.float64)
    box = BoundingBox.from_crystals(crystals)
    still = SamplingConfig(global_sigma_angstrom=0, local_sigma_angstrom=0, species_sigma_angstrom=0)
    s0 = QuerySampler(box, still)(batch)
    cfg = SamplingConfig()
    a = QuerySampler(box, cfg)(batch, torch.Generator().manual_seed(5))
    b = QuerySampler(box, cfg)(batch, torch.Generator().manual_seed(5))
    assert torch.equal(a.position_points, b.position_points)
    n_global = QuerySampler(box, cfg).global_grid.shape[0] * 20
    dg = (a.position_points - s0.position_points)[:n_global]
    dl = (a.position_points - s0.position_points)[n_global:]
    ds = a.species_points - s0.species_points
    assert abs(dg.std().item() - 0.5) < 0.02
    assert abs(dl.std().item() - 0.15) < 0.01
    assert abs(ds.std().item() - 0.05) < 0.003
    assert SamplingConfig.paper().local_sigma_angstrom == 0.5


def test_subsampled_queries_are_fresh_subsets_of_the_full_sets():
    rng = np.random.default_rng(1)
    crystals = random_crystals(rng, 4)
    batch = CrystalBatch.from_crystals(crystals, SpeciesVocab.from_crystals(crystals), dtype=torch.float64)
    box = BoundingBox.from_crystals(crystals)
    no_jitter = dict(global_sigma_angstrom=0, local_sigma_angstrom=0, species_sigma_angstrom=0)
    full = QuerySampler(box, SamplingConfig(**no_jitter))(batch)
    s = QuerySampler(box, SamplingConfig(**no_jitter, global_queries_per_crystal=20, species_queries_per_atom=7))
    g = torch.Generator().manual_seed(0)
    a, b = s(batch, g), s(batch, g)
    n_atoms = batch.counts().tolist()
    n_local = s.local_offsets.shape[0]
    for q in (a, b):
        for i in range(4):
            pts = q.position_points[q.position_index == i]
            assert pts.shape[0] == 20 + n_local * n_atoms[i]  # global subset + every local point
            ref = full.position_points[full.position_index == i]
            # every sampled point is a point of the full set, global ones without repeats
            d = torch.cdist(pts, ref).min(1).values
            assert float(d.max()) < 1e-6  # cdist works through a matmul
            assert torch.unique(pts[:20], dim=0).shape[0] == 20
            sp = q.species_points[q.species_index == i]
            assert sp.shape[0] == 7 * n_atoms[i]
            fref = full.species_points[full.species_index == i]
            assert float(torch.cdist(sp, fref).min(1).values.max()) < 1e-6
    assert not torch.equal(a.species_points, b.species_points)  # fresh every step
    assert s.queries_per_crystal(3) == (20 + 3 * n_local, 21)
    # asking for more than there is keeps the whole set
    big = QuerySampler(box, SamplingConfig(**no_jitter, species_queries_per_atom=10_000))(batch)
    assert torch.equal(big.species_points, full.species_points)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_query_counts_must_be_positive_integers(bad):
    with pytest.raises(ConfigError, match="species_queries_per_atom must be a positive integer"):
        SamplingConfig(species_queries_per_atom=bad)


def test_close_pairs_match_a_plain_double_loop_on_random_crystals():
    from nesf_viz.sampling import close_pairs

    rng = np.random.default_rng(3)
    crystals = random_crystals(rng, 7)
    batch = CrystalBatch.from_crystals(crystals, SpeciesVocab.from_crystals(crystals), dtype=torch.float64)
    for max_d in (0.5, 1.5, 2.5, 4.0):
        first, second = close_pairs(batch, max_d)
        got = sorted(zip(first.tolist(), second.tolist()))
        want, start = [], 0
        for c in crystals:
            p = c.positions_angstrom
            want += [(start + i, start + j) for i in range(len(p)) for j in range(i + 1, len(p))
                     if np.linalg.norm(p[i] - p[j]) < max_d]
            start += len(p)
        assert got == want, max_d
    assert len(close_pairs(batch, 4.0)[0]) > len(close_pairs(batch, 1.5)[0]) > 0  # the cases are not empty


def test_pair_queries_lie_between_the_close_atoms_of_their_own_crystal():
    from nesf_viz.sampling import close_pairs

    rng = np.random.default_rng(4)
    crystals = random_crystals(rng, 6)
    batch = CrystalBatch.from_crystals(crystals, SpeciesVocab.from_crystals(crystals), dtype=torch.float64)
    box = BoundingBox.from_crystals(crystals)
    base = SamplingConfig(global_sigma_angstrom=0, local_sigma_angstrom=0, species_sigma_angstrom=0)
    plain = QuerySampler(box, base)(batch, torch.Generator().manual_seed(0))
    cfg = SamplingConfig(global_sigma_angstrom=0, local_sigma_angstrom=0, species_sigma_angstrom=0,
                         pair_max_angstrom=2.5, pair_queries_per_pair=5, pair_sigma_angstrom=0.0)
    q = QuerySampler(box, cfg)(batch, torch.Generator().manual_seed(0))
    first, second = close_pairs(batch, 2.5)
    n0 = plain.position_points.shape[0]
    assert q.position_points.shape[0] == n0 + 5 * len(first) and len(first) > 0
    torch.testing.assert_close(q.position_points[:n0], plain.position_points)  # the paper's sets are unchanged
    extra, index = q.position_points[n0:].reshape(-1, 5, 3), q.position_index[n0:].reshape(-1, 5)
    a, b = batch.positions[first][:, None], batch.positions[second][:, None]
    # on the segment: |p - a| + |p - b| == |a - b|
    torch.testing.assert_close((extra - a).norm(dim=-1) + (extra - b).norm(dim=-1),
                               (b - a).norm(dim=-1).expand(-1, 5))
    assert (index == batch.batch[first][:, None]).all()


@pytest.mark.parametrize("bad", [{"pair_max_angstrom": 0.0}, {"pair_max_angstrom": float("inf")},
                                 {"pair_max_angstrom": float("nan")}, {"pair_queries_per_pair": 0},
                                 {"pair_sigma_angstrom": -1.0}])
def test_pair_query_options_are_checked(bad):
    with pytest.raises(ConfigError):
        SamplingConfig(**bad)


def test_cell_queries_fill_each_crystals_own_cell_grown_by_the_margin():
    from nesf_viz.data import Crystal
    from nesf_viz.geometry import lattice_matrix_np
    from nesf_viz.sampling import cell_queries

    cubic = Crystal(np.zeros((1, 3)), np.array([6]), (4.0, 4.0, 4.0), (90.0, 90.0, 90.0), id="cubic")
    tri = random_crystals(np.random.default_rng(8), 1)[0]
    batch = CrystalBatch.from_crystals([cubic, tri], SpeciesVocab.from_crystals([cubic, tri]), dtype=torch.float64)
    pts, index = cell_queries(batch, 4000, 1.0, torch.Generator().manual_seed(0))
    assert pts.shape == (8000, 3) and (index[:4000] == 0).all() and (index[4000:] == 1).all()
    # the cubic cell: uniform in [-1, 5]^3, reaching its bounds
    c = pts[:4000]
    assert c.min() >= -1.0 and c.max() <= 5.0 and c.min() < -0.95 and c.max() > 4.95
    # the triclinic cell: every point within 1 A of the cell (distance to each face pair along its normal)
    lat = lattice_matrix_np(tri.lengths_angstrom, tri.angles_deg)
    inv = np.linalg.inv(lat)
    frac = pts[4000:].numpy() @ inv
    spacing = 1 / np.linalg.norm(inv, axis=0)  # distance between opposite faces
    beyond = np.maximum(-frac, frac - 1) * spacing  # A beyond a face (negative: inside)
    assert beyond.max() <= 1.0 + 1e-9 and beyond.max() > 0.9


def test_cell_queries_replace_the_global_grid_in_the_sampler():
    crystals = random_crystals(np.random.default_rng(9), 3)
    batch = CrystalBatch.from_crystals(crystals, SpeciesVocab.from_crystals(crystals), dtype=torch.float64)
    s = QuerySampler(BoundingBox.from_crystals(crystals), SamplingConfig(cell_queries_per_crystal=100))
    q = s(batch, torch.Generator().manual_seed(0))
    n_pos, _ = s.queries_per_crystal(batch.positions.shape[0] / 3)
    assert q.position_points.shape[0] == round(3 * n_pos) == 300 + 64 * batch.positions.shape[0]
