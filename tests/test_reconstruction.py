"""`reconstruct`: one's own crystal through a trained NeSF."""

import pytest


def test_reconstruct_ones_own_crystal_in_one_call(tmp_path):
    """A user's rock salt and perovskite (built here, not taken from the data) through the shipped
    model: decoded right, and the result says so; a CIF path works the same way."""
    from pymatgen.core import Lattice, Structure

    import nesf_viz as nv
    from nesf_viz.errors import UnknownSpeciesError

    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    r = nv.reconstruct(nacl)
    assert r.verdict.true_formula == "NaCl" and r.verdict.true_atoms == 8
    assert r.verdict.right and r.verdict.matched, str(r)
    assert r.verdict.position_error_A < 0.1
    assert "decoded right" in r.figure().layout.title.text
    cif = tmp_path / "srtio3.cif"
    Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"],
                              [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]).to(filename=str(cif))
    r2 = nv.reconstruct(cif)
    assert r2.original.id == "srtio3" and r2.verdict.decoded_formula == "SrTiO3", str(r2)
    out = r2.to_cif(tmp_path / "decoded" / "srtio3.cif")
    assert Structure.from_file(out).composition.reduced_formula == "SrTiO3"
    uranium = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.5), ["U", "O"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    with pytest.raises(UnknownSpeciesError, match="element.s. U in 'UO2' not in the model's species vocabulary"):
        nv.reconstruct(uranium)
    with pytest.raises(TypeError, match="pymatgen Structure, a CIF path or a Crystal"):
        nv.reconstruct(42)
