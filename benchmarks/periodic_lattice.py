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

import torch

from nesf_viz.bench import evaluate_on, held_out, table
from nesf_viz.checkpoints import load_checkpoint
from nesf_viz.data import CrystalBatch, load_crystals
from nesf_viz.decode import DecodeConfig
from nesf_viz.fields import StructureFields


class TrueLattice(StructureFields):
    """A model's fields with the true lattice of each crystal in place of the predicted one."""

    def __init__(self, model, batch: CrystalBatch):
        self.model, self.batch = model, batch
        self.num_species = model.num_species
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
    crystals = held_out(a.dataset)[: a.limit] if a.dataset else load_crystals(a.data, limit=a.limit)
    model = ck.model.eval()
    keys = ("atom_count_error_pct", "position_error_actual_A", "species_error_actual_pct")
    rows = []
    with torch.no_grad():
        for name, fields in (("predicted", model),
                             ("true", TrueLattice(model, CrystalBatch.from_crystals(crystals, ck.vocab)))):
            m, _ = evaluate_on(ck, crystals, DecodeConfig.fast(periodic=True), periodic=True, fields=fields)
            rows.append([name, *[m[k] for k in keys]])
    print("positions: minimum-image distances")
    print(table(("lattice used for the periodic wrap", *keys), rows, "{:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
