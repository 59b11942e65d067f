"""The benchmark scripts that a person runs elsewhere (a lent GPU) run here first, tiny."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_runs_on_cpu_and_writes_every_section(tmp_path):
    out = tmp_path / "dry.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--tiny",
                        "--json", str(out), "--work", str(tmp_path / "work")],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert rep["device"] == "cpu" and rep["tiny"] is True
    assert rep["exact_fields"]["identical"] is True  # the same device twice: must be identical
    for decoder in ("paper", "fast"):
        assert rep["learned_fields"][decoder]["agree"] is True
        assert rep["learned_fields"][decoder]["device_crystals_per_s"] > 0
    for precision in ("float32", "bf16"):
        assert rep["train_throughput"][precision]["structures_per_s"] > 0
    assert rep["paper_recipe_epochs"]["projected_3200_epochs_min"] > 0


def test_results_tables_in_readme_and_docs_are_what_the_records_say(tmp_path):
    """The README's and docs/results.md's tables are generated from the shipped models' records
    and the ingredient results; a hand edit or a new record without regenerating fails here."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tables.py"), "--check"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_results_tables_check_fails_on_a_stale_table(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text().replace("| `lcs6` |", "| `lcs6` (typed) |"))
    docs = tmp_path / "results.md"
    docs.write_text(tables.docs_page())
    monkeypatch.setattr(tables, "README", readme)
    monkeypatch.setattr(tables, "DOCS", docs)
    monkeypatch.setattr(tables, "ROOT", tmp_path)
    assert tables.main(["--check"]) == 1
    assert tables.main([]) == 0 and tables.main(["--check"]) == 0
    assert "(typed)" not in readme.read_text()
