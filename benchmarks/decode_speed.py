"""Decode speed on LCS6A test: the batched decoder next to a straightforward one, same process.

"old" = the algorithm as the paper describes it and the reference code runs it: one crystal at
a time, every particle moved 64 times, NMS as a Python while-loop on the CPU, species by
torch.mode. Written below (`straightforward_decode`); it is the baseline, not library code.
"new" = `nesf_viz.decode.decode` (batched over crystals and particles, vectorized NMS).

Runs alternate old/new and medians are quoted: this machine is shared and noisy.
Also: multiply-adds per crystal and achieved GFLOP/s next to this machine's float32 matmul
rate, a named fast recipe (`DecodeConfig.fast()`) and its speedup, and peak memory for a
128-crystal batch (in a fresh subprocess, max RSS above the post-setup baseline).

    .venv/bin/python benchmarks/decode_speed.py                      # everything (~15-30 min)
    .venv/bin/python benchmarks/decode_speed.py --exact-n 64 --learned-n 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nesf_viz.data import BoundingBox, CrystalBatch, SpeciesVocab, load_crystals  # noqa: E402
from nesf_viz.datasets import data_root  # noqa: E402
from nesf_viz.decode import DecodeConfig, box_particles, decode, species_offsets  # noqa: E402
from nesf_viz.fields import ExactFields  # noqa: E402
from nesf_viz.hooks import DecodeHook  # noqa: E402
from nesf_viz.model import NeSF  # noqa: E402
from nesf_viz.nms import nms  # noqa: E402

DATA = data_root() / "nesf_paper"
# The LCS6A training box as nesf_viz reads lcs6_train.csv (conventional cells); --train-csv
# recomputes it (about a minute or more on this machine).
LCS6_TRAIN_BOX = BoundingBox((-0.007665661939112458, -0.005529275319112208, 0.0),
                             (11.649674387139884, 8.495752722514835, 5.9674329321420005))


# ----------------------------------------------------------------------------- the baseline


def straightforward_nms(centers: torch.Tensor, scores: torch.Tensor, radius: float, min_points: int):
    """The reference's loop: seed = lowest score; take everything within radius; repeat."""
    order = torch.sort(scores, stable=True).indices  # (score, index) order, as nesf_viz
    centers, scores = centers[order], scores[order]
    out = []
    while centers.shape[0] > 0:
        d2 = (centers - centers[0]).pow(2).sum(1)
        inner = d2 < radius**2
        if int(inner.sum()) >= min_points:
            w = F.softmax(-scores[inner].double(), dim=0)  # float64 like nesf_viz (see nesf_viz.nms._centres)
            out.append((w @ centers[inner].double()).to(centers.dtype))
        centers, scores = centers[~inner], scores[~inner]
    return torch.stack(out) if out else centers.new_zeros(0, 3)


def straightforward_decode(fields, z: torch.Tensor, box: BoundingBox, cfg: DecodeConfig):
    """One crystal at a time, all its particles in one field call per move."""
    grid = box_particles(box, cfg.grid_step_angstrom, cfg.box_margin_angstrom).to(z.dtype)
    offs = species_offsets(cfg.species_grid_step_angstrom, cfg.species_grid_points_per_axis).to(z.dtype)
    lengths, angles = fields.lattice(z)
    out = []
    with torch.no_grad():
        for i in range(z.shape[0]):
            idx = torch.full((grid.shape[0],), i, dtype=torch.long)
            p = grid.clone()
            for _ in range(cfg.num_moves):
                v = fields.position_field(z, p, idx)
                p = p + v
            score = v.pow(2).sum(1)
            keep = score <= cfg.score_threshold_angstrom**2
            centres = straightforward_nms(p[keep], score[keep], cfg.nms_radius_angstrom, cfg.nms_min_particles)
            if len(centres):
                q = (centres[:, None] + offs[None]).reshape(-1, 3)
                qi = torch.full((q.shape[0],), i, dtype=torch.long)
                votes = fields.species_field(z, q, qi).argmax(-1).reshape(len(centres), -1)
                spec = votes.mode(dim=1).values
            else:
                spec = torch.zeros(0, dtype=torch.long)
            out.append((centres, spec))
    return out, lengths, angles


# ----------------------------------------------------------------------------- helpers


class Capture(DecodeHook):
    """Keeps what NMS sees: final positions, crystal index, scores, kept mask."""

    def on_particles_init(self, positions, index):
        self.positions, self.index = positions, index

    def on_move(self, step, positions, vectors, norms):
        self.positions = positions

    def on_score(self, scores, kept_mask):
        self.scores, self.kept = scores, kept_mask


