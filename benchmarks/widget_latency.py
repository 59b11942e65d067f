"""Slider change -> redraw latency of the notebook widgets, Python side only.

Times what the kernel does when a slider moves: re-clustering (DecodeExplorer) or the field
evaluation (FieldExplorer), the pure figure function, and the in-place FigureWidget update
(batched trait changes). The browser's own redraw (plotly.js, WebGL) is not included.
Medians and quartiles over repeated moves; this machine is noisy, so compare medians.

    .venv/bin/python benchmarks/widget_latency.py [--repeats 10] [--threads 1]
                                                  [--checkpoint PATH] [--crystals 4]
                                                  [--only widgets|explorer] [--explorer-data NAME ...]

Exact fields of synthetic test crystals always; the learned-field numbers use the shipped
checkpoint (or --checkpoint) and are skipped with the reason when there is none.

The dataset explorer (`nesf_viz.explore`): a click on the map -> the panel redrawn (verdict,
neighbours, the map's rings and the visible tab), per tab, and a colour change of the whole map,
for each dataset of --explorer-data (default: the LCS6Å test split with the shipped 'lcs6' model,
and the perov_5 validation file with the 'perov5' model, or 'lcs6' when that is not shipped, whose
vocabulary may not cover every element: those crystals are skipped and counted). The survey behind
it is read from the cache (`nesf_viz.survey.cache_folder()`); a first run computes it (minutes for
thousands of crystals; the time is printed). A dataset whose file is absent is skipped with the reason.
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
    ap.add_argument("--only", choices=("widgets", "explorer"), default=None)
    ap.add_argument("--explorer-data", nargs="+", default=["lcs6_test", "perov_5_val"],
                    help="datasets of nesf_viz.datasets.FILES for the explorer rows")
    ap.add_argument("--clicks", type=int, default=30, help="clicks per explorer row")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.only != "explorer":
        _widgets(args)
    if args.only != "widgets":
        for name in args.explorer_data:
            _explorer(name, args.clicks)


def _model_for(dataset: str) -> str:
    """The shipped model for a dataset: its own when shipped (perov5 for perov_5), else lcs6."""
    from nesf_viz.assets import CHECKPOINTS

    own = {"perov_5_val": "perov5", "lcs6_test": "lcs6", "lcs6_train": "lcs6", "lcs6_val": "lcs6"}.get(dataset)
    return own if own in CHECKPOINTS and CHECKPOINTS[own].path.is_file() else "lcs6"


def _explorer(dataset: str, clicks: int) -> None:
    """Click -> panel redraw of the dataset explorer on a real dataset."""
    import warnings

    from nesf_viz.datasets import DatasetUnavailable, dataset_path
    from nesf_viz.errors import SkippedStructuresWarning
    from nesf_viz.survey import survey
    from nesf_viz.viz.explorer import DatasetExplorer

    try:
        dataset_path(dataset)
    except DatasetUnavailable as exc:
        print(f"\nexplorer on {dataset} skipped: {exc}")
        return
    model = _model_for(dataset)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SkippedStructuresWarning)
        s, seconds = timed(lambda: survey(dataset, model, skip_bad=True, progress=False))
    skipped = [str(w.message) for w in caught if issubclass(w.category, SkippedStructuresWarning)]
    how = "read from the cache" if s.from_cache else "computed and cached"
    print(f"\nexplorer on {dataset}, model '{model}' ({s.decoder} decoder): {len(s)} crystals on the map, "
          f"{len(s.skipped)} skipped (elements outside the model's vocabulary); survey {how} in {seconds:.1f} s"
          + (f" (computed in {s.compute_seconds:.0f} s)" if s.from_cache else ""))
    for w in skipped[:1]:
        print(f"  {w[:300]}")
    print(f"  {s.summary()}")
    ex, seconds = timed(lambda: DatasetExplorer(s))
    print(f"  explorer built in {seconds:.2f} s")
    rng = np.random.default_rng(0)
    picks = rng.choice(len(s), size=min(clicks + 1, len(s)), replace=False).tolist()
    ex.select(picks[0])  # the first drawing of a structure imports crystal-toolkit (seconds, once)
    for tab, label in ((0, "original vs decoded"), (1, "fields"), (2, "species vote")):
        ex.tabs.selected_index = tab
        xs = []
        for i in picks[1:]:
            ex.map.data[0]._dispatch_on_click(_Points(i), None)  # the browser's click, as the kernel gets it
            xs.append(ex.last_update_s)
        _row(f"click -> panel redraw, tab '{label}'", xs)
    ex.tabs.selected_index = 0
    colours = ["position error (Å)", "crystal system", "decoded right / wrong"]
    _row("colour change -> whole map redrawn", _moves(ex.colour, colours, max(1, clicks // 10)))
    sel = [timed(lambda: ex.select_points(rng.choice(len(s), size=min(500, len(s)), replace=False)))[1]
           for _ in range(5)]
    _row("selection of 500 -> table", sel)


def _Points(i: int):
    from plotly.callbacks import Points

    return Points(point_inds=[i], xs=[0.0], ys=[0.0], trace_name="crystals", trace_index=0)


def _widgets(args) -> None:
    from nesf_viz.assets import default_checkpoint_path
    from nesf_viz.checkpoints import load_checkpoint
    from nesf_viz.data import BoundingBox, CrystalBatch, SpeciesVocab, load_crystals
    from nesf_viz.decode import decode
    from nesf_viz.errors import CheckpointError
    from nesf_viz.fields import ExactFields
    from nesf_viz.hooks import TrajectoryRecorder
    from nesf_viz.viz import widgets

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
