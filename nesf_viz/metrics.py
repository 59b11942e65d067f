"""Reconstruction metrics: the paper's (as the reference evaluate.py computes them), periodic
variants, and pymatgen StructureMatcher match rate / RMSE (CDVAE convention).

Pairs are (true crystal, decoded crystal) in the same order. All distances in Angstrom,
computed in float64 in the project frame; angles in degrees.

Reference semantics kept here:

- atom-count error: share of crystals whose detected atom count differs from the truth;
- position error *actual*: every true atom -> nearest detected atom, mean over all true atoms
  of the split (not a mean of per-crystal means); *detected*: every detected atom -> nearest
  true atom, mean over all detected atoms;
- species error *actual*: share of true atoms whose nearest detected atom has another species;
  *detected*: share of detected atoms whose nearest true atom has another species;
- lattice: mean absolute error over all crystals and the three lengths (A) / angles (deg).

Where they differ: a crystal with no detected atom makes the reference's actual position
error infinite. Here it is left out of the position means and counted in ``n_no_atoms``; its
true atoms still count as species errors (the reference compares them with species -1).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Sequence

import numpy as np

from .data import Crystal
from .geometry import image_positions

log = logging.getLogger(__name__)

__all__ = [
    "ReconstructionMetrics",
    "METRIC_KEYS",
    "metrics_of",
    "CrystalErrors",
    "PaperMetrics",
    "MatchMetrics",
    "crystal_errors",
    "paper_metrics",
    "match_metrics",
    "CrystalVerdict",
    "crystal_verdicts",
    "format_verdicts",
    "verdict_summary",
    "SiteError",
    "site_errors",
    "format_site_errors",
    "success_and_failure",
    "matchable",
]

@dataclass(frozen=True)
class CrystalErrors:
    """Per-atom errors of one (true, decoded) pair (numpy)."""

    distance_actual: np.ndarray  # (N_true,) to the nearest detected atom (inf if none)
    distance_detected: np.ndarray  # (N_det,) to the nearest true atom
    species_wrong_actual: np.ndarray  # (N_true,) bool
    species_wrong_detected: np.ndarray  # (N_det,) bool
    length_abs_error: np.ndarray  # (3,) A
    angle_abs_error: np.ndarray  # (3,) degrees

    @property
    def atom_count_correct(self) -> bool:
        return self.distance_actual.shape[0] == self.distance_detected.shape[0]


def _images(c: Crystal, periodic: bool) -> np.ndarray:
    """(N * 27, 3) atoms and their neighbouring images, or (N, 3) atoms."""
    pos = np.asarray(c.positions_angstrom, dtype=np.float64).reshape(-1, 3)
    if not periodic:
        return pos
    return image_positions(pos, c.lattice).reshape(-1, 3)


def _nearest(queries: np.ndarray, targets: np.ndarray, per: int) -> tuple[np.ndarray, np.ndarray]:
    """Distance to and index (atom, not image) of the nearest target; first on ties."""
    d = np.sqrt(((queries[:, None, :] - targets[None, :, :]) ** 2).sum(-1))
    j = d.argmin(1)
    return d[np.arange(len(queries)), j], j // per


def crystal_errors(true: Crystal, pred: Crystal, periodic: bool = False) -> CrystalErrors:
    """Errors of one pair. periodic=True: nearest over the other crystal's atoms and their
    26 neighbouring images under its own lattice (the predicted one for detected atoms)."""
    tp = np.asarray(true.positions_angstrom, dtype=np.float64).reshape(-1, 3)
    pp = np.asarray(pred.positions_angstrom, dtype=np.float64).reshape(-1, 3)
    tz = np.asarray(true.atomic_numbers)
    pz = np.asarray(pred.atomic_numbers)
    per = 27 if periodic else 1
    if len(pp):
        da, ja = _nearest(tp, _images(pred, periodic), per)
        wrong_a = pz[ja] != tz
    else:
        da = np.full(len(tp), np.inf)
        wrong_a = np.ones(len(tp), dtype=bool)
    if len(tp) and len(pp):
        dd, jd = _nearest(pp, _images(true, periodic), per)
        wrong_d = tz[jd] != pz
    else:
        dd = np.full(len(pp), np.inf)
        wrong_d = np.ones(len(pp), dtype=bool)
    return CrystalErrors(
        distance_actual=da,
        distance_detected=dd,
        species_wrong_actual=wrong_a,
        species_wrong_detected=wrong_d,
        length_abs_error=np.abs(np.subtract(true.lengths_angstrom, pred.lengths_angstrom, dtype=np.float64)),
        angle_abs_error=np.abs(np.subtract(true.angles_deg, pred.angles_deg, dtype=np.float64)),
    )


@dataclass(frozen=True)
class PaperMetrics:
    """The paper's table for one split (lower is better). NaN where nothing was measurable."""

    n_structures: int
    atom_count_error_pct: float
    position_error_actual_A: float
    position_error_detected_A: float
    species_error_actual_pct: float
    species_error_detected_pct: float
    length_mae_A: float
    angle_mae_deg: float
    n_no_atoms: int
    periodic: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _as_crystals(pred) -> list[Crystal]:
    return pred.to_crystals() if hasattr(pred, "to_crystals") else list(pred)


