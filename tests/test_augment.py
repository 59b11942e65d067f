"""Origin-shift views are the same crystal, seeded, and inside the cell box."""

import numpy as np
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher

from nesf_viz.augment import cell_box, shift_origin
from nesf_viz.data import BoundingBox, CrystalBatch, SpeciesVocab

from .conftest import random_crystals


def _batch(crystals):
    return CrystalBatch.from_crystals(crystals, SpeciesVocab.from_crystals(crystals), dtype=torch.float64)


def test_shifted_view_is_the_same_periodic_crystal_with_atoms_inside_the_cell():
    rng = np.random.default_rng(5)
    crystals = random_crystals(rng, 8)
    vocab = SpeciesVocab.from_crystals(crystals)
    batch = CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64)
    moved = shift_origin(batch, torch.Generator().manual_seed(1))
    assert torch.equal(moved.species, batch.species) and torch.equal(moved.batch, batch.batch)
    assert not torch.allclose(moved.positions, batch.positions)  # something did move
    matcher = StructureMatcher(primitive_cell=False, scale=False, attempt_supercell=False)
    for c, view in zip(crystals, moved.to_crystals(vocab)):
        f = view.frac_coords
        assert (f > -1e-9).all() and (f < 1 + 1e-9).all()
        # the view's atoms are the original's moved by one common fractional vector (mod 1)
        d = (view.frac_coords - c.frac_coords) % 1.0
        d = np.where(d > 1 - 1e-9, 0.0, d)
        np.testing.assert_allclose(d, np.broadcast_to(d[0], d.shape), atol=1e-9)
        assert matcher.fit(c.to_structure(), view.to_structure())


def test_shift_is_seeded_and_fresh_per_draw():
    crystals = random_crystals(np.random.default_rng(6), 4)
    batch = _batch(crystals)
    a = shift_origin(batch, torch.Generator().manual_seed(3)).positions
    b = shift_origin(batch, torch.Generator().manual_seed(3)).positions
    g = torch.Generator().manual_seed(3)
    shift_origin(batch, g)
    c = shift_origin(batch, g).positions
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_cell_box_holds_every_view_and_every_atom():
    crystals = random_crystals(np.random.default_rng(7), 6)
    box = cell_box(crystals)
    atoms = BoundingBox.from_crystals(crystals)
    assert all(lo <= a for lo, a in zip(box.min_angstrom, atoms.min_angstrom))
    assert all(hi >= a for hi, a in zip(box.max_angstrom, atoms.max_angstrom))
    batch = _batch(crystals)
    for seed in range(20):
        p = shift_origin(batch, torch.Generator().manual_seed(seed)).positions
        assert (p >= torch.tensor(box.min_angstrom, dtype=p.dtype) - 1e-9).all()
        assert (p <= torch.tensor(box.max_angstrom, dtype=p.dtype) + 1e-9).all()


def test_training_with_origin_shift_uses_the_cell_box_and_learns(tmp_path):
    from nesf_viz.data import load_crystals
    from nesf_viz.train import train
    from nesf_viz.train_config import make_train_config

    tr, va = load_crystals("synthetic:60", "train"), load_crystals("synthetic:60", "val")
    cfg = make_train_config("quick", epochs=2, augment_origin_shift=True, mixed_precision=False, device="cpu")
    res = train(tr, va, tmp_path / "run", cfg, progress=False)
    assert res.box == cell_box(tr) and res.box != BoundingBox.from_crystals(tr)
    assert res.history["loss"][1] < res.history["loss"][0]
