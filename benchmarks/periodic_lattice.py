"""Why the periodic option loses: decode a periodically trained checkpoint with its predicted
lattice and with the true one (same fields, same crystals).

    .venv/bin/python benchmarks/periodic_lattice.py \
        --checkpoint out/benchmark-cpu/runs/fast+periodic/perov_5/seed0/best.pt \
        --data ../shared/data/cdvae/perov_5_val.csv --dataset perov_5

A periodic decode wraps particles into the predicted cell, so an error in the cell moves or
duplicates atoms near its faces; the non-periodic (paper) decode never uses the cell. If the
atom counts recover with the true lattice, the cell is to blame, otherwise the field.
With --dataset the protocol's held-out split of that dataset (its first task) is decoded instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nesf_viz.data import CrystalBatch, load_crystals  # noqa: E402
from nesf_viz.decode import DecodeConfig, decode_crystals  # noqa: E402
from nesf_viz.metrics import metrics_of  # noqa: E402
from nesf_viz.protocol import ProtocolConfig, make_tasks  # noqa: E402
from nesf_viz.runs import load_checkpoint  # noqa: E402


class TrueLattice:
    """A model's fields with the true lattice of each crystal in place of the predicted one."""

    def __init__(self, model, batch: CrystalBatch):
        self.model, self.batch = model, batch
        self.z = model.latents(batch)

    def latents(self, crystals: CrystalBatch) -> torch.Tensor:
        return self.model.latents(crystals)

    def lattice(self, z: torch.Tensor):
        row = torch.cdist(z.float(), self.z.float()).argmin(1)  # eval-mode latents: exact per crystal
        return self.batch.lengths[row], self.batch.angles[row]

    def position_field(self, z, points, index):
        return self.model.position_field(z, points, index)

    def species_field(self, z, points, index):
        return self.model.species_field(z, points, index)

    def __getattr__(self, name):  # .eval(), .parameters(), ... of the model
        return getattr(self.model, name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default=None, help="CSV of crystals to decode (ignored with --dataset)")
    ap.add_argument("--dataset", default=None, help="the protocol's held-out split of this dataset")
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args(argv)
    if not (a.data or a.dataset):
        ap.error("give --data CSV or --dataset NAME")
    ck = load_checkpoint(a.checkpoint, "cpu")
    if a.dataset:
        crystals = list(make_tasks(a.dataset, ProtocolConfig())[0].test)[: a.limit]
    else:
        crystals = load_crystals(a.data, limit=a.limit)
    config = DecodeConfig.fast(periodic=True)
    model = ck.model.eval()
    print("| lattice used for the periodic wrap | atoms err % | pos act Å (min. image) | spec act % |")
    print("|---|---|---|---|")
    with torch.no_grad():
        for name, fields in (("predicted", model),
                             ("true", TrueLattice(model, CrystalBatch.from_crystals(crystals, ck.vocab)))):
            res = decode_crystals(crystals, fields=fields, box=ck.box, vocab=ck.vocab, config=config, progress=False)
            m = metrics_of(crystals, res, match=False, periodic=True).to_dict()
            print(f"| {name} | {m['atom_count_error_pct']:.1f} | {m['position_error_actual_A']:.3f} | "
                  f"{m['species_error_actual_pct']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
