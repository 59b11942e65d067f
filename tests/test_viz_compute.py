"""Tests for nesf_viz.viz.compute: oracles on exact fields, identities on a small learned model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nesf_viz.data import BoundingBox, CrystalBatch, SpeciesVocab
from nesf_viz.decode import DecodeConfig, decode
from nesf_viz.fields import ExactFields
from nesf_viz.hooks import TrajectoryRecorder
from nesf_viz.model import NeSF
from nesf_viz.viz import compute

from .conftest import random_crystals


@pytest.fixture
def rocksalt(nacl):
    batch, vocab = CrystalBatch.from_structures([nacl], ids=["NaCl"], dtype=torch.float64)
    return batch, vocab, ExactFields(batch, len(vocab))


def tiny_model(num_species: int) -> NeSF:
    torch.manual_seed(0)
    return NeSF(num_species=num_species, latent_dim=16, encoder_position_channels=(16, 16),
                encoder_species_channels=(16,), encoder_mix_channels=(32,),
                encoder_head_channels=(32,), lattice_head_channels=(16,),
                position_field_channels=(32, 32), species_field_channels=(32,))


def _brute_nearest(points: np.ndarray, atoms: np.ndarray) -> np.ndarray:
    d = np.linalg.norm(points[:, None, :] - atoms[None], axis=-1)
    return d.argmin(1)


@pytest.mark.parametrize("plane", ["xy", "xz", "yz"])
def test_exact_field_slice_points_to_nearest_atom(plane):
    rng = np.random.default_rng(1)
    crystals = random_crystals(rng, 3)
    vocab = SpeciesVocab.from_crystals(crystals)
    batch = CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64)
    fields = ExactFields(batch, len(vocab))
    z = fields.latents()
    s = compute.field_slice(fields, z, 1, plane, offset_angstrom=1.37, step_angstrom=0.23)
    U, V = len(s.grid_u), len(s.grid_v)
    assert s.vectors.shape == (U, V, 3) and s.vectors_uv.shape == (U, V, 2)
    assert s.magnitude.shape == (U, V) and U > 5 and V > 5
    pts = s.points.reshape(-1, 3)
    iu, iv, inorm = compute.PLANES[plane]
    assert np.allclose(pts[:, inorm], 1.37)
    atoms = crystals[1].positions_angstrom
    want = atoms[_brute_nearest(pts, atoms)] - pts
    np.testing.assert_allclose(s.vectors.reshape(-1, 3), want, atol=1e-9)
    np.testing.assert_allclose(s.vectors_uv.reshape(-1, 2), want[:, [iu, iv]], atol=1e-9)
    np.testing.assert_allclose(s.magnitude.ravel(), np.linalg.norm(want, axis=1), atol=1e-9)
    # the default extent spans the cell projected on the plane
    unit = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    corners = unit @ crystals[1].lattice
    assert s.grid_u[0] == pytest.approx(corners[:, iu].min())
    assert s.grid_u[-1] <= corners[:, iu].max() + 1e-9
    assert s.axis_labels == (f"{'xyz'[iu]} (Å)", f"{'xyz'[iv]} (Å)")


def test_slice_through_an_atom_has_zero_field_there(rocksalt):
    batch, vocab, fields = rocksalt
    a = 5.64
    s = compute.field_slice(fields, fields.latents(), 0, "xy", 0.0, ((0, a), (0, a)), a / 20,
                            vocab=vocab)
    # (0, 0, 0) is a Na site and (a/2, 0, 0) a Cl site of the conventional rock-salt cell
    assert s.magnitude[0, 0] < 1e-9
    assert s.magnitude[10, 0] < 1e-9
    assert s.magnitude[5, 5] > 1.0  # between atoms
    # atoms in the plane z = 0: 2 Na + 2 Cl, labelled with element symbols
    assert sorted(s.atom_labels) == ["Cl", "Cl", "Na", "Na"]
    assert s.atoms_uv.shape == (4, 2)
    # a plane off the atoms: nothing within the default 0.5 A tolerance
    off = compute.field_slice(fields, fields.latents(), 0, "xy", 1.41, step_angstrom=0.5)
    assert off.atoms_uv.shape == (0, 2) and off.magnitude.min() > 1.0


def test_exact_species_slice(rocksalt):
    batch, vocab, fields = rocksalt
    s = compute.species_slice(fields, fields.latents(), 0, "yz", 0.3, step_angstrom=0.3,
                              vocab=vocab)
    assert s.class_names == ["Na", "Cl"]
    assert np.all(s.confidence == 1.0)
    pts = s.points.reshape(-1, 3)
    atoms = batch.positions.numpy()
    want = batch.species.numpy()[_brute_nearest(pts, atoms)]
    np.testing.assert_array_equal(s.labels.ravel(), want)
    assert s.labels.dtype == np.int64


def test_learned_slices_match_the_model_and_keep_its_mode():
    rng = np.random.default_rng(2)
    crystals = random_crystals(rng, 4)
    vocab = SpeciesVocab.from_crystals(crystals)
    batch = CrystalBatch.from_crystals(crystals, vocab)
    model = tiny_model(len(vocab))
    model.train()
    with torch.no_grad():
        model.eval()
        z = model.latents(batch)
        model.train()
    s = compute.field_slice(model, z, 2, "xz", 0.5, ((0, 2), (0, 3)), 0.5, atoms=crystals[2])
    assert model.training  # the mode came back
    pts = torch.as_tensor(s.points.reshape(-1, 3), dtype=torch.float32)
    with torch.no_grad():
        model.eval()
        want = model.position_field(z[2:3], pts, torch.zeros(len(pts), dtype=torch.long))
        logits = model.species_field(z[2:3], pts, torch.zeros(len(pts), dtype=torch.long))
        model.train()
    np.testing.assert_allclose(s.vectors.reshape(-1, 3), want.double().numpy(), rtol=1e-5,
                               atol=1e-6)
    assert s.grid_u.tolist() == [0, 0.5, 1.0, 1.5, 2.0] and len(s.grid_v) == 7
    sp = compute.species_slice(model, z, 2, "xz", 0.5, ((0, 2), (0, 3)), 0.5, vocab=vocab)
    np.testing.assert_array_equal(sp.labels.ravel(), logits.argmax(-1).numpy())
    p = torch.softmax(logits.double(), -1).max(-1).values.numpy()
    np.testing.assert_allclose(sp.confidence.ravel(), p, rtol=1e-6)
    assert np.all((sp.confidence > 0) & (sp.confidence <= 1))
    assert len(sp.class_names) == len(vocab)


def test_slice_rejects_bad_arguments(rocksalt):
    _, _, fields = rocksalt
    with pytest.raises(ValueError, match="plane"):
        compute.field_slice(fields, fields.latents(), 0, "ab")
    with pytest.raises(IndexError):
        compute.field_slice(fields, fields.latents(), 3)
    with pytest.raises(ValueError, match="step"):
        compute.field_slice(fields, fields.latents(), 0, step_angstrom=0.0)


def _decode_recorded(crystals, max_particles=None):
    vocab = SpeciesVocab.from_crystals(crystals)
    batch = CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64)
    fields = ExactFields(batch, len(vocab))
    box = BoundingBox.from_crystals(crystals)
    rec = TrajectoryRecorder(max_particles=max_particles)
    cfg = DecodeConfig(grid_step_angstrom=0.6, num_moves=8)
    res = decode(fields, batch, box=box, vocab=vocab, config=cfg, hooks=[rec])
    return rec, res, vocab


def test_trajectory_residuals_with_every_k_moves_show_the_distance_still_to_go():
    """Recording every 4th move: row 0's colour is how far a particle still goes, which for
    exact fields (the first move lands on the nearest atom) is its distance to that atom, not
    the length of the 4th, tiny, move."""
    rng = np.random.default_rng(5)
    crystals = random_crystals(rng, 1, max_atoms=4)
    batch = CrystalBatch.from_crystals(crystals, SpeciesVocab.from_crystals(crystals), dtype=torch.float64)
    vocab = SpeciesVocab.from_crystals(crystals)
    rec = TrajectoryRecorder(every=4)
    decode(ExactFields(batch, len(vocab)), batch, box=BoundingBox.from_crystals(crystals), vocab=vocab,
           config=DecodeConfig(grid_step_angstrom=0.6, num_moves=8), hooks=[rec])
    tv = compute.trajectory_view(rec, 0, crystals)
    start = tv.positions[0]
    to_atom = np.linalg.norm(start[:, None] - crystals[0].positions_angstrom[None], axis=-1).min(1)
    np.testing.assert_allclose(tv.scores[0], to_atom, atol=1e-9)
    assert (rec.norms(0)[1] < 1e-9).all() and to_atom.max() > 0.5  # the old colouring said 0 everywhere


def test_trajectory_and_cluster_views_from_a_recording():
    rng = np.random.default_rng(3)
    crystals = random_crystals(rng, 2, max_atoms=5)
    rec, res, _ = _decode_recorded(crystals)
    tv = compute.trajectory_view(rec, 1, crystals)
    T, P = len(rec.steps), len(rec.particle_numbers(1))
    assert tv.positions.shape == (T, P, 3) and tv.scores.shape == (T, P)
    assert tv.step_labels[0] == "move 0" and tv.step_labels[-1] == "move 8"
    assert tv.atom_labels == compute.element_symbols(crystals[1].atomic_numbers)
    # row t is the move made from row t; the last row is sqrt(score)
    moves = np.linalg.norm(np.diff(tv.positions, axis=0), axis=-1)
    np.testing.assert_allclose(tv.scores[:-1], moves, atol=1e-9)
    np.testing.assert_allclose(tv.scores[:-1], rec.norms(1)[1:], atol=1e-9)  # the recorded field moves
    np.testing.assert_allclose(tv.scores[-1], np.sqrt(rec.scores(1)))
    # default settings reproduce the decoder's atoms (every particle recorded)
    cv = compute.cluster_view(rec, 1, step=0, originals=crystals)
    atoms = cv.centres[cv.is_atom]
    np.testing.assert_allclose(np.sort(atoms, 0), np.sort(res.positions_angstrom[1], 0), atol=1e-9)
    np.testing.assert_allclose(cv.positions, rec.positions(1)[0])
    assert cv.nms_radius == 0.5 and cv.atoms.shape == (crystals[1].num_atoms, 3)
    np.testing.assert_array_equal(cv.kept, rec.kept(1))
    # other settings go through recluster
    other = compute.cluster_view(rec, 1, score_threshold_angstrom=0.05, nms_radius_angstrom=1.2)
    direct = rec.recluster(1, 0.05, 1.2)
    np.testing.assert_array_equal(other.cluster_id, direct.cluster_id)
    np.testing.assert_allclose(other.centres, direct.centres)
    a, b = compute.move_segments(rec, 1, 0, max_arrows=7)
    assert a.shape == b.shape == (7, 3)
    assert compute.move_segments(rec, 1, -1)[0].shape == (0, 3)
    r = compute.trajectory_ranges(rec, 1, crystals)
    assert np.all(r[:, 0] <= tv.positions.reshape(-1, 3).min(0))


def test_interpolation_endpoints_decode_like_the_originals():
    rng = np.random.default_rng(4)
    crystals = random_crystals(rng, 2, max_atoms=4)
    vocab = SpeciesVocab.from_crystals(crystals)
    batch = CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64)
    box = BoundingBox.from_crystals(crystals)
    cfg = DecodeConfig(grid_step_angstrom=0.5, num_moves=8)

    # exact fields: the end latents are the crystals themselves
    fields = ExactFields(batch, len(vocab))
    d = compute.decode_interpolation(fields, batch, 3, box=box, vocab=vocab, config=cfg)
    assert d.latents.shape == (3, 1) and d.steps.tolist() == [0.0, 0.5, 1.0]
    direct = decode(fields, batch, box=box, vocab=vocab, config=cfg)
    for t, i in ((0, 0), (2, 1)):
        np.testing.assert_allclose(d.result.positions_angstrom[t], direct.positions_angstrom[i])
        np.testing.assert_array_equal(d.result.atomic_numbers[t], direct.atomic_numbers[i])
        assert d.atom_counts[t] == crystals[i].num_atoms
        assert len(d.structures[t]) == crystals[i].num_atoms
    assert d.lengths.shape == (3, 3) and d.angles_deg.shape == (3, 3)
    verdicts = d.endpoint_verdicts(crystals)  # how right the two ends are
    assert [v.id for v in verdicts] == [c.id for c in crystals] and all(v.right for v in verdicts)
    assert [v.decoded_atoms for v in verdicts] == [c.num_atoms for c in crystals]

    # a learned model: endpoints are its latents, and decode like the crystals directly
    model = tiny_model(len(vocab)).double()
    z = compute.interpolate_latents(model, crystals, 5, vocab=vocab)
    with torch.no_grad():
        model.eval()
        want = model.latents(CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64))
    assert z.shape == (5, 16)
    torch.testing.assert_close(z[0], want[0])
    torch.testing.assert_close(z[-1], want[1])
    torch.testing.assert_close(z[2], (want[0] + want[1]) / 2)
    cfg2 = DecodeConfig(grid_step_angstrom=1.0, num_moves=4, nms_min_particles=1)
    d2 = compute.decode_interpolation(model, crystals, 2, box=box, vocab=vocab, config=cfg2)
    ref = decode(model, CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64),
                 box=box, vocab=vocab, config=cfg2)
    for i in range(2):
        np.testing.assert_allclose(d2.result.positions_angstrom[i], ref.positions_angstrom[i],
                                   atol=1e-9)
        np.testing.assert_allclose(d2.lengths[i], ref.lengths_angstrom[i])
    with pytest.raises(ValueError, match="steps"):
        compute.interpolate_latents(model, crystals, 1, vocab=vocab)


def test_latent_table_labels():
    from nesf_viz.data import load_crystals

    crystals = load_crystals("synthetic:80", "train")[:12]
    vocab = SpeciesVocab.from_crystals(crystals)
    model = tiny_model(len(vocab))
    t = compute.latent_table(model, crystals, "prototype", vocab=vocab, batch_size=5)
    assert t.latents.shape == (12, 16)
    assert t.labels == [c.properties["prototype"] for c in crystals]
    assert t.names == [c.id for c in crystals]
    with torch.no_grad():
        model.eval()
        want = model.latents(CrystalBatch.from_crystals(crystals, vocab)).double().numpy()
    np.testing.assert_allclose(t.latents, want, rtol=1e-5, atol=1e-6)
    batch = CrystalBatch.from_crystals(crystals, vocab)
    t2 = compute.latent_table(model, batch, list(range(12)))
    assert t2.labels == [str(i) for i in range(12)] and t2.names == batch.ids
    assert compute.latent_table(model, crystals, None, vocab=vocab).labels == ["crystal"] * 12
    with pytest.raises(Exception, match="labels"):
        compute.latent_table(model, crystals, ["a"], vocab=vocab)
    assert t.hover[0] == f"{crystals[0].id}<br>{crystals[0].properties['formula']} · {crystals[0].num_atoms} atoms"


def test_latent_table_describes_real_crystals_by_crystal_system_space_group_and_atoms():
    from nesf_viz.data import load_crystals
    from nesf_viz.symmetry import CRYSTAL_SYSTEMS

    crystals = load_crystals("lcs6_test")[:40]  # packaged: always here
    vocab = SpeciesVocab.from_crystals(crystals)
    model = tiny_model(len(vocab))
    t = compute.latent_table(model, crystals, "crystal system", vocab=vocab)
    assert set(t.labels) <= set(CRYSTAL_SYSTEMS) and len(set(t.labels)) >= 2
    assert t.label_order == [c for c in CRYSTAL_SYSTEMS if c in t.labels]  # most symmetric first
    assert t.labels[0] == "cubic" and t.hover[0] == "mp-1008986<br>IrN · Fm-3m (cubic) · 8 atoms"
    fig = t.figure()
    assert [tr.name for tr in fig.data] == t.label_order and sum(len(tr.x) for tr in fig.data) == 40
    assert fig.data[0].text[0] == t.hover[0]
    atoms = compute.latent_table(model, crystals, "atoms", vocab=vocab)
    assert atoms.label_order == sorted(set(atoms.labels), key=lambda s: int(s.split()[0]))
    assert atoms.labels[0] == "8 atoms" and atoms.hover == t.hover
    again = t.relabel("atoms")  # the same, without the model or spglib again
    assert again.labels == atoms.labels and again.label_order == atoms.label_order and again.latents is t.latents
    groups = compute.latent_table(model, crystals, "space group", vocab=vocab)
    assert groups.labels[0] == "Fm-3m" and groups.label_order[-1] in ("Fm-3m", "Pm-3m", "Im-3m", "Fd-3m", "Pn-3m")
    with pytest.raises(ValueError, match="need Crystals"):
        compute.latent_table(model, CrystalBatch.from_crystals(crystals, vocab), "crystal system")


def test_species_votes_agree_with_the_decoders_own_vote_learned_and_exact(rocksalt):
    from nesf_viz.assets import checkpoint_path
    from nesf_viz.checkpoints import load_checkpoint
    from nesf_viz.data import load_crystals

    ck = load_checkpoint(checkpoint_path("synthetic"))
    test = load_crystals("synthetic", "test")[:3]
    batch = CrystalBatch.from_crystals(test, ck.vocab)
    res = decode(ck.model, batch, box=ck.box, vocab=ck.vocab, config=DecodeConfig.fast())
    z = ck.model.latents(batch)
    for i in range(3):
        v = compute.species_votes(ck.model, z, res, i, vocab=ck.vocab, originals=test)
        decoded = compute.element_symbols(res.atomic_numbers[i])
        assert v.winners == decoded  # recomputed from the fields: the decoder's own step 5
        assert len(v.points) == 216 * len(decoded) and ((v.shares > 0) & (v.shares <= 1)).all()
        assert len(v.truth) == len(decoded)
        fig = v.figure()
        n_wrong = sum(t != w for t, w in zip(v.truth, v.winners))
        rings = [t for t in fig.data if t.name == "winner is not the true element"]
        assert (len(rings[0].x) if rings else 0) == n_wrong
        assert f"{len(decoded) - n_wrong}/{len(decoded)} atoms voted the true element" in fig.layout.title.text
    batch, vocab, fields = rocksalt  # exact fields: every point votes the true element
    res = decode(fields, batch, box=BoundingBox.from_crystals(batch.to_crystals(vocab)), vocab=vocab)
    v = compute.species_votes(fields, fields.latents(), res, 0, vocab=vocab, originals=batch.to_crystals(vocab))
    assert (v.shares == 1.0).all() and v.truth == v.winners and sorted(v.winners) == ["Cl"] * 4 + ["Na"] * 4


def test_training_queries_are_the_samplers_queries_split_by_kind(rocksalt):
    from nesf_viz.sampling import QuerySampler, SamplingConfig

    batch, vocab, _ = rocksalt
    crystal = batch.to_crystals(vocab)[0]
    view = compute.training_queries(crystal, seed=3)
    s = QuerySampler(BoundingBox.from_crystals([crystal]), SamplingConfig())
    one = CrystalBatch.from_crystals([crystal], SpeciesVocab.from_crystals([crystal]))
    q = s(one, torch.Generator().manual_seed(3))
    both = np.concatenate([view.global_points, view.local_points])
    np.testing.assert_allclose(both, q.position_points.double().numpy(), atol=1e-6)  # same draws, same order
    np.testing.assert_allclose(view.species_points, q.species_points.double().numpy(), atol=1e-6)
    n_g, n_s = s.queries_per_crystal(crystal.num_atoms)
    assert len(both) == n_g and len(view.species_points) == n_s
    near = np.linalg.norm(view.species_points[:, None] - crystal.positions_angstrom[None], axis=-1).min(1)
    assert near.max() < 1.0  # species points hug the atoms
    fig = view.figure()
    assert [t.name.split(":")[0] for t in fig.data][:3] == [
        "global points (position field, whole box)", "local points (position field near atoms)",
        "species points (species field)"]


def test_every_view_carries_what_its_figure_requires():
    """The compute -> figure contract: each result class names a figure function, and every
    parameter that function requires (no default) is one of the class's fields."""
    import dataclasses
    import inspect

    views = [c for c in vars(compute).values()
             if isinstance(c, type) and issubclass(c, compute.ViewData) and c.FIGURE is not None]
    assert len(views) == 10
    for cls in views:
        names = {f.name for f in dataclasses.fields(cls)}
        params = inspect.signature(cls.FIGURE).parameters.values()
        required = {p.name for p in params if p.default is inspect.Parameter.empty
                    and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        assert required <= names, (cls.__name__, required - names)


def test_site_error_view_draws_every_true_atoms_error_and_names_the_verdict(nacl):
    import dataclasses

    from nesf_viz.data import crystal_from_structure

    true = crystal_from_structure(nacl, conventional=False)
    moved = true.positions_angstrom.copy()
    moved[0] += [0.05, 0.0, 0.0]  # one atom 0.05 Å off
    decoded = dataclasses.replace(true, positions_angstrom=moved)
    view = compute.site_error_view([true], [decoded], 0)
    assert view.true_symbols.count("Na") == 4 and len(view.decoded_positions) == 8
    assert "decoded right" in view.title and "mean 0.006 Å" in view.title  # 0.05 Å / 8 atoms
    fig = view.figure()
    errors = next(t for t in fig.data if t.meta["kind"] == "errors")
    lengths = [np.linalg.norm(np.subtract(*[(errors.x[k], errors.y[k], errors.z[k]) for k in (i, i + 1)]))
               for i in range(0, len(errors.x), 3)]
    assert max(lengths) == pytest.approx(20 * 0.05)  # magnified 20x: the largest error drawn 1 Å long
    assert errors.name == "error × 20" and not any(t.meta["kind"] == "wrong" for t in fig.data)


def test_periodic_face_shows_the_papers_fields_far_from_the_face_images_and_the_periodic_ones_zero(rocksalt):
    batch, vocab, _ = rocksalt
    view = compute.periodic_face(batch, vocab, plane="xz", step_angstrom=0.2)  # the far face y = 5.64 Å
    assert view.left["offset_angstrom"] == pytest.approx(5.64)
    assert len(view.left["atom_labels"]) == 9 and all(lab.endswith("(image)") for lab in view.left["atom_labels"])
    assert view.left["magnitude"].min() >= 2.8 - 1e-6  # the nearest atom of the cell is half a cell away
    assert view.right["magnitude"].min() < 0.15  # with images an atom sits in the plane
    assert "2.8 Å" in view.titles[0]
    fig = view.figure()
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert [t.showscale for t in heat] == [False, True] and heat[0].zmax == heat[1].zmax  # one colour scale
