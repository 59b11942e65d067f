"""Reference numbers and metric names, in one place: what the experiment's tables, the benchmark
scripts, the figures and the notebooks print beside this project's own results.

`METRICS`: metric key (as `nesf_viz.metrics` names them) -> `Metric` (label, unit, the short
column head of result tables). `REFERENCES`: published numbers of other models on the test sets
the experiment reproduces, each with its source; `references(dataset)` selects them.

Sources:

- NeSF paper (Chiba et al., "Neural structure fields with application to crystal structure
  autoencoders", Communications Materials, 2023), Table 1: ICSG3D test split, 360 structures,
  mean ± std over 10 seeds, for NeSF and the ICSG3D voxel baseline; trained on 7,194
  structures, of which only 2,502 are available here, so an ICSG3D result here is not the
  paper's protocol.
- The community reconstruction benchmark (CDVAE convention: pymatgen
  ``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`` match rate over the test split and the
  RMSE over matched structures): CDVAE and FTCP on perov_5, carbon_24 and mp_20, values as
  recalled (approximate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

__all__ = ["Metric", "METRICS", "PAPER_TABLE_KEYS", "Reference", "REFERENCES", "references", "reference",
           "format_value"]


@dataclass(frozen=True)
class Metric:
    """How a metric is named where people read it."""

    key: str
    """The key in `ReconstructionMetrics.to_dict()`, results JSON and experiment rows."""
    label: str
    """Words, e.g. 'position error, actual'."""
    unit: str
    """'%', 'Å', '°' or '' (a ratio)."""
    column: str
    """Short head of a result table's column, e.g. 'pos act Å'."""

    def title(self, brackets: str = "()") -> str:
        """'position error, actual (Å)' (or with other brackets, e.g. '[]'); the label alone
        without a unit."""
        return f"{self.label} {brackets[0]}{self.unit}{brackets[1]}" if self.unit else self.label


METRICS: dict[str, Metric] = {m.key: m for m in (
    Metric("atom_count_error_pct", "atom-count error", "%", "atoms err %"),
    Metric("position_error_actual_A", "position error, actual", "Å", "pos act Å"),
    Metric("position_error_detected_A", "position error, detected", "Å", "pos det Å"),
    Metric("species_error_actual_pct", "species error, actual", "%", "spec act %"),
    Metric("species_error_detected_pct", "species error, detected", "%", "spec det %"),
    Metric("length_mae_A", "lattice length MAE", "Å", "len Å"),
    Metric("angle_mae_deg", "lattice angle MAE", "°", "ang °"),
    Metric("match_rate_pct", "StructureMatcher match", "%", "match %"),
    Metric("match_rmse", "StructureMatcher RMSE", "", "RMSE"),
    Metric("spacegroup_recovery_pct", "space group recovered", "%", "SG %"),
    Metric("n_structures", "crystals evaluated", "", "crystals"),
    Metric("n_no_atoms", "crystals without atoms", "", "no atoms"),
    Metric("decode_structures_per_s", "decoding speed", "crystals/s", "crystals/s"),
    Metric("val_loss", "validation loss", "", "val loss"),
)}
"""Metric key -> `Metric`, in the order result tables show them."""

PAPER_TABLE_KEYS: tuple[str, ...] = ("atom_count_error_pct", "position_error_actual_A", "position_error_detected_A",
                                     "species_error_actual_pct", "species_error_detected_pct")
"""The rows of the NeSF paper's Table 1, in its order."""


@dataclass(frozen=True)
class Reference:
    """Published numbers of one model on one test set."""

    model: str
    """Who: 'NeSF (paper)', 'ICSG3D (paper)', 'CDVAE', 'FTCP'."""
    dataset: str
    """The experiment's dataset name of the test set ('icsg3d', 'perov_5', 'carbon_24', 'mp_20')."""
    source: str
    """Where the numbers come from, as a table row names it."""
    values: Mapping[str, tuple[float, float | None]]
    """Metric key -> (mean, standard deviation or None)."""


_TABLE1 = "NeSF paper, Table 1 (ICSG3D test, 7194 training structures)"

REFERENCES: tuple[Reference, ...] = (
    Reference("NeSF (paper)", "icsg3d", _TABLE1, {
        "atom_count_error_pct": (0.53, 0.25),
        "position_error_actual_A": (0.0308, 0.0112),
        "position_error_detected_A": (0.0359, 0.0226),
        "species_error_actual_pct": (4.31, 0.39),
        "species_error_detected_pct": (4.36, 0.39),
    }),
    Reference("ICSG3D (paper)", "icsg3d", "NeSF paper, Table 1: ICSG3D voxel baseline (ICSG3D test)", {
        "atom_count_error_pct": (2.67, 0.84),
        "position_error_actual_A": (0.0877, 0.0306),
        "position_error_detected_A": (0.1057, 0.0284),
        "species_error_actual_pct": (64.39, 1.91),
        "species_error_detected_pct": (65.05, 1.85),
    }),
    Reference("CDVAE", "perov_5", "CDVAE (recalled, approximate)",
              {"match_rate_pct": (97.52, None), "match_rmse": (0.0156, None)}),
    Reference("CDVAE", "carbon_24", "CDVAE (recalled, approximate)",
              {"match_rate_pct": (55.22, None), "match_rmse": (0.1251, None)}),
    Reference("CDVAE", "mp_20", "CDVAE (recalled, approximate)",
              {"match_rate_pct": (45.43, None), "match_rmse": (0.0356, None)}),
    Reference("FTCP", "perov_5", "FTCP (recalled, approximate)",
              {"match_rate_pct": (99.34, None), "match_rmse": (0.0259, None)}),
    Reference("FTCP", "carbon_24", "FTCP (recalled, approximate)",
              {"match_rate_pct": (62.28, None), "match_rmse": (0.2563, None)}),
    Reference("FTCP", "mp_20", "FTCP (recalled, approximate)",
              {"match_rate_pct": (69.89, None), "match_rmse": (0.1593, None)}),
)
"""Every reference number, NeSF's own first for each dataset."""


def references(dataset: str) -> list[Reference]:
    """The references on one test set (none for a dataset nobody published)."""
    return [r for r in REFERENCES if r.dataset == dataset]


def reference(model: str, dataset: str) -> Reference:
    """One model's numbers on one test set; KeyError naming what exists."""
    for r in REFERENCES:
        if r.model == model and r.dataset == dataset:
            return r
    known = ", ".join(f"{r.model} on {r.dataset}" for r in REFERENCES)
    raise KeyError(f"no reference for {model} on {dataset}; known: {known}")


def format_value(mean_std: tuple[float | None, float | None], digits: int | None = None) -> str:
    """'0.53 ± 0.25' (shortest form of each, or `digits` significant digits of the mean and two
    of the std), '97.52' without a std, '–' for a missing or non-finite mean."""
    mean, std = mean_std
    if mean is None or not math.isfinite(mean):
        return "–"
    if digits is None:
        return f"{mean:g}" + (f" ± {std:g}" if std is not None else "")
    return f"{mean:.{digits}g}" + (f" ± {std:.2g}" if std is not None else "")
