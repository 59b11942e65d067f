"""Slider change -> redraw latency of the notebook widgets, Python side only.

Times what the kernel does when a slider moves: re-clustering (DecodeExplorer) or the field
evaluation (FieldExplorer), the pure figure function, and the in-place FigureWidget update
(batched trait changes). The browser's own redraw (plotly.js, WebGL) is not included.
Medians and quartiles over repeated moves; this machine is noisy, so compare medians.

    .venv/bin/python benchmarks/widget_latency.py [--repeats 10] [--threads 1]
                                                  [--checkpoint PATH] [--crystals 4]

Exact fields of synthetic test crystals always; the learned-field numbers use the shipped
checkpoint (or --checkpoint) and are skipped with the reason when there is none.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from nesf_viz.bench import timed


def _stats(xs: list[float]) -> str:
    q = np.percentile(np.asarray(xs) * 1000, [25, 50, 75])
    return f"median {q[1]:7.1f} ms  (IQR {q[0]:.1f}-{q[2]:.1f} ms, n={len(xs)})"


def _moves(slider, values, repeats: int) -> list[float]:
    """Seconds per programmatic slider change (the observers run synchronously)."""
    out = []
    for _ in range(repeats):
        for v in values:
            if slider.value == v:
                continue
            out.append(timed(lambda: setattr(slider, "value", v))[1])
    return out


def _row(label: str, xs: list[float]) -> None:
    print(f"  {label:<44} {_stats(xs)}")


def _explorer_rows(ex, repeats: int) -> None:
    last = len(ex.recorder.steps) - 1
    _row("move slider -> redraw", _moves(ex.step, [0, 10, last // 2, last], repeats))
    _row("score threshold -> recluster + redraw", _moves(ex.threshold, [0.3, 0.6, 0.9], repeats))
    _row("NMS radius -> recluster + redraw", _moves(ex.radius, [0.3, 0.5, 0.8], repeats))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--crystals", type=int, default=4)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from nesf_viz.assets import default_checkpoint_path
    from nesf_viz.data import BoundingBox, CrystalBatch, SpeciesVocab, load_crystals
    from nesf_viz.decode import decode
    from nesf_viz.errors import CheckpointError
    from nesf_viz.fields import ExactFields
    from nesf_viz.hooks import TrajectoryRecorder
    from nesf_viz.runs import load_checkpoint
    from nesf_viz.viz import widgets

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    crystals = load_crystals("synthetic", "test")[: args.crystals]

    # ---- exact fields, recorder with its default 2000-particle subsample
    vocab = SpeciesVocab.from_crystals(crystals)
    batch = CrystalBatch.from_crystals(crystals, vocab)
    fields = ExactFields(batch, len(vocab))
    box = BoundingBox.from_crystals(load_crystals("synthetic", "train"))
    rec = TrajectoryRecorder()
    res, seconds = timed(lambda: decode(fields, batch, box=box, vocab=vocab, hooks=[rec]))
    print(f"\nexact fields: decode of {len(crystals)} crystals with a recorder "
          f"{seconds:.2f} s; {int(res.n_particles[0])} particles per crystal, "
          f"{len(rec.particle_numbers(0))} recorded, {len(rec.steps)} steps")
    ex, seconds = timed(lambda: widgets.DecodeExplorer(rec, crystals, res))
    print(f"  DecodeExplorer built in {seconds:.2f} s")
    rc, fig = [], []
    for _ in range(args.repeats):
        for thr in (0.3, 0.9):
            rc.append(timed(lambda: rec.recluster(0, thr, 0.5, 10))[1])
        fig.append(timed(ex._figure)[1])
    _row("recorder.recluster alone", rc)
    _row("compute + cluster_figure, no widget", fig)
    _explorer_rows(ex, args.repeats)
    ex.show_vectors.value = True
    _row("move slider, field vectors on", _moves(ex.step, [0, 10, 32], args.repeats))
    fe = widgets.FieldExplorer(fields, fields.latents(), crystals, vocab)
    px = f"{len(fe.figure.data[0].x)}x{len(fe.figure.data[0].y)} px"
    _row(f"FieldExplorer offset, position ({px})",
         _moves(fe.offset, [0.5, 1.0, 1.5, 2.0], max(1, args.repeats // 2)))

    # ---- learned fields
    try:
        path = args.checkpoint or default_checkpoint_path()
    except CheckpointError as exc:
        print(f"\nlearned fields skipped: {exc}")
        return
    ck = load_checkpoint(path)
    lb = CrystalBatch.from_crystals(crystals, ck.vocab)
    with torch.no_grad():
        z = ck.model.latents(lb)
    print(f"\nlearned fields ({path}):")
    fl = widgets.FieldExplorer(ck.model, z, crystals, ck.vocab)
    px = f"{len(fl.figure.data[0].x)}x{len(fl.figure.data[0].y)} px"
    _row(f"FieldExplorer offset, position ({px})",
         _moves(fl.offset, [0.5, 1.0, 1.5, 2.0], max(1, args.repeats // 2)))
    fl.kind.value = "species field"
    _row("FieldExplorer offset, species field",
         _moves(fl.offset, [0.5, 1.0, 1.5], max(1, args.repeats // 2)))
    rec2 = TrajectoryRecorder()
    res2, seconds = timed(lambda: decode(ck.model, lb.select(torch.tensor([0])), box=ck.box, vocab=ck.vocab,
                                         hooks=[rec2]))
    print(f"  decode of 1 crystal with a recorder {seconds:.2f} s")
    _explorer_rows(widgets.DecodeExplorer(rec2, crystals[:1], res2), args.repeats)


if __name__ == "__main__":
    main()