def _pairs(true: Sequence[Crystal], pred) -> list[tuple[Crystal, Crystal]]:
    pred = _as_crystals(pred)
    if len(true) != len(pred):
        raise ValueError(f"{len(true)} true crystals but {len(pred)} decoded ones")
    for t, p in zip(true, pred):
        if t.id and p.id and t.id != p.id:
            raise ValueError(f"pairs out of order: true {t.id!r} next to decoded {p.id!r}")
    return list(zip(true, pred))


def _mean(parts: list[np.ndarray]) -> float:
    x = np.concatenate(parts) if parts else np.zeros(0)
    return float(x.mean()) if x.size else float("nan")


def paper_metrics(true: Sequence[Crystal], pred, periodic: bool = False) -> PaperMetrics:
    """The paper's metrics over a split; `pred` is a DecodeResult or a list of Crystals.

    Crystals with no detected atom are left out of the position means (the reference code
    would report infinity) and counted in n_no_atoms; see the module docstring."""
    pairs = _pairs(true, pred)
    errs = [crystal_errors(t, p, periodic) for t, p in pairs]
    no_atoms = [len(p.positions_angstrom) == 0 for _, p in pairs]
    n = len(errs)
    if n == 0:
        nan = float("nan")
        return PaperMetrics(0, nan, nan, nan, nan, nan, nan, nan, 0, periodic)
    return PaperMetrics(
        n_structures=n,
        atom_count_error_pct=100.0 * float(np.mean([not e.atom_count_correct for e in errs])),
        position_error_actual_A=_mean([e.distance_actual for e, na in zip(errs, no_atoms) if not na]),
        position_error_detected_A=_mean([e.distance_detected for e in errs]),
        species_error_actual_pct=100.0 * _mean([e.species_wrong_actual.astype(float) for e in errs]),
        species_error_detected_pct=100.0 * _mean([e.species_wrong_detected.astype(float) for e in errs]),
        length_mae_A=_mean([e.length_abs_error for e in errs]),
        angle_mae_deg=_mean([e.angle_abs_error for e in errs]),
        n_no_atoms=int(sum(no_atoms)),
        periodic=periodic,
    )


def matchable(true: Crystal, pred: Crystal) -> bool:
    """Whether StructureMatcher is worth calling on this pair.

    A match maps every site one-to-one onto a site of the same element, so different reduced
    compositions can never match; skipping them is exact. A decoded cell that fails
    `nesf_viz.crystal.is_physical_cell` (as a barely trained model produces) is declared unmatched: pymatgen's
    reduction of such a cell ran for minutes and exhausted 24 GiB.
    """
    if len(pred.positions_angstrom) == 0:
        return False
    if _reduced_composition(true.atomic_numbers) != _reduced_composition(pred.atomic_numbers):
        return False
    return pred.has_physical_cell()


