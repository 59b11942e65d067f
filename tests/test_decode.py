"""Decoder: the exact-field oracle, fast NMS == plain NMS, options, empty results, round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nesf_viz.data import (
    BoundingBox,
    Crystal,
    CrystalBatch,
    SpeciesVocab,
    crystal_from_structure,
    lattice_matrix,
    read_csv,
)
from nesf_viz.decode import (
    DecodeConfig,
    DecodeResult,
    box_particles,
    decode,
)
from nesf_viz.fields import ExactFields, FieldAbilities, StructureFields

# ----------------------------------------------------------------------------- crystals


def _structures():
    from pymatgen.core import Lattice, Structure

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    perov = Structure(
        Lattice.cubic(3.905), ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    return [nacl, cscl, perov]


def _triclinic(seed: int = 3, n_atoms: int = 5, min_sep: float = 1.6) -> Crystal:
    """Random triclinic cell with atoms at least `min_sep` apart (periodic images included)."""
    rng = np.random.default_rng(seed)
    lengths = (4.3, 5.1, 5.8)
    angles = (82.0, 97.0, 106.0)
    lat = lattice_matrix(lengths, angles)
    frac: list[np.ndarray] = []
    shifts = np.array(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij")).reshape(3, -1).T
    while len(frac) < n_atoms:
        f = rng.random(3)
        if all(np.linalg.norm(((f - g) + shifts) @ lat, axis=1).min() >= min_sep for g in frac):
            frac.append(f)
    z = rng.choice([8, 14, 26, 12], size=n_atoms)
    return Crystal(np.array(frac) @ lat, z.astype(np.int64), lengths, angles, id="tric")


@pytest.fixture(scope="module")
def oracle_set():
    crystals = [crystal_from_structure(s, n) for s, n in zip(_structures(), ["nacl", "cscl", "perov"])]
    crystals.append(_triclinic())
    vocab = SpeciesVocab.from_crystals(crystals)
    box = BoundingBox.from_crystals(crystals)
    return crystals, vocab, box


def _batch_and_fields(crystals, vocab, periodic=False):
    batch = CrystalBatch.from_crystals(crystals, vocab)
    return batch, ExactFields(batch, len(vocab), periodic=periodic)


def _assert_recovered(result: DecodeResult, crystals, tol=1e-3, periodic=False):
    assert result.n_no_atoms == 0
    for i, c in enumerate(crystals):
        got, want = result.positions_angstrom[i], c.positions_angstrom
        assert len(got) == c.num_atoms, f"{c.id}: {len(got)} atoms decoded, {c.num_atoms} true"
        d = got[None, :, :] - want[:, None, :]  # (true, decoded, 3)
        if periodic:
            inv = np.linalg.inv(c.lattice)
            f = d @ inv
            d = (f - np.round(f)) @ c.lattice
        dist = np.linalg.norm(d, axis=-1)
        j = dist.argmin(1)
        assert sorted(j.tolist()) == list(range(c.num_atoms)), f"{c.id}: not a one-to-one match"
        assert dist.min(1).max() < tol, f"{c.id}: position error {dist.min(1).max():.2e} A"
        assert np.array_equal(result.atomic_numbers[i][j], c.atomic_numbers), f"{c.id}: species"
        np.testing.assert_allclose(result.lengths_angstrom[i], c.lengths_angstrom, atol=1e-5)
        np.testing.assert_allclose(result.angles_deg[i], c.angles_deg, atol=1e-4)


# ----------------------------------------------------------------------------- oracle


def test_exact_fields_recover_every_atom(oracle_set):
    crystals, vocab, box = oracle_set
    batch, fields = _batch_and_fields(crystals, vocab)
    result = decode(fields, batch, box=box, vocab=vocab)
    _assert_recovered(result, crystals)
    assert result.ids == tuple(c.id for c in crystals)
    assert set(result.timing_s) >= {"lattice", "init", "move", "score", "nms", "species", "total"}
    assert np.all(result.n_particles == box_particles(box, 0.5, 0.5).shape[0])


@pytest.mark.parametrize(
    "options",
    [
        dict(early_stop_tolerance_angstrom=1e-4),
        dict(particles_in_cell=True),
        dict(nms_collapse_tolerance_angstrom=None),
        dict(periodic=True),
        dict(periodic=True, particles_in_cell=True, early_stop_tolerance_angstrom=1e-4),
        "fast",
        "coarse",
    ],
    ids=["early_stop", "in_cell", "no_collapse", "periodic", "periodic_in_cell_early", "fast", "coarse"],
)
def test_options_keep_exact_recovery(oracle_set, options):
    crystals, vocab, box = oracle_set
    # exact fields converge in two moves: 8 keeps the test fast without changing the outcome
    cfg = DecodeConfig.preset(options) if isinstance(options, str) else DecodeConfig(num_moves=8, **options)
    batch, fields = _batch_and_fields(crystals, vocab, periodic=cfg.periodic)
    result = decode(fields, batch, box=box, vocab=vocab, config=cfg)
    _assert_recovered(result, crystals, periodic=cfg.periodic)
    if cfg.particles_in_cell:
        assert np.all(result.n_particles < box_particles(box, 0.5, 0.5).shape[0])


def test_early_stop_at_zero_is_exactly_the_default(oracle_set):
    crystals, vocab, box = oracle_set
    batch, fields = _batch_and_fields(crystals, vocab)
    a = decode(fields, batch, box=box, vocab=vocab)
    b = decode(fields, batch, box=box, vocab=vocab, config=DecodeConfig(early_stop_tolerance_angstrom=0.0))
    for x, y in zip(a.positions_angstrom, b.positions_angstrom):
        assert np.array_equal(x, y)
    for x, y in zip(a.particles_per_atom, b.particles_per_atom):
        assert np.array_equal(x, y)


class _PlainLoopExactFields(ExactFields):
    """Exact fields that let the decoder take no shortcut: every particle, every move."""

    abilities = FieldAbilities()


def test_merged_particles_decode_exactly_like_the_plain_loop(oracle_set):
    # ExactFields are pointwise: the decoder stops fixed points and merges bitwise-equal
    # particles after the first move (NMS counts them); the plain loop moves each one.
    crystals, vocab, box = oracle_set
    batch = CrystalBatch.from_crystals(crystals, vocab)
    for cfg in (DecodeConfig(num_moves=8), DecodeConfig(num_moves=8, move_fraction=0.5),
                DecodeConfig(num_moves=8, periodic=True)):
        a = decode(ExactFields(batch, len(vocab), periodic=cfg.periodic), batch, box=box, vocab=vocab, config=cfg)
        b = decode(_PlainLoopExactFields(batch, len(vocab), periodic=cfg.periodic), batch, box=box, vocab=vocab,
                   config=cfg)
        for i in range(len(crystals)):
            rows_a = [np.r_[a.positions_angstrom[i][k], a.atomic_numbers[i][k], a.particles_per_atom[i][k]]
                      for k in range(len(a.positions_angstrom[i]))]
            rows_b = [np.r_[b.positions_angstrom[i][k], b.atomic_numbers[i][k], b.particles_per_atom[i][k]]
                      for k in range(len(b.positions_angstrom[i]))]
            if not cfg.periodic:  # bitwise, in the same order
                assert np.array_equal(np.array(rows_a), np.array(rows_b)), (i, cfg)
            else:
                # re-wrapping a particle at rest moves it by float rounding in the plain loop, so
                # scores (and the atoms' order) can differ there: the same atoms, any order
                assert np.allclose(sorted(map(tuple, rows_a)), sorted(map(tuple, rows_b)), atol=1e-5), (i, cfg)


def test_latents_entry_point_and_ids(oracle_set):
    crystals, vocab, box = oracle_set
    batch, fields = _batch_and_fields(crystals[:2], vocab)
    z = fields.latents(batch)
    r = decode(fields, latents=z, box=box, vocab=vocab, config=DecodeConfig(num_moves=4))
    assert r.ids == ("0", "1")
    _assert_recovered(r, crystals[:2])
    with pytest.raises(ValueError):
        decode(fields, batch, latents=z, box=box, vocab=vocab)


# ----------------------------------------------------------------------------- reference details


class _Contracting(StructureFields):
    """f(p) = c * (a - p) towards one atom a: p_k - a = (1 - c)^k (p_0 - a)."""

    num_species = 2

    num_species = 2

    def __init__(self, atom, c=0.5, species_fn=None):
        self.atom = torch.tensor(atom, dtype=torch.float32)
        self.c = c
        self.species_fn = species_fn

    def latents(self, crystals):
        return torch.zeros(crystals.num_crystals, 1)

    def lattice(self, z):
        n = z.shape[0]
        return torch.full((n, 3), 4.0), torch.full((n, 3), float(np.pi / 2))

    def position_field(self, z, points, index):
        return self.c * (self.atom - points)

    def species_field(self, z, points, index):
        if self.species_fn is None:
            return torch.nn.functional.one_hot(torch.zeros(len(points), dtype=torch.long), 2).float()
        return self.species_fn(points - self.atom)


class _Recorder:
    def __init__(self):
        self.events = {}

    def __getattr__(self, name):
        if name.startswith("on_"):
            return lambda *a: self.events.__setitem__(name, a)
        raise AttributeError(name)


def test_score_is_the_last_field_vector():
    box = BoundingBox((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    fields = _Contracting([0.5, 0.5, 0.5], c=0.5)
    rec = _Recorder()
    grid = box_particles(box, 0.5, 0.5).float()
    t = 3
    cfg = DecodeConfig(num_moves=t, score_threshold_angstrom=10.0, nms_radius_angstrom=5.0, nms_min_particles=1)
    r = decode(fields, latents=torch.zeros(1, 1), box=box, vocab=SpeciesVocab((1, 2)), config=cfg, hooks=[rec])
    scores, kept = rec.events["on_score"]
    # last vector = c * (a - p_{T-1}) = c (1-c)^(T-1) (a - p_0): the position BEFORE the last move
    want = ((0.5 * 0.5 ** (t - 1) * (fields.atom - grid)) ** 2).sum(1)
    torch.testing.assert_close(scores, want)
    assert kept.all()
    assert len(r.positions_angstrom[0]) == 1  # one NMS group holding every particle
    assert r.particles_per_atom[0][0] == grid.shape[0]


def test_species_vote_ties_go_to_smallest_class():
    # grid offsets -0.3..0.2: 3 of 6 x-values are negative -> class 1 (108 votes), others 0 ... a tie
    def species(off):
        cls = torch.where(off[:, 0] < -1e-6, 1, 0)
        return torch.nn.functional.one_hot(cls, 2).float() * 5

    box = BoundingBox((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    fields = _Contracting([0.5, 0.5, 0.5], c=1.0, species_fn=species)
    rec = _Recorder()
    r = decode(fields, latents=torch.zeros(1, 1), box=box, vocab=SpeciesVocab((3, 7)),
               config=DecodeConfig(nms_min_particles=1), hooks=[rec])
    votes, spec, _ = rec.events["on_species"]
    assert votes.tolist() == [[108, 108]]
    # torch.mode picks the smallest of the most frequent values; so does the decoder
    assert int(spec[0]) == 0 == int(torch.mode(torch.tensor([1, 0, 1, 0]))[0])
    assert r.atomic_numbers[0].tolist() == [3]


# ----------------------------------------------------------------------------- empty and modes


class _FarField(_Contracting):
    """Always a 5 A vector: every particle fails the 0.9 A score threshold."""

    def position_field(self, z, points, index):
        return torch.full_like(points, 5.0)


def test_nothing_survives_gives_an_empty_valid_result(tmp_path):
    box = BoundingBox((0.0, 0.0, 0.0), (2.0, 2.0, 2.0))
    r = decode(_FarField([0, 0, 0]), latents=torch.zeros(3, 1), box=box, vocab=SpeciesVocab((1, 2)),
               config=DecodeConfig(num_moves=3))
    assert r.n_no_atoms == 3
    for p, s, z in zip(r.positions_angstrom, r.species, r.atomic_numbers):
        assert p.shape == (0, 3) and s.shape == (0,) and z.shape == (0,)
    assert np.isfinite(r.lengths_angstrom).all()
    assert all(len(s) == 0 for s in r.to_structures())
    r.to_csv(tmp_path / "empty.csv")
    assert (tmp_path / "empty.csv").read_text().startswith("material_id,cif")


def test_module_mode_restored_and_no_grad():
    from nesf_viz.model import NeSF

    torch.manual_seed(0)
    model = NeSF(num_species=2)
    model.train()
    box = BoundingBox((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    seen = {}

    class Spy:
        def on_start(self, *a):
            seen["training"] = model.training
            seen["grad"] = torch.is_grad_enabled()

        def __getattr__(self, name):
            return lambda *a: None

    z = torch.randn(2, model.config.latent_dim)
    r = decode(model, latents=z, box=box, vocab=SpeciesVocab((1, 2)), config=DecodeConfig(num_moves=2),
               hooks=[Spy()])
    assert seen == {"training": False, "grad": False}
    assert model.training
    assert len(r) == 2


# ----------------------------------------------------------------------------- round trips


def test_to_structures_and_csv_round_trip(oracle_set, tmp_path):
    crystals, vocab, box = oracle_set
    batch, fields = _batch_and_fields(crystals, vocab)
    r = decode(fields, batch, box=box, vocab=vocab, config=DecodeConfig.fast())
    structures = r.to_structures()
    back = [crystal_from_structure(s, c.id, conventional=False) for s, c in zip(structures, crystals)]
    from_csv = read_csv(r.to_csv(tmp_path / "dec.csv"), conventional=False)
    for i, c in enumerate(r.to_crystals()):
        for other in (back[i], from_csv[i]):
            assert other.id == c.id
            np.testing.assert_allclose(other.lengths_angstrom, c.lengths_angstrom, atol=1e-5)
            np.testing.assert_allclose(other.angles_deg, c.angles_deg, atol=1e-4)
            # positions come back wrapped into [0, 1): compare modulo the lattice
            d = other.positions_angstrom[:, None] - c.positions_angstrom[None]
            f = d @ np.linalg.inv(c.lattice)
            dist = np.linalg.norm((f - np.round(f)) @ c.lattice, axis=-1)
            assert dist.min(1).max() < 1e-4
            assert sorted(other.atomic_numbers.tolist()) == sorted(c.atomic_numbers.tolist())
    cat = DecodeResult.concat([r, r])
    assert len(cat) == 2 * len(r) and cat.timing_s["total"] == pytest.approx(2 * r.timing_s["total"])


class _WildLattice(_Contracting):
    """A model far out of its depth: 1000 A lengths, a 7211 degree angle, a NaN."""

    def lattice(self, z):
        lengths = torch.tensor([[4.0, 4.0, 4.0], [1000.0, 4.0, 4.0], [4.0, float("nan"), 4.0]])
        angles = torch.full((3, 3), float(np.pi / 2))
        angles[1, 2] = np.radians(7211.0)
        return lengths[: z.shape[0]], angles[: z.shape[0]]


def test_predicted_lattice_is_clamped_into_the_physical_range_with_a_warning():
    from nesf_viz.decode import ANGLE_RANGE_DEG, length_range_angstrom
    from nesf_viz.errors import LatticeClampedWarning

    box = BoundingBox((0.0, 0.0, 0.0), (6.0, 5.0, 4.0))
    lo, hi = length_range_angstrom(box)
    assert (lo, hi) == (0.5, 14.0)
    with pytest.warns(LatticeClampedWarning, match=r"2 predicted lattice\(s\).*\(b, c\)"):
        r = decode(_WildLattice([0, 0, 0]), latents=torch.zeros(3, 1), box=box, vocab=SpeciesVocab((1, 2)),
                   config=DecodeConfig(num_moves=2), ids=["a", "b", "c"])
    np.testing.assert_allclose(r.lengths_angstrom[0], 4.0)  # in range: untouched
    assert r.lengths_angstrom[1, 0] == pytest.approx(hi) and r.angles_deg[1, 2] == pytest.approx(ANGLE_RANGE_DEG[1])
    assert np.isfinite(r.lengths_angstrom).all() and (r.lengths_angstrom >= lo).all()


def test_particle_budget_splits_batches_and_refuses_a_crystal_that_cannot_fit(oracle_set):
    from nesf_viz.decode import decode_crystals, particles_per_crystal
    from nesf_viz.errors import DecodeMemoryError

    crystals, vocab, box = oracle_set
    per = particles_per_crystal(box, DecodeConfig())
    whole = decode_crystals("exact", crystals, box=box, vocab=vocab, progress=False)
    tight = decode_crystals("exact", crystals, box=box, vocab=vocab, progress=False,
                            config=DecodeConfig(max_particles=2 * per))  # two crystals per call
    for x, y in zip(whole.positions_angstrom, tight.positions_angstrom):
        assert np.array_equal(x, y)
    with pytest.raises(DecodeMemoryError, match=rf"needs {per:,} particles .* over the budget of {per - 1:,}"):
        decode_crystals("exact", crystals, box=box, vocab=vocab, progress=False,
                        config=DecodeConfig(max_particles=per - 1))
    batch, fields = _batch_and_fields(crystals[:3], vocab)
    with pytest.raises(DecodeMemoryError, match="decoding 3 crystal"):
        decode(fields, batch, box=box, vocab=vocab, config=DecodeConfig(max_particles=2 * per))


def test_teaching_moves_flow_over_several_steps_and_still_find_every_atom(oracle_set):
    from nesf_viz.hooks import TrajectoryRecorder

    crystals, vocab, box = oracle_set
    batch, fields = _batch_and_fields(crystals[:2], vocab)
    full, damped = TrajectoryRecorder(max_particles=None), TrajectoryRecorder(max_particles=None)
    decode(fields, batch, box=box, vocab=vocab, config=DecodeConfig(num_moves=3), hooks=[full])
    r = decode(fields, batch, box=box, vocab=vocab, config=DecodeConfig(num_moves=40, move_fraction=0.3),
               hooks=[damped])
    _assert_recovered(r, crystals[:2])
    # a full move lands every particle (its second move is ~0); a 0.3 move leaves 70 % of the way
    assert np.nanmax(full.norms(0)[2]) < 1e-5
    first, second = damped.norms(0)[1], damped.norms(0)[2]
    ok = first > 0.1
    np.testing.assert_allclose(second[ok], 0.7 * first[ok], rtol=1e-3)
    with pytest.raises(ValueError, match="move_fraction"):
        DecodeConfig(move_fraction=0.0)


def test_every_named_decoder_recovers_every_atom_and_the_presets_differ_where_they_say(oracle_set):
    from nesf_viz.decode import DECODERS, decode_crystals

    crystals, vocab, box = oracle_set
    results = {}
    for name in DECODERS:
        results[name] = decode_crystals("exact", crystals, box=box, vocab=vocab, config=DecodeConfig.preset(name),
                                        progress=False)
        _assert_recovered(results[name], crystals)
    paper, fast, coarse = (results[k] for k in ("paper", "fast", "coarse"))
    assert paper.config == DecodeConfig()  # 'paper' is the reference's settings
    # fast and coarse start only the particles inside each predicted cell; coarse on a grid of
    # twice the step, so about an eighth of fast's
    assert (fast.n_particles < paper.n_particles).all()
    assert (coarse.n_particles * 4 < fast.n_particles).all()
    assert fast.config.num_moves == 32 and fast.config.early_stop_tolerance_angstrom is not None
    # an atom needs fewer particles on the coarse grid: its smallest group is smaller
    assert min(int(c.min()) for c in coarse.particles_per_atom) < min(int(c.min()) for c in fast.particles_per_atom)
    assert DecodeConfig.preset("fast", num_moves=8).num_moves == 8  # overrides on top of a preset
    with pytest.raises(ValueError, match="paper, fast, coarse"):
        DecodeConfig.preset("quick")


def test_an_interrupted_batch_decode_raises_or_keeps_the_batches_done(oracle_set, monkeypatch):
    import importlib

    from nesf_viz.decode import decode_crystals

    module = importlib.import_module("nesf_viz.decode")  # the package's `decode` is the function
    crystals, vocab, box = oracle_set
    calls = []

    def decode_then_interrupt(*args, **kwargs):  # Ctrl-C arriving during the second batch
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return decode(*args, **kwargs)

    monkeypatch.setattr(module, "decode", decode_then_interrupt)
    with pytest.raises(KeyboardInterrupt):  # the library default: nothing swallowed
        decode_crystals("exact", crystals, box=box, vocab=vocab, batch_size=2, progress=False)
    calls.clear()
    seen = []
    kept = decode_crystals("exact", crystals, box=box, vocab=vocab, batch_size=2, progress=False, keep_partial=True,
                           on_batch=lambda chunk, res: seen.append([c.id for c in chunk]))
    assert kept.interrupted and len(kept) == 2 and seen == [[c.id for c in crystals[:2]]]
    _assert_recovered(kept, crystals[:2])


def test_usable_crystals_names_an_unknown_element_or_skips_it_with_one_warning(oracle_set):
    from nesf_viz.decode import usable_crystals
    from nesf_viz.errors import DatasetError, SkippedStructuresWarning, UnknownSpeciesError

    crystals, vocab, box = oracle_set
    small = SpeciesVocab.from_crystals(crystals[:1])  # NaCl's elements only
    with pytest.raises(UnknownSpeciesError, match="cscl"):
        usable_crystals(crystals[:2], small, box)
    with pytest.warns(SkippedStructuresWarning, match="skipped 1 of 2 crystals"):
        kept = usable_crystals(crystals[:2], small, box, skip_bad=True)
    assert [c.id for c in kept] == ["nacl"]
    assert usable_crystals(crystals, vocab, box) == list(crystals)
    with pytest.raises(DatasetError, match="no crystal left"), pytest.warns(SkippedStructuresWarning):
        usable_crystals(crystals[1:2], small, box, skip_bad=True)
