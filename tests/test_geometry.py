"""Cell geometry: the numpy twins in nesf_viz.geometry agree with the torch ones."""

import itertools

import numpy as np
import pytest
import torch

from nesf_viz import data
from nesf_viz.errors import CrystalInputError
from nesf_viz.geometry import (
    IMAGE_OFFSETS,
    UNIT_CUBE_CORNERS,
    image_positions,
    image_shifts,
    lattice_and_inverse,
    lattice_matrices,
    lattice_matrix_np,
    min_image,
    min_image_frac,
    vecmat,
    wrap,
    wrap_frac,
)


def _random_cells(seed: int, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) lengths in A and (n, 3) angles in degrees of skewed but valid cells."""
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(1.5, 12.0, (n, 3))
    angles = rng.uniform(60.0, 120.0, (n, 3))
    keep = []
    for i in range(n):
        try:
            lattice_matrix_np(lengths[i], angles[i])
            keep.append(i)
        except CrystalInputError:
            pass
    assert len(keep) >= n // 2
    return lengths[keep], angles[keep]


def _torch_lattices(lengths: np.ndarray, angles_deg: np.ndarray) -> torch.Tensor:
    return lattice_matrices(torch.tensor(lengths, dtype=torch.float64),
                            torch.deg2rad(torch.tensor(angles_deg, dtype=torch.float64)))


def test_lattice_matrix_numpy_equals_torch():
    lengths, angles = _random_cells(0)
    lat_t = _torch_lattices(lengths, angles).numpy()
    lat_n = np.stack([lattice_matrix_np(ln, an) for ln, an in zip(lengths, angles)])
    np.testing.assert_allclose(lat_n, lat_t, rtol=0, atol=1e-12)
    # frame 'a along x, b in the xy plane', row lengths are the cell lengths
    assert np.all(lat_n[:, 0, 1:] == 0) and np.all(lat_n[:, 1, 2] == 0)
    np.testing.assert_allclose(np.linalg.norm(lat_n, axis=-1), lengths, rtol=1e-12)


def test_lattice_matrix_old_home_and_impossible_angles():
    assert data.lattice_matrix is lattice_matrix_np
    with pytest.raises(CrystalInputError):
        lattice_matrix_np((3, 3, 3), (10, 10, 170))
    lat = _torch_lattices(np.array([[3.0, 3, 3]]), np.array([[10.0, 10, 170]]))
    assert torch.isnan(lat[0, 2, 2]) and torch.isfinite(lat[0, :2]).all()  # the torch twin: NaN c_z instead


def test_image_offsets_order_matches_torch_image_shifts():
    ij = np.stack(np.meshgrid(*([np.arange(-1, 2)] * 3), indexing="ij"), -1).reshape(27, 3)
    np.testing.assert_array_equal(IMAGE_OFFSETS, ij)  # x slowest
    assert IMAGE_OFFSETS.dtype == np.int64 and not IMAGE_OFFSETS.flags.writeable
    assert (IMAGE_OFFSETS[13] == 0).all()
    lengths, angles = _random_cells(1)
    shifts_t = image_shifts(torch.tensor(lengths), torch.deg2rad(torch.tensor(angles))).numpy()
    for b in range(len(lengths)):
        np.testing.assert_allclose(IMAGE_OFFSETS @ lattice_matrix_np(lengths[b], angles[b]), shifts_t[b],
                                   rtol=0, atol=1e-11)


def test_image_positions():
    rng = np.random.default_rng(2)
    lat = lattice_matrix_np((3.0, 4.0, 5.0), (80.0, 95.0, 110.0))
    pos = rng.uniform(0, 4, (5, 3))
    img = image_positions(pos, lat)
    assert img.shape == (5, 27, 3)
    np.testing.assert_array_equal(img[:, 13], pos)
    for k, off in enumerate(IMAGE_OFFSETS):
        np.testing.assert_allclose(img[:, k], pos + off @ lat, rtol=0, atol=1e-12)


def test_unit_cube_corners():
    assert UNIT_CUBE_CORNERS.shape == (8, 3) and UNIT_CUBE_CORNERS.dtype == np.float64
    np.testing.assert_array_equal(UNIT_CUBE_CORNERS, list(itertools.product((0, 1), repeat=3)))
    assert not UNIT_CUBE_CORNERS.flags.writeable


def test_min_image_numpy_equals_torch():
    lengths, angles = _random_cells(3)
    rng = np.random.default_rng(3)
    lat, inv = lattice_and_inverse(torch.tensor(lengths), torch.deg2rad(torch.tensor(angles)))
    d = torch.tensor(rng.uniform(-2.5, 2.5, (len(lengths), 50, 3))) @ lat
    d_t = min_image(d, lat[:, None], inv[:, None]).numpy()
    frac = vecmat(d, inv[:, None]).numpy()  # the fractional coordinates the torch twin rounds
    f_n = min_image_frac(frac)
    assert np.all(np.abs(f_n) <= 0.5)
    np.testing.assert_array_equal(f_n - frac, np.round(f_n - frac))  # moved by whole cells only
    d_n = np.einsum("bnj,bjk->bnk", f_n, lat.numpy())
    np.testing.assert_allclose(d_n, d_t, rtol=0, atol=1e-9)


def test_min_image_ties_round_to_even_in_both_twins():
    f = np.array([[0.5, -0.5, 1.5], [2.5, -1.5, 0.49]])
    expected = [[0.5, -0.5, -0.5], [0.5, 0.5, 0.49]]
    np.testing.assert_array_equal(min_image_frac(f), expected)
    eye = torch.eye(3, dtype=torch.float64)
    np.testing.assert_array_equal(min_image(torch.tensor(f), eye, eye).numpy(), expected)


def test_wrap_numpy_equals_torch():
    lengths, angles = _random_cells(4)
    rng = np.random.default_rng(4)
    lat, inv = lattice_and_inverse(torch.tensor(lengths), torch.deg2rad(torch.tensor(angles)))
    p = torch.tensor(rng.uniform(-3.0, 3.0, (len(lengths), 50, 3))) @ lat
    p_t = wrap(p, lat[:, None], inv[:, None]).numpy()
    f_n = wrap_frac(vecmat(p, inv[:, None]).numpy())  # the fractional coordinates the torch twin wraps
    assert np.all((f_n >= 0) & (f_n < 1))
    np.testing.assert_allclose(np.einsum("bnj,bjk->bnk", f_n, lat.numpy()), p_t, rtol=0, atol=1e-9)


def test_wrap_stays_below_one_where_floor_gives_one():
    f = np.array([[-1e-17, 0.0, 1.0], [-2.0, 0.999, -0.25]])
    assert f[0, 0] - np.floor(f[0, 0]) == 1.0  # -1e-17 + 1 rounds to exactly 1.0: the case to repair
    expected = [[0.0, 0.0, 0.0], [0.0, 0.999, 0.75]]
    out = wrap_frac(f)
    assert np.all((out >= 0) & (out < 1))
    np.testing.assert_array_equal(out, expected)
    eye = torch.eye(3, dtype=torch.float64)
    np.testing.assert_array_equal(wrap(torch.tensor(f), eye, eye).numpy(), expected)


def test_wrap_frac_keeps_the_input():
    f = np.array([[1.25, -0.25, 2.0]])
    out = wrap_frac(f)
    np.testing.assert_allclose(out, [[0.25, 0.75, 0.0]])
    np.testing.assert_array_equal(f, [[1.25, -0.25, 2.0]])
