"""The main job: train on the embedded data, decode the test split, write an HTML report.

`run_demo` is what `make demo` / `nesf-viz demo` runs. The report is one standalone HTML file
(plotly.js embedded once, works offline): a metrics table (metrics x models), training curves,
particle animation, clusters, a field slice and original-vs-decoded views of a few crystals.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Sequence

import torch

from .checkpoints import Checkpoint, RunFolder, load_checkpoint
from .data import Crystal, CrystalBatch, load_crystals
from .decode import DecodeResult, decode
from .device import resolve_device
from .hooks import TrajectoryRecorder
from .metrics import verdict_summary
from .reference import METRICS, format_value
from .train import train
from .train_config import TrainConfig


def _right_and_wrong(test: Sequence[Crystal], verdicts: dict[str, list], decoded: dict[str, list]):
    """(title, original, decoded) of one crystal decoded right and one decoded wrong, preferring
    the same crystal under two models; empty where every decode is right (or wrong)."""
    names = list(verdicts)
    for i in range(len(test)):
        ok = [n for n in names if verdicts[n][i].right and decoded[n][i] is not None]
        bad = [n for n in names if not verdicts[n][i].right and decoded[n][i] is not None]
        if ok and bad:
            return [(f"{ok[0]}: decoded right", i, ok[0]), (f"{bad[0]}: decoded wrong", i, bad[0])]
    picks = []
    for want, label in ((True, "decoded right"), (False, "decoded wrong")):
        hit = next(((n, i) for n in reversed(names) for i in range(len(test))
                    if verdicts[n][i].right == want and decoded[n][i] is not None), None)
        if hit:
            picks.append((f"{hit[0]}: {label}", hit[1], hit[0]))
    return picks


def build_report(
    ckpt: Checkpoint,
    test: Sequence[Crystal],
    out_html: str | Path,
    metrics: dict[str, dict],
    n_show: int = 1,
    device: str = "cpu",
    results: dict[str, DecodeResult] | None = None,
    short_history: dict | None = None,
    verdicts: dict[str, list] | None = None,
) -> Path:
    """Write the standalone HTML report: per-crystal verdicts of each model's decode of `test`
    (`results`: model name -> DecodeResult; default: `ckpt` with the fast decoder), the metrics
    as a table (`metrics`: model name -> `ReconstructionMetrics.to_dict()`), training curves, and
    `ckpt` decoding its first test crystal step by step."""
    from .decode import DecodeConfig, decode_crystals
    from .metrics import crystal_verdicts
    from .viz import compute
    from .viz import figures as F

    dev = resolve_device(device)
    model = ckpt.model.to(dev).eval()
    if results is None:
        results = {"model": decode_crystals(model, test, box=ckpt.box, vocab=ckpt.vocab,
                                            config=DecodeConfig.fast(), device=dev, progress=False)}
    if verdicts is None:
        verdicts = {name: crystal_verdicts(test, res) for name, res in results.items()}
    show = list(test[:n_show])
    batch = CrystalBatch.from_crystals(show, ckpt.vocab, device=dev)
    rec = TrajectoryRecorder(every=4, max_particles=1500, seed=0)
    decode(model, batch, box=ckpt.box, vocab=ckpt.vocab, hooks=[rec])  # recorded by rec
    with torch.no_grad():
        z = model.latents(batch)

    figs: list[tuple[str, object]] = []
    pairs = []
    decoded_by_model = {name: res.to_structures(strict=False) for name, res in results.items()}
    originals = [c.to_structure() for c in test]
    for label, i, name in _right_and_wrong(test, verdicts, decoded_by_model):
        v = verdicts[name][i]
        pairs.append((f"{label} — {test[i].id}: {v.true_formula} decoded as {v.decoded_formula}, "
                      f"position error {v.position_error_A:.3f} Å",
                      F.compare_figure(originals[i], decoded_by_model[name][i], title=f"{test[i].id} · {name}")))
    if short_history:
        figs.append(("Training curves of the short run (quick recipe)",
                     F.training_curves_figure(short_history, "Short run: training and validation loss")))
    figs.append(("Training curves of the shipped model", F.training_curves_figure(ckpt.history, "Shipped model")))
    first = f"{show[0].id}"
    figs.append(("Particles flowing along the learned position field (shipped model, crystal 1)",
                 compute.trajectory_view(rec, 0, show).figure(title=f"{first}: particles moving to atoms")))
    figs.append(("Clusters formed by non-max suppression (shipped model, crystal 1)",
                 compute.cluster_view(rec, 0, -1, show).figure(title=f"{first}: NMS clusters")))
    figs.append(("Learned position field, slice through the first atom (shipped model, crystal 1)",
                 compute.field_slice(model, z, 0, "xy", float(show[0].positions_angstrom[0, 2]), step_angstrom=0.2,
                                     atoms=show[0]).figure(title=f"{first}: |f_p| and in-plane vectors")))

    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(_page(ckpt, test, metrics, verdicts, pairs, figs), encoding="utf-8")
    return out_html


def _page(ckpt: Checkpoint, test: Sequence[Crystal], metrics: dict[str, dict], verdicts: dict[str, list],
          pairs: list[tuple[str, object]], figs: list[tuple[str, object]]) -> str:
    """The report's HTML: summary, metrics, the right/wrong pairs, every crystal's verdict, figures
    (plotly.js inlined once, in the first figure)."""
    summary = "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(verdict_summary(v))}</li>"
                      for n, v in verdicts.items())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>NeSF report</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "h2{margin-top:2em}td,th{font-size:13px}"
        "table.metrics{border-collapse:collapse}table.metrics td,table.metrics th{padding:4px 10px;"
        "border-bottom:1px solid #ddd}table.metrics td.v{text-align:right;font-variant-numeric:tabular-nums}"
        "</style></head><body>",
        "<h1>Neural Structure Fields — demo report</h1>",
        f"<p>Held-out test crystals: {len(test)} (never trained on). Network: "
        f"{ckpt.model.num_parameters():,} parameters, {len(ckpt.vocab)} species.</p>",
        f"<h2>How right each model is</h2><ul>{summary}</ul>",
        "<h2>Paper metrics on the held-out crystals (fast decoder)</h2>",
        _metrics_table(metrics),
    ]
    first = True
    for title, fig in pairs:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if first else False))
        first = False
    parts.append("<h2>Every crystal</h2>" + _verdict_rows(verdicts))
    for title, fig in figs:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs="inline" if first else False))
        first = False
    parts.append("</body></html>")
    return "\n".join(parts)


def _verdict_rows(verdicts_by_model: dict[str, list]) -> str:
    """HTML table: one row per crystal, per model its decoded formula, composition, match, error."""
    names = list(verdicts_by_model)
    first = verdicts_by_model[names[0]]
    head = "<tr><th>crystal</th><th>true</th>" + "".join(
        f"<th>{html.escape(n)}: decoded</th><th>composition</th><th>StructureMatcher</th><th>position error</th>"
        for n in names) + "</tr>"
    yes, no = "<td style='color:#1a7f37'>right</td>", "<td style='color:#cf222e'><b>wrong</b></td>"
    rows = []
    for i, v0 in enumerate(first):
        cells = [f"<td>{html.escape(v0.id)}</td><td>{html.escape(v0.true_formula)} ({v0.true_atoms})</td>"]
        for n in names:
            v = verdicts_by_model[n][i]
            cells.append(f"<td>{html.escape(v.decoded_formula)} ({v.decoded_atoms})</td>"
                         + (yes if v.composition_right and v.true_atoms == v.decoded_atoms else no)
                         + ("<td>–</td>" if v.matched is None else (yes if v.matched else no))
                         + f"<td>{v.position_error_A:.3f} Å</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ("<table style='border-collapse:collapse' border='1' cellpadding='4'>" + head
            + "".join(rows) + "</table>")


def _metric_rows(metrics_by_model: dict[str, dict]) -> list[tuple[str, list[str]]]:
    """(metric title with its unit, one formatted value per model) per metric, in the order of
    `reference.METRICS`: the rows of the report's table and of the console's."""
    keys = list(next(iter(metrics_by_model.values())))
    keys.sort(key=lambda k: list(METRICS).index(k) if k in METRICS else len(METRICS))
    rows = []
    for k in keys:
        vals = [metrics_by_model[n].get(k) for n in metrics_by_model]
        rows.append((METRICS[k].title() if k in METRICS else k,
                     [format_value((float(v), None), 4) if isinstance(v, (int, float)) else "–" for v in vals]))
    return rows


def _metrics_table(metrics_by_model: dict[str, dict]) -> str:
    """HTML table: metrics (rows, with units) x models (columns)."""
    head = "<tr><th>metric</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in metrics_by_model) + "</tr>"
    body = "".join("<tr><td>" + html.escape(title) + "</td>"
                   + "".join(f"<td class='v'>{html.escape(v)}</td>" for v in vals) + "</tr>"
                   for title, vals in _metric_rows(metrics_by_model))
    return f"<table class='metrics'>{head}{body}</table>"


def _side_by_side(metrics_by_model: dict[str, dict]) -> str:
    """Plain-text table for the console: metrics (rows) x models (columns)."""
    names = list(metrics_by_model)
    rows = _metric_rows(metrics_by_model)
    width = max(len(title) for title, _ in rows)
    cols = [max(len(n), 12) for n in names]
    lines = [" " * width + "  " + "  ".join(n.rjust(w) for n, w in zip(names, cols))]
    lines += [f"{title:<{width}}  " + "  ".join(v.rjust(w) for v, w in zip(vals, cols)) for title, vals in rows]
    return "\n".join(lines)


def run_demo(out: str | Path = "out/demo", minutes: float = 2.0, n_train: int = 480, n_test: int = 48,
             device: str = "auto", seed: int = 0, checkpoint: str | Path | None = None) -> dict:
    """The main job: a short quick-recipe training (does training work?) and the shipped,
    converged checkpoint (does NeSF work?), both decoded on held-out embedded crystals.

    Both models are scored on the first `n_test` crystals of the embedded test split, which
    neither was trained on; the report puts their metrics side by side, gives a per-crystal
    table, shows a crystal decoded right next to one decoded wrong, and the decoded CIFs are
    written to `out/decoded/<model>/`. Returns the short-trained model's metrics.
    """
    from .assets import default_checkpoint_path
    from .decode import DecodeConfig, decode_crystals
    from .evaluate import write_decoded_folder
    from .metrics import metrics_of

    out = Path(out)
    dev = resolve_device(device)
    shipped_path = Path(checkpoint) if checkpoint is not None else default_checkpoint_path()
    shipped = load_checkpoint(shipped_path, dev)
    # the shipped model's own splits: its test crystals were never trained on by either model
    tr = load_crystals("synthetic", "train")[:n_train]
    va = load_crystals("synthetic", "val")[: max(n_train // 8, 2)]
    test = load_crystals("synthetic", "test")[:n_test]
    print(f"embedded data: {len(tr)} train / {len(va)} val crystals for the short run; "
          f"{len(test)} held-out test crystals for both models")
    epochs = max(int(minutes * 20), 1)  # an upper bound: the wall-clock budget stops the run first
    print(f"[1/3] training a small NeSF with the quick recipe for at most {minutes:g} min "
          "(a short run: it shows that training works, not a converged model)")
    t0 = time.perf_counter()
    train(tr, va, out / "checkpoint",
          TrainConfig.quick(epochs=epochs, max_minutes=minutes, seed=seed, device=device),
          vocab=shipped.vocab, overwrite=True)  # the demo's own folder: a rerun starts over
    short = load_checkpoint(RunFolder(out / "checkpoint").best, dev)
    print(f"      trained {short.epoch} epochs in {time.perf_counter() - t0:.0f} s")

    print(f"[2/3] decoding {len(test)} held-out crystals with both models (fast decoder)")
    models = {f"short run ({short.epoch} epochs)": short,
              f"shipped ({shipped.epoch} epochs)": shipped}
    metrics, verdicts, results = {}, {}, {}
    for name, ck in models.items():
        res = decode_crystals(ck.model, test, box=ck.box, vocab=ck.vocab, config=DecodeConfig.fast(),
                              device=dev, progress=False)
        results[name] = res
        metrics[name] = metrics_of(test, res, match=True).to_dict()
        folder = out / "decoded" / ("short" if name.startswith("short") else "shipped")
        verdicts[name] = write_decoded_folder(test, res, folder, overwrite=True)  # the demo's own folder
    text = _side_by_side(metrics)
    print(text)
    for name, v in verdicts.items():
        print(f"  {name}: {verdict_summary(v)}")
    print(f"      decoded CIFs: {(out / 'decoded').resolve()}/{{short,shipped}}/")

    print("[3/3] writing the report")
    report = build_report(shipped, test, out / "report.html", metrics, device=device, results=results,
                          short_history=short.history, verdicts=verdicts)
    print(f"\nreport: {report.resolve()}\n  open it in a browser (standalone, works offline)")
    print("notebooks: `make lab` starts JupyterLab on notebooks/ (01_concept ... 05_benchmark)")
    m = metrics[next(iter(metrics))]
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}
