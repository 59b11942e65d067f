"""Time to accuracy: the quick recipe and each of its ingredients against the paper's recipe.

Every variant is one `nesf-viz benchmark` run (the project's CLI: train with a wall-clock budget,
snapshots of `last.pt` every --probe-minutes decoded afterwards with the fast decoder on a fixed
validation subset, the held-out split decoded with the fast decoder). This script only chooses
the variants, runs them one after another (rerunning skips finished ones) and prints, from the
protocol's results.json, the wall time at which each variant first met the targets and its final
held-out metrics. The time-to-accuracy figure is the protocol's (OUT/time_to_accuracy.html/.png).

    python benchmarks/time_to_accuracy.py --dataset synthetic --minutes 10 --out out/tta-synthetic
    python benchmarks/time_to_accuracy.py --dataset synthetic --minutes 5 --variants ingredients
    python benchmarks/time_to_accuracy.py --dataset lcs6 --minutes 60 --variants paper quick \\
        --quick-epochs 150
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from nesf_viz.bench import cell
from nesf_viz.bench import table as markdown

# The targets of the learning issue (fast decoder; probes: 32 validation crystals, held-out: the
# whole test split). StructureMatcher is only computed on the held-out split.
TARGETS = {
    "synthetic": {"atom_count_error_pct": 0.0, "species_error_actual_pct": 1.0, "match_rate_pct": 95.0},
    "lcs6": {"atom_count_error_pct": 3.0, "position_error_actual_A": 0.08, "species_error_actual_pct": 10.0},
    "icsg3d": {"atom_count_error_pct": 3.0, "position_error_actual_A": 0.08, "species_error_actual_pct": 10.0},
}

# Ingredients of the quick recipe, each alone on top of the paper's recipe (CLI options).
INGREDIENTS = {
    "paper": [],
    "+bf16": ["--mixed-precision"],
    "+batch 64": ["--batch-size", "64"],
    "+species weight 1": ["--species-weight", "1"],
    "+no encoder dropout": ["--encoder-dropout", "0"],
    "+subsampled queries": ["--global-queries", "256", "--species-queries", "32"],
    "+cosine 2e-3": ["--lr-schedule", "cosine", "--lr", "2e-3", "--warmup-epochs", "1", "--epochs", "{epochs}"],
}
# Each ingredient removed from the quick recipe (its paper value put back): what the recipe loses
# without it. bf16 is not here: `auto` already decides it by the hardware.
LEAVE_ONE_OUT = {
    "quick -species weight": ["--species-weight", "0.1"],
    "quick -no encoder dropout": ["--encoder-dropout", "0.3"],
    "quick -cosine": ["--lr-schedule", "step", "--lr", "1e-3", "--warmup-epochs", "0"],
    "quick -subsampled queries": ["--global-queries", "1000000", "--species-queries", "216"],  # >= the grid: all
    "quick -batch 64": ["--batch-size", "128"],
}
RECIPES = {"paper": ["--recipe", "paper"], "fast": ["--recipe", "fast"],
           "quick": ["--recipe", "quick", "--epochs", "{epochs}"]}


GROUPS = {"ingredients": list(INGREDIENTS), "leave-one-out": ["quick", *LEAVE_ONE_OUT]}
ALL_VARIANTS = [*RECIPES, *INGREDIENTS, *LEAVE_ONE_OUT]


def variant_args(name: str, epochs: int) -> list[str]:
    if name in RECIPES:
        args = RECIPES[name]
    elif name in INGREDIENTS:
        args = ["--recipe", "paper", *INGREDIENTS[name]]
    elif name in LEAVE_ONE_OUT:
        args = [*RECIPES["quick"], *LEAVE_ONE_OUT[name]]
    else:
        raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(ALL_VARIANTS)}")
    return [a.format(epochs=epochs) for a in args]


def meets(row: dict, targets: dict) -> bool:
    """Every target met: at most the limit, or at least it for the match rate."""
    for k, limit in targets.items():
        v = row.get(k)
        if v is None or not math.isfinite(v):
            return False
        if (v < limit) if k == "match_rate_pct" else (v > limit):
            return False
    return True


def time_to_target(run: dict, targets: dict) -> float | None:
    """Training minutes of the first probe that meets every target measured on probes."""
    probe_targets = {k: v for k, v in targets.items() if k != "match_rate_pct"}
    for point in run.get("curve", []):
        if meets(point, probe_targets):
            return point["minutes"]
    return None


def table(results: dict, dataset: str) -> str:
    targets = TARGETS.get(dataset, TARGETS["lcs6"])
    shown = (("atom_count_error_pct", "{:.1f}"), ("position_error_actual_A", "{:.3f}"),
             ("species_error_actual_pct", "{:.1f}"), ("length_mae_A", "{:.3f}"), ("angle_mae_deg", "{:.2f}"),
             ("match_rate_pct", "{:.1f}"))
    head = ["variant (label)", "epochs", "train min", "min to target (probes)", *[k for k, _ in shown],
            "held-out target"]
    rows = []
    for r in results["runs"]:
        if r["dataset"] != dataset:
            continue
        ttt = time_to_target(r, targets)
        held_out = {k: v for k, v in targets.items() if k != "match_rate_pct" or dataset == "synthetic"}
        rows.append([r["recipe"], str(r["epochs"]), f"{r['train_minutes']:.1f}",
                     "not reached" if ttt is None else f"{ttt:.1f}",
                     *[cell(r.get(k), fmt) for k, fmt in shown], "met" if meets(r, held_out) else "missed"])
    return (markdown(head, rows) + "\n\ntargets: "
            + ", ".join(f"{k} <= {v:g}" if k != "match_rate_pct" else f"{k} >= {v:g}" for k, v in targets.items()))


def table_at(results: dict, dataset: str, minutes: float) -> str:
    """Every run's probe metrics at the last probe taken within `minutes` of training: variants
    with different budgets compared at one wall time."""
    head = ["variant (label)", "probe at min", "epoch", "val_loss", "atom_count_error_pct", "position_error_actual_A",
            "species_error_actual_pct"]
    rows = []
    for r in results["runs"]:
        if r["dataset"] != dataset:
            continue
        probes = [c for c in r.get("curve", []) if c["minutes"] <= minutes + 0.15]
        if not probes:
            continue
        c = probes[-1]
        rows.append([r["recipe"], f"{c['minutes']:.1f}", str(c["epoch"]), f"{c['val_loss']:.3g}",
                     f"{c['atom_count_error_pct']:.1f}", f"{c['position_error_actual_A']:.3f}",
                     f"{c['species_error_actual_pct']:.1f}"])
    return markdown(head, rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="synthetic", help="a protocol dataset (synthetic, lcs6, icsg3d, ...)")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per variant")
    p.add_argument("--variants", nargs="+", default=["paper", "quick"],
                   help=f"names from {', '.join(ALL_VARIANTS)}, or a group: 'ingredients' (each "
                        "alone on the paper's recipe), 'leave-one-out' (each removed from quick)")
    p.add_argument("--quick-epochs", type=int, default=50,
                   help="epochs of the cosine schedule (pick them to end near --minutes)")
    p.add_argument("--probe-minutes", type=float, default=1.0)
    p.add_argument("--out", default="out/time-to-accuracy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table-only", action="store_true", help="print the table of what OUT holds, run nothing")
    p.add_argument("--at-minutes", type=float, default=None,
                   help="also print every run's probe metrics at this many training minutes")
    a = p.parse_args()
    variants = [v for name in a.variants for v in GROUPS.get(name, [name])]
    out = Path(a.out)
    if not a.table_only:
        for name in variants:
            cmd = [sys.executable, "-m", "nesf_viz.cli", "benchmark", "--datasets", a.dataset,
                   *variant_args(name, a.quick_epochs), "--max-minutes", str(a.minutes), "--decode", "fast",
                   "--probe-minutes", str(a.probe_minutes), "--seeds", str(a.seed), "--out", str(out)]
            print(f"== {name}: {' '.join(cmd[2:])}", flush=True)
            subprocess.run(cmd, check=True)
    results = json.loads((out / "results.json").read_text())
    text = table(results, a.dataset)
    if a.at_minutes is not None:
        text += (f"\n\nAt {a.at_minutes:g} minutes of training (probes):\n\n"
                 + table_at(results, a.dataset, a.at_minutes))
    (out / "time_to_accuracy.md").write_text(text + "\n")
    print(text)
    from nesf_viz.viz.figures import save_html, save_png, time_to_accuracy_figure

    runs = [r for r in results["runs"] if r["dataset"] == a.dataset]
    fig = time_to_accuracy_figure(runs, title=f"Time to accuracy: {a.dataset} (probes: fast decoder, "
                                              "first 32 validation crystals)",
                                  targets=TARGETS.get(a.dataset, TARGETS["lcs6"]))
    save_html(fig, out / f"time_to_accuracy_{a.dataset}.html")
    try:
        save_png(fig, out / f"time_to_accuracy_{a.dataset}.png")
    except Exception as exc:  # PNG needs kaleido + a browser; the HTML is the record
        print(f"PNG not written: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
