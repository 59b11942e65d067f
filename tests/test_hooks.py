"""Hooks observe and never change results; the trajectory recorder keeps what it promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nesf_viz.data import BoundingBox, CrystalBatch, SpeciesVocab, crystal_from_structure
from nesf_viz.decode import DecodeConfig, DecodeResult, decode
from nesf_viz.fields import ExactFields
from nesf_viz.hooks import DecodeHook, TrajectoryRecorder


@pytest.fixture(scope="module")
def setup():
    from pymatgen.core import Lattice, Structure

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    crystals = [crystal_from_structure(s, n) for s, n in [(nacl, "nacl"), (cscl, "cscl")]]
    vocab = SpeciesVocab.from_crystals(crystals)
    box = BoundingBox.from_crystals(crystals)
    batch = CrystalBatch.from_crystals(crystals, vocab)
    return batch, ExactFields(batch, len(vocab)), box, vocab


class Vandal(DecodeHook):
    """Scribbles over every tensor it is given: results must not notice."""

    def _smash(self, *tensors):
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.numel():
                if t.dtype == torch.bool:
                    t.logical_not_()
                else:
                    t.fill_(7)

    def on_start(self, ids, config, lengths, angles):
        self._smash(lengths, angles)

    def on_particles_init(self, positions, index):
        self._smash(positions, index)

    def on_move(self, step, positions, vectors, norms):
        self._smash(positions, vectors, norms)

    def on_score(self, scores, kept_mask):
        self._smash(scores, kept_mask)

    def on_cluster(self, cluster_id, centres, counts, cluster_batch, is_atom):
        self._smash(cluster_id, centres, counts, cluster_batch, is_atom)

    def on_species(self, votes, species, atom_batch):
        self._smash(votes, species, atom_batch)


def _same(a: DecodeResult, b: DecodeResult) -> None:
    assert a.ids == b.ids
    for name in ("positions_angstrom", "species", "atomic_numbers", "particles_per_atom"):
        for x, y in zip(getattr(a, name), getattr(b, name)):
            assert np.array_equal(x, y), name  # bit-identical
    assert np.array_equal(a.lengths_angstrom, b.lengths_angstrom)
    assert np.array_equal(a.angles_deg, b.angles_deg)
    assert np.array_equal(a.n_particles, b.n_particles)


@pytest.mark.parametrize("cfg", [DecodeConfig(num_moves=6), DecodeConfig.fast(),
                                 DecodeConfig(num_moves=6, periodic=True)],
                         ids=["default", "fast", "periodic"])
def test_hooks_never_change_results(setup, cfg):
    batch, fields, box, vocab = setup
    plain = decode(fields, batch, box=box, vocab=vocab, config=cfg)
    hooks = [DecodeHook(), Vandal(), TrajectoryRecorder(every=2, max_particles=30), Vandal()]
    watched = decode(fields, batch, box=box, vocab=vocab, config=cfg, hooks=hooks)
    _same(plain, watched)


def test_hooks_never_change_learned_results():
    from nesf_viz.model import NeSF

    torch.manual_seed(1)
    model = NeSF(num_species=2)
    z = torch.randn(2, model.config.latent_dim)
    box = BoundingBox((0.0, 0.0, 0.0), (2.0, 2.0, 2.0))
    cfg = DecodeConfig(num_moves=3, score_threshold_angstrom=5.0, nms_min_particles=1)
    a = decode(model, latents=z, box=box, vocab=SpeciesVocab((1, 2)), config=cfg)
    b = decode(model, latents=z, box=box, vocab=SpeciesVocab((1, 2)), config=cfg,
               hooks=[Vandal(), TrajectoryRecorder(every=1, max_particles=None)])
    _same(a, b)


def test_recorder_keeps_every_kth_step_first_and_last(setup):
    batch, fields, box, vocab = setup
    for moves, every, want in [(12, 5, [0, 5, 10, 12]), (10, 5, [0, 5, 10]), (3, 1, [0, 1, 2, 3])]:
        rec = TrajectoryRecorder(every=every, max_particles=40)
        decode(fields, batch, box=box, vocab=vocab, config=DecodeConfig(num_moves=moves), hooks=[rec])
        assert rec.steps.tolist() == want
        assert rec.positions(0).shape == (len(want), 40, 3)
        assert rec.norms(1).shape == (len(want), 40)
        assert np.isnan(rec.norms(0)[0]).all() and np.isfinite(rec.norms(0)[1:]).all()
    # early stopping: the loop ends before num_moves, and its last move is still recorded
    rec = TrajectoryRecorder(every=4, max_particles=None)
    decode(fields, batch, box=box, vocab=vocab, config=DecodeConfig(early_stop_tolerance_angstrom=1e-4), hooks=[rec])
    assert rec.steps[0] == 0 and rec.steps[-1] < 64 and len(rec.steps) >= 2
    assert (rec.norms(0)[-1] < 1e-4).all()  # all stopped: the last recorded move is below tolerance


def test_recorder_subsamples_reproducibly(setup):
    batch, fields, box, vocab = setup
    cfg = DecodeConfig(num_moves=2)

    def picks(seed):
        rec = TrajectoryRecorder(every=1, max_particles=25, seed=seed)
        decode(fields, batch, box=box, vocab=vocab, config=cfg, hooks=[rec])
        return rec

    a, b, c = picks(0), picks(0), picks(1)
    for i in range(2):
        assert len(a.particle_numbers(i)) == 25
        assert np.array_equal(a.particle_numbers(i), b.particle_numbers(i))
        assert np.array_equal(a.positions(i), b.positions(i))
    assert not np.array_equal(a.particle_numbers(0), c.particle_numbers(0))
    assert not np.array_equal(a.particle_numbers(0), a.particle_numbers(1))  # differs per crystal
    # the recorded rows are those particles of the full grid
    full = TrajectoryRecorder(every=1, max_particles=None)
    decode(fields, batch, box=box, vocab=vocab, config=cfg, hooks=[full])
    assert np.array_equal(full.positions(1)[:, a.particle_numbers(1)], a.positions(1))


@pytest.mark.parametrize("cfg", [DecodeConfig(num_moves=5), DecodeConfig(num_moves=5, periodic=True)],
                         ids=["plain", "periodic"])
def test_recluster_reproduces_the_atoms(setup, cfg):
    batch, fields, box, vocab = setup
    rec = TrajectoryRecorder(every=2, max_particles=None)
    result = decode(fields, batch, box=box, vocab=vocab, config=cfg, hooks=[rec])
    for i in range(len(result)):
        view = rec.recluster(i)
        assert np.array_equal(view.atoms, result.positions_angstrom[i])
        assert np.array_equal(view.counts[view.is_atom], result.particles_per_atom[i])
        decoded = rec.clusters(i)
        assert np.array_equal(decoded.cluster_id, view.cluster_id)
        assert np.array_equal(decoded.atoms, result.positions_angstrom[i])
        assert rec.kept(i).shape == rec.scores(i).shape == (result.n_particles[i],)
        assert ((decoded.cluster_id >= 0) == rec.kept(i)).all()
    # sliders: a stricter particle count removes atoms, a bigger radius merges them
    assert rec.recluster(0, nms_min_particles=10**6).atoms.shape == (0, 3)
    assert len(rec.recluster(0, nms_radius_angstrom=3.0).atoms) < len(result.positions_angstrom[0])
    assert rec.recluster(0, score_threshold_angstrom=1e-3).atoms.shape[0] == len(result.positions_angstrom[0])


def test_recorder_before_decoding_says_so():
    with pytest.raises(RuntimeError, match="nothing recorded"):
        TrajectoryRecorder().positions(0)
