"""Training throughput (structures/second) on this machine, paper sampling density.

    .venv/bin/python benchmarks/train_speed.py [--data ../shared/data/nesf_paper/lcs6_train.csv]
        [--batch-size 64] [--steps 6] [--threads 2] [--reference DIR] [--malloc-tuning]

Uses LCS6A train when ../shared/data exists, else the embedded synthetic set (and says so).
Prints structures/s, queries per structure and the achieved GFLOP/s of the field MLPs next to
this machine's float32 matmul rate. The authors' reference code: ~17.5 structures/s here.

--reference DIR (the authors' `src/` folder, e.g. from
`git --git-dir=<mirror> archive HEAD src | tar -x -C /tmp/nesf_ref` -> /tmp/nesf_ref/src) imports
their `model.Model` at run time and times its training step (their forward with its own query
sampling + ground truth + loss, then zero_grad/backward/Adam step as Lightning does) on the same
crystals, alternating with ours step by step. Their code needs torch_geometric and
pytorch_lightning; when those are missing, minimal stand-ins are installed in sys.modules (Data,
Batch.from_data_list, global_max_pool, nearest, LightningModule). The stand-in `nearest` is a
vectorized padded argmin (at least as fast as torch_cluster's per-graph cdist), so it can only
flatter the reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from nesf_viz.bench import matmul_gflops, timed
from nesf_viz.data import BoundingBox, CrystalBatch, SpeciesVocab, load_crystals
from nesf_viz.datasets import dataset_path
from nesf_viz.model import NeSF
from nesf_viz.sampling import QuerySampler
from nesf_viz.train import LossModule
from nesf_viz.train_config import TrainConfig


def field_macs(model: NeSF, n_pos: float, n_spec: float, split: bool = True) -> float:
    """Multiply-adds of one forward pass of both fields for one crystal's queries."""

    def per_point(net) -> int:
        first = net.point_in.in_features * net.point_in.out_features
        if not split:
            first += net.latent_in.in_features * net.latent_in.out_features
        hidden = sum(h.in_features * h.out_features for h in net.hidden)
        return first + hidden + net.out.in_features * net.out.out_features

    return n_pos * per_point(model.position_net) + n_spec * per_point(model.species_net)


def tune_glibc_malloc() -> bool:
    """Keep freed activation memory in the heap instead of returning it to the OS.

    glibc serves blocks over its mmap threshold (at most 32 MiB) with fresh mmap()s, so every
    step page-faults and zeroes its (Q, 128) float32 activations again (~40% of float32 step
    time here, seen as system time). Same effect as MALLOC_MMAP_MAX_=0
    MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=536870912. Process-wide; glibc only.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4
        return bool(libc.mallopt(m_mmap_max, 0) and libc.mallopt(m_trim_threshold, 1 << 30)
                    and libc.mallopt(m_top_pad, 512 << 20))
    except (OSError, AttributeError):
        return False


def _install_pyg_standins() -> None:
    """Minimal torch_geometric / pytorch_lightning stand-ins for the reference code (if absent)."""
    import importlib.util
    import types

    if importlib.util.find_spec("pytorch_lightning") is None:
        pl = types.ModuleType("pytorch_lightning")

        class LightningModule(torch.nn.Module):
            def save_hyperparameters(self, *a, **k):
                pass

        pl.LightningModule = LightningModule
        sys.modules["pytorch_lightning"] = pl
    if importlib.util.find_spec("torch_geometric") is not None:
        return

    class Data:
        def __init__(self, **kw):
            self.__dict__.update(kw)

        def to(self, device):
            return self

    class Batch(Data):
        @classmethod
        def from_data_list(cls, data_list):
            pos = torch.cat([d.pos for d in data_list])
            counts = torch.tensor([d.pos.shape[0] for d in data_list])
            out = cls(pos=pos, batch=torch.repeat_interleave(torch.arange(len(data_list)), counts))
            out._num_graphs = len(data_list)
            return out

        @property
        def num_graphs(self) -> int:
            return self.__dict__.get("_num_graphs") or int(self.batch.max()) + 1

    def global_max_pool(x, batch, size=None):
        n = int(batch.max()) + 1 if size is None else size
        out = x.new_zeros(n, x.shape[1])
        return out.scatter_reduce(0, batch[:, None].expand_as(x), x, "amax", include_self=False)

    def nearest(x, y, batch_x, batch_y):
        # index into y of the nearest y of the same graph, for every x (vectorized, chunked)
        counts = torch.bincount(batch_y)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(y.shape[0]) - starts[batch_y]
        padded = y.new_full((counts.shape[0], int(counts.max()), 3), float("inf"))
        padded[batch_y, slot] = y
        out = torch.empty(x.shape[0], dtype=torch.long)
        chunk = max(1, (1 << 24) // padded.shape[1])
        for s in range(0, x.shape[0], chunk):
            b = batch_x[s : s + chunk]
            d2 = ((padded[b] - x[s : s + chunk, None, :]) ** 2).sum(-1)
            out[s : s + chunk] = starts[b] + d2.nan_to_num(float("inf")).argmin(1)
        return out

    mods = {n: types.ModuleType(n) for n in (
        "torch_geometric", "torch_geometric.data", "torch_geometric.data.batch",
        "torch_geometric.nn", "torch_geometric.nn.pool")}
    mods["torch_geometric.data"].Data = Data
    mods["torch_geometric.data"].Batch = Batch
    mods["torch_geometric.data.batch"].Batch = Batch
    mods["torch_geometric.nn"].global_max_pool = global_max_pool
    mods["torch_geometric.nn.pool"].nearest = nearest
    sys.modules.update(mods)


def load_reference(ref_dir: str, box: BoundingBox, num_species: int, network: str = "nesf"):
    """The authors' `Model` (their nesf network, sampling, loss weights) built from their config."""
    import yaml

    ref = Path(ref_dir).resolve()
    _install_pyg_standins()
    sys.path.insert(0, str(ref))
    import model as ref_model  # their src/model.py (imports their utils.py)

    cfg = yaml.safe_load((ref / "config" / "config.yaml").read_text())
    cfg["network"] = yaml.safe_load((ref / "config" / "network" / f"{network}.yaml").read_text())
    bbox = (torch.tensor(box.min_angstrom, dtype=torch.float32), torch.tensor(box.max_angstrom, dtype=torch.float32))
    params = ref_model.ModelPTL.create_model(cfg, bbox, num_species, instanciate=False)
    return ref_model.Model(**params["model"]), cfg["training"]["lr"]


