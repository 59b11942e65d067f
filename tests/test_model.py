import pytest
import torch
from torch import nn

from nesf_viz import NeSF
from nesf_viz.data import CrystalBatch, SpeciesVocab
from nesf_viz.errors import ShapeError, UnknownSpeciesError
from nesf_viz.model import NeSFConfig, PositionalEncoding

from .conftest import random_crystals


@pytest.mark.parametrize("species,count", [(84, 766_493), (80, 765_465), (31, 752_872)])
def test_parameter_count_matches_reference(species, count):
    assert NeSF(num_species=species).num_parameters() == count


def test_position_field_alone_matches_reference_count():
    assert sum(p.numel() for p in NeSF(num_species=84).position_net.parameters()) == 187_523


def test_layer_order_linear_relu_batchnorm_last_plain():
    m = NeSF(num_species=10)
    mods = list(m.encoder.position_mlp)
    block = [nn.Linear, nn.ReLU, nn.BatchNorm1d]
    assert [type(x) for x in mods] == [*block, *block, nn.Linear]
    head = [type(x) for x in m.encoder.head]
    assert head == [nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Dropout] * 2 + [nn.Linear]
    assert [type(x) for x in m.length_head] == [nn.Linear, nn.ReLU, nn.Linear]
    # position field: 192+3 -> 256, 259 -> 128, 6 x 131 -> 128, 128 -> 3 (no p into the last layer)
    pn = m.position_net
    assert (pn.latent_in.in_features, pn.point_in.in_features, pn.latent_in.out_features) == (192, 3, 256)
    assert [(h.in_features, h.out_features) for h in pn.hidden] == [(259, 128)] + [(131, 128)] * 6
    assert (pn.out.in_features, pn.out.out_features) == (128, 3)


@pytest.mark.parametrize("train_mode", [True, False])
@pytest.mark.parametrize("pe,keep", [(0, False), (4, False), (4, True)])
def test_split_first_layer_equals_concatenated_form(train_mode, pe, keep):
    torch.manual_seed(0)
    m = NeSF(num_species=7, positional_encoding_freqs=pe, positional_encoding_keep_input=keep).double()
    m.train(train_mode)
    if not train_mode:  # non-trivial running statistics
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm1d):
                mod.running_mean.uniform_(-1, 1)
                mod.running_var.uniform_(0.5, 2)
    z = torch.randn(5, 192, dtype=torch.float64)
    pts = torch.randn(300, 3, dtype=torch.float64) * 3
    idx = torch.randint(0, 5, (300,))
    for net in (m.position_net, m.species_net):
        torch.testing.assert_close(net(z, pts, idx), net.forward_concat(z, pts, idx), rtol=1e-12, atol=1e-12)


def test_reference_positional_encoding_is_two_angstrom_periodic_and_the_long_wavelength_one_is_not():
    # Why the reference's nesf_pe cannot learn the position field: sin/cos(2^l pi p) repeats every
    # 2 A, so the fields see points 2 A apart as the same point.
    p = torch.rand(200, 3, dtype=torch.float64) * 12 - 6
    shifted = p + torch.tensor([2.0, -4.0, 6.0], dtype=torch.float64)
    ref = PositionalEncoding(10).double()
    torch.testing.assert_close(ref(p), ref(shifted), rtol=0, atol=1e-3)  # pi is stored in float32
    first = torch.stack([torch.sin(torch.pi * p[:, 0]), torch.cos(torch.pi * p[:, 0])], 1)
    torch.testing.assert_close(ref(p)[:, :2], first,
                               rtol=0, atol=1e-5)
    long = PositionalEncoding(6, longest_wavelength_angstrom=32.0, keep_input=True).double()
    assert long.out_dim == 39 and torch.equal(long(p)[:, :3], p)
    # with W = 32 A the first frequency alone is one-to-one over a +-8 A box
    assert (long(p)[:, 3:][:, ::12] - long(shifted)[:, 3:][:, ::12]).abs().amax(1).min() > 0.05
    with pytest.raises(ValueError, match="wavelength"):
        PositionalEncoding(4, longest_wavelength_angstrom=0.0)


def test_encoder_is_permutation_invariant_and_lattice_heads_shape():
    rng = __import__("numpy").random.default_rng(0)
    crystals = random_crystals(rng, 4)
    vocab = SpeciesVocab.from_crystals(crystals)
    b = CrystalBatch.from_crystals(crystals, vocab)
    m = NeSF(num_species=len(vocab)).eval()
    z = m.latents(b)
    assert z.shape == (4, 192)
    perm = torch.randperm(b.positions.shape[0])
    order = torch.argsort(b.batch[perm], stable=True)
    shuffled = CrystalBatch(b.positions[perm][order], b.species[perm][order], b.batch[perm][order],
                            b.lengths, b.angles, b.ids)
    torch.testing.assert_close(m.latents(shuffled), z)
    lengths, angles = m.lattice(z)
    assert lengths.shape == angles.shape == (4, 3)


def test_vae_option_returns_mean_and_positive_variance():
    crystals = random_crystals(__import__("numpy").random.default_rng(2), 3)
    vocab = SpeciesVocab.from_crystals(crystals)
    m = NeSF(num_species=len(vocab), vae=True).eval()
    mean, var = m.encode(CrystalBatch.from_crystals(crystals, vocab))
    assert mean.shape == var.shape == (3, 192) and (var > 0).all()


def test_field_shape_errors_are_named():
    m = NeSF(num_species=3)
    with pytest.raises(ShapeError, match=r"points \(Q, 3\)"):
        m.position_field(torch.zeros(2, 192), torch.zeros(10, 2), torch.zeros(10, dtype=torch.long))


def test_species_outside_vocabulary_is_a_named_error():
    crystals = random_crystals(__import__("numpy").random.default_rng(2), 2)
    vocab = SpeciesVocab.from_crystals(crystals)
    with pytest.raises(UnknownSpeciesError, match="checkpoint's vocabulary"):
        NeSF(num_species=1).encode(CrystalBatch.from_crystals(crystals, vocab))


def test_config_round_trips_through_dict():
    cfg = NeSFConfig(num_species=9, positional_encoding_freqs=10, vae=True,
                     positional_encoding_longest_wavelength_angstrom=32.0, positional_encoding_keep_input=True)
    assert NeSFConfig.from_dict(cfg.to_dict()) == cfg
