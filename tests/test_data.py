import math
import warnings

import numpy as np
import pytest
import torch

from nesf_viz.data import (
    BoundingBox,
    CrystalBatch,
    ReadReport,
    SpeciesVocab,
    crystal_from_structure,
    lattice_matrix,
    load_crystals,
    read_cif_folder,
    read_csv,
    read_structures,
)
from nesf_viz.errors import (
    CellTooLargeWarning,
    DatasetError,
    DisorderedStructureError,
    EmptyStructureError,
    MalformedCIFError,
    NonFiniteCoordinatesError,
    SkippedStructuresWarning,
    UnknownSpeciesError,
)

from .conftest import random_crystals, shared_data


def _same_structure(a, b, tol):
    assert [s.specie.symbol for s in a] == [s.specie.symbol for s in b]
    np.testing.assert_allclose(a.lattice.abc, b.lattice.abc, atol=tol)
    np.testing.assert_allclose(a.lattice.angles, b.lattice.angles, atol=tol)
    d = a.frac_coords - b.frac_coords
    d -= np.round(d)
    assert np.abs(d).max() < tol


def test_round_trip_float64_is_exact(triclinic, nacl):
    batch, vocab = CrystalBatch.from_structures([triclinic, nacl], conventional=False, dtype=torch.float64)
    back = batch.to_structures(vocab)
    _same_structure(back[0], triclinic, 1e-10)
    _same_structure(back[1], nacl, 1e-10)


def test_round_trip_float32_within_precision(triclinic):
    batch, vocab = CrystalBatch.from_structures([triclinic], conventional=False)
    _same_structure(batch.to_structures(vocab)[0], triclinic, 1e-5)


def test_frame_is_a_along_x_b_in_xy_plane(triclinic):
    c = crystal_from_structure(triclinic, conventional=False)
    m = lattice_matrix(c.lengths_angstrom, c.angles_deg)
    assert m[0, 1] == m[0, 2] == m[1, 2] == 0.0
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), triclinic.lattice.abc)
    # positions are the fractional coordinates in that frame, not pymatgen's c-along-z frame
    np.testing.assert_allclose(c.positions_angstrom, np.mod(triclinic.frac_coords, 1) @ m, atol=1e-12)
    cos_gamma = m[0] @ m[1] / (np.linalg.norm(m[0]) * np.linalg.norm(m[1]))
    assert math.isclose(math.degrees(math.acos(cos_gamma)), 104.0, abs_tol=1e-9)


def test_conventional_cell_by_default_and_keep_cell_option(nacl):
    prim = nacl.get_primitive_structure()
    assert len(prim) == 2
    assert crystal_from_structure(prim).num_atoms == 8
    assert crystal_from_structure(prim, conventional=False).num_atoms == 2


def test_batch_angles_radians_inside_and_degrees_at_boundary(nacl):
    batch, vocab = CrystalBatch.from_structures([nacl])
    assert torch.allclose(batch.angles, torch.full((1, 3), math.pi / 2))
    assert batch.to_structures(vocab)[0].lattice.angles == pytest.approx((90, 90, 90), abs=1e-4)


def test_vocab_sorted_and_unknown_element_named(nacl):
    c = crystal_from_structure(nacl)
    vocab = SpeciesVocab.from_crystals([c])
    assert vocab.atomic_numbers == (11, 17)
    np.testing.assert_array_equal(vocab.decode(vocab.encode(c.atomic_numbers)), c.atomic_numbers)
    with pytest.raises(UnknownSpeciesError, match=r"Fe.*'x1'.*vocabulary"):
        SpeciesVocab((11,)).encode(np.array([11, 26]), "x1")


def test_select_and_padding_match_plain_loop():
    rng = np.random.default_rng(3)
    crystals = random_crystals(rng, 7)
    vocab = SpeciesVocab.from_crystals(crystals)
    batch = CrystalBatch.from_crystals(crystals, vocab, dtype=torch.float64)
    sub = batch.select(torch.tensor([5, 1, 3]))
    assert sub.ids == ["r1", "r3", "r5"]
    for k, i in enumerate([1, 3, 5]):
        np.testing.assert_allclose(sub.positions[sub.batch == k].numpy(), crystals[i].positions_angstrom)
    padded, mask = batch.padded_positions()
    for i, c in enumerate(crystals):
        assert int(mask[i].sum()) == c.num_atoms
        np.testing.assert_allclose(padded[i, : c.num_atoms].numpy(), c.positions_angstrom)


def test_disordered_structure_rejected_with_hint(nacl):
    s = nacl.copy()
    s.replace(0, {"Na": 0.5, "K": 0.5})
    with pytest.raises(DisorderedStructureError, match="partial occupancy"):
        crystal_from_structure(s, "dis1")


def test_empty_structure_rejected():
    from pymatgen.core import Lattice, Structure

    with pytest.raises(EmptyStructureError, match="no atoms"):
        crystal_from_structure(Structure(Lattice.cubic(3), [], []), "empty")