def _reduced_composition(atomic_numbers) -> tuple[tuple[int, int], ...]:
    z, counts = np.unique(np.asarray(atomic_numbers, dtype=int), return_counts=True)
    g = int(np.gcd.reduce(counts)) if counts.size else 1
    return tuple(zip(z.tolist(), (counts // g).tolist()))


@dataclass(frozen=True)
class MatchMetrics:
    """StructureMatcher reconstruction benchmark (CDVAE convention)."""

    n_structures: int
    n_matched: int
    match_rate_pct: float
    rmse: float  # mean of get_rms_dist(pred, true)[0] over matched pairs (NaN if none)

    def to_dict(self) -> dict:
        return asdict(self)


def match_metrics(
    true: Sequence[Crystal], pred, stol: float = 0.5, angle_tol: float = 10.0, ltol: float = 0.3,
    progress: bool = False,
) -> MatchMetrics:
    """Match rate (%) and mean RMS distance over matched pairs, as CDVAE computes them:
    ``StructureMatcher(stol, angle_tol, ltol).get_rms_dist(pred, true)``; a pair counts as
    matched when that is not None. A decoded crystal with no atom, another composition or a
    degenerate cell is unmatched without calling the matcher (see `matchable`). The RMS is
    pymatgen's (normalised by (volume / atoms)^(1/3))."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    pairs = _pairs(true, pred)
    matcher = StructureMatcher(stol=stol, angle_tol=angle_tol, ltol=ltol)
    it = pairs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(pairs, desc="StructureMatcher", leave=False)
    rms: list[float] = []
    for t, p in it:
        if not matchable(t, p):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                d = matcher.get_rms_dist(p.to_structure(), t.to_structure())
        except Exception as exc:  # impossible predicted cells, matcher failures: unmatched
            log.debug("StructureMatcher failed on %s: %s", t.id, exc)
            continue
        if d is not None:
            rms.append(float(d[0]))
    n = len(pairs)
    return MatchMetrics(
        n_structures=n,
        n_matched=len(rms),
        match_rate_pct=100.0 * len(rms) / n if n else float("nan"),
        rmse=float(np.mean(rms)) if rms else float("nan"),
    )


@dataclass(frozen=True)
class ReconstructionMetrics:
    """How right a set of decodes is, in one place: the paper's table, StructureMatcher (CDVAE
    convention) and decoding speed. NaN where not measured (match=False, no timing)."""

    n_structures: int
    atom_count_error_pct: float
    position_error_actual_A: float
    position_error_detected_A: float
    species_error_actual_pct: float
    species_error_detected_pct: float
    length_mae_A: float
    angle_mae_deg: float
    match_rate_pct: float
    match_rmse: float
    n_no_atoms: int
    decode_structures_per_s: float

    def to_dict(self) -> dict:
        """The `METRIC_KEYS` dict (JSON, tables, experiment rows)."""
        return asdict(self)


METRIC_KEYS: tuple[str, ...] = tuple(f.name for f in fields(ReconstructionMetrics))


def metrics_of(true: Sequence[Crystal], pred, match: bool = True, progress: bool = False,
               periodic: bool = False) -> ReconstructionMetrics:
    """Every metric of decoded crystals (`DecodeResult` or Crystals, in the order of `true`)
    against the truth. match=False skips StructureMatcher (NaN); periodic: minimum-image
    variant of the paper metrics."""
    pm = paper_metrics(true, pred, periodic=periodic).to_dict()
    del pm["periodic"]
    mm = match_metrics(true, pred, progress=progress) if match else None
    return ReconstructionMetrics(
        **pm, match_rate_pct=mm.match_rate_pct if mm else math.nan, match_rmse=mm.rmse if mm else math.nan,
        decode_structures_per_s=float(getattr(pred, "structures_per_second", math.nan)))


def crystal_formula(crystal: Crystal) -> str:
    """Reduced formula of a crystal ('(no atoms)' for none)."""
    return _formula(crystal.atomic_numbers)


def _formula(atomic_numbers) -> str:
    from pymatgen.core import Composition, Element

    z = [int(x) for x in atomic_numbers]
    if not z:
        return "(no atoms)"
    return Composition({Element.from_Z(k): z.count(k) for k in set(z)}).reduced_formula


MATCHER_TOLERANCES = {"stol": 0.5, "ltol": 0.3, "angle_tol": 10.0}
"""The CDVAE convention's StructureMatcher tolerances (site, lattice length fraction, angle in degrees)."""


def matcher_reason(true: Crystal, pred: Crystal) -> str:
    """Why StructureMatcher (CDVAE tolerances) finds no match for this pair, in words: nothing
    decoded, another composition, an impossible cell, the lattice beyond ltol/angle_tol, or the
    sites beyond stol (with how far: the normalised RMS a looser stol finds)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    tol = MATCHER_TOLERANCES
    if len(pred.positions_angstrom) == 0:
        return "no atom decoded"
    if _reduced_composition(true.atomic_numbers) != _reduced_composition(pred.atomic_numbers):
        return "another composition"
    if not pred.has_physical_cell():
        return "the decoded cell is degenerate"

    def rms(**looser):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return StructureMatcher(**(tol | looser)).get_rms_dist(pred.to_structure(), true.to_structure())
            except Exception:  # matcher failures count as no match, as in match_metrics
                return None

    if rms() is not None:
        return "matched"
    loose_sites = rms(stol=3.0)
    if loose_sites is not None:
        return f"sites beyond stol {tol['stol']:g} (normalised RMS {loose_sites[0]:.2f}, largest {loose_sites[1]:.2f})"
    if rms(stol=3.0, ltol=1.0, angle_tol=30.0) is not None:
        return f"lattice beyond ltol {tol['ltol']:g} / angle_tol {tol['angle_tol']:g}°"
    try:  # the matcher compares primitive cells: a decode that lost symmetry has a larger one
        n_true = len(true.to_structure().get_primitive_structure())
        n_pred = len(pred.to_structure().get_primitive_structure())
    except Exception:
        n_true = n_pred = 0
    if n_true != n_pred:
        return f"symmetry lost: primitive cell of {n_pred} sites, the true one has {n_true}"
    return "no mapping of the sites even with loose tolerances"


@dataclass(frozen=True)
class CrystalVerdict:
    """How right one decoded crystal is: what a person checks first, in one row."""

    id: str
    true_formula: str
    decoded_formula: str
    true_atoms: int
    decoded_atoms: int
    composition_right: bool
    """Same reduced composition (elements and their ratios)."""
    matched: bool | None
    """StructureMatcher (CDVAE tolerances) says it is the same crystal (None: not computed)."""
    position_error_A: float
    """The paper's actual position error of this crystal: mean over its true atoms of the
    distance to the nearest decoded atom (inf with no decoded atom)."""
    species_error_pct: float
    """Share of its true atoms whose nearest decoded atom has another element."""
    length_mae_A: float
    angle_mae_deg: float
    matcher_reason: str = ""
    """Why StructureMatcher refused, when it did (`matcher_reason`); '' otherwise."""

    @property
    def right(self) -> bool:
        """Decoded correctly: atom count and composition right, and matched when that was computed."""
        return (self.composition_right and self.true_atoms == self.decoded_atoms
                and self.matched is not False)

    def to_dict(self) -> dict:
        return asdict(self) | {"right": self.right}


def crystal_verdicts(true: Sequence[Crystal], pred, match: bool = True) -> list[CrystalVerdict]:
    """One `CrystalVerdict` per (true, decoded) pair; `pred` is a DecodeResult or Crystals."""
    out = []
    for t, p in _pairs(true, pred):
        e = crystal_errors(t, p)
        comp = _reduced_composition(t.atomic_numbers) == _reduced_composition(p.atomic_numbers)
        matched, reason = None, ""
        if match:
            matched = match_metrics([t], [p]).n_matched == 1
            reason = "" if matched else matcher_reason(t, p)
        out.append(CrystalVerdict(
            id=t.id, true_formula=_formula(t.atomic_numbers), decoded_formula=_formula(p.atomic_numbers),
            true_atoms=t.num_atoms, decoded_atoms=len(p.atomic_numbers), composition_right=comp,
            matched=matched, position_error_A=float(e.distance_actual.mean()) if t.num_atoms else 0.0,
            species_error_pct=100.0 * float(e.species_wrong_actual.mean()) if t.num_atoms else 0.0,
            length_mae_A=float(e.length_abs_error.mean()), angle_mae_deg=float(e.angle_abs_error.mean()),
            matcher_reason=reason))
    return out


def format_verdicts(verdicts: Sequence[CrystalVerdict]) -> str:
    """Plain-text table, one crystal per line, with a summary line: how many decoded right."""
    if not verdicts:
        return "(no crystals)"
    w_id = max(8, *(len(v.id) for v in verdicts))
    w_f = max(7, *(len(v.true_formula) for v in verdicts), *(len(v.decoded_formula) for v in verdicts))
    lines = [f"{'crystal':<{w_id}}  {'true':<{w_f}}  {'decoded':<{w_f}}  atoms  composition  matcher  "
             f"position err  species err  verdict"]
    for v in verdicts:
        matched = "–" if v.matched is None else ("yes" if v.matched else "no")
        lines.append(f"{v.id:<{w_id}}  {v.true_formula:<{w_f}}  {v.decoded_formula:<{w_f}}  "
                     f"{v.decoded_atoms:>2}/{v.true_atoms:<2}  {'right' if v.composition_right else 'WRONG':<11}  "
                     f"{matched:<7}  {v.position_error_A:>10.3f} Å  {v.species_error_pct:>9.1f} %  "
                     f"{'right' if v.right else 'WRONG'}"
                     + (f" (matcher: {v.matcher_reason})" if v.matcher_reason else ""))
    lines.append(verdict_summary(verdicts))
    return "\n".join(lines)


def verdict_summary(verdicts: Sequence[CrystalVerdict]) -> str:
    """One line: how many decoded right, how many with the right composition (and matched)."""
    n = len(verdicts)
    with_match = any(v.matched is not None for v in verdicts)
    text = (f"{sum(v.right for v in verdicts)}/{n} decoded right (atom count, composition"
            + (", StructureMatcher" if with_match else "")
            + f"); composition right {sum(v.composition_right for v in verdicts)}/{n}")
    if with_match:
        text += f", StructureMatcher {sum(bool(v.matched) for v in verdicts)}/{n}"
    return text


@dataclass(frozen=True)
class SiteError:
    """One true atom of a decoded crystal: the nearest decoded atom and whether it has the right
    element (the per-atom terms of the paper's actual position and species errors)."""

    site: int
    element: str
    position_A: tuple[float, float, float]
    nearest_element: str
    """Element of the nearest decoded atom ('' when none was decoded)."""
    distance_A: float
    """To the nearest decoded atom, the cell's atoms only, as the paper measures (inf when none
    was decoded)."""

    @property
    def species_right(self) -> bool:
        return self.element == self.nearest_element


def site_errors(true: Crystal, pred: Crystal) -> list[SiteError]:
    """Every true atom's `SiteError`; their mean distance is the crystal's position error in
    `CrystalVerdict` (the paper's actual position error of this crystal), the share of wrong
    species its species error."""
    from pymatgen.core import Element

    e = crystal_errors(true, pred)
    pos = np.asarray(true.positions_angstrom, dtype=np.float64).reshape(-1, 3)
    pp = np.asarray(pred.positions_angstrom, dtype=np.float64).reshape(-1, 3)
    pz = np.asarray(pred.atomic_numbers)
    out = []
    for i, (z, p) in enumerate(zip(true.atomic_numbers, pos)):
        nearest = Element.from_Z(int(pz[np.linalg.norm(pp - p, axis=1).argmin()])).symbol if len(pp) else ""
        out.append(SiteError(i, Element.from_Z(int(z)).symbol, (float(p[0]), float(p[1]), float(p[2])), nearest,
                             float(e.distance_actual[i])))
    return out


def format_site_errors(true, pred, crystal: int = 0) -> str:
    """Plain-text table of one decoded crystal's `site_errors`, one true atom a line, and what its
    mean is. `true`/`pred`: one Crystal each, or the lists `crystal_verdicts` takes (a DecodeResult
    for `pred`) with `crystal` the index."""
    if isinstance(true, Crystal):
        t, p = true, pred
    else:
        t, p = _pairs(true, pred)[crystal]
    rows = site_errors(t, p)
    if not rows:
        return f"{t.id}: no true atom"
    lines = [f"{t.id} ({_formula(t.atomic_numbers)}, decoded as {_formula(p.atomic_numbers)}): every true atom "
             "and the decoded atom nearest to it",
             f"{'site':>4}  {'true':<4}  {'at x, y, z (Å)':<19}  {'nearest':<7}  {'distance':>9}  species"]
    for r in rows:
        xyz = ", ".join(f"{v:5.2f}" for v in r.position_A)
        lines.append(f"{r.site:>4}  {r.element:<4}  {xyz:<19}  {r.nearest_element or '(none)':<7}  "
                     f"{r.distance_A:>7.3f} Å  {'right' if r.species_right else 'WRONG'}")
    d = np.array([r.distance_A for r in rows])
    lines.append(f"mean {d.mean():.3f} Å = this crystal's position error (actual), largest {d.max():.3f} Å; "
                 f"{sum(not r.species_right for r in rows)} of {len(rows)} species wrong; "
                 f"{len(p.atomic_numbers)} atoms decoded")
    return "\n".join(lines)


def success_and_failure(verdicts: Sequence[CrystalVerdict]) -> tuple[int | None, int | None]:
    """Indices of the first crystal decoded right and the first decoded wrong (None where there is
    none): what a notebook shows side by side, so a success is never shown alone."""
    right = next((i for i, v in enumerate(verdicts) if v.right), None)
    wrong = next((i for i, v in enumerate(verdicts) if not v.right), None)
    return right, wrong
