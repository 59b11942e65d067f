"""The main job: train on the embedded data, decode the test split, write an HTML report.

`run_demo` is what `make demo` / `nesf-viz demo` runs. The report is one standalone HTML file
(plotly.js embedded once, works offline): metrics table, training curves, particle animation,
clusters, a field slice and original-vs-decoded views of a few crystals.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .data import Crystal, CrystalBatch, SpeciesVocab, load_crystals
from .decode import decode
from .evaluate import format_table, run_evaluate
from .hooks import TrajectoryRecorder
from .train import Checkpoint, TrainConfig, load_checkpoint, resolve_device, train


def _slice_arrays(model, z: torch.Tensor, row: int, crystal: Crystal, step: float = 0.2):
    """Position-field slice z = first atom's height, for `field_slice_figure` (model runs here, not in viz)."""
    pos = crystal.positions_angstrom
    height = float(pos[0, 2])
    hi = float(max(crystal.lengths_angstrom)) + 0.5
    u = np.arange(-0.5, hi, step)
    uu, vv = np.meshgrid(u, u, indexing="ij")
    pts = np.stack([uu.ravel(), vv.ravel(), np.full(uu.size, height)], 1)
    dev = z.device
    with torch.no_grad():
        vec = model.position_field(
            z, torch.as_tensor(pts, dtype=z.dtype, device=dev),
            torch.full((pts.shape[0],), row, dtype=torch.long, device=dev),
        ).double().cpu().numpy()
    near = np.abs(pos[:, 2] - height) < 0.3
    return dict(
        grid_u=u, grid_v=u,
        vectors_uv=vec[:, :2].reshape(len(u), len(u), 2),
        magnitude=np.linalg.norm(vec, axis=1).reshape(len(u), len(u)),
        atoms_uv=pos[near][:, :2],
    )


def build_report(
    ckpt: Checkpoint,
    test: Sequence[Crystal],
    out_html: str | Path,
    metrics_text: str,
    n_show: int = 3,
    device: str = "cpu",
) -> Path:
    """Write the standalone HTML report for a checkpoint and its test crystals."""
    from .viz import figures as F

    dev = resolve_device(device)
    model = ckpt.model.to(dev).eval()
    show = list(test[:n_show])
    batch = CrystalBatch.from_crystals(show, ckpt.vocab, device=dev)
    rec = TrajectoryRecorder(every=4, max_particles=1500, seed=0)
    result = decode(model, batch, box=ckpt.box, vocab=ckpt.vocab, hooks=[rec])
    with torch.no_grad():
        z = model.latents(batch)
    originals = batch.to_structures(ckpt.vocab)
    decoded = result.to_structures(strict=False)

    figs: list[tuple[str, object]] = [("Training curves", F.training_curves_figure(ckpt.history, "Training and validation loss"))]
    lengths, angles = rec.lattice(0)
    cl = rec.clusters(0)
    figs.append(("Particles flowing along the learned position field (crystal 1)",
                 F.particle_animation(rec.positions(0), rec.norms(0), atoms=show[0].positions_angstrom,
                                      kept=rec.kept(0), step_labels=[f"move {s}" for s in rec.steps],
                                      title=f"{show[0].id}: particles moving to atoms")))
    figs.append(("Clusters formed by non-max suppression (crystal 1)",
                 F.cluster_figure(rec.positions(0)[-1], cl.cluster_id, cl.centres, cl.counts, rec.kept(0),
                                  result.config.nms_radius_angstrom, atoms=show[0].positions_angstrom,
                                  title=f"{show[0].id}: NMS clusters")))
    figs.append(("Learned position field, slice through the first atom (crystal 1)",
                 F.field_slice_figure(**_slice_arrays(model, z, 0, show[0]), title=f"{show[0].id}: |f_p| and in-plane vectors")))
    for i, (o, d) in enumerate(zip(originals, decoded)):
        if d is None:
            continue
        figs.append((f"Original vs decoded: {show[i].id}", F.compare_figure(o, d, title=f"{show[i].id}")))

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>NeSF report</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "pre{background:#f6f8fa;padding:1em;border-radius:6px}h2{margin-top:2em}</style></head><body>",
        "<h1>Neural Structure Fields — demo report</h1>",
        f"<p>Model: {ckpt.model.num_parameters():,} parameters, {len(ckpt.vocab)} species, trained "
        f"{ckpt.epoch} epochs. Test crystals: {len(test)}.</p>",
        "<h2>Paper metrics on the test split</h2>",
        f"<pre>{html.escape(metrics_text)}</pre>",
    ]
    first = True
    for title, fig in figs:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if first else False))
        first = False
    parts.append("</body></html>")
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text("\n".join(parts), encoding="utf-8")
    return out_html


def run_demo(out: str | Path = "out/demo", minutes: float = 3.0, n_total: int = 600,
             device: str = "auto", seed: int = 0) -> dict:
    """Train a small NeSF on the embedded data within `minutes`, decode its test split, report."""
    out = Path(out)
    splits = {s: load_crystals(f"synthetic:{n_total}", s, seed=seed) for s in ("train", "val", "test")}
    print(f"embedded data: {', '.join(f'{k} {len(v)}' for k, v in splits.items())} cubic-prototype crystals")
    t0 = time.perf_counter()
    # the generator's own element list: every split's elements get a class
    vocab = SpeciesVocab.from_crystals([c for v in splits.values() for c in v])
    train(splits["train"], splits["val"], out / "checkpoint",
          TrainConfig(batch_size=32, max_minutes=minutes, early_stopping_patience_epochs=None,
                      seed=seed, device=device), vocab=vocab)
    ckpt = load_checkpoint(out / "checkpoint" / "best.pt", resolve_device(device))
    print(f"trained {ckpt.epoch} epochs in {time.perf_counter() - t0:.0f} s")
    test = splits["test"]
    # the same decode + metrics as `nesf-viz evaluate` (prints the table)
    m = run_evaluate("synthetic test split", checkpoint=out / "checkpoint" / "best.pt", fields="learned",
                     device=device, crystals=test)
    text = format_table(m)
    report = build_report(ckpt, test, out / "report.html", text, device=device)
    print(f"\nreport: {report.resolve()}\n  open it in a browser (standalone, works offline)")
    print("notebooks: `make lab` starts JupyterLab on notebooks/ (01_concept ... 05_benchmark)")
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}
