"""One script for a lent GPU: does the CUDA path agree with the CPU, and how fast is it?

    python benchmarks/gpu_check.py --json gpu_check.json               # on the GPU machine, <= 8 min
    python benchmarks/gpu_check.py --device cpu --tiny --json dry.json  # the dry run (tests/test_benchmarks.py)

Checks, each a section of the JSON (and a printed line):
1. exact fields, device vs CPU: identical atom counts and positions (same decoder, same crystals);
2. learned fields (the shipped `lcs6` model, else `synthetic`), device vs CPU: same atom counts,
   positions within 1e-4 A (float32 matmuls may round differently on another device);
3. decode throughput on the device, paper decoder, `DecodeConfig.fast()` and `.coarse()`, crystals/s;
4. training throughput on the device, float32 and bf16 autocast, structures/s (query sampling
   and ground truth on the device, as `train` does it);
5. a few epochs of the paper recipe on LCS6A train (when ../shared/data is present), projected
   to the paper's 3200 epochs.
Data: LCS6A test/train from ../shared/data when present, else the embedded synthetic set (said in
the JSON). `--tiny` shrinks every size (and the paper decoder to 4 moves) so the whole script
runs in well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nesf_viz.assets import CHECKPOINTS, checkpoint_path
from nesf_viz.bench import decode_with, timed, write_json
from nesf_viz.checkpoints import load_checkpoint
from nesf_viz.data import BoundingBox, CrystalBatch, SpeciesVocab, load_crystals
from nesf_viz.datasets import data_root
from nesf_viz.decode import DecodeConfig, decode_crystals
from nesf_viz.device import resolve_device
from nesf_viz.model import NeSF
from nesf_viz.sampling import QuerySampler
from nesf_viz.train import LossModule, train
from nesf_viz.train_config import TrainConfig

DATA = data_root() / "nesf_paper"


def _compare(a, b) -> dict:
    same_counts = [len(x) == len(y) for x, y in zip(a.positions_angstrom, b.positions_angstrom)]
    diffs = [float(np.abs(np.sort(x, 0) - np.sort(y, 0)).max()) for x, y, s in
             zip(a.positions_angstrom, b.positions_angstrom, same_counts) if s and len(x)]
    return {"crystals": len(same_counts), "same_atom_count": int(sum(same_counts)),
            "max_position_diff_A": max(diffs) if diffs else 0.0}


def check_exact(test, vocab, box, dev, cpu) -> dict:
    cfg = DecodeConfig()
    on_dev, t_dev = timed(lambda: decode_crystals("exact", test, box=box, vocab=vocab, config=cfg, device=dev,
                                                  progress=False), dev)
    on_cpu, _ = timed(lambda: decode_crystals("exact", test, box=box, vocab=vocab, config=cfg, device=cpu,
                                              progress=False), cpu)
    out = _compare(on_dev, on_cpu)
    out["identical"] = out["same_atom_count"] == out["crystals"] and out["max_position_diff_A"] == 0.0
    out["device_crystals_per_s"] = len(test) / t_dev
    return out


def check_learned(test, name, dev, cpu, paper: DecodeConfig = DecodeConfig()) -> dict:
    ck_dev, ck_cpu = load_checkpoint(checkpoint_path(name), dev), load_checkpoint(checkpoint_path(name), cpu)
    test = [c for c in test if set(int(z) for z in c.atomic_numbers) <= set(ck_dev.vocab.atomic_numbers)]
    res = {}
    for label, cfg in (("paper", paper), ("fast", DecodeConfig.fast()), ("coarse", DecodeConfig.coarse())):
        on_dev, t_dev = timed(lambda: decode_with(ck_dev, test, cfg, device=dev), dev)
        on_cpu, _ = timed(lambda: decode_with(ck_cpu, test, cfg, device=cpu), cpu)
        cmp = _compare(on_dev, on_cpu)
        cmp["agree"] = cmp["same_atom_count"] == cmp["crystals"] and cmp["max_position_diff_A"] <= 1e-4
        cmp["device_crystals_per_s"] = len(test) / t_dev
        res[label] = cmp
    return {"checkpoint": name, **res}


def train_throughput(crystals, vocab, box, dev, steps: int, batch_size: int) -> dict:
    out = {}
    for label, bf16 in (("float32", False), ("bf16", True)):
        torch.manual_seed(0)
        model = NeSF(num_species=len(vocab)).to(dev)
        cfg = TrainConfig(batch_size=batch_size, mixed_precision=bf16, device=str(dev))
        loss_module = LossModule(model, cfg).to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batch = CrystalBatch.from_crystals(crystals[:batch_size], vocab, device=dev)
        sampler = QuerySampler(box, cfg.sampling)
        gen = torch.Generator().manual_seed(0)  # as train() draws its jitter
        times = []
        for step in range(steps + 1):  # the first step warms up (allocator, kernels)
            def one():
                q = sampler(batch, gen)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    parts = loss_module(batch, q)
                opt.zero_grad(set_to_none=True)
                parts["loss"].float().backward()
                opt.step()
            _, t = timed(one, dev)
            if step:
                times.append(t)
        out[label] = {"structures_per_s": batch.num_crystals / float(np.median(times)), "steps": steps,
                      "batch": batch.num_crystals}
    return out


def paper_epochs(train_set, val_set, dev, epochs: int, out_dir: Path) -> dict:
    cfg = TrainConfig(epochs=epochs, device=str(dev))
    res, seconds = timed(lambda: train(train_set, val_set, out_dir, cfg, progress=False, overwrite=True))
    sec = seconds / max(len(res.history.get("epoch", [])), 1)
    return {"epochs": epochs, "train_structures": len(train_set), "seconds_per_epoch": sec,
            "projected_3200_epochs_min": 3200 * sec / 60, "val_loss": res.history["val_loss"][-1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="small sizes: the CPU dry run")
    ap.add_argument("--json", default="gpu_check.json")
    ap.add_argument("--work", default="out/gpu_check", help="scratch folder for the training run")
    a = ap.parse_args(argv)
    dev, cpu = resolve_device(a.device), torch.device("cpu")
    n_test, n_train, steps, epochs = (2, 16, 1, 1) if a.tiny else (128, 5418, 20, 3)
    have_data = (DATA / "lcs6_test.csv").is_file() and not a.tiny
    if have_data:
        test = load_crystals(DATA / "lcs6_test.csv", conventional=False, limit=n_test)
        train_set = load_crystals(DATA / "lcs6_train.csv", conventional=False, limit=n_train)
        val_set = load_crystals(DATA / "lcs6_val.csv", conventional=False)
        learned = "lcs6"
    else:
        test = load_crystals("synthetic", "test")[:n_test]
        train_set = load_crystals("synthetic", "train")[:n_train]
        val_set = load_crystals("synthetic", "val")[: max(n_train // 8, 2)]
        learned = "synthetic"
    report = {"device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
              "torch": torch.__version__, "python": platform.python_version(), "tiny": a.tiny,
              "data": "LCS6A (../shared/data)" if have_data else "embedded synthetic"}
    vocab = SpeciesVocab.from_crystals(test)
    box = BoundingBox.from_crystals(test)
    t0 = time.perf_counter()
    sections = [
        ("exact_fields", lambda: check_exact(test, vocab, box, dev, cpu)),
        ("learned_fields", lambda: check_learned(test, learned if learned in CHECKPOINTS else "synthetic", dev, cpu,
                                                 DecodeConfig(num_moves=4) if a.tiny else DecodeConfig())),
        ("train_throughput", lambda: train_throughput(train_set, SpeciesVocab.from_crystals(train_set + val_set),
                                                      BoundingBox.from_crystals(train_set), dev, steps,
                                                      8 if a.tiny else 128)),
        ("paper_recipe_epochs", lambda: paper_epochs(train_set, val_set, dev, epochs, Path(a.work))),
    ]
    for name, fn in sections:
        t = time.perf_counter()
        try:
            report[name] = fn()
        except Exception as exc:  # a broken section is a result too: record it, run the rest
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        report[name]["seconds"] = round(time.perf_counter() - t, 2)
        print(f"{name}: {json.dumps(report[name])}", flush=True)
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    write_json(a.json, report, indent=2)
    print(f"wrote {a.json} ({report['total_seconds']} s)")
    return 0 if not any("error" in v for v in report.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
