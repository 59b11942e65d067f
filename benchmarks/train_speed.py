"""Training throughput (structures/second) on this machine, paper sampling density.

    .venv/bin/python benchmarks/train_speed.py [--data ../shared/data/nesf_paper/lcs6_train.csv]
        [--batch-size 64] [--steps 6] [--threads 2]

Uses LCS6A train when ../shared/data exists, else the embedded synthetic set (and says so).
Prints structures/s, queries per structure and the achieved GFLOP/s of the field MLPs next to
this machine's float32 matmul rate. The authors' reference code: ~17.5 structures/s here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nesf_viz.data import BoundingBox, CrystalBatch, SpeciesVocab, load_crystals  # noqa: E402
from nesf_viz.model import NeSF  # noqa: E402
from nesf_viz.sampling import QuerySampler  # noqa: E402
from nesf_viz.train import LossModule, TrainConfig  # noqa: E402


def field_macs(model: NeSF, n_pos: float, n_spec: float, split: bool = True) -> float:
    """Multiply-adds of one forward pass of both fields for one crystal's queries."""

    def per_point(net) -> int:
        first = net.point_in.in_features * net.point_in.out_features
        if not split:
            first += net.latent_in.in_features * net.latent_in.out_features
        return first + sum(h.in_features * h.out_features for h in net.hidden) + net.out.in_features * net.out.out_features

    return n_pos * per_point(model.position_net) + n_spec * per_point(model.species_net)


def matmul_rate(m: int, k: int, n: int, reps: int = 5) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2 * m * k * n / statistics.median(ts) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    default = ROOT.parent / "shared" / "data" / "nesf_paper" / "lcs6_train.csv"
    ap.add_argument("--data", default=str(default) if default.exists() else "synthetic")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=1024)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    crystals = load_crystals(a.data, "train", conventional=False, limit=a.limit)
    vocab = SpeciesVocab.from_crystals(crystals)
    box = BoundingBox.from_crystals(crystals)
    print(f"data: {a.data} ({len(crystals)} structures used, {len(vocab)} species), batch {a.batch_size}, "
          f"{a.threads} threads, torch {torch.__version__}")
    torch.manual_seed(0)
    model = NeSF(num_species=len(vocab))
    loss_module = LossModule(model, TrainConfig())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = QuerySampler(box)
    full = CrystalBatch.from_crystals(crystals, vocab)
    g = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {"float32 (default)": [], "bf16 autocast (--mixed-precision)": []}
    n_pos = n_spec = 0.0
    model.train()
    # alternate the two recipes step by step: this machine's speed drifts by minutes
    for step in range(a.steps + 1):
        for name, bf16 in zip(times, (False, True)):
            rows = torch.randperm(full.num_crystals, generator=g)[: a.batch_size]
            t = time.perf_counter()
            b = full.select(rows)
            q = sampler(b, g)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                parts = loss_module(b, q)
            opt.zero_grad()
            parts["loss"].float().backward()
            opt.step()
            dt = time.perf_counter() - t
            if step:  # the first step warms up allocators
                times[name].append(dt)
                n_pos += q.position_points.shape[0] / b.num_crystals / 2
                n_spec += q.species_points.shape[0] / b.num_crystals / 2
    n_pos, n_spec = n_pos / a.steps, n_spec / a.steps
    flop = 3 * 2 * field_macs(model, n_pos, n_spec)  # forward + backward ~ 3x forward
    print(f"queries per structure: {n_pos:.0f} position, {n_spec:.0f} species; "
          f"field work {flop / 1e9:.2f} GFLOP per structure")
    for name, ts in times.items():
        med = statistics.median(ts)
        sps = a.batch_size / med
        print(f"{name:36s} step median {med:.3f} s -> {sps:6.1f} structures/s, "
              f"{flop * sps / 1e9:6.1f} GFLOP/s (reference code here: ~17.5 structures/s)")
    print(f"float32 matmul here: [65536x131]x[131x128] {matmul_rate(65536, 131, 128):.0f} GFLOP/s, "
          f"2048^3 {matmul_rate(2048, 2048, 2048):.0f} GFLOP/s")


if __name__ == "__main__":
    main()
