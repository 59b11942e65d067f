"""Benchmark results: metric bars beside the paper's numbers, the time-to-accuracy curves of runs.

Pure: numpy arrays (or pymatgen Structures) in, a ``plotly.graph_objects.Figure`` out (see
`nesf_viz.viz.figures`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ...reference import METRICS
from ._common import PALETTE, _layout

METRIC_NAMES = {k: m.title() for k, m in METRICS.items()}
"""Metric key -> panel title, e.g. 'position error, actual (Å)' (`nesf_viz.reference.METRICS`)."""


def metrics_bars_figure(columns: Mapping[str, Mapping[str, float]], metrics: Sequence[str],
                        errors: Mapping[str, Mapping[str, float]] | None = None,
                        title: str | None = None) -> go.Figure:
    """The paper's metrics side by side: one panel per metric (their units differ), one horizontal
    bar per column (a model, the exact fields, the paper's reference), named on the left axis.

    columns: column -> metric -> value, or -> (mean, std) as `nesf_viz.reference.Reference.values`
    holds the paper's numbers (the std is drawn as the error bar). errors: column -> metric ->
    spread, the same for plain values. Every bar is labelled with its number, beyond its error bar, rounded for its unit
    (`nesf_viz.reference.results_table`'s rule: the exact fields' 1e-8 Å reads '< 0.0001', a zero
    '0'), so a zero-length bar still says what it is. A value missing from a column leaves its bar
    out and says '–'. No legend: the axis names the bars."""
    from ...reference import _cell

    names = list(columns)
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=[METRIC_NAMES.get(m, m) for m in metrics],
                        horizontal_spacing=0.035, shared_yaxes=True)
    labels = [_wrap(n) for n in names]
    for j, m in enumerate(metrics):
        unit = METRICS[m].unit if m in METRICS else ""
        vals, errs, texts = [], [], []
        for name in names:
            v = columns[name].get(m)
            err = (errors or {}).get(name, {}).get(m)
            if isinstance(v, tuple):  # a published (mean, std): the std is its error bar
                v, err = v[0], v[1] if err is None else err
            v = None if v is None or not math.isfinite(float(v)) else float(v)
            vals.append(v)
            errs.append(0.0 if err is None else float(err))
            spread = "" if err is None else f" ± {_cell(float(err), unit)}"
            texts.append("–" if v is None else _cell(v, unit) + spread)
        ends = [(v or 0.0) + e for v, e in zip(vals, errs)]
        top = max(ends + [1e-12])
        fig.add_trace(go.Bar(
            x=[v if v is not None else 0.0 for v in vals], y=labels, orientation="h",
            marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(names))],
            error_x=dict(type="data", array=errs, visible=any(errs), color="#333", thickness=1.5, width=5),
            customdata=texts, showlegend=False, name=METRIC_NAMES.get(m, m),
            hovertemplate="%{y}<br>%{customdata}<extra></extra>", meta={"metric": m},
        ), row=1, col=j + 1)
        # the numbers beyond the error bars (a bar's own text would sit on its error bar)
        fig.add_trace(go.Scatter(
            x=[e + 0.02 * top for e in ends], y=labels, mode="text", text=texts, textposition="middle right",
            textfont=dict(size=12), showlegend=False, hoverinfo="skip", cliponaxis=False, meta={"metric": m},
        ), row=1, col=j + 1)
        fig.update_xaxes(range=[0, top * 1.75], rangemode="tozero", row=1, col=j + 1, showgrid=True,
                         nticks=4, tickformat="~g")
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=12))
    # no fixed width: a 1040 px figure was cut at the right of JupyterLab's narrower output area
    _layout(fig, title or "Metrics side by side (lower is better)", height=120 + 56 * len(names))
    fig.update_layout(showlegend=False, margin=dict(l=10, r=20, t=90, b=40), bargap=0.35)
    fig.update_yaxes(automargin=True)
    return fig


def _wrap(name: str, width: int = 26) -> str:
    """A bar's axis label on two lines when long (at a space, '(' kept with its words)."""
    if len(name) <= width:
        return name
    cut = name.rfind(" (", 0, len(name))
    if 0 < cut:
        return name[:cut] + "<br>" + name[cut + 1:]
    cut = name.rfind(" ", 0, width + 1)
    return name if cut <= 0 else name[:cut] + "<br>" + name[cut + 1:]


_TTA_PANELS = tuple((key, METRICS[key].title("[]"), log) for key, log in (
    ("val_loss", True), ("atom_count_error_pct", False), ("position_error_actual_A", True),
    ("species_error_actual_pct", False)))


def time_to_accuracy_figure(runs: Sequence[Mapping[str, Any]], title: str | None = None,
                            targets: Mapping[str, float] | None = None) -> go.Figure:
    """Validation loss and probe metrics against training wall-clock minutes.

    targets: metric key -> target value, drawn as a dashed line in that metric's panel.

    One colour and one legend entry per (dataset, recipe); its seeds and folds are lines of that
    colour (20 YBCO13 folds stay one entry). runs: protocol records with 'dataset', 'run',
    'seed', 'recipe', 'history' ({'seconds', 'val_loss'}) and 'curve' (list of {'minutes',
    'atom_count_error_pct', 'position_error_actual_A', 'species_error_actual_pct'}: a fixed
    validation subset decoded at snapshots).
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=[p[1] for p in _TTA_PANELS],
                        horizontal_spacing=0.09, vertical_spacing=0.2)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in runs:
        groups.setdefault(f"{r.get('dataset', r['run'])} · {r['recipe']}", []).append(r)
    for i, (group, members) in enumerate(groups.items()):
        color = PALETTE[i % len(PALETTE)]
        legend = group + (f" ({len(members)} runs)" if len(members) > 1 else "")
        for k, r in enumerate(members):
            name = f"{r['run']} · {r['recipe']} · seed {r['seed']}"
            minutes = np.cumsum(np.asarray(r["history"]["seconds"], dtype=float)) / 60
            curve = r.get("curve", [])
            for j, (key, label, _) in enumerate(_TTA_PANELS):
                if key == "val_loss":
                    x, y = minutes, np.asarray(r["history"]["val_loss"], dtype=float)
                else:
                    x = np.array([c["minutes"] for c in curve], dtype=float)
                    y = np.array([np.nan if c[key] is None else c[key] for c in curve], dtype=float)
                fig.add_trace(go.Scatter(
                    x=x, y=y, mode="lines" if key == "val_loss" else "lines+markers", name=legend,
                    legendgroup=group, showlegend=j == 0 and k == 0,
                    line=dict(color=color, width=2 if len(members) == 1 else 1.2),
                    marker=dict(size=5), opacity=1.0 if len(members) == 1 else 0.6,
                    hovertemplate=f"{name}<br>%{{x:.1f}} min<br>{label}: %{{y:.4g}}<extra></extra>",
                ), row=j // 2 + 1, col=j % 2 + 1)
    for j, (key, _, log) in enumerate(_TTA_PANELS):
        fig.update_yaxes(type="log" if log else "linear", row=j // 2 + 1, col=j % 2 + 1)
        if targets and key in targets:
            v = targets[key]
            fig.add_hline(y=v, line=dict(color="#444", dash="dash", width=1), row=j // 2 + 1, col=j % 2 + 1)
            # on a log axis an annotation's y is log10 of the value (add_hline's own label misplaces it)
            fig.add_annotation(x=1, xref="x domain", y=math.log10(v) if log and v > 0 else v, yref="y",
                               text=f"target {v:g}", showarrow=False, xanchor="right", yanchor="bottom",
                               font=dict(size=11, color="#444"), row=j // 2 + 1, col=j % 2 + 1)
    fig.update_xaxes(title_text="training wall-clock [min]", rangemode="tozero")
    _layout(fig, title or "Time to accuracy", height=820, width=1100)
    # legend below the panels, left-aligned: a right-hand legend squeezes four panels
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.12, xanchor="left", x=0),
                      margin=dict(l=60, r=30, t=80, b=150))
    return fig
