"""Decode speed on LCS6A test, every decoder side by side in one process (docs/decode-speed.md).

"old" = the algorithm as the paper describes it and the reference code runs it: one crystal at
a time, every particle moved 64 times, NMS as a Python while-loop on the CPU, species by
torch.mode. Written below (`straightforward_decode`); it is the baseline, not library code.
"paper" = `nesf_viz.decode.decode` with `DecodeConfig()` (batched over crystals and particles,
vectorized NMS), then the named recipes 'fast' and 'coarse' (`DecodeConfig.preset`).

Exact fields: the LCS6A training box, identical atoms checked. Learned fields: the shipped
`lcs6` model on the first --learned-n test crystals (all decoders, alternating runs, medians),
plus fast and coarse on the whole split (accuracy on a sample that means something). Also
multiply-adds per crystal and achieved GFLOP/s next to this machine's float32 matmul rate, and
peak memory (fresh subprocesses: a 128-crystal batch, and 1,000 learned decodes in batches).
Prints a markdown table; `python benchmarks/tables.py` puts the JSON's numbers into docs/decode-speed.md.

    .venv/bin/python benchmarks/decode_speed.py                      # everything (~15 min)
    .venv/bin/python benchmarks/decode_speed.py --exact-n 64 --learned-n 2 --repeats 1 --skip-memory
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nesf_viz.assets import checkpoint_path
from nesf_viz.bench import alternate, machine, matmul_gflops, medians, timed, write_json
from nesf_viz.checkpoints import load_checkpoint
from nesf_viz.data import BoundingBox, Crystal, CrystalBatch, SpeciesVocab, load_crystals
from nesf_viz.datasets import data_root
from nesf_viz.decode import DECODERS, DecodeConfig, box_particles, decode, decode_crystals, species_offsets
from nesf_viz.fields import ExactFields
from nesf_viz.hooks import DecodeHook
from nesf_viz.metrics import metrics_of, paper_metrics
from nesf_viz.nms import nms

ROOT = Path(__file__).resolve().parents[1]
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

    med = medians(alternate({"old": old, "new": new}, repeats))
    o, n_ = old(), new()
    same = all(len(x) == int(((n_.cluster_batch == i) & n_.is_atom).sum()) for i, x in enumerate(o))
    return {"kept_particles": int(k.sum()), "old_s": med["old"], "new_s": med["new"],
            "speedup": med["old"] / med["new"], "same_atom_counts": same}


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


def peak_memory_subprocess(kind: str, n: int, decoder: str, moves: int | None = None) -> dict:
    """Peak resident memory while decoding n LCS6A test crystals (`decode_crystals`, batches of
    64) with the named decoder, above the resident memory just before (fresh process; a thread
    samples /proc/self/statm every 5 ms, because ru_maxrss would still hold the peak of reading
    the CIFs). kind 'exact' or 'learned' (the shipped lcs6 model); n may exceed the split (the
    crystals repeat). `moves` caps the moves (memory does not depend on their number)."""
    code = f"""
import dataclasses, json, os, threading, time, torch
from benchmarks.decode_speed import setup_trained, _test_crystals, LCS6_TRAIN_BOX
from nesf_viz.data import SpeciesVocab
from nesf_viz.decode import DecodeConfig, decode_crystals
page = os.sysconf('SC_PAGE_SIZE')
rss = lambda: int(open('/proc/self/statm').read().split()[1]) * page / 2**20
kind, n, moves = {kind!r}, {n}, {moves!r}
cfg = DecodeConfig.preset({decoder!r})
if moves is not None:
    cfg = dataclasses.replace(cfg, num_moves=moves)
if kind == 'exact':
    crystals = _test_crystals()
    fields, box, vocab = 'exact', LCS6_TRAIN_BOX, SpeciesVocab.from_crystals(crystals)
else:
    ck, crystals = setup_trained()
    fields, box, vocab = ck.model, ck.box, ck.vocab