def nms_only(cap: Capture, cfg: DecodeConfig, repeats: int) -> dict:
    """Old (per-crystal Python loop) vs new (batched) NMS on the same particles."""
    k = cap.kept
    pts, sc, b = cap.positions[k], cap.scores[k], cap.index[k]
    nb = int(cap.index.max()) + 1
    per = [(pts[b == i], sc[b == i]) for i in range(nb)]

    def old():
        return [straightforward_nms(p, s, cfg.nms_radius_angstrom, cfg.nms_min_particles) for p, s in per]

    def new():
        return nms(pts, sc, b, nb, cfg.nms_radius_angstrom, cfg.nms_min_particles,
                   collapse_tolerance=cfg.nms_collapse_tolerance_angstrom)

    t = alternate({"old": old, "new": new}, repeats)
    o, n_ = old(), new()
    same = all(len(x) == int(((n_.cluster_batch == i) & n_.is_atom).sum()) for i, x in enumerate(o))
    med = {key: statistics.median(v) for key, v in t.items()}
    return {"kept_particles": int(k.sum()), "old_s": med["old"], "new_s": med["new"],
            "speedup": med["old"] / med["new"], "same_atom_counts": same}


def timed(fn, *a, **k):
    t = time.perf_counter()
    r = fn(*a, **k)
    return time.perf_counter() - t, r


