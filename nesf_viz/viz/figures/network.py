"""The NeSF network's architecture as a diagram.

Pure: numpy arrays (or pymatgen Structures) in, a ``plotly.graph_objects.Figure`` out (see
`nesf_viz.viz.figures`).
"""

from __future__ import annotations

from typing import Any, Sequence

import plotly.graph_objects as go

from ._common import _layout


def _widths(channels: Sequence[int], out: str | None = None) -> str:
    """'256 → 128 ×7 → 3': layer widths with repeats folded, then the output (if given)."""
    parts: list[str] = []
    for c in channels:
        if parts and parts[-1].split(" ×")[0] == str(c):
            n = int(parts[-1].split(" ×")[1]) + 1 if " ×" in parts[-1] else 2
            parts[-1] = f"{c} ×{n}"
        else:
            parts.append(str(c))
    return " → ".join(parts + ([out] if out is not None else []))


def architecture_figure(config: Any = None, title: str | None = None) -> go.Figure:
    """The autoencoder as boxes and arrows: crystal -> PointNet encoder -> z -> lattice heads and
    the two fields f_p(z, p), f_s(z, p) asked at query points p. Layer widths come from `config`
    (a `NeSFConfig`; default: the paper's network with 80 species)."""
    if config is None:
        from ...model import NeSFConfig  # lazy: this module does not import torch at import time

        config = NeSFConfig(num_species=80)
    boxes = [  # (x0, x1, y0, y1, colour, html text)
        (0.0, 1.7, 2.3, 3.7, "#eeeeee", "<b>crystal</b><br>atoms: position,<br>element; the cell"),
        (2.2, 4.6, 1.9, 4.1, "#dbe9f6",
         "<b>encoder</b> (PointNet)<br>each atom: "
         f"{_widths(config.encoder_position_channels)} (position),<br>"
         f"{_widths(config.encoder_species_channels)} (element)<br>"
         f"mix {_widths(config.encoder_mix_channels)}, <b>max over atoms</b><br>"
         f"+ cell: {_widths(config.encoder_head_channels, str(config.latent_dim))}"),
        (5.1, 6.1, 2.6, 3.4, "#fde0c5", f"<b>z</b><br>{config.latent_dim} numbers"),
        (5.1, 6.1, 0.3, 1.3, "#eeeeee", "<b>query point p</b><br>(Å)"),
        (6.7, 9.9, 4.5, 5.7, "#e2f0d9",
         f"<b>lattice heads</b><br>{_widths(config.lattice_head_channels, '3')}: lengths, angles"),
        (6.7, 9.9, 2.4, 3.6, "#e2f0d9",
         f"<b>position field f<sub>p</sub>(z, p)</b><br>{_widths(config.position_field_channels, '3')}"
         "<br>vector to the nearest atom"),
        (6.7, 9.9, 0.2, 1.4, "#e2f0d9",
         "<b>species field f<sub>s</sub>(z, p)</b><br>"
         f"{_widths(config.species_field_channels, str(config.num_species))}"
         "<br>scores of its element"),
    ]
    fig = go.Figure()
    for x0, x1, y0, y1, colour, text in boxes:
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, fillcolor=colour,
                      line=dict(color="#666666", width=1), layer="below")
        fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=text, showarrow=False,
                           font=dict(size=12), align="center")
    arrows = [((1.7, 3.0), (2.2, 3.0)), ((4.6, 3.0), (5.1, 3.0)), ((6.1, 3.0), (6.7, 5.1)),
              ((6.1, 3.0), (6.7, 3.0)), ((6.1, 3.0), (6.7, 0.8)), ((6.1, 0.8), (6.7, 2.6)),
              ((6.1, 0.8), (6.7, 0.8))]
    for (xa, ya), (xb, yb) in arrows:
        fig.add_annotation(x=xb, y=yb, ax=xa, ay=ya, xref="x", yref="y", axref="x", ayref="y", text="",
                           showarrow=True, arrowhead=2, arrowsize=1.2, arrowwidth=1.5, arrowcolor="#444444")
    _layout(fig, title or "NeSF: an autoencoder whose decoder is two fields", height=420, width=860,
            showlegend=False)
    fig.update_xaxes(visible=False, range=[-0.1, 10.0])
    fig.update_yaxes(visible=False, range=[0.0, 5.9])
    return fig
