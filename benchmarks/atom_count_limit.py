"""Why do LCS6Å atom counts plateau near 10 %? Two measurements.

1. `--breakdown`: decode a checkpoint on the test split and on as many of its training crystals
   (fast decoder) and say which true atoms no decoded atom lands near (within 0.5 Å), by the
   atom's distance to its nearest neighbour, its distance to a cell face and its crystal's size.
2. `--fit`: can a network fit the hard crystals at all? Train variants of the network on the
   same few training crystals that hold a close pair (< 2 Å), for equal optimizer steps, and
   decode those same crystals: a variant that fits them where the default does not shows a
   capacity/representation limit; if every variant fits them, the full-data plateau is
   optimisation (too few steps per crystal), not what the network can represent.

    python benchmarks/atom_count_limit.py --breakdown lcs6
    python benchmarks/atom_count_limit.py --fit --n 128 --epochs 200 --out out/atom-count-limit
    python benchmarks/atom_count_limit.py --fit --dataset carbon_24 --n 128 --epochs 600 \
        --variants default "wide position field" --out out/atom-count-limit-carbon
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist

from nesf_viz.bench import decode_with, timed
from nesf_viz.checkpoints import load_checkpoint
from nesf_viz.experiment import make_tasks
from nesf_viz.metrics import metrics_of
from nesf_viz.model import NeSFConfig, position_field_channels
from nesf_viz.train_config import make_train_config

FOUND_A = 0.5
NN_BINS = (0.0, 1.5, 2.0, 2.5, 3.0, 99.0)
FACE_BINS = (0.0, 0.01, 0.05, 0.15, 0.51)
VARIANTS = {
    "default": {},
    # twice the position field's width (about 4x its multiply-adds per point)
    "wide position field": {"position_field_channels": position_field_channels(256)},  # --position-width 256
    # the positional encoding that learns (docs/recipes.md: 32 A down to 1 A, x kept beside it)
    "positional encoding": {"positional_encoding_freqs": 6,
                            "positional_encoding_longest_wavelength_angstrom": 32.0,
                            "positional_encoding_keep_input": True},
}
# training-recipe variants (the default network): options of TrainConfig.quick
RECIPE_VARIANTS = {
    # queries between atoms closer than 2.5 A (SamplingConfig.pair_max_angstrom)
    "pair queries": {"pair_max_angstrom": 2.5},
}


def nearest_neighbour_A(crystal) -> np.ndarray:
    """(N,) distance of each atom to its nearest other atom in the cell as listed (the fields are
    not periodic, so this is the neighbour the position field must tell it apart from)."""
    t = crystal.positions_angstrom
    if len(t) < 2:
        return np.full(len(t), np.inf)
    d = cdist(t, t)
    np.fill_diagonal(d, np.inf)
    return d.min(1)


def missed_atoms(crystals, result) -> tuple[np.ndarray, np.ndarray]:
    """Per true atom: (features (N, 3): nearest neighbour Å, face distance (fractional), atoms in
    its crystal; missed (N,) bool: no decoded atom within FOUND_A)."""
    feats, missed = [], []
    for c, p in zip(crystals, result.positions_angstrom):
        f = c.frac_coords % 1.0
        feats.append(np.stack([nearest_neighbour_A(c), np.minimum(f, 1 - f).min(1),
                               np.full(c.num_atoms, c.num_atoms)], 1))
        missed.append(cdist(c.positions_angstrom, p).min(1) > FOUND_A if len(p) else np.ones(c.num_atoms, bool))
    return np.concatenate(feats), np.concatenate(missed)


def binned(values: np.ndarray, missed: np.ndarray, bins) -> str:
    cells = []
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (values >= lo) & (values < hi)
        if sel.any():
            cells.append(f"[{lo:g}, {hi:g}): {missed[sel].sum()}/{sel.sum()} ({100 * missed[sel].mean():.1f} %)")
    return " | ".join(cells)


def summary(crystals, result) -> dict:
    feats, missed = missed_atoms(crystals, result)
    close = feats[:, 0] < 2.0
    m = metrics_of(crystals, result, match=True)
    return {"crystals": len(crystals), "atom_count_error_pct": m.atom_count_error_pct,
            "position_error_actual_A": m.position_error_actual_A,
            "species_error_actual_pct": m.species_error_actual_pct,
            "missed_atoms_pct": float(100 * missed.mean()),
            "missed_close_atoms_pct": float(100 * missed[close].mean()) if close.any() else float("nan"),
            "missed_other_atoms_pct": float(100 * missed[~close].mean()),
            "close_atoms": int(close.sum()), "atoms": len(missed),
            "match_rate_pct": m.match_rate_pct, "match_rmse": m.match_rmse}


def breakdown(checkpoint: str, dataset: str) -> None:
    task = make_tasks(dataset)[0]
    ck = load_checkpoint(checkpoint)
    n = len(task.test)
    for name, crystals in (("test split", list(task.test)), ("its training crystals", list(task.train)[:n])):
        r = decode_with(ck, crystals, "fast")
        feats, missed = missed_atoms(crystals, r)
        s = summary(crystals, r)
        print(f"\n{name} ({len(crystals)} crystals): atom-count error {s['atom_count_error_pct']:.1f} %, "
              f"true atoms with no decoded atom within {FOUND_A} Å: {missed.sum()} of {len(missed)}")
        print("  by nearest-neighbour distance (Å):", binned(feats[:, 0], missed, NN_BINS))
        print("  by distance to a cell face (fractional):", binned(feats[:, 1], missed, FACE_BINS))
        print("  by atoms in the crystal:", binned(feats[:, 2], missed, (1, 5, 9, 13, 17, 29)))


def fit(dataset: str, n: int, epochs: int, out: Path, variants: list[str]) -> None:
    task = make_tasks(dataset)[0]
    hard = [c for c in task.train if nearest_neighbour_A(c).min() < 2.0][:n]
    cfg = make_train_config("quick", epochs=epochs)
    print(f"{len(hard)} {dataset} training crystals with a pair < 2 Å; {epochs} epochs of the quick recipe "
          f"({-(-len(hard) // cfg.batch_size) * epochs} steps) per variant, decoded on the same crystals")
    out.mkdir(parents=True, exist_ok=True)
    rows = json.loads((out / "fit.json").read_text()) if (out / "fit.json").exists() else {}
    for name in variants:
        if name in rows:
            print(name, rows[name])
            continue
        from nesf_viz.train import train
        recipe = make_train_config("quick", epochs=epochs, **RECIPE_VARIANTS.get(name, {}))
        res, seconds = timed(lambda: train(hard, hard, out / name.replace(" ", "_"), recipe,
                                           NeSFConfig(num_species=1, **VARIANTS.get(name, {})), progress=False,
                                           overwrite=True))
        minutes = seconds / 60
        ck = load_checkpoint(out / name.replace(" ", "_") / "last.pt")
        r = decode_with(ck, hard, "fast")
        rows[name] = {"dataset": dataset, **summary(hard, r), "train_minutes": round(minutes, 1),
                      "final_val_loss": res.history["val_loss"][-1],
                      "parameters": sum(p.numel() for p in ck.model.parameters())}
        print(name, rows[name], flush=True)
        (out / "fit.json").write_text(json.dumps(rows, indent=1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--breakdown", metavar="CHECKPOINT", help="a checkpoint file or shipped model name")
    ap.add_argument("--dataset", default="lcs6", help="--breakdown / --fit: the experiment dataset")
    ap.add_argument("--fit", action="store_true")
    ap.add_argument("--n", type=int, default=128, help="--fit: training crystals (with a pair < 2 Å)")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=[*VARIANTS, *RECIPE_VARIANTS])
    ap.add_argument("--out", type=Path, default=Path("out/atom-count-limit"))
    a = ap.parse_args(argv)
    if a.breakdown:
        from nesf_viz.assets import resolve_checkpoint
        breakdown(str(resolve_checkpoint(a.breakdown)), a.dataset)
    if a.fit:
        fit(a.dataset, a.n, a.epochs, a.out, a.variants)
    return 0


if __name__ == "__main__":
    sys.exit(main())
