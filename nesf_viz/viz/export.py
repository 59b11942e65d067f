"""Export what a notebook shows, for slides: the particle animation as an animated GIF.

Plotly animations live in the browser; a GIF is drawn here frame by frame with matplotlib (a
pymatgen dependency, so nothing new to install) and written with Pillow. Same inputs as
`particle_animation` (`nesf_viz.viz.compute.trajectory_view(...).to_dict()`), same colouring:
|f_p| on [0, 2 * threshold] with the threshold at the middle, true atoms as open circles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ShapeError


def save_particle_gif(path: str | Path, positions: np.ndarray, scores: np.ndarray,
                      atoms: np.ndarray | None = None, atom_labels: Sequence[str] | None = None,
                      step_labels: Sequence[str] | None = None, score_threshold: float = 0.9,
                      fps: float = 6.0, size_px: int = 520, elev_deg: float = 22.0, azim_deg: float = -55.0,
                      title: str | None = None, **_: Any) -> Path:
    """Write the particles' moves as an animated GIF (one frame per recorded step, the last
    frame held for a second). positions (T, P, 3) Å, scores (T, P) |f_p| Å (NaN allowed at
    step 0), atoms (N, 3). Returns the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    pos = np.asarray(positions, float)
    sc = np.asarray(scores, float)
    if pos.ndim != 3 or pos.shape[-1] != 3 or sc.shape != pos.shape[:2]:
        raise ShapeError(f"positions must be (T, P, 3) and scores (T, P); got {pos.shape}, {sc.shape}")
    t_steps = pos.shape[0]
    labels = list(step_labels) if step_labels is not None else [f"move {t}" for t in range(t_steps)]
    dpi = 100
    fig = plt.figure(figsize=(size_px / dpi, size_px / dpi), dpi=dpi)
    ax = fig.add_subplot(projection="3d")
    ax.view_init(elev=elev_deg, azim=azim_deg)
    pts = pos.reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(1)]
    if atoms is not None and len(atoms):
        pts = np.concatenate([pts, np.asarray(atoms, float)])
    lo, hi = pts.min(0) - 0.3, pts.max(0) + 0.3
    for set_lim, a, b in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), lo, hi):
        set_lim(a, b)
    ax.set_box_aspect(hi - lo)
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_zlabel("z (Å)")
    if atoms is not None and len(atoms):
        at = np.asarray(atoms, float)
        ax.scatter(at[:, 0], at[:, 1], at[:, 2], s=160, facecolors="none", edgecolors="#111111", linewidths=1.5)
    vmax = 2 * float(score_threshold)
    first = np.nan_to_num(sc[0], nan=vmax)
    dots = ax.scatter(pos[0, :, 0], pos[0, :, 1], pos[0, :, 2], c=first, cmap="RdBu_r", vmin=0, vmax=vmax,
                      s=6, depthshade=False)
    fig.colorbar(dots, ax=ax, shrink=0.6, pad=0.14, label="|f_p| (Å)")
    head = title or "particles moving along the position field"

    def frame(t: int):
        dots._offsets3d = (pos[t, :, 0], pos[t, :, 1], pos[t, :, 2])
        dots.set_array(np.nan_to_num(sc[t], nan=vmax))
        ax.set_title(f"{head}\n{labels[t]}", fontsize=10)
        return (dots,)

    hold = max(1, int(round(fps)))  # the last frame stays for about a second
    order = list(range(t_steps)) + [t_steps - 1] * hold
    anim = FuncAnimation(fig, frame, frames=order, blit=False)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    anim.save(out, writer=PillowWriter(fps=fps))
    plt.close(fig)
    return out