def reference_batch(b: CrystalBatch):
    """Our CrystalBatch as the reference's torch_geometric batch (pos, x (N,1), y (B,6), batch)."""
    from torch_geometric.data import Batch

    out = Batch(pos=b.positions.float(), x=b.species[:, None], batch=b.batch,
                y=torch.cat([b.lengths, b.angles], 1).float())
    out._num_graphs = b.num_crystals
    return out


def reference_step(ref, ref_opt, full: CrystalBatch):
    """One training step of the authors' model on the given rows of `full`."""
    def step(rows):
        out = ref(reference_batch(full.select(rows)))
        ref_opt.zero_grad()
        out["loss"].backward()
        ref_opt.step()
    return step


def our_step(loss_module, opt, sampler, full: CrystalBatch, g: torch.Generator, bf16: bool,
             queries: list[tuple[float, float]]):
    """One training step of ours (float32 or bf16 autocast) on the given rows of `full`; appends
    the step's queries per structure to `queries`."""
    def step(rows):
        b = full.select(rows)
        q = sampler(b, g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            parts = loss_module(b, q)
        opt.zero_grad()
        parts["loss"].float().backward()
        opt.step()
        queries.append((q.position_points.shape[0] / b.num_crystals, q.species_points.shape[0] / b.num_crystals))
    return step


def alternate_steps(fns: dict, steps: int, n_crystals: int, batch_size: int, g: torch.Generator
                    ) -> dict[str, list[float]]:
    """Every recipe's step on the same random crystals, step by step (this machine's speed drifts
    by minutes); the first step of each warms up allocators and is not counted."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for step in range(steps + 1):
        rows = torch.randperm(n_crystals, generator=g)[:batch_size]
        for name, fn in fns.items():
            dt = timed(lambda: fn(rows))[1]
            if step:
                times[name].append(dt)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    default = dataset_path("lcs6_train", must_exist=False)
    ap.add_argument("--data", default=str(default) if default.exists() else "synthetic")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=1024)
    ap.add_argument("--reference", default=None, metavar="DIR",
                    help="the authors' src/ folder: time their training step alternating with ours")
    ap.add_argument("--malloc-tuning", action="store_true",
                    help="glibc mallopt: no mmap for big blocks, no trimming (applies to every recipe)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.malloc_tuning:
        print(f"glibc malloc tuning: {'on' if tune_glibc_malloc() else 'FAILED (not glibc?)'}")
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
    fns = {}
    if a.reference:
        ref, ref_lr = load_reference(a.reference, box, len(vocab))
        ref.train()
        fns["reference code (float32)"] = reference_step(ref, torch.optim.Adam(ref.parameters(), lr=ref_lr), full)
    queries: list[tuple[float, float]] = []  # (position, species) queries per structure of each timed step
    for name, bf16 in (("float32 (default)", False), ("bf16 autocast (--mixed-precision)", True)):
        fns[name] = our_step(loss_module, opt, sampler, full, g, bf16, queries)
    model.train()
    times = alternate_steps(fns, a.steps, full.num_crystals, a.batch_size, g)  # the reference runs first
    ours = [k for k in times if not k.startswith("reference")]
    times = {k: times[k] for k in [*ours, *[k for k in times if k not in ours]]}  # ours printed first
    queries = queries[len(ours):]  # the first step of each recipe warms up
    n_pos = sum(q[0] for q in queries) / len(queries)
    n_spec = sum(q[1] for q in queries) / len(queries)
    flop = 3 * 2 * field_macs(model, n_pos, n_spec)  # forward + backward ~ 3x forward
    print(f"queries per structure: {n_pos:.0f} position, {n_spec:.0f} species; "
          f"field work {flop / 1e9:.2f} GFLOP per structure")
    for name, ts in times.items():
        med = statistics.median(ts)
        sps = a.batch_size / med
        print(f"{name:36s} step median {med:.3f} s -> {sps:6.1f} structures/s, "
              f"{flop * sps / 1e9:6.1f} GFLOP/s  (steps: {' '.join(f'{x:.2f}' for x in ts)})")
    ref_name = "reference code (float32)"
    if ref_name in times:
        ref_med = statistics.median(times[ref_name])
        for name in ours:
            print(f"ratio {name} / reference: {ref_med / statistics.median(times[name]):.2f}x (same process)")
    else:
        print("reference code here: ~17.5 structures/s (earlier, separate run; give --reference DIR to time it here)")
    rates = matmul_gflops(repeats=5)
    print(f"float32 matmul here: [65536x131]x[131x128] {rates['65536x131x128']:.0f} GFLOP/s, "
          f"2048^3 {rates['2048^3']:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
