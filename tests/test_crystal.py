import numpy as np
import pytest

from nesf_viz.crystal import Crystal, is_physical_cell


def _cube(a: float) -> np.ndarray:
    return np.eye(3) * a


def test_a_real_cell_is_physical_and_degenerate_ones_are_not():
    assert is_physical_cell(_cube(4.0), 8)
    assert not is_physical_cell(_cube(0.5), 1)  # a length under 1 A
    assert not is_physical_cell(_cube(2.0), 9)  # 8 A^3 cannot hold 9 atoms
    flat = np.array([[4.0, 0, 0], [0, 4.0, 0], [3.99, 3.99, 0.01]])
    assert not is_physical_cell(flat, 1)  # volume under 1 % of a*b*c
    nan = _cube(4.0)
    nan[0, 0] = np.nan
    assert not is_physical_cell(nan, 1)
    assert not is_physical_cell(np.eye(2), 1)


def test_crystal_fractional_coordinates_and_structure_round_trip():
    frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.25, 0.75]])
    lengths, angles = (4.1, 5.3, 6.2), (78.0, 95.0, 104.0)
    probe = Crystal(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), lengths, angles)
    c = Crystal(frac @ probe.lattice, np.array([8, 14]), lengths, angles, id="x")
    np.testing.assert_allclose(c.frac_coords, frac, atol=1e-12)
    st = c.to_structure()
    assert st.properties["material_id"] == "x" and [s.specie.Z for s in st] == [8, 14]
    np.testing.assert_allclose(st.lattice.parameters, (*lengths, *angles), atol=1e-9)
    assert c.num_atoms == 2 and c.has_physical_cell()


def test_angles_that_describe_no_cell_are_not_physical():
    c = Crystal(np.zeros((1, 3)), np.array([1]), (3.0, 3.0, 3.0), (10.0, 10.0, 170.0))
    assert not c.has_physical_cell()


@pytest.mark.parametrize("name", ["Crystal", "is_physical_cell"])
def test_data_still_exports_the_record(name):
    import nesf_viz.crystal
    import nesf_viz.data

    assert getattr(nesf_viz.data, name) is getattr(nesf_viz.crystal, name)
