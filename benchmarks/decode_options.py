"""Decoder options measured against the paper's decoder on one trained checkpoint.

    .venv/bin/python benchmarks/decode_options.py --checkpoint out/benchmark-cpu/runs/fast/lcs6/seed0/best.pt \
        --data ../shared/data/nesf_paper/lcs6_test.csv --limit 100

Same checkpoint, same held-out crystals, one row per decoder: the paper's defaults, each
beyond-paper option alone (particles in the predicted cell, early stop, periodic decoding),
the fast recipe (`DecodeConfig.fast()`), and the paper's decoder followed by symmetrisation.
Prints a markdown table (metrics and structures/s).
"""

from __future__ import annotations

import argparse

from nesf_viz.bench import decode_with, table
from nesf_viz.checkpoints import load_checkpoint
from nesf_viz.data import load_crystals
from nesf_viz.decode import DecodeConfig
from nesf_viz.metrics import metrics_of
from nesf_viz.symmetry import spacegroup_recovery_pct, symmetrize

VARIANTS = {
    "paper (default)": DecodeConfig(),
    "particles_in_cell": DecodeConfig(particles_in_cell=True),
    "early_stop 1e-3 Å": DecodeConfig(early_stop_tolerance_angstrom=1e-3),
    "periodic": DecodeConfig(periodic=True),
    "fast recipe": DecodeConfig.fast(),
}
COLS = ("atom_count_error_pct", "position_error_actual_A", "position_error_detected_A",
        "species_error_actual_pct", "length_mae_A", "angle_mae_deg", "match_rate_pct", "match_rmse")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--symprec", type=float, default=0.1)
    a = ap.parse_args()
    ck = load_checkpoint(a.checkpoint)
    crystals = load_crystals(a.data, conventional=False, limit=a.limit)
    print(f"checkpoint {a.checkpoint} (epoch {ck.epoch}), {len(crystals)} crystals of {a.data}\n")
    rows = []
    for name, cfg in VARIANTS.items():
        res = decode_with(ck, crystals, cfg)
        decoded = [(name, res.to_crystals(), res.structures_per_second)]
        if name == "paper (default)":
            decoded.append((f"paper + symmetrize({a.symprec} Å)", [symmetrize(c, a.symprec) for c in res.to_crystals()],
                            float("nan")))
        for label, crystals_out, speed in decoded:
            m = metrics_of(crystals, crystals_out).to_dict()
            rows.append([label, *[m[k] for k in COLS], spacegroup_recovery_pct(crystals, crystals_out), speed])
            print(f"{label}: done", flush=True)
    print(table(("decoder", *COLS, "spacegroup_recovery_pct", "structures/s"), rows, "{:.4g}"))


if __name__ == "__main__":
    main()
