"""The one home of reference numbers and metric names (`nesf_viz.reference`)."""

import math

import pytest

from nesf_viz.metrics import METRIC_KEYS
from nesf_viz.reference import METRICS, PAPER_TABLE_KEYS, REFERENCES, format_value, reference, references


def test_every_metric_the_library_computes_has_a_name():
    assert set(METRIC_KEYS) <= set(METRICS)
    assert set(PAPER_TABLE_KEYS) <= set(METRICS)
    for m in METRICS.values():
        assert m.column and m.label and m.key in METRICS
    assert METRICS["position_error_actual_A"].title() == "position error, actual (Å)"
    assert METRICS["atom_count_error_pct"].title("[]") == "atom-count error [%]"
    assert METRICS["match_rmse"].title() == "StructureMatcher RMSE"  # no unit, no brackets


def test_the_papers_table_1_and_the_reconstruction_benchmark():
    nesf, icsg3d = reference("NeSF (paper)", "icsg3d"), reference("ICSG3D (paper)", "icsg3d")
    assert set(nesf.values) == set(icsg3d.values) == set(PAPER_TABLE_KEYS)
    assert nesf.values["atom_count_error_pct"] == (0.53, 0.25)
    assert icsg3d.values["species_error_detected_pct"] == (65.05, 1.85)
    assert reference("CDVAE", "perov_5").values == {"match_rate_pct": (97.52, None), "match_rmse": (0.0156, None)}
    assert reference("FTCP", "carbon_24").values["match_rate_pct"] == (62.28, None)
    assert [r.model for r in references("mp_20")] == ["CDVAE", "FTCP"]
    assert references("lcs6") == []
    for r in REFERENCES:
        assert set(r.values) <= set(METRICS), r
        assert all(math.isfinite(m) for m, _ in r.values.values())
    with pytest.raises(KeyError, match="NeSF .paper. on icsg3d"):
        reference("NeSF (paper)", "perov_5")


def test_values_print_as_tables_print_them():
    assert format_value((0.53, 0.25)) == "0.53 ± 0.25"
    assert format_value((97.52, None)) == "97.52"
    assert format_value((0.08771, 0.03061), 3) == "0.0877 ± 0.031"
    assert format_value((float("nan"), None)) == format_value((None, None)) == "–"


def test_the_protocol_tables_read_the_reference():
    from nesf_viz.experiment import PAPER, TABLE_HEAD, TABLE_KEYS, markdown_table

    assert TABLE_HEAD == tuple(METRICS[k].column for k in TABLE_KEYS)
    assert PAPER["icsg3d"] == dict(reference("NeSF (paper)", "icsg3d").values) == PAPER["icsg3d+synthetic"]
    row = {"dataset": "carbon_24", "recipe": "quick", "decode": "fast", "n_runs": 1, "training_set": "t",
           "test_set": "v", "epochs": 1.0, "train_minutes": 1.0, "max_minutes": None, "device": "cpu",
           "n_train": 1, "n_test_evaluated": 1, **{k: (1.0, None) for k in TABLE_KEYS}}
    md = markdown_table([row])
    for ref in references("carbon_24"):  # every published model on that test set, with its source
        assert f"↳ {ref.source}" in md and format_value(ref.values["match_rate_pct"], 3) in md


def test_every_metric_the_library_computes_is_defined_once_and_the_glossary_names_it_as_tables_do():
    from nesf_viz.reference import DEFINITIONS, glossary

    assert set(METRIC_KEYS) <= set(DEFINITIONS)
    text = glossary(["position_error_actual_A", "position_error_detected_A", "periodic_site_error_A"])
    lines = text.splitlines()
    assert len(lines) == 3 and lines[0].startswith("- **position error, actual (Å)**: for every true atom")
    assert "nearest true atom" in lines[1] and "periodic image" in lines[2]
    assert text._repr_markdown_() == str(text) and repr(text) == str(text)  # a notebook shows it as a list
    assert len(glossary().splitlines()) == len(PAPER_TABLE_KEYS) + 2
    with pytest.raises(KeyError, match="no definition of 'nonsense'"):
        glossary(["nonsense"])


def test_results_table_rounds_for_the_unit_keeps_the_papers_digits_and_says_what_is_missing():
    from nesf_viz.reference import results_table

    paper = reference("NeSF (paper)", "icsg3d").values
    exact = {"atom_count_error_pct": 0.0, "position_error_actual_A": 8.02e-8, "species_error_actual_pct": 0.0,
             "length_mae_A": 1.3e-7, "match_rate_pct": math.nan, "n_structures": 4, "n_no_atoms": 0}
    model = {"atom_count_error_pct": 5.0, "position_error_actual_A": 0.151492, "match_rate_pct": 85.0}
    table = results_table({"paper": paper, "exact": exact, "model": model})
    labels = [label for label, _ in table.rows]
    # Table 1's rows, then the lattice and the matcher; nothing internal ('n_no_atoms', speeds) leaks in
    assert labels[:5] == [METRICS[k].title() for k in PAPER_TABLE_KEYS]
    assert labels[5:] == ["lattice length MAE (Å)", "StructureMatcher match (%)", "crystals evaluated"]
    assert table.cell("position_error_actual_A", "paper") == "0.0308 ± 0.0112"
    assert table.cell("position_error_actual_A", "exact") == "< 0.0001"  # not 8.02e-08
    assert table.cell("position_error_actual_A", "model") == "0.1515"
    assert table.cell("atom_count_error_pct", "model") == "5.00"
    assert table.cell("match_rate_pct", "exact") == "–" and table.cell("species_error_actual_pct", "model") == "–"
    assert table.cell("n_structures", "exact") == "4"
    text = str(table)
    assert "nan" not in text and "_" not in text
    html = table._repr_html_()
    assert html.count("<tr>") == 1 + len(labels) and "&lt; 0.0001" in html
    # a row no column measured is left out of the default rows
    assert "StructureMatcher match (%)" not in [r for r, _ in results_table({"exact": exact}).rows]
