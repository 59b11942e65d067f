"""Paper metrics, periodic variants and StructureMatcher, on cases computed by hand."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from nesf_viz.data import Crystal
from nesf_viz.metrics import (
    METRIC_KEYS,
    crystal_errors,
    crystal_verdicts,
    format_verdicts,
    match_metrics,
    matchable,
    metrics_of,
    paper_metrics,
)

NA, CL, K = 11, 17, 19


def C(pos, z, lengths=(4.0, 4.0, 4.0), angles=(90.0, 90.0, 90.0), id=""):
    return Crystal(np.array(pos, dtype=float).reshape(-1, 3), np.array(z, dtype=np.int64), lengths, angles, id=id)


@pytest.fixture
def split():
    # crystal 1: 2 true atoms, 3 detected
    t1 = C([[0, 0, 0], [1, 0, 0]], [NA, CL], id="a")
    p1 = C([[0.1, 0, 0], [1, 0, 0.2], [3, 3, 3]], [NA, NA, CL], lengths=(4.1, 3.9, 4.0),
           angles=(90.0, 91.0, 88.0), id="a")
    # crystal 2: 1 true atom, nothing detected
    t2 = C([[2, 2, 2]], [K], lengths=(5.0, 5.0, 5.0), id="b")
    p2 = C(np.zeros((0, 3)), [], lengths=(5.0, 5.5, 5.0), angles=(90.0, 90.0, 93.0), id="b")
    # crystal 3: perfect
    t3 = C([[0.5, 0.5, 0.5]], [NA], id="c")
    p3 = C([[0.5, 0.5, 0.5]], [NA], id="c")
    return [t1, t2, t3], [p1, p2, p3]


def test_per_crystal_errors_by_hand(split):
    (t1, *_), (p1, *_) = split
    e = crystal_errors(t1, p1)
    np.testing.assert_allclose(e.distance_actual, [0.1, 0.2])
    np.testing.assert_allclose(e.distance_detected, [0.1, 0.2, math.sqrt(22.0)])
    # true Na -> Na ok; true Cl -> nearest detected (1,0,0.2) is Na: wrong
    assert e.species_wrong_actual.tolist() == [False, True]
    # detected Na -> Na ok; Na at (1,0,.2) -> true Cl wrong; Cl at (3,3,3) -> nearest true Cl ok
    assert e.species_wrong_detected.tolist() == [False, True, False]
    np.testing.assert_allclose(e.length_abs_error, [0.1, 0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(e.angle_abs_error, [0.0, 1.0, 2.0])
    assert not e.atom_count_correct


def test_paper_metrics_by_hand(split):
    true, pred = split
    m = paper_metrics(true, pred)
    assert m.n_structures == 3
    assert m.atom_count_error_pct == pytest.approx(100 * 2 / 3)  # a (2 vs 3) and b (1 vs 0)
    # actual: over true atoms of crystals with detections (a: 0.1, 0.2; c: 0); b left out
    assert m.position_error_actual_A == pytest.approx((0.1 + 0.2 + 0.0) / 3)
    assert m.n_no_atoms == 1
    # detected: every detected atom of the split (a: 3, c: 1)
    assert m.position_error_detected_A == pytest.approx((0.1 + 0.2 + math.sqrt(22) + 0) / 4)
    # species actual: a: 1 wrong of 2; b: its true atom counts wrong (reference: vs -1); c: ok
    assert m.species_error_actual_pct == pytest.approx(100 * 2 / 4)
    assert m.species_error_detected_pct == pytest.approx(100 * 1 / 4)
    # lattice: 9 lengths |0.1, 0.1, 0| |0, 0.5, 0| |0, 0, 0|; angles |0,1,2| |0,0,3| |0,0,0|
    assert m.length_mae_A == pytest.approx(0.7 / 9)
    assert m.angle_mae_deg == pytest.approx(6.0 / 9)


def test_metrics_of_is_the_paper_table_plus_structurematcher(split):
    true, pred = split
    m = metrics_of(true, pred, match=False)
    assert tuple(m.to_dict()) == METRIC_KEYS
    paper = paper_metrics(true, pred).to_dict()
    assert {k: v for k, v in m.to_dict().items() if k in paper} == {k: v for k, v in paper.items() if k != "periodic"}
    assert math.isnan(m.match_rate_pct) and math.isnan(m.match_rmse) and math.isnan(m.decode_structures_per_s)
    matched = metrics_of(true, pred, match=True)
    mm = match_metrics(true, pred)
    assert matched.match_rate_pct == mm.match_rate_pct
    assert matched.match_rmse == mm.rmse or (math.isnan(matched.match_rmse) and math.isnan(mm.rmse))
    periodic = metrics_of(true, pred, periodic=True, match=False)
    assert periodic.position_error_actual_A == paper_metrics(true, pred, periodic=True).position_error_actual_A


def test_paper_metrics_accept_decode_results_and_check_order(split):
    true, pred = split
    with pytest.raises(ValueError, match="out of order"):
        paper_metrics(true, pred[::-1])
    with pytest.raises(ValueError):
        paper_metrics(true, pred[:2])
    perfect = paper_metrics(true[2:], pred[2:])
    assert perfect.atom_count_error_pct == 0 and perfect.position_error_actual_A == 0
    assert perfect.species_error_actual_pct == 0 and perfect.length_mae_A == 0


def test_periodic_variant_uses_images():
    t = C([[0.1, 0, 0]], [NA])
    p = C([[3.9, 0, 0]], [NA])
    assert crystal_errors(t, p).distance_actual[0] == pytest.approx(3.8)
    e = crystal_errors(t, p, periodic=True)
    assert e.distance_actual[0] == pytest.approx(0.2)
    assert e.distance_detected[0] == pytest.approx(0.2)
    m = paper_metrics([t], [p], periodic=True)
    assert m.position_error_actual_A == pytest.approx(0.2) and m.periodic
    # species follow the nearest image: Cl near the far face is the nearest to the true Na
    p2 = C([[3.95, 0, 0], [2.0, 0, 0]], [CL, NA])
    e2 = crystal_errors(t, p2, periodic=True)
    assert e2.species_wrong_actual.tolist() == [True]
    assert crystal_errors(t, p2).species_wrong_actual.tolist() == [False]


def test_structure_matcher_rate_and_rmse():
    rock = C([[0, 0, 0], [2, 2, 2]], [NA, CL], id="r")
    shifted = C([[1, 1, 1], [3, 3, 3]], [NA, CL], id="r")  # same crystal, shifted origin
    other = C([[0, 0, 0], [2, 2, 2]], [NA, NA], id="x")  # different composition
    empty = C(np.zeros((0, 3)), [], id="e")
    true = [rock, C(other.positions_angstrom, [NA, CL], id="x"), C(rock.positions_angstrom, [NA, CL], id="e")]
    mm = match_metrics(true, [shifted, other, empty])
    assert mm.n_structures == 3 and mm.n_matched == 1
    assert mm.match_rate_pct == pytest.approx(100 / 3)
    assert mm.rmse == pytest.approx(0.0, abs=1e-8)
    # one atom moved 0.1 A: the best translation leaves +-0.05 A, pymatgen divides the RMS by
    # (V / N)^(1/3) = (64 / 2)^(1/3)
    moved = C([[0, 0, 0], [2.1, 2, 2]], [NA, CL], id="r")
    mm2 = match_metrics([rock], [moved])
    assert mm2.match_rate_pct == 100
    assert mm2.rmse == pytest.approx(0.05 / 32 ** (1 / 3), rel=1e-6)
    nothing = match_metrics([rock], [C(np.zeros((0, 3)), [], id="r")])
    assert nothing.match_rate_pct == 0 and math.isnan(nothing.rmse)


def test_matchable_skips_only_pairs_that_cannot_match():
    rock = C([[0, 0, 0], [2, 2, 2]], [NA, CL], id="r")
    doubled = C([[0, 0, 0], [2, 2, 2], [1, 1, 1], [3, 3, 3]], [NA, CL, NA, CL], id="r")
    assert matchable(rock, rock) and matchable(rock, doubled)  # same reduced composition
    assert not matchable(rock, C([[0, 0, 0], [2, 2, 2]], [NA, NA], id="r"))
    assert not matchable(rock, C(np.zeros((0, 3)), [], id="r"))


def test_degenerate_decoded_cell_is_unmatched_quickly():
    """What a barely trained model decodes: a flat 0.02 A cell with many atoms. StructureMatcher
    on such cells ran for minutes and exhausted memory; it must be a quick 'unmatched'."""
    rock = C([[0, 0, 0], [2, 2, 2]], [NA, CL], id="r")
    rng = np.random.default_rng(0)
    flat = C(rng.normal(size=(50, 3)), [NA, CL] * 25, lengths=(0.02, 0.1, 0.18),
             angles=(4.4, 0.8, 4.1), id="r")
    assert not matchable(rock, flat)
    t0 = time.perf_counter()
    mm = match_metrics([rock], [flat])
    assert mm.n_matched == 0 and time.perf_counter() - t0 < 5


def test_crystal_verdicts_say_which_crystals_decoded_right(split):
    true, pred = split
    # crystal 4: right count and positions, one species swapped (NaCl -> NaNa): composition wrong
    t4 = C([[0, 0, 0], [2, 2, 2]], [NA, CL], id="d")
    p4 = C([[0, 0, 0], [2, 2, 2]], [NA, NA], id="d")
    v = crystal_verdicts([*true, t4], [*pred, p4])
    assert [x.id for x in v] == ["a", "b", "c", "d"]
    a, b, c, d = v
    assert (a.true_formula, a.true_atoms, a.decoded_atoms) == ("NaCl", 2, 3)
    assert a.decoded_formula == "Na2Cl" and not a.composition_right and not a.right
    assert a.position_error_A == pytest.approx(0.15) and a.species_error_pct == pytest.approx(50.0)
    assert b.decoded_formula == "(no atoms)" and b.position_error_A == math.inf and b.matched is False
    assert c.right and c.matched and c.position_error_A == 0.0 and c.species_error_pct == 0.0
    assert d.true_atoms == d.decoded_atoms and not d.composition_right and not d.right
    assert d.species_error_pct == pytest.approx(50.0) and d.matched is False
    assert a.length_mae_A == pytest.approx(0.2 / 3) and a.angle_mae_deg == pytest.approx(1.0)
    # without StructureMatcher a right count and composition is enough
    assert crystal_verdicts([t4], [t4], match=False)[0].matched is None
    assert crystal_verdicts([t4], [t4], match=False)[0].right


def test_format_verdicts_names_every_crystal_and_counts_the_right_ones(split):
    true, pred = split
    text = format_verdicts(crystal_verdicts(true, pred))
    lines = text.splitlines()
    assert len(lines) == 1 + 3 + 1
    assert lines[1].startswith("a ") and "NaCl" in lines[1] and "Na2Cl" in lines[1]
    assert lines[1].endswith("WRONG (matcher: another composition)")
    assert "(no atoms)" in lines[2] and "inf" in lines[2]
    assert lines[3].endswith("right")
    assert lines[-1].startswith("1/3 decoded right") and "composition right 1/3" in lines[-1]


def test_the_verdict_says_why_structurematcher_refused():
    from nesf_viz.geometry import lattice_matrix_np
    from nesf_viz.metrics import matcher_reason

    lengths, angles = (5.0, 5.5, 6.0), (80.0, 95.0, 100.0)
    lat = lattice_matrix_np(lengths, angles)
    z = [NA, CL, CL, 8, 8, 12]
    frac = np.array([[0.1, 0.2, 0.3], [0.6, 0.1, 0.7], [0.3, 0.8, 0.2], [0.85, 0.55, 0.9], [0.45, 0.5, 0.5],
                     [0.2, 0.6, 0.8]])
    # every site moved by ~0.3 of the cell: no mapping within stol 0.5 (a looser stol finds one)
    moved = np.array([[0.049, 0.461, 0.961], [0.473, 0.173, 0.24], [0.071, 0.476, 0.031], [0.141, 0.479, 0.297],
                      [0.888, 0.839, 0.81], [0.774, 0.646, 0.165]])
    true = C(frac @ lat, z, lengths, angles, id="t")
    far = C(moved @ lat, z, lengths, angles, id="t")
    assert matcher_reason(true, true) == "matched"
    assert matcher_reason(true, far).startswith("sites beyond stol 0.5 (normalised RMS 0.61")
    assert matcher_reason(true, C(np.zeros((0, 3)), [], id="t")) == "no atom decoded"
    # rock salt with one Cl moved: the matcher compares primitive cells, 8 sites against 2
    a = 5.6
    rs_frac = np.array([[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5],
                        [.5, .5, .5]])
    rs = C(rs_frac * a, [NA] * 4 + [CL] * 4, (a, a, a), id="r")
    rs_frac[7] += [0.2, 0.15, 0.0]
    broken = C(rs_frac * a, [NA] * 4 + [CL] * 4, (a, a, a), id="r")
    assert matcher_reason(rs, broken) == "symmetry lost: primitive cell of 8 sites, the true one has 2"
    stretched = C(rs.positions_angstrom * [1.6, 1, 1], rs.atomic_numbers, (1.6 * a, a, a), id="r")  # a: +60 %
    assert matcher_reason(rs, stretched).startswith("lattice beyond ltol 0.3 / angle_tol 10")
    v = crystal_verdicts([true, true], [far, true])
    assert v[0].matched is False and v[0].matcher_reason.startswith("sites beyond stol")
    assert v[1].matched and v[1].matcher_reason == ""


def test_site_errors_are_the_per_atom_terms_of_the_verdict_and_say_what_their_mean_is(split):
    from nesf_viz.metrics import format_site_errors, site_errors

    true, pred = split
    rows = site_errors(true[0], pred[0])
    assert [(r.site, r.element, r.nearest_element) for r in rows] == [(0, "Na", "Na"), (1, "Cl", "Na")]
    np.testing.assert_allclose([r.distance_A for r in rows], [0.1, 0.2])
    assert [r.species_right for r in rows] == [True, False]
    v = crystal_verdicts(true, pred, match=False)[0]
    assert v.position_error_A == pytest.approx(np.mean([r.distance_A for r in rows]))
    assert v.species_error_pct == pytest.approx(50.0)
    text = format_site_errors(true, pred, 0)
    lines = text.splitlines()
    assert len(lines) == 2 + 2 + 1 and lines[0].startswith("a (NaCl, decoded as Na2Cl)")
    assert lines[3].split()[:2] == ["1", "Cl"] and lines[3].endswith("0.200 Å  WRONG")
    assert lines[-1].startswith("mean 0.150 Å = this crystal's position error") and "3 atoms decoded" in lines[-1]
    # nothing decoded: every true atom says so
    (row,) = site_errors(true[1], pred[1])
    assert row.nearest_element == "" and math.isinf(row.distance_A) and not row.species_right
    assert "(none)" in format_site_errors(true[1], pred[1])


def test_success_and_failure_picks_one_of_each_or_says_there_is_none(split):
    from nesf_viz.metrics import success_and_failure

    true, pred = split
    verdicts = crystal_verdicts(true, pred, match=False)
    assert success_and_failure(verdicts) == (2, 0)
    assert success_and_failure(verdicts[:2]) == (None, 0)
    assert success_and_failure(verdicts[2:]) == (0, None)
