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

import html
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["Metric", "METRICS", "PAPER_TABLE_KEYS", "Reference", "REFERENCES", "references", "reference",
           "format_value", "DEFINITIONS", "Glossary", "glossary", "ResultsTable", "results_table"]


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


# ----------------------------------------------------------------------------- what the metrics mean

DEFINITIONS: dict[str, str] = {
    "atom_count_error_pct": "share of crystals whose decoded atom count differs from the true one",
    "position_error_actual_A": "for every true atom, the distance to the nearest decoded atom, averaged over all "
                               "true atoms (Cartesian, the atoms of the cell only: no periodic images); a missed "
                               "atom raises it",
    "position_error_detected_A": "the other way round: for every decoded atom, the distance to the nearest true "
                                 "atom, averaged over all decoded atoms; a spurious atom raises it",
    "species_error_actual_pct": "share of true atoms whose nearest decoded atom is another element",
    "species_error_detected_pct": "share of decoded atoms whose nearest true atom is another element",
    "length_mae_A": "mean absolute error of the three cell lengths a, b, c",
    "angle_mae_deg": "mean absolute error of the three cell angles",
    "match_rate_pct": "share of crystals that pymatgen's StructureMatcher calls the same crystal (CDVAE "
                      "tolerances: sites within 0.5 of (V/N)^(1/3), lengths within 30 %, angles within 10°); "
                      "a crystal with another composition never matches",
    "match_rmse": "root-mean-square site distance of the matched crystals, in units of (V/N)^(1/3)",
    "n_structures": "how many crystals the numbers are over",
    "n_no_atoms": "crystals decoded with no atom at all (left out of the position errors)",
    "decode_structures_per_s": "crystals decoded per second on this machine",
    "periodic_site_error_A": "for every decoded atom, the distance to the nearest true atom or periodic image of "
                             "one, matched in fractional coordinates and measured with the true cell (the "
                             "original-vs-decoded figure); unlike the paper's position errors, an atom decoded "
                             "on the far face of the cell is not counted as a cell length away",
}
"""Metric key -> what it measures, in one sentence: the one home of these words (the glossary of
the notebooks, `Glossary`). Lower is better for every error; 0 is perfect."""

_EXTRA_TERMS = {"periodic_site_error_A": Metric("periodic_site_error_A", "periodic site error", "Å", "site Å")}


class Glossary(str):
    """Markdown text of metric definitions; a notebook renders it as a list, `print` shows the text."""

    def _repr_markdown_(self) -> str:
        return str(self)

    def __repr__(self) -> str:
        return str(self)


def glossary(keys: Sequence[str] | None = None) -> Glossary:
    """What each metric means (`DEFINITIONS`), one line each, named as result tables name it
    (`METRICS`); `keys` picks and orders them (default: the paper's Table 1 and the matcher)."""
    keys = list(keys) if keys is not None else [*PAPER_TABLE_KEYS, "length_mae_A", "match_rate_pct"]
    lines = []
    for k in keys:
        m = METRICS.get(k) or _EXTRA_TERMS.get(k)
        if m is None or k not in DEFINITIONS:
            raise KeyError(f"no definition of {k!r}; known: {', '.join(DEFINITIONS)}")
        lines.append(f"- **{m.title()}**: {DEFINITIONS[k]}.")
    return Glossary("\n".join(lines))


# ----------------------------------------------------------------------------- results beside references


def _cell(value: Any, unit: str) -> str:
    """One number as a person reads it: '–' for missing, '0' for an exact zero, a value too small for
    its unit's digits as '< 0.0001' (the exact fields' 1e-8 Å), else 4 decimals (Å, a ratio) or 2 (%, °);
    a published (mean, std) pair as its source gives it ('0.0308 ± 0.0112')."""
    if isinstance(value, tuple):  # a published (mean, std): the digits its source gives
        return format_value(value)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    v = float(value)
    digits = 2 if unit in ("%", "°") else 4
    if v == 0:
        return "0"
    if abs(v) < 0.5 * 10 ** -digits:
        return f"< {10 ** -digits:.{digits}f}"
    return f"{v:.{digits}f}"


@dataclass(frozen=True)
class ResultsTable:
    """Metrics of several runs (and references) side by side: rows are metrics, columns are runs.
    Shows as an HTML table in a notebook, as aligned text with `print`."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]
    """(row label, one cell per column)."""
    note: str = ""

    def __str__(self) -> str:
        head = ("metric", *self.columns)
        body = [(label, *cells) for label, cells in self.rows]
        widths = [max(len(r[i]) for r in (head, *body)) for i in range(len(head))]
        fmt = [f"{{:<{widths[0]}}}"] + [f"{{:>{w}}}" for w in widths[1:]]
        lines = ["  ".join(f.format(c) for f, c in zip(fmt, r)) for r in (head, *body)]
        return "\n".join(lines + ([self.note] if self.note else []))

    __repr__ = __str__

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(f"<th style='text-align:right'>{esc(c)}</th>" for c in self.columns)
        body = "".join(
            f"<tr><th style='text-align:left'>{esc(label)}</th>"
            + "".join(f"<td style='text-align:right;white-space:nowrap'>{esc(c)}</td>" for c in cells) + "</tr>"
            for label, cells in self.rows)
        note = f"<caption style='caption-side:bottom;text-align:left'>{esc(self.note)}</caption>" if self.note else ""
        return (f"<table class='nesf-results'>{note}<thead><tr><th style='text-align:left'>metric</th>{head}</tr>"
                f"</thead><tbody>{body}</tbody></table>")

    def cell(self, row: str, column: str) -> str:
        """The text of one cell, by row label (or metric key) and column name."""
        label = METRICS[row].title() if row in METRICS else row
        return dict(self.rows)[label][self.columns.index(column)]


def results_table(columns: Mapping[str, Mapping[str, Any]], keys: Sequence[str] | None = None,
                  note: str = "") -> ResultsTable:
    """Runs side by side: `columns` is column name -> metrics dict (`ReconstructionMetrics.to_dict()`,
    or a `Reference.values` of (mean, std) pairs); `keys` the rows (default: the paper's Table 1,
    then lattice length MAE, StructureMatcher match and crystals evaluated, leaving out a row no
    column measured). Rows are named as `METRICS` names them, numbers rounded for their unit, a
    metric a column lacks (or NaN: not measured) shown as '–'."""
    if keys is None:
        keys = [k for k in (*PAPER_TABLE_KEYS, "length_mae_A", "match_rate_pct", "n_structures")
                if any(_cell(col.get(k), "") != "–" for col in columns.values())]
    rows = []
    for k in keys:
        m = METRICS.get(k)
        rows.append((m.title() if m else k, tuple(_cell(col.get(k), m.unit if m else "") for col in columns.values())))
    return ResultsTable(tuple(columns), tuple(rows), note)
