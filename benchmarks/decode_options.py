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
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nesf_viz.data import load_crystals  # noqa: E402
from nesf_viz.decode import DecodeConfig, decode_crystals  # noqa: E402
from nesf_viz.metrics import metrics_of  # noqa: E402
from nesf_viz.runs import load_checkpoint  # noqa: E402
from nesf_viz.symmetry import spacegroup_recovery_pct, symmetrize  # noqa: E402

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
    print("| decoder | " + " | ".join(COLS) + " | SG % | structures/s |")
    print("|---" * (len(COLS) + 3) + "|")
    for name, cfg in VARIANTS.items():
        res = decode_crystals(crystals, fields=ck.model, box=ck.box, vocab=ck.vocab, config=cfg, progress=False)
        rows = [(name, res.to_crystals(), metrics_of(crystals, res).to_dict(), res.structures_per_second)]
        if name == "paper (default)":
            sym = [symmetrize(c, a.symprec) for c in res.to_crystals()]
            rows.append((f"paper + symmetrize({a.symprec} Å)", sym, metrics_of(crystals, sym).to_dict(), float("nan")))
        for label, decoded, m, speed in rows:
            sg = spacegroup_recovery_pct(crystals, decoded)
            print(f"| {label} | " + " | ".join(f"{m[k]:.4g}" for k in COLS) + f" | {sg:.1f} | {speed:.3g} |",
                  flush=True)


if __name__ == "__main__":
    main()
