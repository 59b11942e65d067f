"""Every results table the README and the docs show, generated from results JSON (never typed).

    python benchmarks/tables.py            # rewrite docs/results.md and the README's tables
    python benchmarks/tables.py --check    # exit 1 if either is not what the JSON says (the suite runs this)

Sources: the shipped models' records (`nesf_viz/assets/<name>.json`, written by
benchmarks/ship_model.py from the run that made each model) and the ingredient comparisons
(`benchmarks/results/ingredients/<dataset>.json`, `nesf-viz benchmark` results files). A better
run replaces a record or a file; nothing here keeps superseded rows.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

from nesf_viz.assets import CHECKPOINTS
from nesf_viz.reference import METRICS, references

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
INGREDIENTS = ROOT / "benchmarks" / "results" / "ingredients"

# The issue-22 targets on the held-out test splits (a target, not a measurement): metric -> (op, value)
TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    "perov5": {"match_rate_pct": (">=", 99.8), "match_rmse": ("<=", 0.015), "atom_count_error_pct": ("<=", 0.0),
               "species_error_actual_pct": ("<=", 0.1)},
    "carbon24": {"match_rate_pct": (">=", 65.0), "match_rmse": ("<=", 0.12)},
    "lcs6": {"atom_count_error_pct": ("<=", 3.0), "position_error_actual_A": ("<=", 0.08),
             "species_error_actual_pct": ("<=", 5.0), "match_rate_pct": (">=", 90.0)},
}
SHOWN = ("atom_count_error_pct", "position_error_actual_A", "species_error_actual_pct", "length_mae_A",
         "angle_mae_deg", "match_rate_pct", "match_rmse")


def fmt(key: str, v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if key == "match_rmse":
        return f"{v:.4f}"
    if key.endswith("_A") or key.endswith("_deg"):
        return f"{v:.3f}" if key.endswith("_A") else f"{v:.2f}"
    return f"{v:.1f}"


def _machine(training: dict) -> str:
    dev = training["device"].replace("CPU ", "").replace(" Processor", "")
    return f"{dev}, {training['precision']}"


def _minutes(training: dict) -> float:
    """Training minutes of the model, warm-start parents included."""
    return training["train_minutes"] + _minutes(training["continues"]) if "continues" in training \
        else training["train_minutes"]


def _epochs(training: dict) -> str:
    if "continues" in training:
        return f"{training['continues']['epochs']} + {training['epochs']}"
    return str(training["epochs"])


def table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                      *["| " + " | ".join(r) + " |" for r in rows]]) + "\n"


def shipped_models() -> str:
    head = ["model", "held-out test split", *[METRICS[k].column for k in SHOWN], "epochs", "train min", "machine"]
    rows = []
    for name, info in CHECKPOINTS.items():
        rec = info.record
        rows.append([f"`{name}`", rec["evaluated_on"], *[fmt(k, rec["metrics"].get(k)) for k in SHOWN],
                     _epochs(rec["training"]), f"{_minutes(rec['training']):.0f}", _machine(rec["training"])])
    return table(head, rows) + (
        "\nHeld-out metrics with the fast decoder; StructureMatcher with the CDVAE convention (stol 0.5, "
        "ltol 0.3, angle_tol 10; match over all test crystals, RMSE over matched ones). Each model's "
        "record (`nesf_viz/assets/<name>.json`) holds the command that made it.\n")


def community() -> str:
    """Our shipped models on the CDVAE benchmark sets beside CDVAE and FTCP."""
    head = ["test set", "model", "match %", "RMSE", "training data", "compute"]
    rows = []
    for name, info in CHECKPOINTS.items():
        refs = references(info.dataset)
        if not refs or "match_rate_pct" not in refs[0].values:
            continue
        rec = info.record
        rows.append([info.dataset, f"NeSF, this project (`{name}`)",
                     fmt("match_rate_pct", rec["metrics"]["match_rate_pct"]),
                     fmt("match_rmse", rec["metrics"]["match_rmse"]),
                     f"{rec['training']['n_train']} crystals ({rec['trained_on']})",
                     f"{_minutes(rec['training']):.0f} min, {_machine(rec['training'])}"])
        for r in refs:
            rows.append(["", r.model, fmt("match_rate_pct", r.values["match_rate_pct"][0]),
                         fmt("match_rmse", r.values["match_rmse"][0]), "published train split", r.source])
    return table(head, rows)


def _met(op: str, value, target: float) -> bool:
    return value is not None and (value >= target if op == ">=" else value <= target)


def time_to_target(curve: list[dict], key: str, op: str, target: float) -> str:
    for p in curve:
        if _met(op, p.get(key), target):
            return f"{p['minutes']:.0f} min (epoch {p['epoch']})"
    return "not reached"


def targets() -> str:
    head = ["model", "target", "reached on the test split", "first reached on the validation curve"]
    rows = []
    for name, goals in TARGETS.items():
        if name not in CHECKPOINTS:
            rows.append([f"`{name}`", "; ".join(f"{METRICS[k].column} {op} {v:g}" for k, (op, v) in goals.items()),
                         "not shipped yet", ""])
            continue
        rec = CHECKPOINTS[name].record
        for key, (op, target) in goals.items():
            v = rec["metrics"].get(key)
            rows.append([f"`{name}`", f"{METRICS[key].column} {op} {target:g}",
                         f"{'yes' if _met(op, v, target) else 'NO'} ({fmt(key, v)})",
                         time_to_target(rec.get("curve", []), key, op, target)])
    return table(head, rows)


def ingredients() -> str:
    out = []
    for path in sorted(INGREDIENTS.glob("*.json")):
        runs = json.loads(path.read_text())["runs"]
        if not runs:
            continue
        out.append(f"\n**{runs[0]['dataset']}** (`benchmarks/results/ingredients/{path.name}`; test split "
                   f"{runs[0]['n_test_evaluated']} crystals, fast decoder)\n\n")
        head = ["recipe", "epochs", "train min", "CPU min", *[METRICS[k].column for k in SHOWN]]
        rows = []
        for r in runs:
            cpu = r.get("history", {}).get("cpu_seconds")
            rows.append([r["recipe"], str(r["epochs"]), f"{r['train_minutes']:.1f}",
                         f"{sum(cpu) / 60:.1f}" if cpu else "–", *[fmt(k, r.get(k)) for k in SHOWN]])
        out.append(table(head, rows))
        out.append(f"\nCommand of the first row: `{runs[0].get('command', '–')}`; machine: {runs[0]['device']}.\n")
    return "".join(out)


def docs_page() -> str:
    return "\n".join([
        "# Results", "",
        "Generated by `python benchmarks/tables.py` from the results JSON; do not edit by hand.", "",
        "## Shipped models", "", shipped_models(),
        "## The community reconstruction benchmark", "",
        "perov_5 and carbon_24: only their validation files are available here, so each is split "
        "80/10/10 (train/validation/test, fixed permutation, seed 0; `nesf_viz.experiment.make_tasks`). "
        "CDVAE and FTCP trained on the published train splits (about 3x more crystals) and report on "
        "the published test splits.", "", community(),
        "## Targets", "",
        "Minutes are the run's own wall-clock minutes on the machine its row names (\"1 threads\": the run "
        "used one of the 2 cores while the other did development work; bf16: autocast where the CPU runs it "
        "natively). The curve is the run's validation split, decoded from snapshots taken during training.", "",
        targets(),
        "## Ingredients, each measured against the quick recipe", ingredients(),
    ])


BLOCK = re.compile(r"(<!-- generated by benchmarks/tables.py: shipped models -->\n)(.*?)(<!-- end generated -->)",
                   re.S)


def readme_text(readme: str) -> str:
    if not BLOCK.search(readme):
        raise SystemExit("README.md has no generated block (<!-- generated by benchmarks/tables.py: shipped "
                         "models --> ... <!-- end generated -->)")
    return BLOCK.sub(lambda m: m.group(1) + shipped_models() + m.group(3), readme)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 when a generated file is out of date")
    a = ap.parse_args(argv)
    want = {DOCS: docs_page(), README: readme_text(README.read_text())}
    stale = [p for p, text in want.items() if not p.is_file() or p.read_text() != text]
    if a.check:
        for p in stale:
            print(f"{p.relative_to(ROOT)} is out of date: run python benchmarks/tables.py")
        return 1 if stale else 0
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(want[p])
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