crystals = (crystals * (n // len(crystals) + 1))[:n]
peak, done = [0.0], [False]
def sample():
    while not done[0]:
        peak[0] = max(peak[0], rss())
        time.sleep(0.005)
before = rss()
th = threading.Thread(target=sample); th.start()
t = time.perf_counter()
r = decode_crystals(fields, crystals, box=box, vocab=vocab, config=cfg, progress=False)
seconds = time.perf_counter() - t
done[0] = True; th.join()
print(json.dumps({{"n": n, "rss_before_MiB": before, "peak_MiB": peak[0], "decode_extra_MiB": peak[0] - before,
                  "particles": int(r.n_particles.sum()), "seconds": seconds}}))
"""
    # run in the checkout: `benchmarks.decode_speed` is found from the working folder
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        return {"error": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


_CACHE: dict = {}


def _test_crystals():
    if "test" not in _CACHE:
        _CACHE["test"] = load_crystals(DATA / "lcs6_test.csv")
    return _CACHE["test"]


def setup_exact(n: int):
    crystals = _test_crystals()[:n]
    vocab = SpeciesVocab.from_crystals(_test_crystals())
    batch = CrystalBatch.from_crystals(crystals, vocab)
    fields = ExactFields(batch, len(vocab))
    return fields, batch, fields.latents(batch), vocab


def setup_trained():
    """The shipped LCS6A model and the LCS6A test split as it was evaluated (cells as given)."""
    if "trained" not in _CACHE:
        ck = load_checkpoint(checkpoint_path("lcs6"))
        _CACHE["trained"] = ck, load_crystals(DATA / "lcs6_test.csv", conventional=False)
    return _CACHE["trained"]


_KEYS = ("atom_count_error_pct", "position_error_actual_A", "species_error_actual_pct", "length_mae_A")


def _metrics(m) -> dict:
    """The four accuracy numbers of a PaperMetrics or a metrics dict, rounded."""
    get = m.get if isinstance(m, dict) else lambda k: getattr(m, k)
    return {k: round(float(get(k)), 4) for k in _KEYS}


def speed_table(report: dict) -> str:
    """A decode-speed table (markdown) of one run's report, as the run prints it."""
    ex, le, mem = report.get("exact", {}), report.get("learned", {}), report.get("peak_memory", {})
    rows = [("reference-style, per crystal (paper settings)", "old", None),
            ("nesf_viz paper decoder (`DecodeConfig()`)", "paper", "paper"),
            ("fast (`DecodeConfig.fast()`)", "fast", "fast"),
            ("coarse (`DecodeConfig.coarse()`)", "coarse", "coarse")]
    ex_rate = {"old": ex.get("old_structures_per_s"), "paper": ex.get("new_structures_per_s"),
               "fast": ex.get("fast_structures_per_s"), "coarse": ex.get("coarse_structures_per_s")}
    full = le.get("full_split", {})

    def num(x, f="{:.1f}"):
        return "-" if x is None else f.format(x)

    def acc(m):
        return "-" if not m else (f"{m['atom_count_error_pct']:.1f} % / {m['position_error_actual_A']:.3f} Å / "
                                  f"{m['species_error_actual_pct']:.1f} %")

    def peak(key):
        v = mem.get(key) or {}
        return num(v.get("decode_extra_MiB"), "{:.0f}")

    lines = [f"| decoder | exact fields, crystals/s ({ex.get('n', '-')}) | learned fields, crystals/s "
             f"({le.get('n', '-')}) | learned: atoms / position / species error ({le.get('n', '-')}) | "
             f"same, all {le.get('n_full', '-')} test crystals, and crystals/s | "
             "peak MiB, 128 crystals exact / learned |",
             "|---|---|---|---|---|---|"]
    for label, key, mkey in rows:
        mem_l = peak("learned_paper_2_moves") if key == "paper" else peak(f"learned_{key}")
        lines.append(f"| {label} | {num(ex_rate[key])} | {num((le.get('structures_per_s') or {}).get(key), '{:.2f}')}"
                     f" | {acc((le.get('subset_metrics') or {}).get(key))} | "
                     f"{acc(full.get(key))}{'' if key not in full else ', ' + num(full[key]['structures_per_s'])}"
                     f" | {peak(f'exact_{mkey}') if mkey else '-'} / {mem_l if mkey else '-'} |")
    for k in ("fast", "coarse"):
        v = mem.get(f"learned_{k}_1000")
        if v and "decode_extra_MiB" in v:
            lines.append(f"\n{k}, 1,000 learned decodes in batches of 64: {v['decode_extra_MiB']:.0f} MiB peak "
                         f"above the process, {v['seconds']:.0f} s")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def exact_section(box: BoundingBox, cfg: DecodeConfig, configs: dict, n_crystals: int, repeats: int) -> dict:
    """Exact fields of the first LCS6A test crystals: every decoder alternating, agreement with
    the reference-style loop, NMS alone."""
    fast = DecodeConfig.fast()
    fields, batch, z, vocab = setup_exact(n_crystals)
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

    def run_coarse():
        new_out["c"] = decode(fields, latents=z, box=box, vocab=vocab, config=configs["coarse"])

    def run_zero():  # stops only exact fixed points: the same result as the default
        new_out["z"] = decode(fields, latents=z, box=box, vocab=vocab, config=zero)

    times = alternate({"old": run_old, "new": run_new, "fast": run_fast, "coarse": run_coarse, "stop0": run_zero},
                      repeats)
    med = medians(times)
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
        "coarse_structures_per_s": n / med["coarse"],
        "coarse_same_atom_counts": bool(np.array_equal(new_out["c"].num_atoms, new_out["r"].num_atoms)),
    }
    cap = Capture()
    decode(fields, latents=z, box=box, vocab=vocab, config=zero, hooks=[cap])
    exact["nms_only"] = nms_only(cap, cfg, max(repeats, 5))
    print(f"\nexact fields, {n} LCS6A test crystals, medians of {repeats} alternating runs:")
    print(f"  old (per crystal, Python NMS): {exact['old_structures_per_s']:.2f} structures/s")
    print(f"  new (batched):                 {exact['new_structures_per_s']:.2f} structures/s"
          f"  -> {exact['speedup_new_vs_old']:.2f}x")
    print(f"  fast recipe:                   {exact['fast_structures_per_s']:.2f} structures/s"
          f"  -> {exact['speedup_fast_vs_new']:.2f}x over new defaults")
    print(f"  coarse recipe:                 {exact['coarse_structures_per_s']:.2f} structures/s"
          f"  (same atom counts: {exact['coarse_same_atom_counts']})")
    print(f"  early stop at 0.0 (identical result: {exact['stop0_identical_to_default']}): "
          f"{exact['stop0_structures_per_s']:.2f} structures/s")
    print(f"  agreement: {exact['agreement_old_new']}")
    print(f"  NMS alone, same particles: {exact['nms_only']}")
    print(f"  new stages: { {k: round(v, 3) for k, v in exact['new_stage_times_s'].items()} }")

    return exact


def learned_section(cfg: DecodeConfig, configs: dict, n_crystals: int, repeats: int) -> dict:
    """The shipped LCS6A model on its test split: every decoder alternating on the first
    crystals, fast and coarse on the whole split, multiply-adds and achieved GFLOP/s."""
    ck, tcrystals = setup_trained()
    model, lvocab, lbox = ck.model, ck.vocab, ck.box
    sub = tcrystals[:n_crystals]
    lbatch = CrystalBatch.from_crystals(sub, lvocab)
    with torch.no_grad():
        lz = model.latents(lbatch)
    nl = lbatch.num_crystals
    pp, pc = field_macs(model.position_net)
    sp, _ = field_macs(model.species_net)
    p_box = box_particles(lbox, cfg.grid_step_angstrom, cfg.box_margin_angstrom).shape[0]
    macs = p_box * cfg.num_moves * pp + pc
    out_l: dict = {}

    def l_old():
        res, lengths, angles = straightforward_decode(model, lz, lbox, cfg)
        out_l["old"] = [
            Crystal(c.double().numpy(), np.asarray(lvocab.decode(sp_.numpy())), tuple(map(float, ln.detach())),
                    tuple(map(float, np.degrees(an.detach().double().numpy()))), id=t.id)
            for (c, sp_), ln, an, t in zip(res, lengths, angles, sub)]

    def run(name):
        def f():
            out_l[name] = decode(model, latents=lz, box=lbox, vocab=lvocab, config=configs[name],
                                 ids=[c.id for c in sub])
        return f

    lt = alternate({"old": l_old, **{k: run(k) for k in configs}}, repeats)
    lmed = medians(lt)
    subset = {k: _metrics(paper_metrics(sub, out_l[k])) for k in out_l}
    # fast and coarse on the whole split as well: accuracy on a sample that means something
    full = {}
    for k in ("fast", "coarse"):
        r, seconds = timed(lambda: decode_crystals(model, tcrystals, box=lbox, vocab=lvocab,
                                                   config=configs[k], progress=False))
        full[k] = {"structures_per_s": len(tcrystals) / seconds,
                   **_metrics(metrics_of(tcrystals, r, match=False).to_dict())}
    move_s = out_l["paper"].timing_s["move"] / nl
    learned = {
        "n": nl, "n_full": len(tcrystals),
        "position_field_macs_per_point": pp, "position_field_macs_per_crystal_latent": pc,
        "species_field_macs_per_point": sp, "gflop_per_crystal_paper_moves": 2 * macs / 1e9,
        "achieved_gflops_paper_moves": 2 * macs / move_s / 1e9,
        "structures_per_s": {k: nl / v for k, v in lmed.items()},
        "raw_times_s": lt, "subset_metrics": subset, "full_split": full,
        "particles_per_crystal_mean": {k: float(out_l[k].n_particles.mean()) for k in configs},
    }
    print(f"\nshipped lcs6 model, first {nl} LCS6A test crystals, medians of {repeats} alternating runs:")
    print(f"  position field: {pp:,} multiply-adds per point (+{pc:,} per crystal for the latent); "
          f"{learned['gflop_per_crystal_paper_moves']:.1f} GFLOP per crystal for {cfg.num_moves} moves; "
          f"paper decoder moves at {learned['achieved_gflops_paper_moves']:.0f} GFLOP/s")
    for k in ("old", *configs):
        print(f"  {k:7s} {learned['structures_per_s'][k]:8.2f} structures/s  {subset[k]}")
    for k, v in full.items():
        print(f"  {k} on all {len(tcrystals)}: {v}")

    return learned


def memory_section(configs: dict) -> dict:
    """Peak memory of 128-crystal batches (exact and learned) and of 1,000 learned decodes."""
    mem = {f"exact_{k}": peak_memory_subprocess("exact", 128, k) for k in configs}
    mem |= {"learned_paper_2_moves": peak_memory_subprocess("learned", 128, "paper", moves=2)}
    mem |= {f"learned_{k}": peak_memory_subprocess("learned", 128, k) for k in ("fast", "coarse")}
    mem |= {f"learned_{k}_1000": peak_memory_subprocess("learned", 1000, k) for k in ("fast", "coarse")}
    print("\npeak memory (MiB above the process before decoding):")
    for k, v in mem.items():
        print(f"  {k}: {v}")

    return mem


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exact-n", type=int, default=64, help="LCS6A test crystals for the exact-field runs")
    ap.add_argument("--learned-n", type=int, default=8,
                    help="test crystals every learned decoder runs on (the paper decoder takes ~2-3 s each)")
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
    configs = {name: DecodeConfig.preset(name) for name in DECODERS}
    report: dict = {"machine": machine(), "torch_threads": torch.get_num_threads(), "fast_recipe": fast.to_dict()}
    p = box_particles(box, cfg.grid_step_angstrom, cfg.box_margin_angstrom).shape[0]
    print(f"particles per crystal: {p}; torch threads: {torch.get_num_threads()}")

    rates = matmul_gflops()
    report["matmul_gflops"] = rates
    print("float32 matmul here: " + ", ".join(f"{k}: {v:.0f} GFLOP/s" for k, v in rates.items()))
    if not a.skip_exact:
        report["exact"] = exact_section(box, cfg, configs, a.exact_n, a.repeats)
    if not a.skip_learned:
        report["learned"] = learned_section(cfg, configs, a.learned_n, a.repeats)
    if not a.skip_memory:
        report["peak_memory"] = memory_section(configs)
    print("\n" + speed_table(report))
    if a.json:
        write_json(a.json, report)
    return 0

if __name__ == "__main__":
    sys.exit(main())
