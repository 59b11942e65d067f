"""Training curves (live-updatable): loss parts per epoch, validation, step markers.

Pure: numpy arrays (or pymatgen Structures) in, a ``plotly.graph_objects.Figure`` out (see
`nesf_viz.viz.figures`).
"""

from __future__ import annotations

import math
import zlib
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ._common import _layout

_PART_NAMES = {"loss": "total", "loss_pos": "position", "loss_spec": "species",
               "loss_length": "lengths", "loss_angle": "angles"}


_PART_COLORS = {"loss": "#222222", "loss_pos": "#1f77b4", "loss_spec": "#d62728",
                "loss_length": "#2ca02c", "loss_angle": "#9467bd"}


def _part_color(part: str) -> str:
    if part in _PART_COLORS:
        return _PART_COLORS[part]
    extra = ("#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
    return extra[zlib.crc32(part.encode()) % len(extra)]


def _curve_keys(history: Mapping[str, Sequence[float]]) -> list[tuple[str, str, bool]]:
    """(history key, part, is_val) for every loss curve, total loss first, train before val."""
    parts: list[str] = []
    for k in history:
        if not (k.startswith("loss") or k.startswith("val_loss")):
            continue  # epoch, lr, seconds, ... are not losses
        part = k[4:] if k.startswith("val_") else k
        if part not in parts:
            parts.append(part)
    parts.sort(key=lambda p: (p != "loss", list(_PART_NAMES).index(p) if p in _PART_NAMES
                              else len(_PART_NAMES)))
    out = []
    for p in parts:
        for key, is_val in ((p, False), ("val_" + p, True)):
            if key in history:
                out.append((key, p, is_val))
    return out


def _curve_xy(history: Mapping[str, Sequence[float]], key: str) -> tuple[list, list]:
    y = [float(v) if v is not None else float("nan") for v in history.get(key, [])]
    ep = list(history.get("epoch", []))
    x = ep[: len(y)] if len(ep) >= len(y) else list(range(1, len(y) + 1))
    y_log = [v if np.isfinite(v) and v > 0 else None for v in y]  # log axis: drop <= 0, NaN
    return list(x), y_log


def _curve_trace(history: Mapping[str, Sequence[float]], key: str, part: str, is_val: bool,
                 cls: type = go.Scatter) -> go.Scatter:
    x, y = _curve_xy(history, key)
    name = _PART_NAMES.get(part, part) + (" (val)" if is_val else "")
    return cls(
        x=x, y=y, mode="lines+markers" if len(y) < 30 else "lines", name=name,
        line=dict(color=_part_color(part), dash="dash" if is_val else "solid",
                  width=2.6 if part == "loss" else 1.8),
        marker=dict(size=5), legendgroup=part, meta={"key": key},
        hovertemplate=f"{name}<br>epoch %{{x}}<br>%{{y:.4g}}<extra></extra>",
        connectgaps=False,
    )


def _steps_trace(steps: Mapping[str, Sequence[float]]) -> go.Scatter:
    """The training loss of every optimizer step, thin and light under the epoch curves."""
    y = [v if np.isfinite(v) and v > 0 else None for v in map(float, steps.get("loss", []))]
    return go.Scatter(x=list(steps.get("epoch", []))[: len(y)], y=y, mode="lines", name="total (each step)",
                      line=dict(color="rgba(120,120,120,0.75)", width=1.2), meta={"key": "steps"},
                      hovertemplate="step loss<br>epoch %{x:.2f}<br>%{y:.4g}<extra></extra>")


def training_curves_figure(history: Mapping[str, Sequence[float]], title: str | None = None,
                           steps: Mapping[str, Sequence[float]] | None = None) -> go.Figure:
    """Loss curves on a log axis: one colour per loss part, train solid, validation dashed.

    history: {'epoch': [...], 'loss': [...], 'loss_pos': [...], 'val_loss': [...], ...}, any
    subset, lists possibly empty; x is 'epoch' (else 1, 2, ...). Values <= 0 are left out
    (log axis). steps: {'epoch': fractional epochs, 'loss': ...} of every optimizer step, drawn
    as a thin line (the live view's first minutes). Pair with :func:`update_training_curves`
    for a live ``go.FigureWidget``.
    """
    traces = [_steps_trace(steps)] if steps is not None else []
    fig = go.Figure(traces + [_curve_trace(history, k, p, v) for k, p, v in _curve_keys(history)])
    _layout(fig, title or "Training curves", height=480)  # as wide as the notebook
    fig.update_xaxes(title_text="epoch", rangemode="tozero")
    _epoch_ticks(fig, history, steps)
    # ticks at 1, 2, 5 of every decade, each written in full: a log axis spanning less than two
    # decades otherwise labels its minor ticks with a bare digit (5 4 3 2 10), which reads as values
    fig.update_yaxes(title_text="loss (log scale)", type="log", tickformat="~g", dtick="D2")
    # the legend below the plot: on the right it took a quarter of a notebook's width, above it the
    # title's place once it wrapped to three rows in a narrow live panel
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
                      margin=dict(t=70, r=20, b=20))
    return fig


def update_training_curves(fig: go.Figure, history: Mapping[str, Sequence[float]],
                           steps: Mapping[str, Sequence[float]] | None = None) -> go.Figure:
    """Put ``history`` (and ``steps``) into a figure made by :func:`training_curves_figure`, in place.

    Existing traces (found by their history key) get new x/y; curves that appear in the
    history later are added. Works on ``go.FigureWidget`` (one batched front-end update, so
    a live notebook figure redraws once per call) and on ``go.Figure``. Returns ``fig``.
    """
    by_key = {t.meta.get("key"): t for t in fig.data if isinstance(t.meta, dict)}
    curves = _curve_keys(history)
    if steps is not None and "steps" not in by_key:
        fig.add_trace(_steps_trace(steps))
    with fig.batch_update():  # a FigureWidget sends one message for all changes
        if steps is not None and "steps" in by_key:
            new_steps = _steps_trace(steps)
            by_key["steps"].x, by_key["steps"].y = new_steps.x, new_steps.y
        for key, _, _ in curves:
            tr = by_key.get(key)
            if tr is not None:
                x, y = _curve_xy(history, key)
                tr.x, tr.y = x, y
                tr.mode = "lines+markers" if len(y) < 30 else "lines"
    new = [_curve_trace(history, k, p, v) for k, p, v in curves if k not in by_key]
    if new:
        fig.add_traces(new)
    _epoch_ticks(fig, history, steps)
    return fig


def _epoch_ticks(fig: go.Figure, history: Mapping[str, Sequence[float]],
                 steps: Mapping[str, Sequence[float]] | None = None) -> None:
    """Whole-epoch ticks: Plotly's automatic ticks show 0.5, 1.5 ... for a short run."""
    n = max([*history.get("epoch", []), *(steps or {}).get("epoch", [])[-1:],
             len(history.get("loss", []) or []), 1])
    fig.update_xaxes(tick0=0, dtick=max(1, math.ceil(n / 8)))