def alternate(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Run each function `repeats` times, interleaved; return the wall times."""
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed(fn)[0])
    return times


def matmul_rate(repeats: int = 7) -> dict[str, float]:
    """float32 GFLOP/s of two matmul shapes on this machine (median of repeats)."""
    out = {}
    for name, (m, k, n) in {"65536x131x128": (65536, 131, 128), "2048^3": (2048, 2048, 2048)}.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        ts = [timed(torch.matmul, a, b)[0] for _ in range(repeats)]
        out[name] = 2 * m * k * n / statistics.median(ts) / 1e9
    return out


def field_macs(net) -> tuple[int, int]:
    """Multiply-adds per query point of a FieldMLP (point part) and per crystal (latent part)."""
    per_point = net.point_in.in_features * net.point_in.out_features
    per_point += sum(h.in_features * h.out_features for h in net.hidden)
    per_point += net.out.in_features * net.out.out_features
    per_crystal = net.latent_in.in_features * net.latent_in.out_features
    return per_point, per_crystal


def compare_atoms(old, result) -> dict:
    """How far the two implementations agree (atom counts, positions)."""
    same_count, max_err = 0, 0.0
    for (centres, _), pos in zip(old, result.positions_angstrom):
        if len(centres) == len(pos):
            same_count += 1
            if len(pos):
                d = np.linalg.norm(centres.double().numpy()[:, None] - pos[None], axis=-1)
                max_err = max(max_err, float(d.min(1).max()))
    return {"same_atom_count": same_count, "of": len(old), "max_position_diff_A": max_err}


def peak_memory_subprocess(kind: str, n: int, moves: int) -> dict:
    """Peak resident memory while decoding one n-crystal batch, above the resident memory just
    before (fresh process; a thread samples /proc/self/statm every 5 ms, because ru_maxrss
    would still hold the peak of reading the CIFs)."""
    code = f"""
import json, os, sys, threading, time, torch
sys.path.insert(0, {str(ROOT)!r})
from benchmarks.decode_speed import setup_learned, setup_exact, LCS6_TRAIN_BOX
from nesf_viz.decode import decode, DecodeConfig
page = os.sysconf('SC_PAGE_SIZE')
rss = lambda: int(open('/proc/self/statm').read().split()[1]) * page / 2**20
kind, n = {kind!r}, {n}
fields, batch, z, vocab = (setup_exact if kind == 'exact' else setup_learned)(n)
peak, done = [0.0], [False]
def sample():
    while not done[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
before = rss()
th = threading.Thread(target=sample); th.start()
r = decode(fields, latents=z, box=LCS6_TRAIN_BOX, vocab=vocab, config=DecodeConfig(num_moves={moves}))
done[0] = True; th.join()
print(json.dumps({{"rss_before_MiB": before, "peak_MiB": peak[0], "decode_extra_MiB": peak[0] - before,
                  "particles": int(r.n_particles.sum()), "seconds": r.timing_s["total"]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        return {"error": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


_CACHE: dict = {}


def _test_crystals():
    if "test" not in _CACHE:
        _CACHE["test"] = load_crystals(DATA / "lcs6_test.csv")
    return _CACHE["test"]


def _vocab80() -> SpeciesVocab:
    # the LCS6A vocabulary has 80 species; an untrained model only needs the count, so the
    # test crystals' own elements are padded with unused atomic numbers when the train CSV is
    # not read
    if "vocab" not in _CACHE:
        zs = sorted(SpeciesVocab.from_crystals(_test_crystals()).atomic_numbers)
        extra = [z for z in range(1, 100) if z not in zs][: max(0, 80 - len(zs))]
        _CACHE["vocab"] = SpeciesVocab(tuple(sorted(zs + extra)))
    return _CACHE["vocab"]


def setup_exact(n: int):
    crystals = _test_crystals()[:n]
    vocab = SpeciesVocab.from_crystals(_test_crystals())
    batch = CrystalBatch.from_crystals(crystals, vocab)
    fields = ExactFields(batch, len(vocab))
    return fields, batch, fields.latents(batch), vocab


def setup_learned(n: int):
    vocab = _vocab80()
    torch.manual_seed(0)
    model = NeSF(num_species=len(vocab)).eval()
    batch = CrystalBatch.from_crystals(_test_crystals()[:n], vocab)
    with torch.no_grad():
        z = model.latents(batch)
    return model, batch, z, vocab


class TrueLattice:
    """A learned position/species field with the true lattice (an untrained lattice head
    predicts impossible cells, which would make 'particles in cell' meaningless)."""

    def __init__(self, model, batch):
        self.model, self.batch, self.num_species = model, batch, model.num_species

    def lattice(self, z):
        return self.batch.lengths, self.batch.angles

    def position_field(self, z, p, i):
        return self.model.position_field(z, p, i)

    def species_field(self, z, p, i):
        return self.model.species_field(z, p, i)


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exact-n", type=int, default=64, help="LCS6A test crystals for the exact-field runs")
    ap.add_argument("--learned-n", type=int, default=2, help="crystals for the learned-field runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-csv", default=None, help="recompute the training box from this CSV")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-learned", action="store_true")
    ap.add_argument("--skip-exact", action="store_true")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    global LCS6_TRAIN_BOX
    if a.train_csv:
        LCS6_TRAIN_BOX = BoundingBox.from_crystals(load_crystals(a.train_csv))
    box = LCS6_TRAIN_BOX
    cfg, fast = DecodeConfig(), DecodeConfig.fast()
    report: dict = {"torch_threads": torch.get_num_threads(), "fast_recipe": fast.to_dict()}
    p = box_particles(box, cfg.grid_step_angstrom, cfg.box_margin_angstrom).shape[0]
    print(f"particles per crystal: {p}; torch threads: {torch.get_num_threads()}")

    rates = matmul_rate()
    report["matmul_gflops"] = rates
    print("float32 matmul here: " + ", ".join(f"{k}: {v:.0f} GFLOP/s" for k, v in rates.items()))

    # --- exact fields
    if not a.skip_exact:
        fields, batch, z, vocab = setup_exact(a.exact_n)
        n = batch.num_crystals
        old_out = {}

        def run_old():
            old_out["r"] = straightforward_decode(fields, z, box, cfg)[0]

        new_out = {}

        def run_new():
            new_out["r"] = decode(fields, latents=z, box=box, vocab=vocab, config=cfg)

        def run_fast():
            new_out["f"] = decode(fields, latents=z, box=box, vocab=vocab, config=fast)

        zero = DecodeConfig(early_stop_tolerance_angstrom=0.0)

        def run_zero():  # stops only exact fixed points: the same result as the default
            new_out["z"] = decode(fields, latents=z, box=box, vocab=vocab, config=zero)

        times = alternate({"old": run_old, "new": run_new, "fast": run_fast, "stop0": run_zero}, a.repeats)
        med = {k: statistics.median(v) for k, v in times.items()}
        exact = {
            "n": n,
            "old_structures_per_s": n / med["old"],
            "new_structures_per_s": n / med["new"],
            "speedup_new_vs_old": med["old"] / med["new"],
            "fast_structures_per_s": n / med["fast"],
            "speedup_fast_vs_new": med["new"] / med["fast"],
            "raw_times_s": times,
            "agreement_old_new": compare_atoms(old_out["r"], new_out["r"]),
            "new_stage_times_s": new_out["r"].timing_s,
            "fast_stage_times_s": new_out["f"].timing_s,
            "fast_particles_per_crystal_mean": float(new_out["f"].n_particles.mean()),
            "stop0_structures_per_s": n / med["stop0"],
            "stop0_identical_to_default": all(
                np.array_equal(x, y) for x, y in zip(new_out["r"].positions_angstrom, new_out["z"].positions_angstrom)),
            "fast_same_atom_counts": bool(np.array_equal(new_out["f"].num_atoms, new_out["r"].num_atoms)),
        }
        cap = Capture()
        decode(fields, latents=z, box=box, vocab=vocab, config=zero, hooks=[cap])
        exact["nms_only"] = nms_only(cap, cfg, max(a.repeats, 5))
        report["exact"] = exact
        print(f"\nexact fields, {n} LCS6A test crystals, medians of {a.repeats} alternating runs:")
        print(f"  old (per crystal, Python NMS): {exact['old_structures_per_s']:.2f} structures/s")
        print(f"  new (batched):                 {exact['new_structures_per_s']:.2f} structures/s"
              f"  -> {exact['speedup_new_vs_old']:.2f}x")
        print(f"  fast recipe:                   {exact['fast_structures_per_s']:.2f} structures/s"
              f"  -> {exact['speedup_fast_vs_new']:.2f}x over new defaults")
        print(f"  early stop at 0.0 (identical result: {exact['stop0_identical_to_default']}): "
              f"{exact['stop0_structures_per_s']:.2f} structures/s")
        print(f"  agreement: {exact['agreement_old_new']}")
        print(f"  NMS alone, same particles: {exact['nms_only']}")
        print(f"  new stages: { {k: round(v, 3) for k, v in exact['new_stage_times_s'].items()} }")

    # --- learned (untrained) fields
    if not a.skip_learned:
        model, lbatch, lz, lvocab = setup_learned(a.learned_n)
        nl = lbatch.num_crystals
        pp, pc = field_macs(model.position_net)
        sp, sc = field_macs(model.species_net)
        macs = p * cfg.num_moves * pp + pc
        ref_macs = p * cfg.num_moves * (pp + pc)  # the reference recomputes the latent part per point
        lold, lnew = {}, {}
        tl = TrueLattice(model, lbatch)

        def l_old():
            lold["r"] = straightforward_decode(model, lz, box, cfg)[0]

        def l_new():
            lnew["r"] = decode(model, latents=lz, box=box, vocab=lvocab, config=cfg)

        def l_fast():
            lnew["f"] = decode(tl, latents=lz, box=box, vocab=lvocab, config=fast)

        lt = alternate({"old": l_old, "new": l_new, "fast": l_fast}, a.repeats)
        lmed = {k: statistics.median(v) for k, v in lt.items()}
        move_s = lnew["r"].timing_s["move"] / nl
        learned = {
            "n": nl,
            "position_field_macs_per_point": pp,
            "position_field_macs_per_crystal_latent": pc,
            "species_field_macs_per_point": sp,
            "macs_per_crystal_moves": macs,
            "gflop_per_crystal": 2 * macs / 1e9,
            "reference_gflop_per_crystal": 2 * ref_macs / 1e9,
            "old_structures_per_s": nl / lmed["old"],
            "new_structures_per_s": nl / lmed["new"],
            "speedup_new_vs_old": lmed["old"] / lmed["new"],
            "fast_structures_per_s": nl / lmed["fast"],
            "speedup_fast_vs_new": lmed["new"] / lmed["fast"],
            "achieved_gflops_new_moves": 2 * macs / move_s / 1e9,
            "achieved_gflops_old": 2 * macs * nl / lmed["old"] / 1e9,
            "raw_times_s": lt,
            "agreement_old_new": compare_atoms(lold["r"], lnew["r"]),
            "new_stage_times_s": lnew["r"].timing_s,
            "fast_particles_per_crystal_mean": float(lnew["f"].n_particles.mean()),
        }
        cap = Capture()
        decode(model, latents=lz, box=box, vocab=lvocab, config=cfg, hooks=[cap])
        learned["nms_only"] = nms_only(cap, cfg, a.repeats)
        report["learned"] = learned
        print(f"\nuntrained NeSF (80 species), {nl} crystals, medians of {a.repeats} alternating runs:")
        print(f"  position field: {pp:,} multiply-adds per point (+{pc:,} per crystal for the latent);"
              f" {learned['gflop_per_crystal']:.1f} GFLOP per crystal for {cfg.num_moves} moves"
              f" (reference layout: {learned['reference_gflop_per_crystal']:.1f})")
        print(f"  old: {learned['old_structures_per_s']:.3f} structures/s "
              f"({learned['achieved_gflops_old']:.0f} GFLOP/s)")
        print(f"  new: {learned['new_structures_per_s']:.3f} structures/s -> {learned['speedup_new_vs_old']:.2f}x "
              f"(moves at {learned['achieved_gflops_new_moves']:.0f} GFLOP/s)")
        print(f"  fast recipe (true lattice): {learned['fast_structures_per_s']:.3f} structures/s -> "
              f"{learned['speedup_fast_vs_new']:.2f}x ({learned['fast_particles_per_crystal_mean']:.0f} particles)")
        print(f"  agreement: {learned['agreement_old_new']}")
        print(f"  NMS alone, same particles: {learned['nms_only']}")

    if not a.skip_memory:
        report["peak_memory_128"] = {
            "exact_64_moves": peak_memory_subprocess("exact", 128, 64),
            "learned_2_moves": peak_memory_subprocess("learned", 128, 2),
        }
        print(f"\npeak memory, one 128-crystal batch: {report['peak_memory_128']}")
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
