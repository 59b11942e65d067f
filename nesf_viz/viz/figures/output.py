"""Writing figures: standalone HTML, PNG (kaleido).

Pure: numpy arrays (or pymatgen Structures) in, a ``plotly.graph_objects.Figure`` out (see
`nesf_viz.viz.figures`).
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go


def save_html(fig: go.Figure, path: str | Path) -> Path:
    """Write a standalone HTML file that works offline (plotly.js embedded, ~4 MB)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(p, include_plotlyjs=True, full_html=True, auto_play=False)
    return p


def save_png(fig: go.Figure, path: str | Path, *, width: int | None = None,
             height: int | None = None, scale: float = 2.0) -> Path:
    """Write a PNG with kaleido (1.x drives a local Chromium/Chrome).

    Raises RuntimeError naming what is missing: the kaleido package, or a Chromium it can
    start (Debian: ``apt-get install chromium``; or ``plotly_get_chrome``).
    """
    try:
        import kaleido  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(
            "save_png needs the 'kaleido' package (pip install 'kaleido>=1.0'); "
            "save_html works without it"
        ) from exc
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.write_image(p, format="png", width=width or fig.layout.width or 1000,
                        height=height or fig.layout.height or 600, scale=scale)
    except Exception as exc:  # noqa: BLE001 - kaleido/choreographer raise many kinds
        text = f"{type(exc).__name__}: {exc}"
        if "chrom" in text.lower() or "browser" in text.lower():
            raise RuntimeError(
                "save_png: kaleido could not start Chromium/Chrome. Install one "
                "(Debian/Ubuntu: apt-get install chromium; or run plotly_get_chrome) or set "
                f"BROWSER_PATH to its executable. Original error: {text}"
            ) from exc
        raise RuntimeError(f"save_png: kaleido failed to render the figure: {text}") from exc
    return p
