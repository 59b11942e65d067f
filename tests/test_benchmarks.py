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
