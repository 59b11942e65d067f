"""The benchmark harness (`nesf_viz.bench`) the scripts in benchmarks/ share."""

import json
import re
import time

import numpy as np

from nesf_viz import bench


def test_timed_gives_the_result_first_then_the_seconds():
    out, seconds = bench.timed(lambda: (time.sleep(0.02), 42)[1])
    assert out == 42 and 0.015 < seconds < 5


def test_alternate_interleaves_the_candidates_and_medians_summarise_them():
    calls = []
    times = bench.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b"] * 3
    assert set(times) == {"a", "b"} and all(len(v) == 3 for v in times.values())
    assert bench.medians({"x": [3.0, 1.0, 2.0]}) == {"x": 2.0}


def test_matmul_rate_is_a_positive_rate_for_every_shape():
    assert bench.matmul_rate(64, 32, 16, repeats=3) > 0
    assert set(bench.MATMUL_SHAPES) == {"65536x131x128", "2048^3"}


def test_machine_names_a_cpu_and_the_cores_this_process_may_use():
    name, _, cores = bench.machine().rpartition(", ")
    assert name and re.fullmatch(r"\d+ cores?", cores)


def test_tables_name_metrics_as_the_reference_does_and_format_cells():
    md = bench.table(("decoder", "atom_count_error_pct", "n"), [["fast", 1.23456, 7], ["paper", None, 8]], "{:.2f}")
    assert md.splitlines() == ["| decoder | atoms err % | n |", "|---|---|---|", "| fast | 1.23 | 7 |",
                               "| paper | – | 8 |"]
    assert bench.cell(np.float64(0.5)) == "0.5" and bench.cell(np.int64(3)) == "3"
    assert bench.column("unknown key") == "unknown key"


def test_write_json_makes_the_folder_and_writes_numpy_numbers(tmp_path):
    path = bench.write_json(tmp_path / "a" / "b.json", {"rate": np.float32(2.5), "n": 3})
    assert json.loads(path.read_text()) == {"rate": 2.5, "n": 3}


def test_evaluate_on_decodes_with_a_checkpoint_and_returns_its_metrics():
    from nesf_viz.assets import checkpoint_path
    from nesf_viz.checkpoints import load_checkpoint
    from nesf_viz.data import load_crystals

    ck = load_checkpoint(checkpoint_path("synthetic"))
    crystals = load_crystals("synthetic", "test")[:2]
    metrics, res = bench.evaluate_on(ck, crystals, "coarse")
    assert len(res) == 2 and res.config.grid_step_angstrom == 1.0
    assert metrics["n_structures"] == 2 and metrics["decode_structures_per_s"] > 0
    assert metrics["atom_count_error_pct"] == 0.0  # the shipped model decodes its own test split right
    assert np.isnan(metrics["match_rate_pct"])  # match=False by default
    assert [c.id for c in bench.held_out("synthetic")] == [c.id for c in load_crystals("synthetic", "test")]
