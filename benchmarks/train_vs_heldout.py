"""Is a missed target a data limit? The same checkpoint on its own training crystals and on the
held-out split, same decoder: a model that meets the targets on what it trained on and misses
them on held-out crystals is limited by data (generalisation), not by optimisation or capacity.

    python benchmarks/train_vs_heldout.py --dataset icsg3d \\
        --checkpoint out/tta-icsg3d/runs/quick/icsg3d/seed0/best.pt
"""

from __future__ import annotations

import argparse
import sys

from nesf_viz.assets import resolve_checkpoint
from nesf_viz.bench import evaluate_on, table
from nesf_viz.checkpoints import load_checkpoint
from nesf_viz.decode import DECODERS
from nesf_viz.experiment import make_tasks

KEYS = ("atom_count_error_pct", "position_error_actual_A", "species_error_actual_pct", "length_mae_A",
        "match_rate_pct")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, help="a protocol dataset (lcs6, icsg3d, ...)")
    ap.add_argument("--checkpoint", required=True, help="a checkpoint file or a shipped model's name")
    ap.add_argument("--decode", choices=list(DECODERS), default="fast")
    ap.add_argument("--n", type=int, default=None, help="training crystals to decode (default: as many as held out)")
    a = ap.parse_args(argv)
    task = make_tasks(a.dataset)[0]
    ck = load_checkpoint(resolve_checkpoint(a.checkpoint))
    n = a.n or len(task.test)
    rows = []
    for name, crystals in ((f"its training crystals (first {n})", list(task.train)[:n]),
                           (f"{task.test_set} ({len(task.test)})", list(task.test))):
        m, _ = evaluate_on(ck, crystals, a.decode, match=True)
        rows.append([name, *[float(m[k]) for k in KEYS]])
    print(table(("crystals", *KEYS), rows, "{:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
