import itertools

import numpy as np
import pytest
import torch

from nesf_viz.data import CrystalBatch, SpeciesVocab, crystal_from_structure, lattice_matrix
from nesf_viz.fields import ExactFields, StructureFields, ground_truth_targets, nearest_atoms
from nesf_viz.model import NeSF

from .conftest import random_crystals


def _plain_nearest(crystal, point, periodic):
    """Obviously-correct reference: loop over atoms (and the 27 images when periodic)."""
    lat = lattice_matrix(crystal.lengths_angstrom, crystal.angles_deg)
    shifts = list(itertools.product((-1, 0, 1), repeat=3)) if periodic else [(0, 0, 0)]
    best = (np.inf, None, None)
    for a, pos in enumerate(crystal.positions_angstrom):
        for s in shifts:
            img = pos + np.array(s) @ lat
            d = np.sum((img - point) ** 2)
            if d < best[0]:
                best = (d, a, img - point)
    return best[1], best[2]


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("order", ["random", "runs"])  # padded path / per-crystal-run path
def test_nearest_atoms_matches_plain_loop_on_random_crystals(periodic, order):
    rng = np.random.default_rng(7)
    crystals = random_crystals(rng, 6)
    vocab = SpeciesVocab.from_crystals(crystals)
    batch = CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64)
    q = 400
    idx = torch.as_tensor(rng.integers(0, len(crystals), q))
    if order == "runs":
        idx = idx.sort().values
    pts = torch.as_tensor(rng.uniform(-2, 9, (q, 3)))
    atom, vec = nearest_atoms(batch, pts, idx, periodic=periodic)
    starts = np.cumsum([0] + [c.num_atoms for c in crystals])
    for k in range(q):
        c = int(idx[k])
        a, v = _plain_nearest(crystals[c], pts[k].numpy(), periodic)
        assert int(atom[k]) == starts[c] + a
        np.testing.assert_allclose(vec[k].numpy(), v, atol=1e-12)


@pytest.mark.parametrize("order", ["random", "runs"])
def test_nearest_atoms_chunking_gives_same_answer(monkeypatch, order):
    import nesf_viz.fields as f

    rng = np.random.default_rng(1)
    crystals = random_crystals(rng, 4)
    batch = CrystalBatch.from_crystals(crystals, SpeciesVocab.from_crystals(crystals), dtype=torch.float64)
    pts = torch.as_tensor(rng.uniform(0, 6, (333, 3)))
    idx = torch.as_tensor(rng.integers(0, 4, 333))
    if order == "runs":
        idx = idx.sort().values
    full = nearest_atoms(batch, pts, idx)
    monkeypatch.setattr(f, "_CHUNK_PAIRS", 17)
    small = nearest_atoms(batch, pts, idx)
    assert torch.equal(full[0], small[0]) and torch.equal(full[1], small[1])


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_run_path_is_bitwise_the_padded_path_including_ties(periodic, dtype):
    import nesf_viz.fields as f

    rng = np.random.default_rng(3)
    crystals = random_crystals(rng, 5)
    batch = CrystalBatch.from_crystals(crystals, SpeciesVocab.from_crystals(crystals), dtype=dtype)
    grid = torch.stack(torch.meshgrid(*[torch.arange(-1.0, 8.0, 0.5)] * 3, indexing="ij"), -1).reshape(-1, 3)
    jitter = grid + torch.as_tensor(rng.normal(0, 0.3, grid.shape), dtype=torch.float32)
    pts = torch.cat([grid, jitter, batch.positions.float()]).to(dtype)  # grid ties and atoms themselves
    pts = pts.repeat(5, 1)
    idx = torch.arange(5).repeat_interleave(pts.shape[0] // 5)
    counts = batch.counts()
    starts = torch.cumsum(counts, 0) - counts
    img = f.image_shifts(batch.lengths, batch.angles).to(batch.positions.dtype) if periodic else None
    change = torch.ones(len(idx), dtype=torch.bool)
    change[1:] = idx[1:] != idx[:-1]
    runs = f._nearest_by_runs(batch, pts, idx, torch.nonzero(change).flatten().tolist(), counts, starts, img)
    padded = f._nearest_padded(batch, pts, idx, counts, starts, img)
    assert torch.equal(runs[0], padded[0]) and torch.equal(runs[1], padded[1])
    assert torch.equal(nearest_atoms(batch, pts, idx, periodic)[0], runs[0])


def test_exact_fields_follow_the_protocol_and_point_at_atoms():
    rng = np.random.default_rng(4)
    crystals = random_crystals(rng, 3)
    vocab = SpeciesVocab.from_crystals(crystals)
    batch = CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64)
    ex = ExactFields(batch, len(vocab))
    assert isinstance(ex, StructureFields) and isinstance(NeSF(num_species=3), StructureFields)
    z = ex.latents()
    pts = torch.as_tensor(rng.uniform(0, 6, (50, 3)))
    idx = torch.as_tensor(rng.integers(0, 3, 50))
    moved = pts + ex.position_field(z, pts, idx)
    # one move along the exact field lands on an atom: the field there is zero
    assert ex.position_field(z, moved, idx).abs().max() < 1e-12
    vec, spec = ground_truth_targets(batch, pts, idx)
    onehot = ex.species_field(z, pts, idx)
    assert torch.equal(onehot.argmax(1), spec) and torch.allclose(onehot.sum(1), torch.ones(50, dtype=torch.float64))
    lengths, angles = ex.lattice(z)
    assert torch.equal(lengths, batch.lengths) and torch.equal(angles, batch.angles)


def test_abilities_are_part_of_the_protocol_with_defaults_that_promise_nothing():
    from nesf_viz.fields import FieldAbilities
    from nesf_viz.model import NeSF

    class Minimal(StructureFields):
        num_species = 3

        def latents(self, crystals):
            return torch.zeros(crystals.num_crystals, 1)

        def lattice(self, z):
            return torch.ones(z.shape[0], 3), torch.ones(z.shape[0], 3)

        def position_field(self, z, points, index):
            return -points

        def species_field(self, z, points, index):
            return torch.stack([points[:, 0], points[:, 1], points[:, 2]], 1)

    m = Minimal()
    assert isinstance(m, StructureFields) and m.abilities == FieldAbilities()
    assert not m.abilities.pointwise and not m.abilities.bounds_own_memory
    pts = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    assert m.species_class(None, pts, torch.zeros(2, dtype=torch.long)).tolist() == [0, 1]
    assert NeSF(num_species=3).abilities == FieldAbilities()  # a network promises no exact shortcut
    assert ExactFields.abilities == FieldAbilities(pointwise=True, bounds_own_memory=True)


def test_exact_species_class_is_the_argmax_of_the_species_field(nacl):
    crystal = crystal_from_structure(nacl)
    vocab = SpeciesVocab.from_crystals([crystal])
    batch = CrystalBatch.from_crystals([crystal], vocab)
    ex = ExactFields(batch, len(vocab))
    pts = torch.rand(200, 3, dtype=batch.positions.dtype) * 5.64
    idx = torch.zeros(200, dtype=torch.long)
    z = ex.latents(batch)
    assert torch.equal(ex.species_class(z, pts, idx), ex.species_field(z, pts, idx).argmax(-1))