def test_nan_coordinates_rejected(nacl):
    from pymatgen.core import Structure

    bad = Structure(nacl.lattice, ["Na", "Cl"], [[0, 0, 0], [float("nan"), 0.5, 0.5]])
    with pytest.raises(NonFiniteCoordinatesError, match="NaN or infinite"):
        crystal_from_structure(bad, "nan1", conventional=False)


def _write_csv(path, rows):
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["material_id", "formula", "cif"])
        w.writerows(rows)


def test_csv_reader_keeps_properties_and_names_bad_row(tmp_path, nacl, triclinic):
    good = nacl.to(fmt="cif")
    p = tmp_path / "d.csv"
    _write_csv(p, [["mp-1", "NaCl", good], ["mp-2", "X", "data_broken\n_cell_length_a oops\n"],
                   ["mp-3", "SiO", triclinic.to(fmt="cif")]])
    with pytest.raises(MalformedCIFError, match=r"row 3 \(id mp-2\)"):
        read_csv(p)
    report = ReadReport()
    with pytest.warns(SkippedStructuresWarning, match="skipped 1"):
        crystals = read_csv(p, on_error="skip", report=report)
    assert [c.id for c in crystals] == ["mp-1", "mp-3"]
    assert crystals[0].properties["formula"] == "NaCl"
    assert report.read == 2 and report.skipped[0][0].endswith("(id mp-2)")


def test_csv_without_cif_column(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(DatasetError, match="no 'cif' column"):
        read_csv(p)


def test_cif_folder_and_structure_list(tmp_path, nacl, triclinic):
    (tmp_path / "b.cif").write_text(nacl.to(fmt="cif"))
    (tmp_path / "a.cif").write_text(triclinic.to(fmt="cif"))
    crystals = read_cif_folder(tmp_path, conventional=False)
    assert [c.id for c in crystals] == ["a", "b"]
    assert [c.num_atoms for c in read_structures([nacl, triclinic], ids=["n", "t"])] == [8, 4]
    with pytest.raises(DatasetError, match="no .cif files"):
        read_cif_folder(tmp_path / "nothing")


def test_load_crystals_dispatch_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_crystals(tmp_path / "missing.cifs")
    assert len(load_crystals("synthetic:50", "val")) == 5


def test_cell_larger_than_box_warns_with_numbers(nacl):
    small = BoundingBox((0.0, 0.0, 0.0), (2.0, 2.0, 2.0))
    with pytest.warns(CellTooLargeWarning, match=r"beyond the training box \[0.0, 0.0, 0.0\] .. \[2.0, 2.0, 2.0\]"):
        small.check(crystal_from_structure(nacl))
    crystal = crystal_from_structure(nacl)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        BoundingBox((0.0, 0.0, 0.0), (6.0, 6.0, 6.0)).check(crystal)


def test_bounding_box_is_min_max_over_training_atoms():
    rng = np.random.default_rng(1)
    crystals = random_crystals(rng, 5)
    box = BoundingBox.from_crystals(crystals)
    allpos = np.concatenate([c.positions_angstrom for c in crystals])
    np.testing.assert_allclose(box.min_angstrom, allpos.min(0))
    np.testing.assert_allclose(box.max_angstrom, allpos.max(0))


@pytest.mark.data
def test_reads_shared_lcs6_test_frame_matches_published_positions():
    p = shared_data("nesf_paper/lcs6_test.csv")
    crystals = read_csv(p, conventional=False, limit=20)
    for c in crystals:
        frac = c.frac_coords
        assert (frac > -1e-6).all() and (frac < 1 + 1e-6).all()


def test_a_typo_in_on_error_or_a_bad_limit_is_named_not_taken_as_skip():
    from nesf_viz.data import load_crystals
    from nesf_viz.errors import DatasetError

    with pytest.raises(DatasetError, match="on_error must be 'raise' or 'skip', got 'ignore'"):
        load_crystals("synthetic:10", on_error="ignore")
    for bad in (0, -1, 2.5):
        with pytest.raises(DatasetError, match="limit must be a positive integer"):
            load_crystals("synthetic:10", limit=bad)


@pytest.mark.data
def test_loading_the_perov_5_perovskites_prints_nothing_on_stderr(capfd, monkeypatch):
    # their distorted positions make spglib retry while building conventional cells, and spglib's C
    # code wrote "spglib: ssm_get_exact_positions failed." lines to stderr (rows 101-200 do)
    import os

    from nesf_viz.data import load_crystals, quiet_spglib
    from nesf_viz.datasets import FILES

    p = shared_data(FILES["perov_5_val"])
    monkeypatch.delenv("SPGLIB_WARNING", raising=False)
    capfd.readouterr()
    crystals = load_crystals(p, limit=200)  # a path: conventional standard cells, as the CLI reads it
    assert len(crystals) == 200 and all(c.num_atoms >= 5 for c in crystals)
    out, err = capfd.readouterr()
    assert err == "", err[:500]
    assert "SPGLIB_WARNING" not in os.environ  # the switch is restored after the call
    monkeypatch.setenv("SPGLIB_WARNING", "ON")
    with quiet_spglib():
        assert os.environ["SPGLIB_WARNING"] == "OFF"
    assert os.environ["SPGLIB_WARNING"] == "ON"
